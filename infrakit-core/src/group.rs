//! Groups: the user's declared spec (what should exist) and the [`Group`] controller API.

use crate::error::{Classify, ErrorKind};
use crate::flavor::FlavorError;
use crate::id::{GroupId, InstanceId, LogicalId};
use crate::instance::{Attachment, Description, InstanceError};
use crate::serde_util::{go_duration, nullable_default};
use crate::spec_error::SpecError;
use crate::store::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// How many members a group has: exactly one of a size (cattle: a **scaled group**) or a list
/// of logical IDs (pets: a **quorum group**), the latter with attachments bound to logical IDs.
///
/// On the wire: `{"Size":3}` or
/// `{"LogicalIDs":["10.0.0.1",..],"Attachments":{"10.0.0.1":[{"ID":"vol-1","Type":"ebs"}]}}`.
/// Both or neither is an error that names the field.
///
/// ```
/// use infrakit_core::{Allocation, Attachment, SpecError};
/// let quorum = Allocation::logical_ids(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
///     .with_attachment("10.0.0.1", Attachment::new("vol-1", "ebs"));
/// assert_eq!(quorum.target_size(), 3);
///
/// let both = SpecError::parse_json::<Allocation>(r#"{"Size":3,"LogicalIDs":["a"]}"#).unwrap_err();
/// assert!(both.reason.contains("exactly one of Size or LogicalIDs"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AllocationWire", into = "AllocationWire")]
pub enum Allocation {
    /// A scaled group of this many interchangeable members.
    Size(u32),
    /// A quorum group: one member per logical ID.
    LogicalIds {
        /// The logical IDs, in order.
        ids: Vec<LogicalId>,
        /// Attachments that follow each logical ID to its replacement.
        attachments: BTreeMap<LogicalId, Vec<Attachment>>,
    },
}

impl Allocation {
    /// A scaled group of `n`.
    pub fn size(n: u32) -> Self {
        Allocation::Size(n)
    }

    /// A quorum group with these logical IDs and no attachments yet.
    pub fn logical_ids<I, L>(ids: I) -> Self
    where
        I: IntoIterator<Item = L>,
        L: Into<LogicalId>,
    {
        Allocation::LogicalIds {
            ids: ids.into_iter().map(Into::into).collect(),
            attachments: BTreeMap::new(),
        }
    }

    /// Binds an attachment to a logical ID (no effect on a scaled group, where validation
    /// will not allow attachments anyway).
    #[must_use]
    pub fn with_attachment(mut self, logical_id: impl Into<LogicalId>, a: Attachment) -> Self {
        if let Allocation::LogicalIds { attachments, .. } = &mut self {
            attachments.entry(logical_id.into()).or_default().push(a);
        }
        self
    }

    /// How many members the group should have.
    pub fn target_size(&self) -> usize {
        match self {
            Allocation::Size(n) => *n as usize,
            Allocation::LogicalIds { ids, .. } => ids.len(),
        }
    }

    /// True for a quorum group.
    pub fn is_quorum(&self) -> bool {
        matches!(self, Allocation::LogicalIds { .. })
    }

    /// The logical IDs of a quorum group (empty for a scaled group).
    pub fn ids(&self) -> &[LogicalId] {
        match self {
            Allocation::Size(_) => &[],
            Allocation::LogicalIds { ids, .. } => ids,
        }
    }

    /// The attachments bound to one logical ID.
    pub fn attachments_for(&self, logical_id: &LogicalId) -> &[Attachment] {
        match self {
            Allocation::Size(_) => &[],
            Allocation::LogicalIds { attachments, .. } => attachments
                .get(logical_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        }
    }

    /// Checks the allocation; field paths are relative to the allocation.
    pub fn validate(&self) -> Result<(), SpecError> {
        let Allocation::LogicalIds { ids, attachments } = self else {
            return Ok(());
        };
        if ids.is_empty() {
            return Err(SpecError::new(
                "LogicalIDs",
                "a quorum group needs at least one logical ID",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            if id.as_str().trim().is_empty() {
                return Err(SpecError::new(
                    format!("LogicalIDs[{i}]"),
                    "a logical ID cannot be empty",
                ));
            }
            if let Some(first) = seen.insert(id.as_str(), i) {
                return Err(SpecError::new(
                    format!("LogicalIDs[{i}]"),
                    format!("{id:?} is a duplicate of LogicalIDs[{first}]"),
                ));
            }
        }
        let mut owners: HashMap<(&str, &str), &LogicalId> = HashMap::new();
        for (lid, list) in attachments {
            if !seen.contains_key(lid.as_str()) {
                return Err(SpecError::new(
                    format!("Attachments.{lid}"),
                    format!("{lid:?} is not one of LogicalIDs"),
                ));
            }
            for (j, a) in list.iter().enumerate() {
                let field = format!("Attachments.{lid}[{j}]");
                if a.id.trim().is_empty() {
                    return Err(SpecError::new(
                        format!("{field}.ID"),
                        "an attachment needs an ID",
                    ));
                }
                if let Some(other) = owners.insert((a.id.as_str(), a.kind.as_str()), lid) {
                    return Err(SpecError::new(
                        field,
                        format!("attachment {:?} is already bound to {other}", a.id),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct AllocationWire {
    #[serde(rename = "Size", default, skip_serializing_if = "Option::is_none")]
    size: Option<u32>,
    #[serde(
        rename = "LogicalIDs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    logical_ids: Option<Vec<LogicalId>>,
    #[serde(
        rename = "Attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    attachments: Option<BTreeMap<LogicalId, Vec<Attachment>>>,
}

impl TryFrom<AllocationWire> for Allocation {
    type Error = String;
    fn try_from(w: AllocationWire) -> Result<Self, String> {
        match (w.size, w.logical_ids) {
            (Some(_), Some(_)) => {
                Err("exactly one of Size or LogicalIDs must be set, not both".into())
            }
            (None, None) => Err("exactly one of Size or LogicalIDs must be set".into()),
            (Some(n), None) => {
                if w.attachments.as_ref().is_some_and(|a| !a.is_empty()) {
                    Err(
                        "Attachments are bound to logical IDs: they need LogicalIDs, not Size"
                            .into(),
                    )
                } else {
                    Ok(Allocation::Size(n))
                }
            }
            (None, Some(ids)) => Ok(Allocation::LogicalIds {
                ids,
                attachments: w.attachments.unwrap_or_default(),
            }),
        }
    }
}

impl From<Allocation> for AllocationWire {
    fn from(a: Allocation) -> Self {
        match a {
            Allocation::Size(n) => AllocationWire {
                size: Some(n),
                logical_ids: None,
                attachments: None,
            },
            Allocation::LogicalIds { ids, attachments } => AllocationWire {
                size: None,
                logical_ids: Some(ids),
                attachments: (!attachments.is_empty()).then_some(attachments),
            },
        }
    }
}

/// Which plugin to use and its opaque properties: `{"Plugin":"name/subtype","Properties":{..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PluginSpec {
    /// The plugin reference, `name` or `name/subtype`.
    #[serde(rename = "Plugin")]
    pub plugin: String,
    /// Properties passed to the plugin verbatim.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// A limit on this group's calls to the plugin, on top of the plugin's own
    /// ([`Instance::call_limit`](crate::Instance::call_limit)); only read for the instance
    /// plugin, and not part of the configuration hash (changing it rolls nothing).
    #[serde(rename = "RateLimit", default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::instance::CallLimit>,
}

impl PluginSpec {
    /// A plugin reference with properties.
    pub fn new(plugin: impl Into<String>, properties: Value) -> Self {
        Self {
            plugin: plugin.into(),
            properties,
            rate_limit: None,
        }
    }

    /// Sets a limit on this group's calls to the plugin.
    #[must_use]
    pub fn rate_limit(mut self, limit: crate::instance::CallLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The plugin name (before `/`).
    pub fn name(&self) -> &str {
        self.plugin
            .split_once('/')
            .map_or(self.plugin.as_str(), |(n, _)| n)
    }

    /// The subtype (after `/`), empty when there is none.
    pub fn subtype(&self) -> &str {
        self.plugin.split_once('/').map_or("", |(_, s)| s)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let p = self.plugin.trim();
        if p.is_empty() {
            return Err(SpecError::new("Plugin", "a plugin name is required"));
        }
        if p != self.plugin || p.contains(char::is_whitespace) {
            return Err(SpecError::new(
                "Plugin",
                format!("{:?} contains white space", self.plugin),
            ));
        }
        let parts: Vec<&str> = p.split('/').collect();
        if parts.len() > 2 || parts.iter().any(|s| s.is_empty()) {
            return Err(SpecError::new(
                "Plugin",
                format!("{p:?} is not of the form name or name/subtype"),
            ));
        }
        if self.rate_limit.is_some_and(|l| l.per_second == 0) {
            return Err(SpecError::new(
                "RateLimit.PerSecond",
                "must be at least 1 (leave RateLimit out for no limit)",
            ));
        }
        Ok(())
    }
}

/// How a configuration change rolls through a group (`"Updating"` in the spec).
///
/// ```
/// use infrakit_core::UpdatePolicy;
/// let p: UpdatePolicy = serde_json::from_str(r#"{"MaxSurge":2,"Deadline":"5m"}"#).unwrap();
/// assert_eq!(p.max_surge, 2);
/// assert_eq!(p.max_unavailable, 0);
/// assert_eq!(p.deadline, Some(std::time::Duration::from_secs(300)));
/// ```
///
/// Durations (`MinHealthy`, `Deadline`) are Go text such as `"30s"` or `"5m"`; a bare number
/// means seconds ([`crate::duration`]). Defaults: surge 1, unavailable 0, no minimum healthy
/// time, a 10-minute deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePolicy {
    /// How many members may exist above the target size during the update.
    #[serde(rename = "MaxSurge")]
    pub max_surge: u32,
    /// How many members may be missing or not yet healthy during the update.
    #[serde(rename = "MaxUnavailable")]
    pub max_unavailable: u32,
    /// How long a new member must stay healthy before the update moves on.
    #[serde(rename = "MinHealthy", with = "go_duration")]
    pub min_healthy: Duration,
    /// After this long the update is marked failed instead of hanging; `null` waits forever.
    #[serde(rename = "Deadline", with = "go_duration::option")]
    pub deadline: Option<Duration>,
    /// A paused update makes no progress until resumed.
    #[serde(rename = "Paused")]
    pub paused: bool,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            max_surge: 1,
            max_unavailable: 0,
            min_healthy: Duration::ZERO,
            deadline: Some(Duration::from_secs(600)),
            paused: false,
        }
    }
}

/// Replacement of members that stay unhealthy, or that their flavor never vouches for
/// (`"Healing"` in the spec); off by default.
///
/// ```
/// use infrakit_core::HealingPolicy;
/// use std::time::Duration;
/// let p: HealingPolicy = serde_json::from_str(
///     r#"{"ReplaceUnhealthyAfter": "2m", "ReplaceUnknownAfter": "90s"}"#).unwrap();
/// assert_eq!(p.replace_unhealthy_after, Some(Duration::from_secs(120)));
/// assert_eq!(p.replace_unknown_after, Some(Duration::from_secs(90)));
/// assert_eq!(HealingPolicy::default().replace_unknown_after, None);
/// ```
///
/// Durations are Go text such as `"90s"` or `"2m"`; a bare number means seconds
/// ([`crate::duration`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HealingPolicy {
    /// Replace a member that has been unhealthy for this long; `null`: never.
    #[serde(rename = "ReplaceUnhealthyAfter", with = "go_duration::option")]
    pub replace_unhealthy_after: Option<Duration>,
    /// Replace a member whose flavor has answered `Unknown` for this long (a machine whose
    /// boot script never joined it to the cluster, for instance); `null`: never.
    ///
    /// Only answers count: a health check that fails (the flavor cannot reach its cluster)
    /// starts the clock again, so a blind flavor never causes replacements. In a quorum
    /// group a member goes only while every other member is healthy, one at a time.
    #[serde(
        rename = "ReplaceUnknownAfter",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub replace_unknown_after: Option<Duration>,
}

/// The declared spec of one group.
///
/// Its JSON is InfraKit's group config, so Go-era `groups.json` files load as they are:
///
/// ```
/// use infrakit_core::{GroupSpec, Allocation};
/// let spec = GroupSpec::from_json(r#"{
///   "ID": "workers",
///   "Properties": {
///     "Allocation": {"Size": 3},
///     "Instance": {"Plugin": "simulator", "Properties": {"image": "busybox"}},
///     "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["echo hi"]}}
///   }
/// }"#).unwrap();
/// assert_eq!(spec.allocation, Allocation::Size(3));
/// assert_eq!(spec.config_hash().len(), 32);
///
/// let err = GroupSpec::from_json(r#"{"ID":"w","Properties":{"Allocation":{},
///   "Instance":{"Plugin":"sim"},"Flavor":{"Plugin":"v"}}}"#).unwrap_err();
/// assert_eq!(err.field, "Properties.Allocation");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "GroupSpecWire", into = "GroupSpecWire")]
pub struct GroupSpec {
    /// The group's ID.
    pub id: GroupId,
    /// The instance plugin and its properties.
    pub instance: PluginSpec,
    /// The flavor plugin and its properties.
    pub flavor: PluginSpec,
    /// How many members, and which.
    pub allocation: Allocation,
    /// How configuration changes roll out.
    pub update: UpdatePolicy,
    /// Whether persistently unhealthy members are replaced.
    pub healing: HealingPolicy,
    /// The group's own engine options (`"Options"`: resync, parallelism, call timeouts, …);
    /// unset ones are the manager's.
    pub options: crate::reconcile::GroupOptions,
}

#[derive(Serialize, Deserialize)]
struct GroupSpecWire {
    #[serde(rename = "ID")]
    id: GroupId,
    #[serde(rename = "Properties")]
    properties: GroupPropertiesWire,
}

#[derive(Serialize, Deserialize)]
struct GroupPropertiesWire {
    #[serde(rename = "Allocation")]
    allocation: Allocation,
    #[serde(rename = "Instance")]
    instance: PluginSpec,
    #[serde(rename = "Flavor")]
    flavor: PluginSpec,
    #[serde(
        rename = "Updating",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    update: UpdatePolicy,
    #[serde(
        rename = "Healing",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    healing: HealingPolicy,
    #[serde(
        rename = "Options",
        default,
        deserialize_with = "nullable_default::deserialize",
        skip_serializing_if = "options_unset"
    )]
    options: crate::reconcile::GroupOptions,
}

fn options_unset(o: &crate::reconcile::GroupOptions) -> bool {
    *o == crate::reconcile::GroupOptions::default()
}

impl From<GroupSpecWire> for GroupSpec {
    fn from(w: GroupSpecWire) -> Self {
        let p = w.properties;
        GroupSpec {
            id: w.id,
            instance: p.instance,
            flavor: p.flavor,
            allocation: p.allocation,
            update: p.update,
            healing: p.healing,
            options: p.options,
        }
    }
}

impl From<GroupSpec> for GroupSpecWire {
    fn from(s: GroupSpec) -> Self {
        GroupSpecWire {
            id: s.id,
            properties: GroupPropertiesWire {
                allocation: s.allocation,
                instance: s.instance,
                flavor: s.flavor,
                update: s.update,
                healing: s.healing,
                options: s.options,
            },
        }
    }
}

impl GroupSpec {
    /// A spec with default update and healing policies.
    pub fn new(
        id: impl Into<GroupId>,
        instance: PluginSpec,
        flavor: PluginSpec,
        allocation: Allocation,
    ) -> Self {
        Self {
            id: id.into(),
            instance,
            flavor,
            allocation,
            update: UpdatePolicy::default(),
            healing: HealingPolicy::default(),
            options: crate::reconcile::GroupOptions::default(),
        }
    }

    /// Parses a spec from JSON and validates it. Errors name the field path.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let spec: GroupSpec = SpecError::parse_json(text)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec. Field paths are in the JSON names a user writes
    /// (`Properties.Allocation.LogicalIDs[1]`).
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_group_id(&self.id).map_err(|e| e.under("ID"))?;
        self.instance
            .validate()
            .map_err(|e| e.under("Properties.Instance"))?;
        self.flavor
            .validate()
            .map_err(|e| e.under("Properties.Flavor"))?;
        self.allocation
            .validate()
            .map_err(|e| e.under("Properties.Allocation"))?;
        if self.update.max_surge == 0 && self.update.max_unavailable == 0 {
            return Err(SpecError::new(
                "Properties.Updating",
                "MaxSurge and MaxUnavailable cannot both be 0: an update could never progress",
            ));
        }
        if self.update.deadline == Some(Duration::ZERO) {
            return Err(SpecError::new(
                "Properties.Updating.Deadline",
                "must be positive, or null for no deadline",
            ));
        }
        for (field, value) in [
            (
                "ReplaceUnhealthyAfter",
                self.healing.replace_unhealthy_after,
            ),
            ("ReplaceUnknownAfter", self.healing.replace_unknown_after),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(SpecError::new(
                    format!("Properties.Healing.{field}"),
                    "must be positive (a new member needs time to report), or null for never",
                ));
            }
        }
        self.options
            .validate()
            .map_err(|e| e.under("Properties.Options"))
    }

    /// The hash of the instance and flavor sections, written on members as
    /// `infrakit.config.hash`. A member whose tag differs is outdated and is rolled.
    ///
    /// The allocation and the policies are not covered: resizing never triggers a roll. The
    /// value is stable across runs, platforms and key order (objects are hashed with sorted
    /// keys): the first 32 lowercase hex characters of the SHA-256 of the compact JSON
    /// `{"Flavor":{"Plugin":..,"Properties":..},"Instance":{..}}` with object keys sorted and
    /// strings in UTF-8 (as Python's `json.dumps(v, sort_keys=True, separators=(",", ":"),
    /// ensure_ascii=False)` writes it), so other languages can compute it too.
    pub fn config_hash(&self) -> String {
        config_hash(&self.instance, &self.flavor)
    }
}

/// See [`GroupSpec::config_hash`].
pub fn config_hash(instance: &PluginSpec, flavor: &PluginSpec) -> String {
    let mut canonical = String::with_capacity(256);
    canonical.push_str("{\"Flavor\":");
    write_plugin(&mut canonical, flavor);
    canonical.push_str(",\"Instance\":");
    write_plugin(&mut canonical, instance);
    canonical.push('}');
    let digest = Sha256::digest(canonical.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn write_plugin(out: &mut String, p: &PluginSpec) {
    out.push_str("{\"Plugin\":");
    write_canonical(out, &Value::String(p.plugin.clone()));
    out.push_str(",\"Properties\":");
    write_canonical(out, &p.properties);
    out.push('}');
}

/// Writes JSON with object keys sorted, whatever map type serde_json was built with.
fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, &Value::String(k.clone()));
                out.push(':');
                if let Some(child) = map.get(k) {
                    write_canonical(out, child);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        // Scalars have one serde_json rendering.
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn validate_group_id(id: &GroupId) -> Result<(), SpecError> {
    let s = id.as_str();
    if s.is_empty() {
        return Err(SpecError::new("", "a group ID is required"));
    }
    if s.len() > 128 {
        return Err(SpecError::new("", "a group ID has at most 128 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(SpecError::new(
            "",
            format!("{s:?} contains {c:?}: use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// What [`Group::describe`] reports.
///
/// On the wire: `{"Instances":[..],"Converged":true}`, plus the engine's detail (members' health,
/// the update's state, the current plan, the last error) in fields Go clients ignore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group's members as the provider reports them.
    #[serde(
        rename = "Instances",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    pub instances: Vec<Description>,
    /// True when the members match the spec: size, logical IDs and configuration.
    #[serde(rename = "Converged")]
    pub converged: bool,
    /// Each member's health and whether its configuration is current.
    #[serde(rename = "Members", default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Where a rolling update stands.
    #[serde(rename = "Update", default, skip_serializing_if = "Option::is_none")]
    pub update: Option<crate::reconcile::UpdateProgress>,
    /// The controller's current plan, in one line.
    #[serde(rename = "Plan", default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The last error of the controller, until a pass succeeds.
    #[serde(rename = "LastError", default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The actions of the current plan that a [plan hook](crate::reconcile::PlanHook)
    /// vetoed or deferred, with its reasons.
    #[serde(rename = "Held", default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<crate::reconcile::HeldAction>,
    /// The number of the pass that observed what this describes (0: none, or a plugin that
    /// does not say).
    #[serde(rename = "Pass", default, skip_serializing_if = "is_zero")]
    pub pass: u64,
    /// How many passes the controller had started when this was read: a description with
    /// a higher [`pass`](Self::pass) was observed by a pass that started later. `--watch`
    /// waits for one, so it never reports a state older than the command.
    #[serde(rename = "PassesStarted", default, skip_serializing_if = "is_zero")]
    pub passes_started: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemberStatus {
    /// The instance.
    #[serde(rename = "ID")]
    pub id: InstanceId,
    /// Its logical ID.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: Option<LogicalId>,
    /// Its health, per the flavor.
    #[serde(rename = "Health")]
    pub health: crate::flavor::Health,
    /// Whether it has the current configuration.
    #[serde(rename = "UpToDate")]
    pub up_to_date: bool,
}

impl MemberStatus {
    /// A member with this health, up to date, without a logical ID.
    ///
    /// ```
    /// use infrakit_core::{Health, MemberStatus};
    /// let m = MemberStatus::new("i-1", Health::Healthy).with_logical_id("10.0.0.3").outdated();
    /// assert!(!m.up_to_date);
    /// ```
    pub fn new(id: impl Into<InstanceId>, health: crate::flavor::Health) -> Self {
        Self {
            id: id.into(),
            logical_id: None,
            health,
            up_to_date: true,
        }
    }

    /// Sets the logical ID.
    pub fn with_logical_id(mut self, logical_id: impl Into<LogicalId>) -> Self {
        self.logical_id = Some(logical_id.into());
        self
    }

    /// Marks the member as not having the current configuration.
    pub fn outdated(mut self) -> Self {
        self.up_to_date = false;
        self
    }
}

/// A group controller call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// This replica does not lead; retry against the leader.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(": the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// Where the leader is, when known.
        leader: Option<String>,
    },
    /// No group with this ID is managed here.
    #[error("unknown group {id}")]
    UnknownGroup {
        /// The ID asked for.
        id: GroupId,
    },
    /// The spec is invalid.
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    /// Some of the given instances are not members of the group; nothing was done.
    #[error("not members of group {group}: {}", ids.iter().map(InstanceId::as_str).collect::<Vec<_>>().join(", "))]
    NotMember {
        /// The group.
        group: GroupId,
        /// The IDs that are not members.
        ids: Vec<InstanceId>,
    },
    /// The instance plugin failed.
    #[error("instance plugin: {0}")]
    Instance(InstanceError),
    /// The flavor plugin failed.
    #[error("flavor plugin: {0}")]
    Flavor(FlavorError),
    /// The spec store failed.
    #[error("store: {0}")]
    Store(StoreError),
    /// A destroy took some members and not the rest; `cause` is the first failure. The
    /// destroy stays under way (recorded in the store) and the rest is retried.
    #[error("group {group}: {destroyed} destroyed, {} remain; the rest is retried", remaining.len())]
    PartialDestroy {
        /// The group.
        group: GroupId,
        /// Members destroyed so far.
        destroyed: usize,
        /// Members still there.
        remaining: Vec<InstanceId>,
        /// The first failure.
        #[source]
        cause: Box<GroupError>,
    },
    /// A wait for convergence ran out of time.
    #[error("group {group} not converged after {waited:?}: {plan}")]
    NotConverged {
        /// The group.
        group: GroupId,
        /// How long the caller waited.
        waited: std::time::Duration,
        /// The controller's plan when the wait ended.
        plan: String,
    },
    /// Something did not happen within its deadline (a reconcile pass, a wait to lead).
    #[error("{what} timed out after {}", crate::duration::format_duration(*after))]
    TimedOut {
        /// What was waited for.
        what: String,
        /// The deadline.
        after: std::time::Duration,
    },
    /// Anything else, e.g. an error from a remote group plugin, message preserved.
    #[error("{message}")]
    Other {
        /// The message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

// The plugins' and the store's errors are shown in the message (with their subsystem named),
// so they are not also returned as `source()`: a report walking the chain would repeat them.
impl From<InstanceError> for GroupError {
    fn from(e: InstanceError) -> Self {
        GroupError::Instance(e)
    }
}

impl From<FlavorError> for GroupError {
    fn from(e: FlavorError) -> Self {
        GroupError::Flavor(e)
    }
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> Self {
        GroupError::Store(e)
    }
}

impl Classify for GroupError {
    fn kind(&self) -> ErrorKind {
        match self {
            GroupError::NotLeader { .. }
            | GroupError::NotConverged { .. }
            | GroupError::TimedOut { .. } => ErrorKind::Transient,
            GroupError::PartialDestroy { cause, .. } => cause.kind(),
            GroupError::Instance(e) => e.kind(),
            GroupError::Flavor(e) => e.kind(),
            GroupError::Store(e) => e.kind(),
            GroupError::Other {
                transient: true, ..
            } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }
}

/// The group controller API: what operators and tools call.
///
/// # Contract
/// - `commit(spec, pretend)` validates the spec and returns a one-line explanation of the plan;
///   with `pretend` nothing changes.
/// - `free` stops managing a group and leaves its instances running.
/// - `destroy` first records the intent in the store, then drains and destroys every member;
///   the group is forgotten (removed from the store) as soon as none is left, without a
///   second call. A destroy that takes only some members fails with
///   [`GroupError::PartialDestroy`] and goes on: the controller retries the rest, and a
///   replica that leads later resumes it, never re-provisioning the group. A commit of the
///   group cancels the destroy.
/// - `destroy_instances` accepts only members: a non-member ID is a
///   [`GroupError::NotMember`] and nothing changes; the size is lowered only by what was really
///   destroyed.
/// - On a replica that does not lead, mutating calls fail with [`GroupError::NotLeader`].
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Group: Send + Sync {
    /// Commits a spec (or, with `pretend`, only plans it). Returns the plan in one line.
    async fn commit(&self, spec: GroupSpec, pretend: bool) -> Result<String, GroupError>;

    /// Stops managing a group; its instances keep running.
    async fn free(&self, id: &GroupId) -> Result<(), GroupError>;

    /// Drains and destroys every member, then forgets the group.
    async fn destroy(&self, id: &GroupId) -> Result<(), GroupError>;

    /// The group's members and whether they match the spec.
    async fn describe(&self, id: &GroupId) -> Result<GroupDescription, GroupError>;

    /// The specs of every managed group.
    async fn inspect(&self) -> Result<Vec<GroupSpec>, GroupError>;

    /// Destroys the given members and lowers the target size by as many.
    async fn destroy_instances(&self, id: &GroupId, ids: &[InstanceId]) -> Result<(), GroupError>;

    /// The target size.
    async fn size(&self, id: &GroupId) -> Result<u32, GroupError>;

    /// Sets the target size of a scaled group.
    async fn set_size(&self, id: &GroupId, size: u32) -> Result<(), GroupError>;

    /// Asks for a reconcile pass of the group now; returns how many passes had started, so a
    /// [`GroupDescription`] whose [`pass`](GroupDescription::pass) is higher was observed
    /// after this call. Not in Go InfraKit's API; the default answers that the plugin cannot.
    async fn trigger(&self, id: &GroupId) -> Result<u64, GroupError> {
        Err(GroupError::Other {
            message: format!("this group plugin cannot be asked for a pass of {id}"),
            transient: false,
        })
    }
}

impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allocation::Size(n) => write!(f, "size {n}"),
            Allocation::LogicalIds { ids, .. } => {
                let ids: Vec<&str> = ids.iter().map(LogicalId::as_str).collect();
                write!(f, "logical IDs [{}]", ids.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(allocation: Allocation) -> GroupSpec {
        GroupSpec::new(
            "managers",
            PluginSpec::new("simulator", json!({"image": "busybox", "zone": "a"})),
            PluginSpec::new(
                "swarm/manager",
                json!({"Docker": {"Host": "unix:///var/run/docker.sock"}}),
            ),
            allocation,
        )
    }

    fn field_of(json: &str) -> String {
        GroupSpec::from_json(json).unwrap_err().field
    }

    #[test]
    fn hash_is_stable_golden() {
        // If this changes, every deployed member looks outdated and is rolled: never change
        // the hash function without a migration. Computed independently with Python:
        // sha256(json.dumps({"Flavor":..,"Instance":..}, sort_keys=True,
        // separators=(",",":"))).hexdigest()[:32]
        assert_eq!(
            spec(Allocation::size(3)).config_hash(),
            "483f03dfc013220f2994a52e814f80d3"
        );
    }

    #[test]
    fn hash_ignores_allocation_and_policies() {
        let a = spec(Allocation::size(3));
        let mut b = spec(Allocation::logical_ids(["10.0.0.1"]));
        b.update.max_surge = 5;
        b.healing.replace_unhealthy_after = Some(Duration::from_secs(1));
        b.healing.replace_unknown_after = Some(Duration::from_secs(1));
        assert_eq!(a.config_hash(), b.config_hash());
    }

    #[test]
    fn healing_deadlines_must_be_positive() {
        let json = |healing: &str| {
            format!(
                r#"{{"ID":"w","Properties":{{"Allocation":{{"Size":1}},
                "Instance":{{"Plugin":"sim"}},"Flavor":{{"Plugin":"v"}},"Healing":{healing}}}}}"#
            )
        };
        assert_eq!(
            field_of(&json(r#"{"ReplaceUnknownAfter":"0s"}"#)),
            "Properties.Healing.ReplaceUnknownAfter"
        );
        assert_eq!(
            field_of(&json(r#"{"ReplaceUnhealthyAfter":"0s"}"#)),
            "Properties.Healing.ReplaceUnhealthyAfter"
        );
        let ok = GroupSpec::from_json(&json(r#"{"ReplaceUnknownAfter":"45s"}"#)).unwrap();
        assert_eq!(
            ok.healing.replace_unknown_after,
            Some(Duration::from_secs(45))
        );
        // Absent when unset, so specs written before the field existed read back the same.
        let text = serde_json::to_string(&GroupSpec::from_json(&json("{}")).unwrap()).unwrap();
        assert!(!text.contains("ReplaceUnknownAfter"), "{text}");
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = spec(Allocation::size(1));
        let mut b = a.clone();
        b.instance.properties = serde_json::from_str(r#"{"zone":"a","image":"busybox"}"#).unwrap();
        assert_eq!(a.config_hash(), b.config_hash());
        b.instance.properties["image"] = json!("alpine");
        assert_ne!(a.config_hash(), b.config_hash());
        let mut c = a.clone();
        c.flavor.plugin = "swarm/worker".into();
        assert_ne!(a.config_hash(), c.config_hash());
    }

    #[test]
    fn spec_round_trips_in_infrakit_shape() {
        let s = spec(
            Allocation::logical_ids(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
                .with_attachment("10.0.0.1", Attachment::new("vol-1", "ebs")),
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["ID"], "managers");
        assert_eq!(v["Properties"]["Allocation"]["LogicalIDs"][2], "10.0.0.3");
        assert_eq!(
            v["Properties"]["Allocation"]["Attachments"]["10.0.0.1"][0]["ID"],
            "vol-1"
        );
        assert_eq!(v["Properties"]["Instance"]["Plugin"], "simulator");
        assert_eq!(v["Properties"]["Updating"]["Deadline"], "10m");
        let back: GroupSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn allocation_both_or_neither_names_the_field() {
        let both = r#"{"ID":"g","Properties":{"Allocation":{"Size":1,"LogicalIDs":["a"]},
            "Instance":{"Plugin":"sim"},"Flavor":{"Plugin":"v"}}}"#;
        let err = GroupSpec::from_json(both).unwrap_err();
        assert_eq!(err.field, "Properties.Allocation");
        assert!(err.reason.contains("not both"), "{err}");
        let neither = r#"{"ID":"g","Properties":{"Allocation":{},
            "Instance":{"Plugin":"sim"},"Flavor":{"Plugin":"v"}}}"#;
        assert_eq!(field_of(neither), "Properties.Allocation");
    }

    #[test]
    fn validation_names_fields() {
        let cases = [
            (
                r#"{"ID":"","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "ID",
            ),
            (
                r#"{"ID":"a b","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "ID",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":""},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Instance.Plugin",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"a/b/c"}}}"#,
                "Properties.Flavor.Plugin",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"LogicalIDs":["a","b","a"]},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Allocation.LogicalIDs[2]",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"LogicalIDs":[]},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Allocation.LogicalIDs",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"LogicalIDs":["a"],"Attachments":{"b":[{"ID":"v","Type":"ebs"}]}},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Allocation.Attachments.b",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"LogicalIDs":["a","b"],"Attachments":{"a":[{"ID":"v","Type":"ebs"}],"b":[{"ID":"v","Type":"ebs"}]}},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Allocation.Attachments.b[0]",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"},"Updating":{"MaxSurge":0,"MaxUnavailable":0}}}"#,
                "Properties.Updating",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"},"Updating":{"Deadline":"ten minutes"}}}"#,
                "Properties.Updating.Deadline",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":-1},"Instance":{"Plugin":"s"},"Flavor":{"Plugin":"v"}}}"#,
                "Properties.Allocation.Size",
            ),
            (
                r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Flavor":{"Plugin":"v"}}}"#,
                "Properties",
            ),
        ];
        for (json, field) in cases {
            let err = GroupSpec::from_json(json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn missing_field_reason_names_it() {
        let err = GroupSpec::from_json(
            r#"{"ID":"g","Properties":{"Allocation":{"Size":1},"Flavor":{"Plugin":"v"}}}"#,
        )
        .unwrap_err();
        assert!(err.reason.contains("Instance"), "{err}");
    }

    #[test]
    fn not_leader_error_names_the_leader() {
        let e = GroupError::NotLeader {
            leader: Some("10.0.0.2:24864".into()),
        };
        assert_eq!(
            e.to_string(),
            "not the leader: the leader is 10.0.0.2:24864"
        );
        assert!(e.is_transient());
        assert!(!GroupError::UnknownGroup { id: "x".into() }.is_transient());
    }
}
