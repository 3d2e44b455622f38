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
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
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
/// subtype (the `Type` of a call, `""` for none; groups are selected by `Name`).
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
    max_body: Option<usize>,
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("flavors", &self.flavors.keys().collect::<Vec<_>>())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .field("metadata", &self.metadata.keys().collect::<Vec<_>>())
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
    pub async fn handle(&self, body: &[u8]) -> Vec<u8> {
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
        let params = if request.params.is_null() {
            json!({})
        } else {
            request.params
        };
        match self.dispatch(&request.method, params).await {
            Ok(result) => encode(&Response {
                jsonrpc: "2.0".into(),
                result: Some(result),
                error: None,
                id,
            }),
            Err(error) => encode(&Response {
                jsonrpc: "2.0".into(),
                result: None,
                error: Some(error),
                id,
            }),
        }
    }

    async fn dispatch(&self, method: &str, params: Value) -> Result<Value, ErrorObject> {
        match method {
            "Handshake.Hello" => Ok(self.hello()),
            "Handshake.Implements" => Ok(self.implements()),
            "Instance.Validate" => {
                let r: ValidateReq = decode(params)?;
                let p = pick(&self.instances, &r.kind, "instance")?;
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
                let p = pick(&self.instances, &r.kind, "instance")?;
                let id = p.provision(r.spec).await.map_err(|e| e.to_error_object())?;
                ok(&ProvisionResp {
                    kind: r.kind,
                    id: Some(id),
                })
            }
            "Instance.Label" => {
                let r: LabelReq = decode(params)?;
                let p = pick(&self.instances, &r.kind, "instance")?;
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
                let p = pick(&self.instances, &r.kind, "instance")?;
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
                let p = pick(&self.instances, &r.kind, "instance")?;
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
                let p = pick(&self.flavors, &r.kind, "flavor")?;
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
                let p = pick(&self.flavors, &r.kind, "flavor")?;
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
                let p = pick(&self.flavors, &r.kind, "flavor")?;
                let health = p
                    .healthy(&r.properties, &r.instance)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&HealthResp {
                    kind: r.kind,
                    health,
                })
            }
            "Flavor.Drain" => {
                let r: InstanceReq = decode(params)?;
                let p = pick(&self.flavors, &r.kind, "flavor")?;
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
                let p = pick(&self.groups, &r.name, "group")?;
                let id = r.spec.id.clone();
                let details = p
                    .commit(r.spec, r.pretend)
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&CommitResp {
                    name: r.name,
                    id,
                    details,
                })
            }
            "Group.FreeGroup" | "Group.DestroyGroup" => {
                let r: GroupIdReq = decode(params)?;
                let p = pick(&self.groups, &r.name, "group")?;
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
                let p = pick(&self.groups, &r.name, "group")?;
                let description = p.describe(&r.id).await.map_err(|e| e.to_error_object())?;
                ok(&DescribeGroupResp {
                    name: r.name,
                    id: r.id,
                    description,
                })
            }
            "Group.InspectGroups" => {
                let r: NameReq = decode(params)?;
                let p = pick(&self.groups, &r.name, "group")?;
                let groups = p.inspect().await.map_err(|e| e.to_error_object())?;
                ok(&InspectResp {
                    name: r.name,
                    groups: Some(groups),
                })
            }
            "Group.DestroyInstances" => {
                let r: DestroyInstancesReq = decode(params)?;
                let p = pick(&self.groups, &r.name, "group")?;
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
                let p = pick(&self.groups, &r.name, "group")?;
                let size = p.size(&r.id).await.map_err(|e| e.to_error_object())?;
                ok(&SizeMsg {
                    name: r.name,
                    id: r.id,
                    size,
                })
            }
            "Group.SetSize" => {
                let r: SizeMsg = decode(params)?;
                let p = pick(&self.groups, &r.name, "group")?;
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
                let p = pick(&self.metadata, &r.kind, "metadata")?;
                let nodes = p
                    .list(&r.path.join("/"))
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&ListResp {
                    kind: r.kind,
                    nodes: Some(nodes),
                })
            }
            "Metadata.Get" => {
                let r: PathReq = decode(params)?;
                let p = pick(&self.metadata, &r.kind, "metadata")?;
                let value = p
                    .get(&r.path.join("/"))
                    .await
                    .map_err(|e| e.to_error_object())?;
                ok(&GetResp {
                    kind: r.kind,
                    value: value.unwrap_or(Value::Null),
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
        let mut add = |key: String, names: Vec<&String>| {
            if !names.is_empty() {
                let entries: Vec<Value> = names
                    .iter()
                    .map(|n| json!({"Name": n, "ProxyFor": ""}))
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
        }
        json!({ "APIs": apis })
    }
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

fn decode<T: DeserializeOwned>(params: Value) -> Result<T, ErrorObject> {
    serde_json::from_value(params).map_err(|e| ErrorObject {
        code: code::INVALID_PARAMS,
        message: format!("invalid params: {e}"),
        data: Value::Null,
    })
}

fn ok<T: Serialize>(result: &T) -> Result<Value, ErrorObject> {
    serde_json::to_value(result).map_err(|e| ErrorObject {
        code: code::SERVER_ERROR,
        message: format!("cannot encode the result: {e}"),
        data: Value::Null,
    })
}

/// The plugin for a subtype: exact match, else the only one, else `""`.
fn pick<'a, T: ?Sized>(
    map: &'a BTreeMap<String, Arc<T>>,
    subtype: &str,
    kind: &str,
) -> Result<&'a Arc<T>, ErrorObject> {
    let found = map.get(subtype).or_else(|| {
        if subtype.is_empty() && map.len() == 1 {
            map.values().next()
        } else {
            None
        }
    });
    found.ok_or_else(|| ErrorObject {
        code: code::SERVER_ERROR,
        message: if map.is_empty() {
            format!("this plugin serves no {kind} interface")
        } else {
            format!(
                "no {kind} of type {subtype:?} here (types: {})",
                map.keys()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        data: json!({"Kind": "no_such_type", "Transient": false}),
    })
}

fn encode(r: &Response) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_else(|e| {
        format!(r#"{{"jsonrpc":"2.0","error":{{"code":-32603,"message":"cannot encode response: {e}","data":null}},"id":null}}"#)
            .into_bytes()
    })
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
