//! The flavor plugin: application knowledge (how a swarm manager boots, joins, is judged
//! healthy and leaves), kept apart from the provider that runs the machine.

use crate::error::{Classify, ErrorKind};
use crate::group::Allocation;
use crate::id::GroupId;
use crate::instance::{Description, InstanceSpec};
use crate::spec_error::SpecError;
use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod vanilla;

pub use vanilla::Vanilla;

/// What a flavor thinks of an instance.
///
/// On the wire it is a number: `0` unknown, `1` healthy, `2` unhealthy.
///
/// ```
/// use infrakit_core::Health;
/// assert_eq!(serde_json::to_string(&Health::Unhealthy).unwrap(), "2");
/// assert_eq!(serde_json::from_str::<Health>("1").unwrap(), Health::Healthy);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Not known yet (still booting, not joined, or the check itself failed).
    #[default]
    Unknown,
    /// Working.
    Healthy,
    /// Broken.
    Unhealthy,
}

impl Health {
    fn code(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

impl Serialize for Health {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(Health::Unknown),
            1 => Ok(Health::Healthy),
            2 => Ok(Health::Unhealthy),
            n => Err(serde::de::Error::custom(format!(
                "health must be 0 (unknown), 1 (healthy) or 2 (unhealthy), not {n}"
            ))),
        }
    }
}

/// Which member is being prepared: the group and a sequence number unique within the group's
/// life on this manager.
///
/// On the wire: `{"Group":"workers","Sequence":3}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Index {
    /// The group.
    #[serde(rename = "Group")]
    pub group: GroupId,
    /// A sequence number.
    #[serde(rename = "Sequence")]
    pub sequence: u64,
}

/// A flavor plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FlavorError {
    /// The flavor properties (or their fit with the allocation) are invalid.
    #[error(transparent)]
    InvalidProperties(#[from] SpecError),
    /// Something the flavor needs (a swarm manager, a join token) cannot be reached now.
    #[error("flavor unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// When to try again, if known.
        retry_after: Option<Duration>,
    },
    /// The flavor refuses the operation in the current state (e.g. draining the last manager).
    #[error("refused: {message}")]
    Refused {
        /// Why.
        message: String,
    },
    /// The call did not return within its deadline (see [`CallTimeouts`](crate::timeouts::CallTimeouts));
    /// transient. A timed-out `healthy` counts as a failed check, never as unhealthy.
    #[error("{operation} timed out after {}", crate::duration::format_duration(*after))]
    TimedOut {
        /// The operation.
        operation: crate::timeouts::PluginCall,
        /// The deadline it missed.
        after: Duration,
    },
    /// Any other error, message preserved.
    #[error("flavor error: {message}")]
    Other {
        /// The message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl Classify for FlavorError {
    fn kind(&self) -> ErrorKind {
        match self {
            FlavorError::Unavailable { .. }
            | FlavorError::TimedOut { .. }
            | FlavorError::Other {
                transient: true, ..
            } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            FlavorError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A flavor plugin: turns a group's instance template into a member's spec, judges members'
/// health and drains them before they are destroyed.
///
/// # Contract
/// - `validate` checks the flavor properties against the allocation; errors name the field.
/// - `prepare` receives the instance spec the engine built (tags, logical ID, attachments of
///   the allocation) and returns it completed (init script, more tags, attachments). It must
///   keep the tags it was given.
/// - `healthy` returns [`Health::Unknown`] rather than an error when it cannot tell yet.
/// - `drain` is called before a member is destroyed; an error keeps the member.
///
/// A custom flavor and its unit test with the mocks: see the `mocks` module (feature `mocks`).
///
/// ```
/// use async_trait::async_trait;
/// use infrakit_core::{Allocation, Description, Flavor, FlavorError, Health, Index, InstanceSpec};
/// use serde_json::Value;
///
/// /// Boots every member with a fixed script.
/// struct Hello;
///
/// #[async_trait]
/// impl Flavor for Hello {
///     async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
///         Ok(())
///     }
///     async fn prepare(
///         &self,
///         _: &Value,
///         spec: InstanceSpec,
///         _: &Allocation,
///         index: &Index,
///     ) -> Result<InstanceSpec, FlavorError> {
///         Ok(spec.with_init(format!("echo member {} of {}", index.sequence, index.group)))
///     }
///     async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
///         Ok(Health::Healthy)
///     }
///     async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
///         Ok(())
///     }
/// }
/// ```
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Flavor: Send + Sync {
    /// Checks the flavor properties against the allocation.
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError>;

    /// Completes a member's spec.
    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError>;

    /// Judges one member's health.
    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError>;

    /// Takes a member out of service before it is destroyed.
    async fn drain(&self, properties: &Value, description: &Description)
    -> Result<(), FlavorError>;

    /// Judges many members at once, answering one [`Health`] per description, in their
    /// order: for a flavor that sees a whole group in one call (a node listing, a load
    /// balancer's target health). The engine asks once per pass, under the `healthy`
    /// deadline; an error or a deadline missed fails every member's check (they count as
    /// unknown, never unhealthy).
    ///
    /// `None`, the default: this flavor answers per member, and the engine calls
    /// [`healthy`](Flavor::healthy) for each, in parallel, each under its own deadline.
    ///
    /// ```
    /// use async_trait::async_trait;
    /// use infrakit_core::{Allocation, Description, Flavor, FlavorError, Health, Index, InstanceSpec};
    /// use serde_json::Value;
    ///
    /// /// Healthy when the member's tag says so, judged for the whole group at once.
    /// struct Tagged;
    ///
    /// #[async_trait]
    /// impl Flavor for Tagged {
    ///     # async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> { Ok(()) }
    ///     # async fn prepare(&self, _: &Value, s: InstanceSpec, _: &Allocation, _: &Index)
    ///     #     -> Result<InstanceSpec, FlavorError> { Ok(s) }
    ///     # async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> { Ok(()) }
    ///     async fn healthy(&self, p: &Value, d: &Description) -> Result<Health, FlavorError> {
    ///         let all = self.healthy_batch(p, std::slice::from_ref(d)).await;
    ///         all.unwrap_or(Ok(vec![Health::Unknown])).map(|h| h[0])
    ///     }
    ///     async fn healthy_batch(
    ///         &self,
    ///         _: &Value,
    ///         descriptions: &[Description],
    ///     ) -> Option<Result<Vec<Health>, FlavorError>> {
    ///         Some(Ok(descriptions
    ///             .iter()
    ///             .map(|d| match d.tags.get("up") {
    ///                 Some("yes") => Health::Healthy,
    ///                 Some(_) => Health::Unhealthy,
    ///                 None => Health::Unknown,
    ///             })
    ///             .collect()))
    ///     }
    /// }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let members = [
    ///     Description::new("i-1", [("up", "yes")].into_iter().collect()),
    ///     Description::new("i-2", Default::default()),
    /// ];
    /// let all = Tagged.healthy_batch(&Value::Null, &members).await;
    /// assert_eq!(all, Some(Ok(vec![Health::Healthy, Health::Unknown])));
    /// # });
    /// ```
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let _ = (properties, descriptions);
        None
    }
}

macro_rules! forward_flavor {
    ($($ptr:ident),*) => {$(
        /// A shared or boxed flavor is a flavor.
        #[async_trait]
        impl<T: Flavor + ?Sized> Flavor for $ptr<T> {
            async fn validate(
                &self,
                properties: &Value,
                allocation: &Allocation,
            ) -> Result<(), FlavorError> {
                (**self).validate(properties, allocation).await
            }
            async fn prepare(
                &self,
                properties: &Value,
                spec: InstanceSpec,
                allocation: &Allocation,
                index: &Index,
            ) -> Result<InstanceSpec, FlavorError> {
                (**self).prepare(properties, spec, allocation, index).await
            }
            async fn healthy(
                &self,
                properties: &Value,
                description: &Description,
            ) -> Result<Health, FlavorError> {
                (**self).healthy(properties, description).await
            }
            async fn drain(
                &self,
                properties: &Value,
                description: &Description,
            ) -> Result<(), FlavorError> {
                (**self).drain(properties, description).await
            }
            async fn healthy_batch(
                &self,
                properties: &Value,
                descriptions: &[Description],
            ) -> Option<Result<Vec<Health>, FlavorError>> {
                (**self).healthy_batch(properties, descriptions).await
            }
        }
    )*};
}

forward_flavor!(Arc, Box);
