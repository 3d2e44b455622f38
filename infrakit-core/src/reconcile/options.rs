//! How the engine runs: [`EngineOptions`].

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
}
