//! What a check needs to know about the plugin under test: valid properties, free logical IDs,
//! how long the provider may lag.

use crate::flavor::Index;
use crate::group::Allocation;
use crate::id::{GroupId, InstanceId, LogicalId};
use crate::instance::{Description, InstanceSpec};
use crate::tags::{CONFIG_HASH_TAG, GROUP_TAG, Tags};
use serde_json::{Value, json};
use std::time::Duration;

/// The default [`InstanceFixture::unknown_id`].
pub const UNKNOWN_INSTANCE_ID: &str = "infrakit-conformance-no-such-instance";

/// The group of the default [`FlavorFixture::index`] and [`FlavorFixture::description`].
pub const CONFORMANCE_GROUP: &str = "infrakit-conformance";

/// The `infrakit.config.hash` tag value the checks use.
pub(crate) const CONFORMANCE_HASH: &str = "infrakit-conformance-hash";

const DEFAULT_SETTLE: Duration = Duration::from_secs(5);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to exercise an [`Instance`](crate::Instance) plugin: see
/// [`check_instance`](super::check_instance).
///
/// ```
/// use infrakit_core::testkit::InstanceFixture;
/// use std::time::Duration;
///
/// let fixture = InstanceFixture::new(serde_json::json!({"ImageId": "ami-12345678"}))
///     .logical_ids("10.0.0.250", "10.0.0.251")
///     .settle(Duration::from_secs(30));
/// assert_eq!(fixture.unknown_id, "infrakit-conformance-no-such-instance");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InstanceFixture {
    /// Provider properties the plugin accepts; every instance the check provisions uses them.
    /// Make them cheap: the check creates (and destroys) about ten instances.
    pub properties: Value,
    /// Two logical IDs no live instance holds, for the rules `logical_id_reported` (the first)
    /// and `exclusive_logical_ids` (the second). Without them those rules are skipped.
    pub logical_ids: Option<(LogicalId, LogicalId)>,
    /// An instance ID no instance has: `destroy` and `label` of it must be `NotFound`. The
    /// check really calls `destroy` with it, so it must not name anything that exists.
    /// Default [`UNKNOWN_INSTANCE_ID`].
    pub unknown_id: InstanceId,
    /// How long the provider may take until `describe` reflects a change (a provision, a
    /// destroy, a label): the check polls `describe` every 50 ms up to this long. Default 5 s.
    pub settle: Duration,
    /// How long any one call may take before the rule fails with "no answer". Default 30 s.
    pub call_timeout: Duration,
}

impl InstanceFixture {
    /// A fixture with these provider properties, no logical IDs, and the defaults.
    pub fn new(properties: Value) -> Self {
        Self {
            properties,
            logical_ids: None,
            unknown_id: InstanceId::new(UNKNOWN_INSTANCE_ID),
            settle: DEFAULT_SETTLE,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Two free logical IDs (e.g. two unused IP addresses of the subnet), which enable the
    /// logical-ID rules. They must differ.
    #[must_use]
    pub fn logical_ids(
        mut self,
        first: impl Into<LogicalId>,
        second: impl Into<LogicalId>,
    ) -> Self {
        self.logical_ids = Some((first.into(), second.into()));
        self
    }

    /// The ID no instance has.
    #[must_use]
    pub fn unknown_id(mut self, id: impl Into<InstanceId>) -> Self {
        self.unknown_id = id.into();
        self
    }

    /// How long `describe` may lag behind a change.
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// How long one call may take.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
}

/// How to exercise a [`Flavor`](crate::Flavor) plugin: see [`check_flavor`](super::check_flavor).
///
/// ```
/// use infrakit_core::testkit::FlavorFixture;
/// use infrakit_core::{Allocation, Index};
///
/// let fixture = FlavorFixture::new(serde_json::json!({"Init": ["echo hello"]}))
///     .allocation(Allocation::logical_ids(["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
/// assert_eq!(fixture.index.group, "infrakit-conformance");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlavorFixture {
    /// Flavor properties the plugin accepts.
    pub properties: Value,
    /// The group's allocation (default a scaled group of 3).
    pub allocation: Allocation,
    /// The member being prepared (default group [`CONFORMANCE_GROUP`], sequence 0); the
    /// prepared spec's `infrakit.group` tag is this group.
    pub index: Index,
    /// The instance template the engine would hand to `prepare` before adding its own tags,
    /// logical ID and attachment (default: empty properties, nothing else).
    pub spec: InstanceSpec,
    /// A member as the provider describes it, for `healthy` and `drain` (default an instance
    /// `infrakit-conformance-instance` with the group's tags).
    pub description: Description,
    /// How long `healthy` may take to answer (it is on the engine's hot path). Default 5 s.
    pub settle: Duration,
    /// How long any other call (`validate`, `prepare`, `drain`) may take. Default 30 s.
    pub call_timeout: Duration,
}

impl FlavorFixture {
    /// A fixture with these flavor properties and the defaults.
    pub fn new(properties: Value) -> Self {
        let group = GroupId::new(CONFORMANCE_GROUP);
        let tags = Tags::new()
            .with(GROUP_TAG, group.as_str())
            .with(CONFIG_HASH_TAG, CONFORMANCE_HASH);
        Self {
            properties,
            allocation: Allocation::size(3),
            index: Index { group, sequence: 0 },
            spec: InstanceSpec::new(json!({})),
            description: Description::new("infrakit-conformance-instance", tags),
            settle: DEFAULT_SETTLE,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The group's allocation.
    #[must_use]
    pub fn allocation(mut self, allocation: Allocation) -> Self {
        self.allocation = allocation;
        self
    }

    /// The member being prepared.
    #[must_use]
    pub fn index(mut self, index: Index) -> Self {
        self.index = index;
        self
    }

    /// The instance template handed to `prepare`.
    #[must_use]
    pub fn spec(mut self, spec: InstanceSpec) -> Self {
        self.spec = spec;
        self
    }

    /// The member given to `healthy` and `drain`.
    #[must_use]
    pub fn description(mut self, description: Description) -> Self {
        self.description = description;
        self
    }

    /// How long `healthy` may take.
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// How long `validate`, `prepare` and `drain` may take.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
}
