//! The instance plugin: a provider of machines (or containers, or anything with an ID).
//!
//! There is no central inventory. What an [`Instance`] plugin reports, found by tags, *is*
//! the truth about infrastructure; a controller remembers nothing else.

use crate::error::{Classify, ErrorKind};
use crate::id::{InstanceId, LogicalId};
use crate::serde_util::{nullable_default, nullable_vec};
use crate::spec_error::SpecError;
use crate::tags::{LOGICAL_ID_TAG, Tags};
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Something bound to a logical ID that follows it to a replacement instance, e.g. an EBS
/// volume holding a swarm manager's state.
///
/// On the wire: `{"ID":"vol-1","Type":"ebs"}`.
///
/// ```
/// use infrakit_core::Attachment;
/// let a = Attachment::new("vol-1", "ebs");
/// assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"ID":"vol-1","Type":"ebs"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// The attached resource's ID (a volume ID, a volume name, a data directory).
    #[serde(rename = "ID")]
    pub id: String,
    /// What kind of resource it is (`ebs`, `volume`, ...); interpreted by the instance plugin.
    #[serde(rename = "Type")]
    pub kind: String,
}

impl Attachment {
    /// An attachment of the given kind.
    pub fn new(id: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: kind.into(),
        }
    }
}

/// What to provision: the output of a flavor's `prepare`, the input of `provision`.
///
/// Its JSON form is InfraKit's wire shape:
/// `{"Properties":{..},"Tags":{..},"Init":"..","LogicalID":"10.0.0.5"|null,"Attachments":[..]|null}`.
///
/// ```
/// use infrakit_core::{InstanceSpec, Attachment};
/// let spec = InstanceSpec::new(serde_json::json!({"image": "busybox"}))
///     .with_tag("infrakit.group", "managers")
///     .with_logical_id("10.0.0.1")
///     .with_attachment(Attachment::new("vol-1", "ebs"))
///     .with_init("#!/bin/sh\necho hello");
/// let json = serde_json::to_value(&spec).unwrap();
/// assert_eq!(json["LogicalID"], "10.0.0.1");
/// assert_eq!(json["Attachments"][0]["Type"], "ebs");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Provider-specific properties, opaque to the engine (an AMI, an instance type, ...).
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// Tags set on the instance **at creation**.
    #[serde(
        rename = "Tags",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    pub tags: Tags,
    /// The boot script (user data, cloud-init).
    #[serde(
        rename = "Init",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    pub init: String,
    /// The stable identity to give the instance, for quorum groups.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<LogicalId>,
    /// Resources to attach once the instance exists.
    #[serde(rename = "Attachments", default, with = "nullable_vec")]
    pub attachments: Vec<Attachment>,
}

impl InstanceSpec {
    /// A spec with the given provider properties and nothing else.
    pub fn new(properties: Value) -> Self {
        Self {
            properties,
            ..Self::default()
        }
    }

    /// Adds a tag.
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key, value);
        self
    }

    /// Sets the logical ID.
    #[must_use]
    pub fn with_logical_id(mut self, id: impl Into<LogicalId>) -> Self {
        self.logical_id = Some(id.into());
        self
    }

    /// Adds an attachment.
    #[must_use]
    pub fn with_attachment(mut self, a: Attachment) -> Self {
        self.attachments.push(a);
        self
    }

    /// Sets the boot script.
    #[must_use]
    pub fn with_init(mut self, init: impl Into<String>) -> Self {
        self.init = init.into();
        self
    }
}

/// One instance as a provider reports it.
///
/// On the wire: `{"ID":"..","LogicalID":..,"Tags":{..},"Properties":..}`, with `Properties`
/// omitted unless the caller asked for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The provider's ID.
    #[serde(rename = "ID")]
    pub id: InstanceId,
    /// The logical ID, if the instance has one.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<LogicalId>,
    /// Every tag the instance carries.
    #[serde(
        rename = "Tags",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    pub tags: Tags,
    /// Provider details, present only when `describe` was asked for them.
    #[serde(
        rename = "Properties",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub properties: Option<Value>,
}

impl Description {
    /// A description with an ID and tags.
    pub fn new(id: impl Into<InstanceId>, tags: Tags) -> Self {
        Self {
            id: id.into(),
            logical_id: None,
            tags,
            properties: None,
        }
    }

    /// The logical ID, from the field or, for providers that cannot store one natively,
    /// from the `infrakit.logical_id` tag.
    pub fn effective_logical_id(&self) -> Option<LogicalId> {
        self.logical_id
            .clone()
            .or_else(|| self.tags.get(LOGICAL_ID_TAG).map(LogicalId::from))
    }
}

/// Why an instance is destroyed. A plugin may act on it, e.g. keep volumes on a rolling update.
///
/// On the wire: `{"Reason":"terminate"}`, `"rolling_update"` or `"scale_down"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "Reason")]
pub enum DestroyContext {
    /// The instance is going away for good (the group is destroyed, an unknown member removed).
    #[serde(rename = "terminate")]
    Terminate,
    /// The instance is replaced by a newer configuration; its logical ID and attachments live on.
    #[serde(rename = "rolling_update")]
    RollingUpdate,
    /// The group shrinks.
    #[serde(rename = "scale_down")]
    ScaleDown,
}

impl fmt::Display for DestroyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DestroyContext::Terminate => "terminate",
            DestroyContext::RollingUpdate => "rolling_update",
            DestroyContext::ScaleDown => "scale_down",
        })
    }
}

/// A change a provider noticed, so controllers can react without polling.
///
/// Events are hints: a controller re-describes on every event and still resyncs periodically,
/// so a lost or duplicated event costs latency, never correctness.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InstanceEvent {
    /// An instance was created.
    Provisioned {
        /// Its ID.
        id: InstanceId,
        /// Its tags.
        tags: Tags,
    },
    /// An instance disappeared: destroyed, died, or was killed outside our control.
    Gone {
        /// Its ID.
        id: InstanceId,
        /// The tags it had.
        tags: Tags,
    },
    /// An instance's tags changed.
    Relabeled {
        /// Its ID.
        id: InstanceId,
        /// Its new tags.
        tags: Tags,
    },
    /// The subscriber fell behind and missed events; it should resync.
    Lagged,
}

impl InstanceEvent {
    /// The tags of the instance concerned (`None` for [`Lagged`](Self::Lagged)).
    pub fn tags(&self) -> Option<&Tags> {
        match self {
            InstanceEvent::Provisioned { tags, .. }
            | InstanceEvent::Gone { tags, .. }
            | InstanceEvent::Relabeled { tags, .. } => Some(tags),
            InstanceEvent::Lagged => None,
        }
    }
}

/// A stream of [`InstanceEvent`]s.
pub type InstanceEvents = BoxStream<'static, InstanceEvent>;

/// An instance plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    /// The properties do not fit this plugin.
    #[error(transparent)]
    InvalidProperties(#[from] SpecError),
    /// No such instance.
    #[error("instance {id} not found")]
    NotFound {
        /// The ID that was asked for.
        id: InstanceId,
    },
    /// The provider throttled us; transient.
    #[error("throttled: {message}")]
    Throttled {
        /// The provider's message.
        message: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or timed out; transient.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// A resource the call needs is held elsewhere (an IP in use, a volume still attached);
    /// transient, since the holder is usually being released.
    #[error("conflict: {message}")]
    Conflict {
        /// What is in the way.
        message: String,
    },
    /// The plugin does not support this operation.
    #[error("unsupported operation: {operation}")]
    Unsupported {
        /// The operation.
        operation: String,
    },
    /// The call did not return within its deadline (see [`CallTimeouts`](crate::timeouts::CallTimeouts));
    /// transient. A timed-out `provision` or `destroy` may still have happened: the next
    /// `describe` tells.
    #[error("{operation} timed out after {}", crate::duration::format_duration(*after))]
    TimedOut {
        /// The operation.
        operation: crate::timeouts::PluginCall,
        /// The deadline it missed.
        after: Duration,
    },
    /// Any other provider error, with the provider's message preserved.
    #[error("provider error: {message}")]
    Provider {
        /// The provider's message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl Classify for InstanceError {
    fn kind(&self) -> ErrorKind {
        match self {
            InstanceError::Throttled { .. }
            | InstanceError::Unavailable { .. }
            | InstanceError::Conflict { .. }
            | InstanceError::TimedOut { .. } => ErrorKind::Transient,
            InstanceError::Provider {
                transient: true, ..
            } => ErrorKind::Transient,
            InstanceError::InvalidProperties(_)
            | InstanceError::NotFound { .. }
            | InstanceError::Unsupported { .. }
            | InstanceError::Provider { .. } => ErrorKind::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            InstanceError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An instance plugin: creates, labels, destroys and finds instances of one provider.
///
/// Implementations must be `Send + Sync`; the engine holds them as `Arc<dyn Instance>`.
///
/// # Contract
/// - `provision` sets `spec.tags` **at creation** (never in a second call), so an instance is
///   never visible untagged, and returns only once the provider has accepted the request.
/// - `describe(tags, _)` returns every instance whose tags contain **all** of `tags` with equal
///   values: a subset match. An instance *missing* a queried tag does **not** match. Instances
///   that are gone or terminating are not returned.
/// - `destroy` of an instance that is already gone returns [`InstanceError::NotFound`].
/// - Errors say whether they are transient ([`Classify`]); the engine retries those with backoff.
///
/// ```
/// use infrakit_core::{Instance, Simulator, InstanceSpec, Tags};
/// use std::sync::Arc;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let provider: Arc<dyn Instance> = Arc::new(Simulator::new());
/// let id = provider
///     .provision(InstanceSpec::default().with_tag("infrakit.group", "workers"))
///     .await?;
/// let found = provider
///     .describe(&Tags::from_iter([("infrakit.group", "workers")]), false)
///     .await?;
/// assert_eq!(found[0].id, id);
/// # Ok::<(), infrakit_core::instance::InstanceError>(())
/// # }).unwrap();
/// ```
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Instance: Send + Sync {
    /// Checks provider properties before anything is provisioned. Errors name the field.
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError>;

    /// Creates one instance and returns its ID.
    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError>;

    /// Adds or overwrites tags on an existing instance (adoption of a pre-existing instance).
    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError>;

    /// Destroys one instance. `context` says why.
    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError>;

    /// Every live instance whose tags include all of `tags` (subset match, see the trait docs).
    /// With `with_properties`, each description carries the provider's details.
    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError>;

    /// A stream of change events, if the provider has one. `None` means: poll.
    fn events(&self) -> Option<InstanceEvents> {
        None
    }

    /// The most calls per second this plugin's provider takes (`None`: no limit, the
    /// default, right for an embedded or local provider). The engine applies it to every
    /// `describe`, `provision`, `label` and `destroy` it makes, shared by all groups that use
    /// the plugin; a cloud provider returns its API's budget (EC2: 50 per second).
    fn call_limit(&self) -> Option<CallLimit> {
        None
    }
}

macro_rules! forward_instance {
    ($($ptr:ident),*) => {$(
        /// A shared or boxed plugin is a plugin: `Arc<Simulator>` can be registered, wrapped
        /// in a layer and still called by its owner.
        #[async_trait]
        impl<T: Instance + ?Sized> Instance for $ptr<T> {
            async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
                (**self).validate(properties).await
            }
            async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
                (**self).provision(spec).await
            }
            async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
                (**self).label(id, labels).await
            }
            async fn destroy(
                &self,
                id: &InstanceId,
                context: DestroyContext,
            ) -> Result<(), InstanceError> {
                (**self).destroy(id, context).await
            }
            async fn describe(
                &self,
                tags: &Tags,
                with_properties: bool,
            ) -> Result<Vec<Description>, InstanceError> {
                (**self).describe(tags, with_properties).await
            }
            fn events(&self) -> Option<InstanceEvents> {
                (**self).events()
            }
            fn call_limit(&self) -> Option<CallLimit> {
                (**self).call_limit()
            }
        }
    )*};
}

forward_instance!(Arc, Box);

/// A limit on provider calls: `PerSecond` on average, bursts up to `Burst` (at least 1;
/// `0` or absent: the same as `PerSecond`).
///
/// In a spec, under the instance plugin (it tightens the plugin's own limit for that group):
/// `"Instance": {"Plugin": "aws", "RateLimit": {"PerSecond": 5, "Burst": 10}, "Properties": {}}`.
///
/// ```
/// use infrakit_core::instance::CallLimit;
/// let limit: CallLimit = serde_json::from_str(r#"{"PerSecond": 5}"#).unwrap();
/// assert_eq!(limit, CallLimit::per_second(5));
/// assert_eq!(limit.burst_size(), 5);
/// assert_eq!(CallLimit::per_second(5).burst(20).burst_size(), 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLimit {
    /// Calls per second, on average (at least 1).
    #[serde(rename = "PerSecond")]
    pub per_second: u32,
    /// Calls allowed at once after a quiet time (`0`: `per_second`).
    #[serde(rename = "Burst", default, skip_serializing_if = "is_zero")]
    pub burst: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CallLimit {
    /// `n` calls per second, bursts of `n`.
    pub fn per_second(n: u32) -> Self {
        Self {
            per_second: n,
            burst: 0,
        }
    }

    /// Sets the burst.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The burst in effect.
    pub fn burst_size(&self) -> u32 {
        if self.burst == 0 {
            self.per_second.max(1)
        } else {
            self.burst
        }
    }
}
