//! How the engine runs: [`EngineOptions`].

use crate::duration::serde as go_duration;
use crate::instance::CallLimit;
use crate::spec_error::SpecError;
use crate::timeouts::CallTimeouts;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the engine runs. The defaults suit a cloud provider; tests and demos shorten them.
///
/// | option | default |
/// |---|---|
/// | [`resync`](Self::resync) | 10 s |
/// | [`parallelism`](Self::parallelism) | 16 calls per group |
/// | [`backoff_base`](Self::backoff_base) / [`backoff_max`](Self::backoff_max) | 200 ms / 30 s |
/// | [`settle`](Self::settle) | 100 ms |
/// | [`describe_lag`](Self::describe_lag) | 60 s |
/// | [`fence_ttl`](Self::fence_ttl) | 1 s |
/// | [`pass_timeout`](Self::pass_timeout) | 10 min |
/// | [`timeouts`](Self::timeouts) | per operation, see [`CallTimeouts`] |
/// | [`wake_on_events`](Self::wake_on_events) | on |
///
/// A group can set its own resync, parallelism, settle, pass timeout, call timeouts, events
/// and call limit ([`GroupOptions`]: its spec's `Properties.Options`, or the builder's
/// [`group_options`](crate::ManagerBuilder::group_options)).
///
/// Provider call limits are not here: they belong to each plugin (see
/// [`Plugins`](crate::Plugins)).
///
/// Built from the default with one method per option (the struct may grow):
///
/// ```
/// use infrakit_core::EngineOptions;
/// use std::time::Duration;
///
/// let options = EngineOptions::default()
///     .resync(Duration::from_secs(1))
///     .settle(Duration::from_millis(10));
/// assert_eq!(options.resync, Duration::from_secs(1));
/// assert_eq!(options.parallelism, 16);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Period of the resync pass that catches what events miss.
    pub resync: Duration,
    /// Provider and flavor calls in flight at once, per group.
    pub parallelism: usize,
    /// First retry delay after a failed pass.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Delay before re-observing after a pass that changed something.
    pub settle: Duration,
    /// How long a provisioned instance may stay invisible to `describe` (eventually
    /// consistent providers) before it is no longer counted.
    pub describe_lag: Duration,
    /// How long a check of the leader's epoch against the store is trusted before a provider
    /// mutation needs a new one; a new leader waits this long after claiming its epoch before
    /// its first mutation, so a deposed leader's last check has expired by then (see
    /// [`FencedStore`](crate::FencedStore)).
    pub fence_ttl: Duration,
    /// The longest a reconcile pass may run (observe, plan, execute); one that takes longer
    /// is abandoned, reported (`last_error`, [`PassFailed`](crate::EngineEvent::PassFailed))
    /// and retried with backoff.
    pub pass_timeout: Duration,
    /// Deadlines on plugin calls; unset operations have [`CallTimeouts`]' defaults.
    pub timeouts: CallTimeouts,
    /// Whether provider events wake a group (otherwise only resyncs, deadlines and requests).
    pub wake_on_events: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(10),
            parallelism: 16,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            settle: Duration::from_millis(100),
            describe_lag: Duration::from_secs(60),
            fence_ttl: Duration::from_secs(1),
            pass_timeout: Duration::from_secs(600),
            timeouts: CallTimeouts::default(),
            wake_on_events: true,
        }
    }
}

impl EngineOptions {
    /// Sets the period of the resync pass.
    pub fn resync(mut self, resync: Duration) -> Self {
        self.resync = resync;
        self
    }

    /// Sets how many provider and flavor calls a group has in flight at once (at least 1).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Sets the first retry delay after a failed pass.
    pub fn backoff_base(mut self, backoff_base: Duration) -> Self {
        self.backoff_base = backoff_base;
        self
    }

    /// Sets the longest retry delay.
    pub fn backoff_max(mut self, backoff_max: Duration) -> Self {
        self.backoff_max = backoff_max;
        self
    }

    /// Sets the delay before re-observing after a pass that changed something.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets how long a provisioned instance may stay invisible to `describe`.
    pub fn describe_lag(mut self, describe_lag: Duration) -> Self {
        self.describe_lag = describe_lag;
        self
    }

    /// Sets how long an epoch check is trusted (and a new leader's wait before acting).
    pub fn fence_ttl(mut self, fence_ttl: Duration) -> Self {
        self.fence_ttl = fence_ttl;
        self
    }

    /// Sets the longest a pass may run.
    pub fn pass_timeout(mut self, pass_timeout: Duration) -> Self {
        self.pass_timeout = pass_timeout;
        self
    }

    /// Sets the deadlines of plugin calls.
    pub fn timeouts(mut self, timeouts: CallTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets whether provider events wake groups.
    pub fn wake_on_events(mut self, wake: bool) -> Self {
        self.wake_on_events = wake;
        self
    }

    /// These options with a group's own applied over them.
    pub fn for_group(&self, group: &GroupOptions) -> EngineOptions {
        let mut o = self.clone();
        if let Some(r) = group.resync {
            o.resync = r;
        }
        if let Some(p) = group.parallelism {
            o.parallelism = p.max(1);
        }
        if let Some(s) = group.settle {
            o.settle = s;
        }
        if let Some(t) = group.pass_timeout {
            o.pass_timeout = t;
        }
        if let Some(w) = group.wake_on_events {
            o.wake_on_events = w;
        }
        o.timeouts = group.timeouts.or(&self.timeouts);
        o
    }
}

/// One group's own engine options; what is unset comes from the manager's
/// [`EngineOptions`]. In a spec, under `Properties.Options` (durations are Go text):
///
/// ```
/// use infrakit_core::{GroupSpec, reconcile::GroupOptions, timeouts::PluginCall};
/// use std::time::Duration;
/// let spec = GroupSpec::from_json(r#"{"ID": "db", "Properties": {
///     "Allocation": {"Size": 3},
///     "Instance": {"Plugin": "simulator", "Properties": {}},
///     "Flavor": {"Plugin": "vanilla", "Properties": {}},
///     "Options": {"Resync": "1m", "Parallelism": 1, "Timeouts": {"Healthy": "2s"},
///                 "RateLimit": {"PerSecond": 2}}}}"#).unwrap();
/// assert_eq!(spec.options.resync, Some(Duration::from_secs(60)));
/// assert_eq!(spec.options.timeouts.get(PluginCall::Healthy), Duration::from_secs(2));
///
/// // Built in code (for the builder's `group_options`):
/// let options = GroupOptions::new().resync(Duration::from_secs(5)).parallelism(4);
/// assert_eq!(options.parallelism, Some(4));
///
/// let err = GroupSpec::from_json(r#"{"ID": "db", "Properties": {
///     "Allocation": {"Size": 3}, "Instance": {"Plugin": "s"}, "Flavor": {"Plugin": "v"},
///     "Options": {"Parallelism": 0}}}"#).unwrap_err();
/// assert_eq!(err.field, "Properties.Options.Parallelism");
/// ```
///
/// The options are not part of the [configuration hash](crate::GroupSpec::config_hash):
/// changing them never rolls members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GroupOptions {
    /// The period of the group's resync pass.
    #[serde(
        rename = "Resync",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resync: Option<Duration>,
    /// Provider and flavor calls the group has in flight at once.
    #[serde(rename = "Parallelism", skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// The delay before the group looks again after a pass that acted (its healing
    /// wake-up).
    #[serde(
        rename = "Settle",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub settle: Option<Duration>,
    /// The longest one of the group's passes may run.
    #[serde(
        rename = "PassTimeout",
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pass_timeout: Option<Duration>,
    /// Whether provider events wake the group.
    #[serde(rename = "WakeOnEvents", skip_serializing_if = "Option::is_none")]
    pub wake_on_events: Option<bool>,
    /// Deadlines of the group's plugin calls (over the plugin's and the engine's).
    #[serde(rename = "Timeouts", skip_serializing_if = "is_default")]
    pub timeouts: CallTimeouts,
    /// A call limit of the group's own on its instance plugin, on top of the plugin's
    /// shared one (as `Properties.Instance.RateLimit`; when both are set, both apply).
    #[serde(rename = "RateLimit", skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<CallLimit>,
}

fn is_default(t: &CallTimeouts) -> bool {
    *t == CallTimeouts::default()
}

impl GroupOptions {
    /// Nothing set: the engine's options apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the resync period.
    #[must_use]
    pub fn resync(mut self, resync: Duration) -> Self {
        self.resync = Some(resync);
        self
    }

    /// Sets the calls in flight at once (at least 1).
    #[must_use]
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = Some(parallelism.max(1));
        self
    }

    /// Sets the delay before looking again after acting.
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = Some(settle);
        self
    }

    /// Sets the longest a pass may run.
    #[must_use]
    pub fn pass_timeout(mut self, pass_timeout: Duration) -> Self {
        self.pass_timeout = Some(pass_timeout);
        self
    }

    /// Sets whether provider events wake the group.
    #[must_use]
    pub fn wake_on_events(mut self, wake: bool) -> Self {
        self.wake_on_events = Some(wake);
        self
    }

    /// Sets the deadlines of the group's plugin calls.
    #[must_use]
    pub fn timeouts(mut self, timeouts: CallTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets a call limit of the group's own.
    #[must_use]
    pub fn rate_limit(mut self, limit: CallLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// These, with what is unset taken from `fallback`.
    #[must_use]
    pub fn or(&self, fallback: &GroupOptions) -> GroupOptions {
        GroupOptions {
            resync: self.resync.or(fallback.resync),
            parallelism: self.parallelism.or(fallback.parallelism),
            settle: self.settle.or(fallback.settle),
            pass_timeout: self.pass_timeout.or(fallback.pass_timeout),
            wake_on_events: self.wake_on_events.or(fallback.wake_on_events),
            timeouts: self.timeouts.or(&fallback.timeouts),
            rate_limit: self.rate_limit.or(fallback.rate_limit),
        }
    }

    /// Checks the options; errors name the field (`Parallelism`, `Timeouts.Healthy`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.parallelism == Some(0) {
            return Err(SpecError::new(
                "Parallelism",
                "must be at least 1: no call could ever run",
            ));
        }
        for (field, value) in [("Resync", self.resync), ("PassTimeout", self.pass_timeout)] {
            if value == Some(Duration::ZERO) {
                return Err(SpecError::new(
                    field,
                    "must be positive, or absent for the default",
                ));
            }
        }
        if self.rate_limit.is_some_and(|l| l.per_second == 0) {
            return Err(SpecError::new(
                "RateLimit.PerSecond",
                "must be at least 1 call per second",
            ));
        }
        self.timeouts.validate().map_err(|e| e.under("Timeouts"))
    }
}
