//! Deadlines on plugin calls: [`CallTimeouts`], one per operation.
//!
//! The engine bounds every call it makes to a plugin by these (a call that never returns
//! fails at its deadline instead of hanging its group), and the
//! [`Timeout`](crate::layer::Timeout) layer bounds calls made by anyone.

use crate::duration::serde as go_duration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One operation of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PluginCall {
    /// `Instance::validate` or `Flavor::validate`.
    Validate,
    /// `Instance::describe`.
    Describe,
    /// `Instance::provision`.
    Provision,
    /// `Instance::label`.
    Label,
    /// `Instance::destroy`.
    Destroy,
    /// `Flavor::prepare`.
    Prepare,
    /// `Flavor::healthy`.
    Healthy,
    /// `Flavor::drain`.
    Drain,
}

impl PluginCall {
    /// The operation's name, as metrics and logs label it (`"describe"`, `"provision"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginCall::Validate => "validate",
            PluginCall::Describe => "describe",
            PluginCall::Provision => "provision",
            PluginCall::Label => "label",
            PluginCall::Destroy => "destroy",
            PluginCall::Prepare => "prepare",
            PluginCall::Healthy => "healthy",
            PluginCall::Drain => "drain",
        }
    }
}

impl std::str::FromStr for PluginCall {
    type Err = crate::SpecError;

    /// The operation named by [`as_str`](PluginCall::as_str).
    ///
    /// ```
    /// use infrakit_core::timeouts::PluginCall;
    /// assert_eq!("healthy".parse::<PluginCall>().unwrap(), PluginCall::Healthy);
    /// assert!("heal".parse::<PluginCall>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ALL_CALLS
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| crate::SpecError::new("", format!("{name:?} is not a plugin operation")))
    }
}

impl fmt::Display for PluginCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long each plugin operation may take. Unset operations inherit: a group's timeouts
/// (its spec's `Options.Timeouts`, or the builder's per-group options) over the plugin's
/// ([`Plugins::timeouts`](crate::Plugins::timeouts)) over the engine's
/// ([`EngineOptions::timeouts`](crate::EngineOptions::timeouts)) over the defaults:
///
/// | operation | default | why |
/// |---|---|---|
/// | `validate`, `describe`, `label`, `prepare` | 30 s | one API call |
/// | `provision`, `destroy` | 2 min | a cloud API call that may wait for capacity |
/// | `healthy` | 10 s | a probe; a late answer is no answer |
/// | `drain` | 5 min | moving work off a member takes time |
///
/// In a spec, durations are Go text (`"500ms"`, `"2m"`); the keys are the operations'
/// names, capitalised:
///
/// ```
/// use infrakit_core::timeouts::{CallTimeouts, PluginCall};
/// use std::time::Duration;
///
/// let group: CallTimeouts = serde_json::from_str(r#"{"Healthy": "2s", "Provision": "1m"}"#).unwrap();
/// let plugin = CallTimeouts::new().set(PluginCall::Healthy, Duration::from_secs(5))
///     .set(PluginCall::Describe, Duration::from_secs(3));
/// let effective = group.or(&plugin);
/// assert_eq!(effective.get(PluginCall::Healthy), Duration::from_secs(2)); // the group's
/// assert_eq!(effective.get(PluginCall::Describe), Duration::from_secs(3)); // the plugin's
/// assert_eq!(effective.get(PluginCall::Drain), Duration::from_secs(300)); // the default
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallTimeouts {
    /// `validate` (instance and flavor).
    #[serde(
        rename = "Validate",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub validate: Option<Duration>,
    /// `describe`.
    #[serde(
        rename = "Describe",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub describe: Option<Duration>,
    /// `provision`.
    #[serde(
        rename = "Provision",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub provision: Option<Duration>,
    /// `label`.
    #[serde(
        rename = "Label",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<Duration>,
    /// `destroy`.
    #[serde(
        rename = "Destroy",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub destroy: Option<Duration>,
    /// `prepare`.
    #[serde(
        rename = "Prepare",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepare: Option<Duration>,
    /// `healthy`.
    #[serde(
        rename = "Healthy",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthy: Option<Duration>,
    /// `drain`.
    #[serde(
        rename = "Drain",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain: Option<Duration>,
}

impl CallTimeouts {
    /// Nothing set: every operation has its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every operation bounded by `limit`.
    pub fn all(limit: Duration) -> Self {
        let l = Some(limit);
        Self {
            validate: l,
            describe: l,
            provision: l,
            label: l,
            destroy: l,
            prepare: l,
            healthy: l,
            drain: l,
        }
    }

    /// The default deadline of an operation.
    pub fn default_for(call: PluginCall) -> Duration {
        match call {
            PluginCall::Validate
            | PluginCall::Describe
            | PluginCall::Label
            | PluginCall::Prepare => Duration::from_secs(30),
            PluginCall::Provision | PluginCall::Destroy => Duration::from_secs(120),
            PluginCall::Healthy => Duration::from_secs(10),
            PluginCall::Drain => Duration::from_secs(300),
        }
    }

    fn slot(&mut self, call: PluginCall) -> &mut Option<Duration> {
        match call {
            PluginCall::Validate => &mut self.validate,
            PluginCall::Describe => &mut self.describe,
            PluginCall::Provision => &mut self.provision,
            PluginCall::Label => &mut self.label,
            PluginCall::Destroy => &mut self.destroy,
            PluginCall::Prepare => &mut self.prepare,
            PluginCall::Healthy => &mut self.healthy,
            PluginCall::Drain => &mut self.drain,
        }
    }

    /// What is set for an operation, if anything.
    pub fn configured(&self, call: PluginCall) -> Option<Duration> {
        let mut copy = *self;
        *copy.slot(call)
    }

    /// Sets one operation's deadline.
    #[must_use]
    pub fn set(mut self, call: PluginCall, limit: Duration) -> Self {
        *self.slot(call) = Some(limit);
        self
    }

    /// The deadline of an operation: what is set, else the default.
    pub fn get(&self, call: PluginCall) -> Duration {
        self.configured(call)
            .unwrap_or_else(|| Self::default_for(call))
    }

    /// These, with what is unset here taken from `fallback`.
    #[must_use]
    pub fn or(&self, fallback: &CallTimeouts) -> CallTimeouts {
        let mut out = *self;
        for call in ALL_CALLS {
            let slot = out.slot(call);
            if slot.is_none() {
                *slot = fallback.configured(call);
            }
        }
        out
    }

    /// Checks that no deadline is zero; the error names the field (`Healthy`).
    pub fn validate(&self) -> Result<(), crate::SpecError> {
        for call in ALL_CALLS {
            if self.configured(call) == Some(Duration::ZERO) {
                let name = call.as_str();
                let mut field = name[..1].to_uppercase();
                field.push_str(&name[1..]);
                return Err(crate::SpecError::new(
                    field,
                    "must be positive (a zero deadline fails every call), or absent for the default",
                ));
            }
        }
        Ok(())
    }
}

/// Every operation, in a fixed order.
pub const ALL_CALLS: [PluginCall; 8] = [
    PluginCall::Validate,
    PluginCall::Describe,
    PluginCall::Provision,
    PluginCall::Label,
    PluginCall::Destroy,
    PluginCall::Prepare,
    PluginCall::Healthy,
    PluginCall::Drain,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_deadline_is_refused_by_name() {
        let t: CallTimeouts = serde_json::from_str(r#"{"Drain": 0}"#).unwrap();
        assert_eq!(t.validate().unwrap_err().field, "Drain");
        assert!(serde_json::from_str::<CallTimeouts>(r#"{"Helthy": "1s"}"#).is_err());
    }

    #[test]
    fn round_trips_only_what_is_set() {
        let t = CallTimeouts::new().set(PluginCall::Healthy, Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"Healthy":"1500ms"}"#
        );
    }
}
