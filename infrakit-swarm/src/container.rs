//! Docker containers as instances.

use crate::docker::instance_error;
use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointIpamConfig, EndpointSettings,
    EventMessage, HostConfig, Ipam, IpamConfig, Mount, MountType, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use infrakit_core::{
    Description, DestroyContext, Instance, InstanceError, InstanceEvent, InstanceEvents,
    InstanceId, InstanceSpec, LOGICAL_ID_TAG, LogicalId, SpecError, Tags,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// The label every container of this plugin carries, naming the plugin's scope, so two
/// plugins on one engine never see each other's containers.
pub const SCOPE_LABEL: &str = "infrakit.container.scope";

/// The properties of a container group (`"Instance": {"Plugin": "container", "Properties": ..}`).
///
/// ```json
/// {"Image": "busybox:latest", "Cmd": ["sleep", "3600"], "Env": ["MODE=prod"],
///  "VolumeTarget": "/data", "Labels": {"team": "infra"}}
/// ```
/// - `Image` (required): a local image (nothing is pulled).
/// - `Cmd`: the command; without it the instance's boot script (`init`) runs as `sh -c <init>`,
///   and without either, the image's own command.
/// - `VolumeTarget`: where attachments (named volumes) are mounted (default `/data`; a second
///   attachment goes to `/data1`, and so on).
/// - `Labels`: extra labels, not tags (not matched by describe).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerProperties {
    /// The image.
    #[serde(rename = "Image")]
    pub image: String,
    /// The command.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Environment, `NAME=value`.
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
    /// Where volumes are mounted.
    #[serde(rename = "VolumeTarget", default = "default_target")]
    pub volume_target: String,
    /// Extra labels.
    #[serde(rename = "Labels", default)]
    pub labels: HashMap<String, String>,
}

fn default_target() -> String {
    "/data".into()
}

impl ContainerProperties {
    fn parse(properties: &Value) -> Result<Self, InstanceError> {
        let p: ContainerProperties = SpecError::from_value(properties.clone())?;
        if p.image.trim().is_empty() {
            return Err(SpecError::new("Image", "an image is required").into());
        }
        if !p.volume_target.starts_with('/') {
            return Err(SpecError::new("VolumeTarget", "must be an absolute path").into());
        }
        if let Some(bad) = p.env.iter().position(|e| !e.contains('=')) {
            return Err(SpecError::new(format!("Env[{bad}]"), "must be NAME=value").into());
        }
        Ok(p)
    }
}

/// An instance plugin whose instances are Docker containers on one engine.
///
/// - **Tags are labels**, set at creation; `describe` filters by label on the engine.
/// - **A logical ID is a fixed IPv4 address** on the plugin's user-defined network (see
///   [`ensure_network`](Self::ensure_network)); a second container asking for a held IP
///   fails with [`InstanceError::Conflict`].
/// - **Attachments are named volumes** (type `volume`), created if missing and never deleted
///   by this plugin, whatever the destroy reason: a replacement finds the data of the one it
///   replaces.
/// - **Events**: the engine's event stream; a container that dies is reported
///   [`InstanceEvent::Gone`] within milliseconds.
/// - A container that is not running is not an instance: `describe` skips it and removes it.
/// - `label` is unsupported: Docker cannot change a container's labels (`Unsupported` for a
///   container of this plugin, `NotFound` for any other ID).
#[derive(Clone)]
pub struct ContainerInstance {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    network: String,
    scope: String,
    sequence: AtomicU64,
    events: OnceLock<broadcast::Sender<InstanceEvent>>,
    /// Containers the event stream reported dead. The engine emits `die` a moment before its
    /// container list says so; describe trusts the event.
    dead: Arc<Mutex<HashMap<String, std::time::Instant>>>,
}

impl std::fmt::Debug for ContainerInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerInstance")
            .field("network", &self.inner.network)
            .field("scope", &self.inner.scope)
            .finish()
    }
}

impl ContainerInstance {
    /// Containers on `network` (a user-defined network with a subnet, for fixed IPs), labelled
    /// with `scope` so that several plugins can share an engine.
    pub fn new(docker: Docker, network: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                docker,
                network: network.into(),
                scope: scope.into(),
                sequence: AtomicU64::new(0),
                events: OnceLock::new(),
                dead: Arc::new(Mutex::new(HashMap::new())),
            }),
        }
    }

    /// The engine client.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// Creates the plugin's bridge network with `subnet` (e.g. `10.213.0.0/24`) unless it
    /// exists.
    pub async fn ensure_network(&self, subnet: &str) -> Result<(), InstanceError> {
        let d = &self.inner.docker;
        if d.inspect_network(&self.inner.network, None).await.is_ok() {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: self.inner.network.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_owned()),
                    ..IpamConfig::default()
                }]),
                ..Ipam::default()
            }),
            labels: Some(HashMap::from([(
                SCOPE_LABEL.to_owned(),
                self.inner.scope.clone(),
            )])),
            ..NetworkCreateRequest::default()
        };
        d.create_network(request)
            .await
            .map_err(|e| instance_error(e, None))?;
        Ok(())
    }

    fn name(&self) -> String {
        let n = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        format!(
            "{}-{}-{n}-{nanos:08x}",
            self.inner.scope,
            std::process::id()
        )
    }

    fn label_filters(&self, tags: &Tags) -> HashMap<String, Vec<String>> {
        let mut labels = vec![format!("{SCOPE_LABEL}={}", self.inner.scope)];
        labels.extend(tags.iter().map(|(k, v)| format!("{k}={v}")));
        HashMap::from([("label".to_owned(), labels)])
    }

    /// Removes every container of this plugin's scope (running or not); volumes are kept.
    pub async fn remove_all(&self) -> Result<usize, InstanceError> {
        let d = &self.inner.docker;
        let all = d
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filters(&Tags::new())),
                ..ListContainersOptions::default()
            }))
            .await
            .map_err(|e| instance_error(e, None))?;
        let mut n = 0;
        for c in all {
            if let Some(id) = c.id {
                let _ = d.remove_container(&id, Some(force())).await;
                n += 1;
            }
        }
        Ok(n)
    }

    fn subscribe(&self) -> broadcast::Receiver<InstanceEvent> {
        self.inner
            .events
            .get_or_init(|| {
                let (tx, _) = broadcast::channel(1024);
                let docker = self.inner.docker.clone();
                let scope = self.inner.scope.clone();
                let sender = tx.clone();
                let dead = Arc::clone(&self.inner.dead);
                // bollard subscribes when the stream is first polled: poll it from a task
                // started now, so no event after this point is missed.
                tokio::spawn(async move { pump_events(docker, scope, sender, dead).await });
                tx
            })
            .subscribe()
    }
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        v: false,
        ..RemoveContainerOptions::default()
    }
}

type Tombstones = Arc<Mutex<HashMap<String, std::time::Instant>>>;

async fn pump_events(
    docker: Docker,
    scope: String,
    tx: broadcast::Sender<InstanceEvent>,
    dead: Tombstones,
) {
    loop {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1).to_string())
            .ok();
        let options = EventsOptions {
            since,
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("label".to_owned(), vec![format!("{SCOPE_LABEL}={scope}")]),
            ])),
            ..EventsOptions::default()
        };
        let mut stream = docker.events(Some(options));
        while let Some(item) = stream.next().await {
            match item {
                Ok(message) => {
                    let Some(event) = to_event(message) else {
                        continue;
                    };
                    {
                        let mut dead = dead.lock().unwrap_or_else(|p| p.into_inner());
                        match &event {
                            InstanceEvent::Gone { id, .. } => {
                                dead.insert(id.to_string(), std::time::Instant::now());
                            }
                            InstanceEvent::Provisioned { id, .. } => {
                                dead.remove(id.as_str());
                            }
                            _ => {}
                        }
                        dead.retain(|_, at| at.elapsed() < std::time::Duration::from_secs(300));
                    }
                    if tx.send(event).is_err() {
                        // Nobody listens any more.
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                    break;
                }
            }
        }
        // Whatever was missed while reconnecting: tell subscribers to resync.
        if tx.send(InstanceEvent::Lagged).is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn to_event(m: EventMessage) -> Option<InstanceEvent> {
    let actor = m.actor?;
    let id = InstanceId::new(actor.id?);
    let tags: Tags = actor.attributes.unwrap_or_default().into_iter().collect();
    match m.action.as_deref()? {
        "start" => Some(InstanceEvent::Provisioned { id, tags }),
        // `kill` and `oom` are signals, not deaths: `die` follows if the process ends.
        "die" | "destroy" => Some(InstanceEvent::Gone { id, tags }),
        _ => None,
    }
}

#[async_trait]
impl Instance for ContainerInstance {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        ContainerProperties::parse(properties).map(|_| ())
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let props = ContainerProperties::parse(&spec.properties)?;
        let d = &self.inner.docker;
        let mut labels: HashMap<String, String> = props.labels.clone();
        labels.extend(spec.tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        labels.insert(SCOPE_LABEL.to_owned(), self.inner.scope.clone());
        if let Some(lid) = &spec.logical_id {
            labels.insert(LOGICAL_ID_TAG.to_owned(), lid.to_string());
        }
        let mut mounts = Vec::new();
        for (i, a) in spec.attachments.iter().enumerate() {
            if a.kind != "volume" {
                return Err(SpecError::new(
                    format!("Attachments[{i}].Type"),
                    format!(
                        "{:?}: this plugin attaches only named volumes (Type \"volume\")",
                        a.kind
                    ),
                )
                .into());
            }
            let target = if i == 0 {
                props.volume_target.clone()
            } else {
                format!("{}{i}", props.volume_target)
            };
            mounts.push(Mount {
                target: Some(target),
                source: Some(a.id.clone()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            });
        }
        let cmd = match (&props.cmd, spec.init.trim().is_empty()) {
            (Some(cmd), _) => Some(cmd.clone()),
            (None, false) => Some(vec!["sh".into(), "-c".into(), spec.init.clone()]),
            (None, true) => None,
        };
        let endpoint = EndpointSettings {
            ipam_config: spec.logical_id.as_ref().map(|lid| EndpointIpamConfig {
                ipv4_address: Some(lid.to_string()),
                ..EndpointIpamConfig::default()
            }),
            ..EndpointSettings::default()
        };
        let body = ContainerCreateBody {
            image: Some(props.image.clone()),
            cmd,
            env: (!props.env.is_empty()).then(|| props.env.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.inner.network.clone()),
                mounts: (!mounts.is_empty()).then_some(mounts),
                init: Some(true),
                ..HostConfig::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.inner.network.clone(), endpoint)])),
            }),
            ..ContainerCreateBody::default()
        };
        let name = self.name();
        let created = d
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..CreateContainerOptions::default()
                }),
                body,
            )
            .await
            .map_err(|e| instance_error(e, None))?;
        let id = InstanceId::new(created.id);
        if let Err(e) = d.start_container(id.as_str(), None).await {
            // Do not leave a created-but-never-started container behind.
            let _ = d.remove_container(id.as_str(), Some(force())).await;
            return Err(instance_error(e, None));
        }
        tracing::debug!(%id, %name, logical_id = ?spec.logical_id, "container started");
        Ok(id)
    }

    async fn label(&self, id: &InstanceId, _: &Tags) -> Result<(), InstanceError> {
        // An unknown container (or one of another scope) is `NotFound`, as for destroy: only
        // a container of ours is one that cannot be relabelled.
        let c = self
            .inner
            .docker
            .inspect_container(
                id.as_str(),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| instance_error(e, Some(id)))?;
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(SCOPE_LABEL) != Some(&self.inner.scope) {
            return Err(InstanceError::NotFound { id: id.clone() });
        }
        Err(InstanceError::Unsupported {
            operation: "label: Docker cannot change the labels of an existing container".into(),
        })
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        // Named volumes are kept in every case: they belong to the logical ID, not to the
        // container.
        tracing::debug!(%id, %context, "removing container");
        self.inner
            .docker
            .remove_container(id.as_str(), Some(force()))
            .await
            .map_err(|e| instance_error(e, Some(id)))
    }

    async fn describe(
        &self,
        query: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let d = &self.inner.docker;
        let all = d
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.label_filters(query)),
                ..ListContainersOptions::default()
            }))
            .await
            .map_err(|e| instance_error(e, None))?;
        let mut found = Vec::with_capacity(all.len());
        for c in all {
            let Some(id) = c.id.clone() else { continue };
            let reported_dead = self
                .inner
                .dead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&id);
            let alive = !reported_dead
                && matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING
                            | ContainerSummaryStateEnum::CREATED
                            | ContainerSummaryStateEnum::RESTARTING
                    )
                );
            if !alive {
                // A dead container is not an instance; clear it away now, so its name, IP
                // reservation and volume references are free for its replacement.
                if let Err(e) = d.remove_container(&id, Some(force())).await {
                    tracing::debug!(%id, error = %e, "could not remove a dead container");
                }
                continue;
            }
            let labels = c.labels.clone().unwrap_or_default();
            let mut tags: Tags = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            // The scope label is this plugin's bookkeeping, not a tag of the user's.
            tags.remove(SCOPE_LABEL);
            // The engine filtered by label already; the subset rule is checked once more here.
            if !tags.contains_all(query) {
                continue;
            }
            let ip = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .and_then(|n| n.get(&self.inner.network))
                .and_then(|e| e.ip_address.clone())
                .filter(|ip| !ip.is_empty());
            let logical_id = labels.get(LOGICAL_ID_TAG).cloned().map(LogicalId::from);
            found.push(Description {
                id: InstanceId::new(id),
                logical_id,
                tags,
                properties: with_properties.then(|| {
                    json!({
                        "Name": c.names.clone().unwrap_or_default().first().cloned(),
                        "Image": c.image,
                        "State": c.state.map(|s| s.to_string()),
                        "IP": ip,
                        "Mounts": c.mounts.unwrap_or_default().iter().map(|m| json!({"Name": m.name, "Destination": m.destination})).collect::<Vec<_>>(),
                    })
                }),
            });
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    fn events(&self) -> Option<InstanceEvents> {
        let rx = self.subscribe();
        Some(Box::pin(
            BroadcastStream::new(rx).map(|e| e.unwrap_or(InstanceEvent::Lagged)),
        ))
    }
}
