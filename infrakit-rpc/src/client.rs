//! Calling plugins on a Unix socket, and the remote plugins that implement the core traits.

use crate::error::RpcError;
use crate::server::segments;
use crate::wire::*;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use infrakit_core::{
    Allocation, Description, DestroyContext, Flavor, FlavorError, Group, GroupDescription,
    GroupError, GroupId, GroupSpec, Health, Index, Instance, InstanceError, InstanceId,
    InstanceSpec, Metadata, MetadataError, Tags,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::OnceCell;

/// Largest response accepted.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// What a plugin said it implements: interface → (version, subtypes). Subtypes are known only
/// from the latest generation's `Handshake.Hello`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Implements {
    /// Interface name → versions and subtypes.
    pub interfaces: BTreeMap<String, (String, Option<Vec<String>>)>,
}

/// A JSON-RPC client of one plugin socket: keep-alive connections, one per concurrent call,
/// a timeout per call, and a handshake made once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    path: PathBuf,
    timeout: Duration,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    next_id: AtomicU64,
    handshake: OnceCell<Implements>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl Client {
    /// A client of the plugin `name` listening at `path` (nothing is connected yet).
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::with_timeout(name, path, Duration::from_secs(30))
    }

    /// Like [`new`](Self::new), with a timeout per call.
    pub fn with_timeout(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                path: path.into(),
                timeout,
                pool: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                handshake: OnceCell::new(),
            }),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn transport(&self, message: impl std::fmt::Display) -> RpcError {
        RpcError::Transport {
            plugin: self.inner.name.clone(),
            message: message.to_string(),
        }
    }

    /// A pooled keep-alive connection (`true`), or a new one (`false`).
    async fn connection(&self) -> Result<(SendRequest<Full<Bytes>>, bool), RpcError> {
        loop {
            let pooled = self
                .inner
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            match pooled {
                Some(s) if !s.is_closed() => return Ok((s, true)),
                Some(_) => continue,
                None => break,
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, RpcError> {
        let stream = UnixStream::connect(&self.inner.path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RpcError::PluginNotFound {
                    name: self.inner.name.clone(),
                    path: self.inner.path.display().to_string(),
                }
            } else {
                self.transport(format!("connect {}: {e}", self.inner.path.display()))
            }
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "plugin connection closed");
            }
        });
        Ok(sender)
    }

    /// Calls `method` with `params`, returning the raw result.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.call(method, &params).await
    }

    /// Calls `method` with typed params and result: the request is written straight from
    /// `params` and the result read straight into `R` (no intermediate `serde_json::Value`),
    /// all within the client's timeout.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, RpcError> {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.call_typed(method, params))
            .await
            .unwrap_or_else(|_| {
                Err(RpcError::Timeout {
                    plugin: self.inner.name.clone(),
                    method: method.to_owned(),
                    after: timeout,
                })
            })
    }

    async fn call_typed<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, RpcError> {
        /// The request envelope, written straight from the caller's params.
        #[derive(Serialize)]
        struct Call<'a, P> {
            jsonrpc: &'static str,
            method: &'a str,
            params: &'a P,
            id: u64,
        }
        /// The response envelope, its result left as raw text for the caller's type.
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow, default)]
            result: Option<&'a RawValue>,
            #[serde(default)]
            error: Option<ErrorObject>,
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&Call {
            jsonrpc: "2.0",
            method,
            params,
            id,
        })
        .map_err(|e| self.protocol(method, format!("cannot encode params: {e}")))?;
        let bytes = self.round_trip(method, Bytes::from(body)).await?;
        let answer: Answer<'_> = serde_json::from_slice(&bytes)
            .map_err(|e| self.protocol(method, format!("not a JSON-RPC response: {e}")))?;
        if let Some(error) = answer.error {
            return Err(RpcError::Remote {
                plugin: self.inner.name.clone(),
                method: method.to_owned(),
                code: error.code,
                message: error.message,
                data: error.data,
            });
        }
        let result = answer
            .result
            .ok_or_else(|| self.protocol(method, "neither result nor error".into()))?;
        serde_json::from_str(result.get())
            .map_err(|e| self.protocol(method, format!("unexpected result: {e}")))
    }

    /// One HTTP round trip of a request body on a pooled (or new) connection: the whole
    /// response body.
    async fn round_trip(&self, method: &str, body: Bytes) -> Result<Bytes, RpcError> {
        let request = || {
            hyper::Request::post("/")
                .header(hyper::header::HOST, "unix")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| self.protocol(method, e.to_string()))
        };
        let (mut sender, pooled) = self.connection().await?;
        let sent = match sender.ready().await {
            Ok(()) => sender.send_request(request()?).await,
            Err(e) => Err(e),
        };
        let response = match sent {
            Ok(r) => r,
            // A pooled keep-alive connection the plugin closed meanwhile: its dispatch channel
            // is closed or the request was canceled, so the request was never written and one
            // retry on a fresh connection cannot duplicate it.
            Err(e) if pooled && (e.is_canceled() || e.is_closed()) => {
                sender = self.connect().await?;
                sender.ready().await.map_err(|e| self.transport(e))?;
                sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| self.transport(e))?
            }
            Err(e) => return Err(self.transport(e)),
        };
        let reusable = !response
            .headers()
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| self.transport(e))?
            .to_bytes();
        // The connection is reusable only once the whole response was read, and only if the
        // plugin keeps it open (no `Connection: close`).
        if reusable {
            self.inner
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sender);
        }
        Ok(bytes)
    }

    fn protocol(&self, method: &str, message: String) -> RpcError {
        RpcError::Protocol {
            plugin: self.inner.name.clone(),
            method: method.to_owned(),
            message,
        }
    }

    /// What the plugin implements, asked once: `Handshake.Hello` (latest Go generation), else
    /// `Handshake.Implements` (v0.4/v0.5).
    pub async fn implements(&self) -> Result<&Implements, RpcError> {
        self.inner
            .handshake
            .get_or_try_init(|| async {
                match self.call_raw("Handshake.Hello", json!({})).await {
                    Ok(v) => Ok(parse_hello(&v)),
                    Err(RpcError::Remote { code, message, .. })
                        if code == code::METHOD_NOT_FOUND
                            || message.contains("can't find method") =>
                    {
                        let v = self.call_raw("Handshake.Implements", json!({})).await?;
                        Ok(parse_implements(&v))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Checks that the plugin implements `interface` at one of `accepted` versions (and, when
    /// it lists subtypes, serves `subtype`).
    pub async fn check(
        &self,
        interface: &str,
        accepted: &[&str],
        subtype: &str,
    ) -> Result<(), RpcError> {
        let implements = self.implements().await?;
        let mismatch = |found: String| RpcError::VersionMismatch {
            plugin: self.inner.name.clone(),
            interface: interface.to_owned(),
            expected: accepted.join(" or "),
            found,
        };
        match implements.interfaces.get(interface) {
            None => Err(mismatch(describe(implements))),
            Some((version, _)) if !accepted.contains(&version.as_str()) => {
                Err(mismatch(describe(implements)))
            }
            Some((_, Some(subtypes))) if !serves(subtypes, subtype) => Err(RpcError::Remote {
                plugin: self.inner.name.clone(),
                method: "Handshake.Hello".into(),
                code: code::SERVER_ERROR,
                message: format!(
                    "no {interface} of type {subtype:?} (types: {})",
                    subtypes.join(", ")
                ),
                data: json!({"Kind": "no_such_type", "Transient": false}),
            }),
            Some(_) => Ok(()),
        }
    }
}

/// Whether a plugin listing `subtypes` serves `subtype` (an empty one picks a lone subtype;
/// the latest Go generation names an unnamed object `"."`).
fn serves(subtypes: &[String], subtype: &str) -> bool {
    let unnamed = |s: &str| s.is_empty() || s == ".";
    subtypes
        .iter()
        .any(|s| s == subtype || (unnamed(s) && unnamed(subtype)))
        || (subtype.is_empty() && subtypes.len() == 1)
}

/// Whether a call failed because the plugin has no such method (JSON-RPC -32601, or what Go's
/// `net/rpc` answers: `rpc: can't find method "Group.Size"`).
fn missing_method(e: &RpcError) -> bool {
    matches!(e, RpcError::Remote { code, message, .. }
        if *code == code::METHOD_NOT_FOUND || message.contains("can't find method"))
}

fn describe(i: &Implements) -> String {
    if i.interfaces.is_empty() {
        return "nothing".into();
    }
    i.interfaces
        .iter()
        .map(|(k, (v, _))| format!("{k}/{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_hello(v: &Value) -> Implements {
    let mut out = Implements::default();
    if let Some(objects) = v.get("Objects").and_then(Value::as_object) {
        for (key, entries) in objects {
            let (name, version) = key.split_once('/').unwrap_or((key.as_str(), ""));
            let subtypes = entries.as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e.get("Name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            });
            out.interfaces
                .insert(name.to_owned(), (version.to_owned(), subtypes));
        }
    }
    out
}

fn parse_implements(v: &Value) -> Implements {
    let mut out = Implements::default();
    if let Some(apis) = v.get("APIs").and_then(Value::as_array) {
        for api in apis {
            if let (Some(n), Some(ver)) = (
                api.get("Name").and_then(Value::as_str),
                api.get("Version").and_then(Value::as_str),
            ) {
                out.interfaces.insert(n.to_owned(), (ver.to_owned(), None));
            }
        }
    }
    out
}

/// A reference `name/subtype` split into the socket name and the `Type`.
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    reference.split_once('/').unwrap_or((reference, ""))
}

/// An instance plugin in another process.
#[derive(Debug, Clone)]
pub struct RemoteInstance {
    client: Client,
    subtype: String,
}

impl RemoteInstance {
    /// The instance plugin of `subtype` behind `client`.
    pub fn new(client: Client, subtype: impl Into<String>) -> Self {
        Self {
            client,
            subtype: subtype.into(),
        }
    }

    async fn ready(&self) -> Result<(), InstanceError> {
        Ok(self
            .client
            .check(
                "Instance",
                &[versions::INSTANCE, versions::INSTANCE_OLD],
                &self.subtype,
            )
            .await?)
    }
}

#[async_trait]
impl Instance for RemoteInstance {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.ready().await?;
        let req = ValidateReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            allocation: None,
        };
        let _: TypeOk = self.client.call("Instance.Validate", &req).await?;
        Ok(())
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.ready().await?;
        let r: ProvisionResp = self
            .client
            .call(
                "Instance.Provision",
                &ProvisionReq {
                    kind: self.subtype.clone(),
                    spec,
                },
            )
            .await?;
        r.id.ok_or_else(|| InstanceError::Provider {
            message: "the plugin returned no instance ID".into(),
            transient: false,
        })
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.ready().await?;
        let req = LabelReq {
            kind: self.subtype.clone(),
            instance: id.clone(),
            labels: Some(labels.clone()),
        };
        let _: TypeOk = self.client.call("Instance.Label", &req).await?;
        Ok(())
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.ready().await?;
        let req = DestroyReq {
            kind: self.subtype.clone(),
            instance: id.clone(),
            context: Some(context),
        };
        let _: TypeOk = self.client.call("Instance.Destroy", &req).await?;
        Ok(())
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        self.ready().await?;
        let req = DescribeReq {
            kind: self.subtype.clone(),
            tags: Some(tags.clone()),
            properties: with_properties,
        };
        let r: DescribeResp = self.client.call("Instance.DescribeInstances", &req).await?;
        Ok(r.descriptions.unwrap_or_default())
    }
}

/// A flavor plugin in another process.
#[derive(Debug, Clone)]
pub struct RemoteFlavor {
    client: Client,
    subtype: String,
    /// Whether the plugin answers `Flavor.HealthyBatch`: unknown until asked, then known for
    /// good (a Go plugin has no such method; an infrakit-rs flavor may answer per member).
    batches: Arc<OnceCell<bool>>,
}

impl RemoteFlavor {
    /// The flavor of `subtype` behind `client`.
    pub fn new(client: Client, subtype: impl Into<String>) -> Self {
        Self {
            client,
            subtype: subtype.into(),
            batches: Arc::default(),
        }
    }

    async fn ready(&self) -> Result<(), FlavorError> {
        Ok(self
            .client
            .check(
                "Flavor",
                &[versions::FLAVOR, versions::FLAVOR_OLD],
                &self.subtype,
            )
            .await?)
    }
}

#[async_trait]
impl Flavor for RemoteFlavor {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        self.ready().await?;
        let req = ValidateReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            allocation: Some(allocation.into()),
        };
        let _: TypeOk = self.client.call("Flavor.Validate", &req).await?;
        Ok(())
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        self.ready().await?;
        let req = PrepareReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            spec,
            allocation: allocation.into(),
            index: Some(index.clone()),
        };
        let r: PrepareResp = self.client.call("Flavor.Prepare", &req).await?;
        Ok(r.spec)
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        self.ready().await?;
        let req = InstanceReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            instance: description.clone(),
        };
        let r: HealthResp = self.client.call("Flavor.Healthy", &req).await?;
        Ok(r.health)
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        self.ready().await?;
        let req = InstanceReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            instance: description.clone(),
        };
        let _: TypeOk = self.client.call("Flavor.Drain", &req).await?;
        Ok(())
    }

    /// One `Flavor.HealthyBatch` round trip for the whole group when the plugin judges
    /// batches; `None` (ask per member) for a flavor that does not, and for a plugin without
    /// the method (Go), which is then never asked again.
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        if self.batches.get() == Some(&false) {
            return None;
        }
        if let Err(e) = self.ready().await {
            return Some(Err(e));
        }
        let req = HealthyBatchReq {
            kind: self.subtype.clone(),
            properties: properties.clone(),
            instances: descriptions.to_vec(),
        };
        let answer: Result<HealthyBatchResp, RpcError> =
            self.client.call("Flavor.HealthyBatch", &req).await;
        match answer {
            Ok(HealthyBatchResp {
                health: Some(all), ..
            }) => {
                let _ = self.batches.set(true);
                Some(Ok(all))
            }
            Ok(HealthyBatchResp { health: None, .. }) => {
                let _ = self.batches.set(false);
                None
            }
            Err(e) if missing_method(&e) => {
                tracing::debug!(plugin = %self.client.name(), "no Flavor.HealthyBatch: health per member");
                let _ = self.batches.set(false);
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }
}

/// A group plugin (a manager) in another process, of either Go generation.
///
/// The generation comes from the handshake: `Group/0.1.1` (latest, and infrakit-rs) has every
/// method; `Group/0.1.0` (Go v0.4) answers commits with only `{"Details"}`, frees and destroys
/// with `{"OK": true}`, and has no `Size`, `SetSize` or `DestroyInstances`. Against it, the
/// size is read from `InspectGroups`, a new size is committed as a changed spec, and
/// destroying given instances is refused with [`RpcError::Unsupported`] (as a
/// [`GroupError::Other`] naming the generation) rather than guessed at.
#[derive(Debug, Clone)]
pub struct RemoteGroup {
    client: Client,
    name: String,
}

impl RemoteGroup {
    /// The group plugin `name` behind `client`.
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The Group version the plugin announced (`"0.1.1"` or `"0.1.0"`), after checking it is
    /// one we speak.
    pub async fn generation(&self) -> Result<String, GroupError> {
        self.client
            .check("Group", &[versions::GROUP, versions::GROUP_OLD], &self.name)
            .await?;
        let implements = self.client.implements().await?;
        Ok(implements
            .interfaces
            .get("Group")
            .map(|(v, _)| v.clone())
            .unwrap_or_default())
    }

    async fn ready(&self) -> Result<(), GroupError> {
        self.generation().await.map(drop)
    }

    /// True for a Group/0.1.0 (Go v0.4) plugin.
    async fn older(&self) -> Result<bool, GroupError> {
        Ok(self.generation().await? == versions::GROUP_OLD)
    }

    fn id_req(&self, id: &GroupId) -> GroupIdReq {
        GroupIdReq {
            name: self.name.clone(),
            id: id.clone(),
        }
    }

    fn unsupported(&self, method: &str, reason: &str) -> GroupError {
        RpcError::Unsupported {
            plugin: self.client.name().to_owned(),
            interface: "Group".into(),
            version: versions::GROUP_OLD.into(),
            method: method.to_owned(),
            reason: reason.to_owned(),
        }
        .into()
    }

    /// The stored spec of `id`, from `InspectGroups` (what Group/0.1.0 offers).
    async fn inspected(&self, id: &GroupId) -> Result<GroupSpec, GroupError> {
        self.inspect()
            .await?
            .into_iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })
    }

    async fn size_from_spec(&self, id: &GroupId) -> Result<u32, GroupError> {
        let spec = self.inspected(id).await?;
        Ok(u32::try_from(spec.allocation.target_size()).unwrap_or(u32::MAX))
    }

    /// Sets the size by committing the changed spec (Group/0.1.0 has no `SetSize`).
    async fn set_size_by_commit(&self, id: &GroupId, size: u32) -> Result<(), GroupError> {
        let mut spec = self.inspected(id).await?;
        if spec.allocation.is_quorum() {
            return Err(infrakit_core::SpecError::new(
                "Properties.Allocation",
                "a quorum group's size is its list of logical IDs: commit a new spec",
            )
            .into());
        }
        spec.allocation = Allocation::Size(size);
        self.commit(spec, false).await.map(drop)
    }
}

#[async_trait]
impl Group for RemoteGroup {
    async fn commit(&self, spec: GroupSpec, pretend: bool) -> Result<String, GroupError> {
        self.ready().await?;
        // Group/0.1.0 answers `{"Details": ".."}` only: `ID` is optional.
        let r: CommitResp = self
            .client
            .call(
                "Group.CommitGroup",
                &CommitReq {
                    name: self.name.clone(),
                    spec,
                    pretend,
                },
            )
            .await?;
        Ok(r.details)
    }

    async fn free(&self, id: &GroupId) -> Result<(), GroupError> {
        self.ready().await?;
        let _: GroupAck = self
            .client
            .call("Group.FreeGroup", &self.id_req(id))
            .await?;
        Ok(())
    }

    async fn destroy(&self, id: &GroupId) -> Result<(), GroupError> {
        self.ready().await?;
        let _: GroupAck = self
            .client
            .call("Group.DestroyGroup", &self.id_req(id))
            .await?;
        Ok(())
    }

    async fn describe(&self, id: &GroupId) -> Result<GroupDescription, GroupError> {
        self.ready().await?;
        let r: DescribeGroupResp = self
            .client
            .call("Group.DescribeGroup", &self.id_req(id))
            .await?;
        Ok(r.description)
    }

    async fn inspect(&self) -> Result<Vec<GroupSpec>, GroupError> {
        self.ready().await?;
        let r: InspectResp = self
            .client
            .call(
                "Group.InspectGroups",
                &NameReq {
                    name: self.name.clone(),
                },
            )
            .await?;
        Ok(r.groups.unwrap_or_default())
    }

    async fn destroy_instances(&self, id: &GroupId, ids: &[InstanceId]) -> Result<(), GroupError> {
        const REASON: &str = "destroy the instances through their instance plugin, or lower the size and let the group scale in";
        if self.older().await? {
            return Err(self.unsupported("Group.DestroyInstances", REASON));
        }
        let req = DestroyInstancesReq {
            name: self.name.clone(),
            id: id.clone(),
            instances: Some(ids.to_vec()),
        };
        match self
            .client
            .call::<_, GroupAck>("Group.DestroyInstances", &req)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if missing_method(&e) => Err(self.unsupported("Group.DestroyInstances", REASON)),
            Err(e) => Err(e.into()),
        }
    }

    async fn trigger(&self, id: &GroupId) -> Result<u64, GroupError> {
        const REASON: &str = "wait for the group's next resync instead";
        if self.older().await? {
            return Err(self.unsupported("Group.Trigger", REASON));
        }
        match self
            .client
            .call::<_, TriggerResp>("Group.Trigger", &self.id_req(id))
            .await
        {
            Ok(r) => Ok(r.passes_started),
            Err(e) if missing_method(&e) => Err(self.unsupported("Group.Trigger", REASON)),
            Err(e) => Err(e.into()),
        }
    }

    async fn size(&self, id: &GroupId) -> Result<u32, GroupError> {
        if self.older().await? {
            return self.size_from_spec(id).await;
        }
        match self
            .client
            .call::<_, SizeMsg>("Group.Size", &self.id_req(id))
            .await
        {
            Ok(r) => Ok(r.size),
            Err(e) if missing_method(&e) => self.size_from_spec(id).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn set_size(&self, id: &GroupId, size: u32) -> Result<(), GroupError> {
        if self.older().await? {
            return self.set_size_by_commit(id, size).await;
        }
        let req = SizeMsg {
            name: self.name.clone(),
            id: id.clone(),
            size,
        };
        match self.client.call::<_, GroupAck>("Group.SetSize", &req).await {
            Ok(_) => Ok(()),
            Err(e) if missing_method(&e) => self.set_size_by_commit(id, size).await,
            Err(e) => Err(e.into()),
        }
    }
}

/// A metadata plugin in another process.
#[derive(Debug, Clone)]
pub struct RemoteMetadata {
    client: Client,
    subtype: String,
}

impl RemoteMetadata {
    /// The metadata of `subtype` behind `client`.
    pub fn new(client: Client, subtype: impl Into<String>) -> Self {
        Self {
            client,
            subtype: subtype.into(),
        }
    }
}

impl RemoteMetadata {
    /// The request for `path`, in the generation the plugin speaks: Metadata/0.1.1 selects by
    /// the full plugin name in `Name` and lists with `Metadata.Keys`; 0.1.0 selects by `Type`
    /// and lists with `Metadata.List`. Returns (list method, params).
    async fn request(&self, path: &str) -> Result<(&'static str, PathReq), MetadataError> {
        self.client
            .check(
                "Metadata",
                &[versions::METADATA, versions::METADATA_LATEST],
                &self.subtype,
            )
            .await?;
        let implements = self.client.implements().await?;
        let latest = implements
            .interfaces
            .get("Metadata")
            .is_some_and(|(v, _)| v == versions::METADATA_LATEST);
        let path = segments(path);
        Ok(if latest {
            let name = if self.subtype.is_empty() {
                self.client.name().to_owned()
            } else {
                format!("{}/{}", self.client.name(), self.subtype)
            };
            (
                "Metadata.Keys",
                PathReq {
                    kind: None,
                    name: Some(name),
                    path,
                },
            )
        } else {
            (
                "Metadata.List",
                PathReq {
                    kind: Some(self.subtype.clone()),
                    name: None,
                    path,
                },
            )
        })
    }
}

#[async_trait]
impl Metadata for RemoteMetadata {
    async fn get(&self, path: &str) -> Result<Option<Value>, MetadataError> {
        let (_, req) = self.request(path).await?;
        let r: GetResp = self.client.call("Metadata.Get", &req).await?;
        Ok((!r.value.is_null()).then_some(r.value))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        let (method, req) = self.request(path).await?;
        let r: ListResp = self.client.call(method, &req).await?;
        Ok(r.nodes.unwrap_or_default())
    }
}
