//! Serving plugins on a Unix socket.

use crate::error::ToErrorObject;
use crate::wire::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use hyper_util::rt::TokioIo;
use infrakit_core::metadata::path_segments;
use infrakit_core::{Allocation, Flavor, Group, Instance, Metadata};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// Default limit on a request body.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Serves instance, flavor, group and metadata plugins on one Unix socket, each under a
/// subtype (the `Type` of a call, `""` for none), and optionally the Go `Manager` interface
/// ([`manager`](Self::manager)).
///
/// A call that names its object by `Name` instead of `Type` (groups always; metadata and the
/// others from Go master's clients, which send the full plugin name, e.g. `"group"` or
/// `"group/workers"`) is resolved like Go's keyed lookup (`pkg/rpc/internal/keyed.go`):
/// an exact subtype match first, then `lookup/type` — an empty type with a single object
/// served means that object, an empty type otherwise the unnamed one (`""`, Go's `"."`), then
/// the type as a subtype. A group name nothing else resolves reaches a lone group object.
///
/// Answers both handshakes (`Handshake.Hello`, `Handshake.Implements`) and both generations'
/// params. Errors of the plugins travel as code -32000 with their message, as Go plugins do.
///
/// ```no_run
/// use infrakit_core::{Simulator, flavor::Vanilla};
/// use infrakit_rpc::PluginServer;
/// use std::sync::Arc;
/// # async fn run() -> std::io::Result<()> {
/// let handle = PluginServer::new()
///     .instance("", Arc::new(Simulator::new()))
///     .flavor("worker", Arc::new(Vanilla))
///     .serve("/run/infrakit/plugins/simulator")
///     .await?;
/// // ... later
/// handle.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct PluginServer {
    instances: BTreeMap<String, Arc<dyn Instance>>,
    flavors: BTreeMap<String, Arc<dyn Flavor>>,
    groups: BTreeMap<String, Arc<dyn Group>>,
    metadata: BTreeMap<String, Arc<dyn Metadata>>,
    manager: Option<Arc<dyn ManagerStatus>>,
    latest_names: bool,
    max_body: Option<usize>,
}

/// What the `Manager` interface says about a replica's leadership (`Manager.IsLeader`,
/// `Manager.LeaderLocation`); see [`PluginServer::manager`].
///
/// ```
/// use infrakit_rpc::ManagerStatus;
/// struct AlwaysLeads;
/// impl ManagerStatus for AlwaysLeads {
///     fn is_leader(&self) -> bool { true }
///     fn leader_location(&self) -> Option<String> { Some("/run/infrakit/plugins/group".into()) }
/// }
/// ```
pub trait ManagerStatus: Send + Sync {
    /// Whether this replica leads right now.
    fn is_leader(&self) -> bool;

    /// Where the leader is (a socket path, a socket name or a URL), when known; a leader
    /// answers its own location.
    fn leader_location(&self) -> Option<String>;
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("flavors", &self.flavors.keys().collect::<Vec<_>>())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .field("metadata", &self.metadata.keys().collect::<Vec<_>>())
            .field("manager", &self.manager.is_some())
            .field("latest_names", &self.latest_names)
            .finish()
    }
}

/// A running server. [`stop`](Self::stop) it to remove the socket; dropping it stops accepting.
#[derive(Debug)]
pub struct ServerHandle {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting connections and removes the socket file.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginServer {
    /// A server with no plugins yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves an instance plugin under `subtype`.
    #[must_use]
    pub fn instance(mut self, subtype: &str, plugin: Arc<dyn Instance>) -> Self {
        self.instances.insert(subtype.to_owned(), plugin);
        self
    }

    /// Serves a flavor plugin under `subtype`.
    #[must_use]
    pub fn flavor(mut self, subtype: &str, plugin: Arc<dyn Flavor>) -> Self {
        self.flavors.insert(subtype.to_owned(), plugin);
        self
    }

    /// Serves a group plugin under `name`.
    #[must_use]
    pub fn group(mut self, name: &str, plugin: Arc<dyn Group>) -> Self {
        self.groups.insert(name.to_owned(), plugin);
        self
    }

    /// Serves a metadata plugin under `subtype`.
    #[must_use]
    pub fn metadata(mut self, subtype: &str, plugin: Arc<dyn Metadata>) -> Self {
        self.metadata.insert(subtype.to_owned(), plugin);
        self
    }

    /// Serves the `Manager` interface that Go CLIs look for on a manager's socket, in both
    /// generations: `Manager/0.1.0` (v0.4.1) and `Stack/0.1.1` (master; its methods are still
    /// named `Manager.*`), as one object named `"."`.
    ///
    /// `Manager.IsLeader` and `Manager.LeaderLocation` answer from `status`; `Manager.Specs`,
    /// `Manager.Inspect` and `Manager.Enforce` map onto the group plugin served here (the one
    /// an unnamed call resolves to): its specs, each group's description, and a commit of each
    /// `kind: group` spec (groups missing from the list are left alone). `Manager.Terminate`
    /// is refused, as Go's manager refuses it: destroy groups with `Group.DestroyGroup`.
    #[must_use]
    pub fn manager(mut self, status: Arc<dyn ManagerStatus>) -> Self {
        self.manager = Some(status);
        self
    }

    /// Announces objects the way the latest Go generation does: an unnamed object is named
    /// `"."` in `Handshake.Hello` (master's `plugin ls` shows `group/` for `""`), and the
    /// metadata interface is announced at `Metadata/0.1.1` as well as `0.1.0`. Both
    /// generations' calls are served either way; this only changes what the handshakes list.
    #[must_use]
    pub fn latest_names(mut self) -> Self {
        self.latest_names = true;
        self
    }

    /// Limits request bodies (default 16 MiB); larger ones get a JSON-RPC error.
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = Some(n);
        self
    }

    /// Binds the socket and serves in a background task.
    ///
    /// The socket's directory is created with mode 0700 if missing; the socket is 0600. A
    /// stale socket (nothing listening) is replaced; a live one is an error
    /// ([`io::ErrorKind::AddrInUse`]).
    pub async fn serve(self, path: impl AsRef<Path>) -> io::Result<ServerHandle> {
        let path = path.as_ref().to_path_buf();
        let listener = bind(&path).await?;
        tracing::info!(socket = %path.display(), plugins = ?self, "serving plugins");
        let server = Arc::new(self);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let server = Arc::clone(&server);
                        tokio::spawn(async move { server.connection(stream).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(ServerHandle { path, task })
    }

    async fn connection(self: Arc<Self>, stream: UnixStream) {
        let service = hyper::service::service_fn(move |req| {
            let server = Arc::clone(&self);
            async move { Ok::<_, Infallible>(server.http(req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "connection ended");
        }
    }

    async fn http(&self, req: HttpRequest<Incoming>) -> HttpResponse<Full<Bytes>> {
        let limit = self.max_body.unwrap_or(DEFAULT_MAX_BODY);
        let post = req.method() == Method::POST;
        let body = read_body(req.into_body(), limit).await;
        let body = if !post {
            Err(error_response(
                Value::Null,
                code::INVALID_REQUEST,
                "JSON-RPC calls are POSTed".into(),
            ))
        } else {
            body.map_err(|reason| {
                error_response(
                    Value::Null,
                    code::INVALID_REQUEST,
                    format!("request body rejected: {reason}"),
                )
            })
        };
        let answer = match body {
            Ok(bytes) => self.handle(&bytes).await,
            Err(response) => response,
        };
        let mut resp = HttpResponse::new(Full::new(Bytes::from(answer)));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        resp
    }

    /// Answers one JSON-RPC request body (what the socket does for each POST). Never panics;
    /// anything that is not a valid call gets a JSON-RPC error.
    ///
    /// A well-formed call is read in one pass with its params kept as raw text, decoded
    /// straight into the method's request type, and answered by writing the result straight
    /// into the response: no intermediate `serde_json::Value`. Anything else takes the general
    /// path, which finds the exact error to answer.
    pub async fn handle(&self, body: &[u8]) -> Vec<u8> {
        let call = match serde_json::from_slice::<Call<'_>>(body) {
            Ok(call) if call.jsonrpc == "2.0" => call,
            _ => return self.handle_general(body).await,
        };
        let id = call.id.unwrap_or(Value::Null);
        let params = call.params.map_or(Params::Empty, Params::Raw);
        answer(self.dispatch(&call.method, params).await, &id)
    }

    /// The general path: a request that is not JSON, not an object, not JSON-RPC 2.0 or
    /// otherwise unusual (duplicate keys, say), read through a `serde_json::Value`.
    async fn handle_general(&self, body: &[u8]) -> Vec<u8> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return error_response(Value::Null, code::PARSE_ERROR, format!("parse error: {e}"));
            }
        };
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        let request: Request = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                return error_response(id, code::INVALID_REQUEST, format!("invalid request: {e}"));
            }
        };
        if request.jsonrpc != "2.0" {
            return error_response(
                id,
                code::INVALID_REQUEST,
                format!(
                    "invalid request: jsonrpc must be \"2.0\", not {:?}",
                    request.jsonrpc
                ),
            );
        }
        let raw = match &request.params {
            Value::Null => None,
            params => serde_json::value::to_raw_value(params).ok(),
        };
        let params = raw.as_deref().map_or(Params::Empty, Params::Raw);
        answer(self.dispatch(&request.method, params).await, &id)
    }

    async fn dispatch(&self, method: &str, params: Params<'_>) -> Result<Encoded, ErrorObject> {
        // Instance and flavor calls select by `Type`; a caller that sends only the plugin's
        // full `Name` (Go master style) is resolved by Go's keyed lookup.
        let selector = Selector::of(params);
        match method {
            "Handshake.Hello" => ok(&self.hello()),
            "Handshake.Implements" => ok(&self.implements()),
            "Instance.Validate" => {
                let r: ValidateReq = decode(params)?;
                let p = selector.pick(&self.instances, "instance")?;
                p.validate(&r.properties)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&TypeOk {
                    kind: r.kind,
                    ok: true,
                })
            }
            "Instance.Provision" => {
                let r: ProvisionReq = decode(params)?;
                let p = selector.pick(&self.instances, "instance")?;
                let id = p.provision(r.spec).await.map_err(|e| e.to_error_object())?;
                ok(&ProvisionResp {
                    kind: r.kind,
                    id: Some(id),
                })
            }
            "Instance.Label" => {
                let r: LabelReq = decode(params)?;
                let p = selector.pick(&self.instances, "instance")?;
                p.label(&r.instance, &r.labels.unwrap_or_default())
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&TypeOk {
                    kind: r.kind,
                    ok: true,
                })
            }
            "Instance.Destroy" => {
                let r: DestroyReq = decode(params)?;
                let p = selector.pick(&self.instances, "instance")?;
                let context = r
                    .context
                    .unwrap_or(infrakit_core::DestroyContext::Terminate);
                p.destroy(&r.instance, context)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&TypeOk {
                    kind: r.kind,
                    ok: true,
                })
            }
            "Instance.DescribeInstances" => {
                let r: DescribeReq = decode(params)?;
                let p = selector.pick(&self.instances, "instance")?;
                let found = p
                    .describe(&r.tags.unwrap_or_default(), r.properties)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&DescribeResp {
                    kind: r.kind,
                    descriptions: Some(found),
                })
            }
            "Flavor.Validate" => {
                let r: ValidateReq = decode(params)?;
                let p = selector.pick(&self.flavors, "flavor")?;
                let allocation: Allocation = r.allocation.unwrap_or_default().into();
                p.validate(&r.properties, &allocation)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&TypeOk {
                    kind: r.kind,
                    ok: true,
                })
            }
            "Flavor.Prepare" => {
                let r: PrepareReq = decode(params)?;
                let p = selector.pick(&self.flavors, "flavor")?;
                let spec = p
                    .prepare(
                        &r.properties,
                        r.spec,
                        &r.allocation.into(),
                        &r.index.unwrap_or_default(),
                    )
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&PrepareResp { kind: r.kind, spec })
            }
            "Flavor.Healthy" => {
                let r: InstanceReq = decode(params)?;
                let p = selector.pick(&self.flavors, "flavor")?;
                let health = p
                    .healthy(&r.properties, &r.instance)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&HealthResp {
                    kind: r.kind,
                    health,
                })
            }
            "Flavor.HealthyBatch" => {
                let r: HealthyBatchReq = decode(params)?;
                let p = selector.pick(&self.flavors, "flavor")?;
                let health = match p.healthy_batch(&r.properties, &r.instances).await {
                    None => None,
                    Some(answer) => Some(answer.map_err(|e| e.to_error_object())?),
                };
                ok(&HealthyBatchResp {
                    kind: r.kind,
                    health,
                })
            }
            "Flavor.Drain" => {
                let r: InstanceReq = decode(params)?;
                let p = selector.pick(&self.flavors, "flavor")?;
                p.drain(&r.properties, &r.instance)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&TypeOk {
                    kind: r.kind,
                    ok: true,
                })
            }
            "Group.CommitGroup" => {
                let r: CommitReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let id = r.spec.id.clone();
                let details = p
                    .commit(r.spec, r.pretend)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&CommitResp {
                    name: r.name,
                    id: Some(id),
                    details,
                })
            }
            "Group.FreeGroup" | "Group.DestroyGroup" => {
                let r: GroupIdReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let result = if method == "Group.FreeGroup" {
                    p.free(&r.id).await
                } else {
                    p.destroy(&r.id).await
                };
                result.map_err(|e| e.to_error_object())?;
                ok(&r)
            }
            "Group.DescribeGroup" => {
                let r: GroupIdReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let description = p.describe(&r.id).await.map_err(|e| e.to_error_object())?;
                ok(&DescribeGroupResp {
                    name: r.name,
                    id: Some(r.id),
                    description,
                })
            }
            "Group.InspectGroups" => {
                let r: NameReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let groups = p.inspect().await.map_err(|e| e.to_error_object())?;
                ok(&InspectResp {
                    name: r.name,
                    groups: Some(groups),
                })
            }
            "Group.DestroyInstances" => {
                let r: DestroyInstancesReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                p.destroy_instances(&r.id, r.instances.as_deref().unwrap_or_default())
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&GroupIdReq {
                    name: r.name,
                    id: r.id,
                })
            }
            "Group.Size" => {
                let r: GroupIdReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let size = p.size(&r.id).await.map_err(|e| e.to_error_object())?;
                ok(&SizeMsg {
                    name: r.name,
                    id: r.id,
                    size,
                })
            }
            "Group.Trigger" => {
                let r: GroupIdReq = decode(params)?;
                let p = self.group_named(&r.name)?;
                let passes_started = p.trigger(&r.id).await.map_err(|e| e.to_error_object())?;
                ok(&TriggerResp {
                    name: r.name,
                    id: r.id,
                    passes_started,
                })
            }
            "Group.SetSize" => {
                let r: SizeMsg = decode(params)?;
                let p = self.group_named(&r.name)?;
                p.set_size(&r.id, r.size)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&GroupIdReq {
                    name: r.name,
                    id: r.id,
                })
            }
            "Metadata.List" | "Metadata.Keys" => {
                let r: PathReq = decode(params)?;
                let p = metadata_selector(&r).pick(&self.metadata, "metadata")?;
                let nodes = p
                    .list(&r.path.join("/"))
                    .await
                    .map_err(|e| e.to_error_object())?;
                let (kind, name) = metadata_echo(r);
                ok(&ListResp {
                    kind,
                    name,
                    nodes: Some(nodes),
                })
            }
            "Metadata.Get" => {
                let r: PathReq = decode(params)?;
                let p = metadata_selector(&r).pick(&self.metadata, "metadata")?;
                let value = p
                    .get(&r.path.join("/"))
                    .await
                    .map_err(|e| e.to_error_object())?;
                let (kind, name) = metadata_echo(r);
                ok(&GetResp {
                    kind,
                    name,
                    value: value.unwrap_or(Value::Null),
                })
            }
            "Manager.IsLeader" => {
                let status = self.manager_status()?;
                ok(&IsLeaderResp {
                    leader: status.is_leader(),
                })
            }
            "Manager.LeaderLocation" => {
                let status = self.manager_status()?;
                ok(&LeaderLocationResp {
                    location: status.leader_location().as_deref().map(GoUrl::parse),
                })
            }
            "Manager.Specs" => {
                self.manager_status()?;
                let groups = self
                    .group_named("")?
                    .inspect()
                    .await
                    .map_err(|e| e.to_error_object())?;
                let specs = groups.iter().map(stack_spec).collect::<Result<_, _>>()?;
                ok(&SpecsMsg { specs: Some(specs) })
            }
            "Manager.Inspect" => {
                self.manager_status()?;
                let group = self.group_named("")?;
                let specs = group.inspect().await.map_err(|e| e.to_error_object())?;
                let mut objects = Vec::with_capacity(specs.len());
                for spec in &specs {
                    let description = group
                        .describe(&spec.id)
                        .await
                        .map_err(|e| e.to_error_object())?;
                    let mut stack = stack_spec(spec)?;
                    stack.metadata.id = Some(spec.id.to_string());
                    objects.push(StackObject {
                        spec: stack,
                        state: Some(value_of(&description)?),
                    });
                }
                ok(&ObjectsResp {
                    objects: Some(objects),
                })
            }
            "Manager.Enforce" => {
                self.manager_status()?;
                let r: SpecsMsg = decode(params)?;
                let group = self.group_named("")?;
                let mut specs = Vec::new();
                for s in r.specs.unwrap_or_default() {
                    specs.push(group_spec(s)?);
                }
                for spec in specs {
                    group
                        .commit(spec, false)
                        .await
                        .map_err(|e| e.to_error_object())?;
                }
                ok(&json!({}))
            }
            "Manager.Terminate" => {
                self.manager_status()?;
                Err(ErrorObject {
                    code: code::SERVER_ERROR,
                    message: "Manager.Terminate is not supported here: destroy each group with Group.DestroyGroup".into(),
                    data: json!({"Kind": "unsupported", "Transient": false}),
                })
            }
            other => Err(ErrorObject {
                code: code::METHOD_NOT_FOUND,
                message: format!("method not found: {other:?}"),
                data: Value::Null,
            }),
        }
    }

    fn hello(&self) -> Value {
        let mut objects = serde_json::Map::new();
        let latest = self.latest_names;
        let mut add = |key: String, names: Vec<&String>| {
            if !names.is_empty() {
                let entries: Vec<Value> = names
                    .iter()
                    .map(|n| {
                        let n = if latest && n.is_empty() {
                            "."
                        } else {
                            n.as_str()
                        };
                        json!({"Name": n, "ProxyFor": ""})
                    })
                    .collect();
                objects.insert(key, Value::Array(entries));
            }
        };
        add(
            format!("Instance/{}", versions::INSTANCE),
            self.instances.keys().collect(),
        );
        add(
            format!("Flavor/{}", versions::FLAVOR),
            self.flavors.keys().collect(),
        );
        add(
            format!("Group/{}", versions::GROUP),
            self.groups.keys().collect(),
        );
        add(
            format!("Metadata/{}", versions::METADATA),
            self.metadata.keys().collect(),
        );
        if latest {
            add(
                format!("Metadata/{}", versions::METADATA_LATEST),
                self.metadata.keys().collect(),
            );
        }
        if self.manager.is_some() {
            let dot = ".".to_owned();
            add(format!("Manager/{}", versions::MANAGER), vec![&dot]);
            add(format!("Stack/{}", versions::STACK), vec![&dot]);
        }
        json!({ "Objects": objects })
    }

    fn implements(&self) -> Value {
        let mut apis = Vec::new();
        if !self.instances.is_empty() {
            apis.push(json!({"Name": "Instance", "Version": versions::INSTANCE_OLD}));
        }
        if !self.flavors.is_empty() {
            apis.push(json!({"Name": "Flavor", "Version": versions::FLAVOR_OLD}));
        }
        if !self.groups.is_empty() {
            apis.push(json!({"Name": "Group", "Version": versions::GROUP_OLD}));
        }
        if !self.metadata.is_empty() {
            apis.push(json!({"Name": "Metadata", "Version": versions::METADATA}));
            if self.latest_names {
                apis.push(json!({"Name": "Metadata", "Version": versions::METADATA_LATEST}));
            }
        }
        if self.manager.is_some() {
            apis.push(json!({"Name": "Manager", "Version": versions::MANAGER}));
            apis.push(json!({"Name": "Stack", "Version": versions::STACK}));
        }
        json!({ "APIs": apis })
    }
}

impl PluginServer {
    /// The group object a `Name` selects. Groups are always selected by `Name`: our clients
    /// and v0.4.1 send the subtype (or nothing), master sends the full plugin name. A name
    /// that Go's keyed lookup does not resolve still reaches a lone group object, because a
    /// manager's one group object serves every group ID (Go's manager keys one object per
    /// group ID, so master's `group/<ID>` names the same thing).
    fn group_named(&self, name: &str) -> Result<&Arc<dyn Group>, ErrorObject> {
        Selector::Name(name.to_owned()).pick_or_lone(&self.groups, "group", true)
    }

    fn manager_status(&self) -> Result<&Arc<dyn ManagerStatus>, ErrorObject> {
        self.manager.as_ref().ok_or_else(|| ErrorObject {
            code: code::SERVER_ERROR,
            message: "this plugin serves no Manager interface".into(),
            data: json!({"Kind": "no_such_type", "Transient": false}),
        })
    }
}

/// How a call names the object it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// A subtype, matched exactly (`""` or `"."` picks a lone object or the unnamed one).
    Type(String),
    /// A full plugin name `lookup[/type]`, resolved like Go's keyed lookup
    /// (`pkg/rpc/internal/keyed.go`) after an exact match.
    Name(String),
}

impl Selector {
    /// `Type` when the params carry one (a string), else `Name`, else the unnamed object.
    fn of(params: Params<'_>) -> Self {
        /// The two fields a selector reads, as raw text (the rest is skipped, not built).
        #[derive(Deserialize)]
        struct Names<'a> {
            #[serde(rename = "Type", borrow, default)]
            kind: Option<&'a RawValue>,
            #[serde(rename = "Name", borrow, default)]
            name: Option<&'a RawValue>,
        }
        /// A raw value's text when it is a JSON string (what `Value::as_str` answers).
        fn text(raw: Option<&RawValue>) -> Option<String> {
            raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        }
        let (kind, name) = match serde_json::from_str::<Names<'_>>(params.text()) {
            Ok(names) => (text(names.kind), text(names.name)),
            // Not an object, or a key given twice: read as a `Value` (the last one counts).
            Err(_) => {
                let value: Value = serde_json::from_str(params.text()).unwrap_or(Value::Null);
                let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
                (field("Type"), field("Name"))
            }
        };
        match (kind, name) {
            (Some(t), _) => Selector::Type(t),
            (None, Some(n)) => Selector::Name(n),
            (None, None) => Selector::Type(String::new()),
        }
    }

    fn pick<'m, T: ?Sized>(
        &self,
        map: &'m BTreeMap<String, Arc<T>>,
        kind: &str,
    ) -> Result<&'m Arc<T>, ErrorObject> {
        self.pick_or_lone(map, kind, false)
    }

    fn pick_or_lone<'m, T: ?Sized>(
        &self,
        map: &'m BTreeMap<String, Arc<T>>,
        kind: &str,
        lone_fallback: bool,
    ) -> Result<&'m Arc<T>, ErrorObject> {
        let found = match self {
            Selector::Type(t) => pick(map, if t == "." { "" } else { t }),
            Selector::Name(n) => map.get(n).or_else(|| keyed(map, n)),
        }
        .or_else(|| {
            if lone_fallback && map.len() == 1 {
                map.values().next()
            } else {
                None
            }
        });
        found.ok_or_else(|| not_served(map, self, kind))
    }
}

/// The object for a subtype: exact match, else the only one, else `""`.
fn pick<'a, T: ?Sized>(map: &'a BTreeMap<String, Arc<T>>, subtype: &str) -> Option<&'a Arc<T>> {
    map.get(subtype).or_else(|| {
        if subtype.is_empty() && map.len() == 1 {
            map.values().next()
        } else {
            None
        }
    })
}

/// Go's keyed lookup (`pkg/rpc/internal/keyed.go`, `Keyed.Keyed`): split `lookup/type`; an
/// empty type (or lookup `"."`) with a single object served means that object; an empty type
/// otherwise means the unnamed object `"."` (our `""`); then the lookup as a key, then the
/// type after its first `/` (or the whole type) as a key.
fn keyed<'a, T: ?Sized>(map: &'a BTreeMap<String, Arc<T>>, name: &str) -> Option<&'a Arc<T>> {
    let get = |key: &str| {
        map.get(key)
            .or_else(|| if key == "." { map.get("") } else { None })
    };
    let (lookup, subtype) = name.split_once('/').unwrap_or((name, ""));
    if (subtype.is_empty() || lookup == ".") && map.len() == 1 {
        return map.values().next();
    }
    let lookup = if subtype.is_empty() && lookup != "." {
        "."
    } else {
        lookup
    };
    get(lookup).or_else(|| {
        let shifted = subtype.split_once('/').map_or(subtype, |(_, rest)| rest);
        get(shifted)
    })
}

fn not_served<T: ?Sized>(
    map: &BTreeMap<String, Arc<T>>,
    selector: &Selector,
    kind: &str,
) -> ErrorObject {
    let types = || {
        map.keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ErrorObject {
        code: code::SERVER_ERROR,
        message: match selector {
            _ if map.is_empty() => format!("this plugin serves no {kind} interface"),
            Selector::Type(t) => format!("no {kind} of type {t:?} here (types: {})", types()),
            Selector::Name(n) => format!("no {kind} named {n:?} here (types: {})", types()),
        },
        data: json!({"Kind": "no_such_type", "Transient": false}),
    }
}

fn metadata_selector(r: &PathReq) -> Selector {
    match (&r.kind, &r.name) {
        (Some(t), _) => Selector::Type(t.clone()),
        (None, Some(n)) => Selector::Name(n.clone()),
        (None, None) => Selector::Type(String::new()),
    }
}

/// What a metadata answer echoes: `Type` to a Metadata/0.1.0 caller, `Name` to a 0.1.1 one.
fn metadata_echo(r: PathReq) -> (Option<String>, Option<String>) {
    match (r.kind, r.name) {
        (None, Some(n)) => (None, Some(n)),
        (kind, _) => (Some(kind.unwrap_or_default()), None),
    }
}

/// A group spec as master's manager lists it (`pkg/manager/stored.go`).
fn stack_spec(spec: &infrakit_core::GroupSpec) -> Result<StackSpec, ErrorObject> {
    let wire = value_of(spec)?;
    Ok(StackSpec {
        kind: "group".into(),
        version: String::new(),
        metadata: StackMetadata {
            id: None,
            name: spec.id.to_string(),
            tags: None,
        },
        properties: wire.get("Properties").cloned().unwrap_or(Value::Null),
    })
}

/// The group spec of a `kind: group` spec sent to `Manager.Enforce`.
fn group_spec(s: StackSpec) -> Result<infrakit_core::GroupSpec, ErrorObject> {
    if s.kind != "group" {
        return Err(ErrorObject {
            code: code::INVALID_PARAMS,
            message: format!(
                "invalid params: spec {:?} is of kind {:?}; only kind \"group\" is managed here",
                s.metadata.name, s.kind
            ),
            data: Value::Null,
        });
    }
    decode_value(json!({"ID": s.metadata.name, "Properties": s.properties}))
}

/// Reads a body up to `limit` bytes. Past the limit the rest is read and dropped (up to a hard
/// cap), so the caller gets the error answer instead of a reset connection.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, String> {
    let hard_cap = limit.saturating_mul(16).max(64 * 1024 * 1024);
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("cannot read the body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > hard_cap {
                break;
            }
        }
    }
    if total > limit {
        return Err(format!("larger than the limit of {limit} bytes"));
    }
    Ok(buf.freeze())
}

/// A call's params as raw JSON text, decoded once into the method's request type.
#[derive(Clone, Copy)]
enum Params<'a> {
    /// The params as sent.
    Raw(&'a RawValue),
    /// No params (absent or `null`): an empty object, as Go plugins take it.
    Empty,
}

impl Params<'_> {
    fn text(&self) -> &str {
        match self {
            Params::Raw(raw) => raw.get(),
            Params::Empty => "{}",
        }
    }
}

/// The envelope of a well-formed call, its params left as raw text.
#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<Value>,
}

/// A result already written as JSON text.
type Encoded = Box<RawValue>;

/// Decodes a call's params into the method's request type: straight from the text, or (for
/// params a derived decoder refuses but a `Value` takes, such as a key given twice) through a
/// `Value`, so both paths accept and refuse exactly the same params.
fn decode<T: DeserializeOwned>(params: Params<'_>) -> Result<T, ErrorObject> {
    serde_json::from_str(params.text()).or_else(|_| {
        let value: Value = serde_json::from_str(params.text()).map_err(|e| ErrorObject {
            code: code::INVALID_PARAMS,
            message: format!("invalid params: {e}"),
            data: Value::Null,
        })?;
        decode_value(value)
    })
}

fn decode_value<T: DeserializeOwned>(params: Value) -> Result<T, ErrorObject> {
    serde_json::from_value(params).map_err(|e| ErrorObject {
        code: code::INVALID_PARAMS,
        message: format!("invalid params: {e}"),
        data: Value::Null,
    })
}

fn encode_failed(e: &serde_json::Error) -> ErrorObject {
    ErrorObject {
        code: code::SERVER_ERROR,
        message: format!("cannot encode the result: {e}"),
        data: Value::Null,
    }
}

/// A result written as JSON text, once.
fn ok<T: Serialize>(result: &T) -> Result<Encoded, ErrorObject> {
    serde_json::value::to_raw_value(result).map_err(|e| encode_failed(&e))
}

/// A result as a `Value`, for one nested in another result.
fn value_of<T: Serialize>(result: &T) -> Result<Value, ErrorObject> {
    serde_json::to_value(result).map_err(|e| encode_failed(&e))
}

/// The response to a call: the result (or error) and the caller's ID, in the envelope's order.
fn answer(outcome: Result<Encoded, ErrorObject>, id: &Value) -> Vec<u8> {
    /// The response envelope with the result as written text.
    #[derive(Serialize)]
    struct Answer<'a> {
        jsonrpc: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a ErrorObject>,
        id: &'a Value,
    }
    let (result, error) = match &outcome {
        Ok(raw) => (Some(&**raw), None),
        Err(e) => (None, Some(e)),
    };
    serde_json::to_vec(&Answer {
        jsonrpc: "2.0",
        result,
        error,
        id,
    })
    .unwrap_or_else(|e| encode_error(&e))
}

fn encode_error(e: &serde_json::Error) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","error":{{"code":-32603,"message":"cannot encode response: {e}","data":null}},"id":null}}"#)
        .into_bytes()
}

fn encode(r: &Response) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_else(|e| encode_error(&e))
}

fn error_response(id: Value, code: i64, message: String) -> Vec<u8> {
    encode(&Response {
        jsonrpc: "2.0".into(),
        result: None,
        error: Some(ErrorObject {
            code,
            message,
            data: Value::Null,
        }),
        id,
    })
}

/// Binds `path`: creates the directory (0700) if missing, replaces a stale socket, refuses a
/// live one, and makes the socket 0600.
async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        } else if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(dir = %dir.display(), "plugin socket directory is accessible to other users; 0700 is recommended");
        }
    }
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{}: a live plugin is already serving this socket",
                        path.display()
                    ),
                ));
            }
            Err(_) => {
                tracing::info!(socket = %path.display(), "replacing a stale socket");
                std::fs::remove_file(path)?;
            }
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Splits a metadata path given as one string into the wire's segments.
pub(crate) fn segments(path: &str) -> Vec<String> {
    path_segments(path).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_core::{GROUP_TAG, InstanceSpec, Simulator};

    fn server() -> PluginServer {
        let cloud = Simulator::builder().log_calls(false).build();
        for i in 0..3 {
            cloud.insert(
                InstanceSpec::default()
                    .with_tag(GROUP_TAG, "g")
                    .with_logical_id(format!("10.0.0.{i}").as_str()),
            );
        }
        PluginServer::new().instance("", Arc::new(cloud))
    }

    /// The one-pass path and the general path answer every request alike, byte for byte.
    #[tokio::test]
    async fn both_paths_answer_alike() {
        let s = server();
        let bodies = [
            r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{"infrakit.group":"g"},"Properties":false},"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Tags":{"infrakit.group":"g"}},"id":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","id":null}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":null}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Instance":"nope"},"id":2}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":[1,2],"id":3}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Type":7,"Name":"x","Properties":{}},"id":4}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Type":"a","Type":"","Properties":{}},"id":5}"#,
            r#"{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":{},"Properties":null},"id":6}"#,
            r#"{"jsonrpc":"2.0","method":"No.Such","params":{},"id":1.5}"#,
            r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":7}"#,
            r#"{"jsonrpc":"2.0","method":"Handshake.Implements","id":8}"#,
            r#"{"jsonrpc":"2.\u0030","method":"Handshake.\u0048ello","id":9}"#,
        ];
        for body in bodies {
            let fast = s.handle(body.as_bytes()).await;
            let general = s.handle_general(body.as_bytes()).await;
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&general),
                "{body}"
            );
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9.]{0,8}".prop_map(Value::String),
        ];
        let keys = prop_oneof![
            Just("Type".to_owned()),
            Just("Name".to_owned()),
            Just("Properties".to_owned()),
            Just("Spec".to_owned()),
            Just("Tags".to_owned()),
            Just("Instance".to_owned()),
            Just("Context".to_owned()),
            Just("Allocation".to_owned()),
            Just("Path".to_owned()),
            "[A-Za-z]{1,6}",
        ];
        leaf.prop_recursive(3, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 400, ..Default::default() })]
        /// Whatever the params, the one-pass path and the general path answer alike, byte for
        /// byte (each on its own server in the same state).
        #[test]
        fn both_paths_answer_any_params_alike(
            method in proptest::sample::select(vec![
                "Instance.Validate", "Instance.Provision", "Instance.Label", "Instance.Destroy",
                "Instance.DescribeInstances", "Flavor.Validate", "Group.DescribeGroup", "No.Such",
            ]),
            params in arb_json(),
            id in proptest::prop_oneof![
                proptest::strategy::Just(json!(1)),
                proptest::strategy::Just(json!("a")),
                proptest::strategy::Just(Value::Null),
            ],
        ) {
            let body = serde_json::to_vec(
                &json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id}),
            ).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let fast = rt.block_on(server().handle(&body));
            let general = rt.block_on(server().handle_general(&body));
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&general)
            );
        }
    }

    /// Results are written in the order of their types' fields, as Go's encoder writes them.
    #[tokio::test]
    async fn results_are_written_in_field_order() {
        let s = server();
        let answer = s
            .handle(br#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{"infrakit.group":"g"}},"id":1}"#)
            .await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(r#"{"jsonrpc":"2.0","result":{"Type":"","Descriptions":[{"ID":"sim-000001","LogicalID":"10.0.0.0","Tags":{"infrakit.group":"g"}}"#),
            "{text}"
        );
        assert!(text.ends_with(r#"]},"id":1}"#), "{text}");
    }
}
