//! [`Retry`]: transient errors retried with exponential backoff, but never a `provision` that
//! may have acted.

use super::Layer;
use crate::error::Classify;
use crate::flavor::{Flavor, FlavorError, Health, Index};
use crate::group::Allocation;
use crate::id::InstanceId;
use crate::instance::{
    CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvents, InstanceSpec,
};
use crate::reconcile::Backoff;
use crate::tags::Tags;
use crate::timeouts::PluginCall;
use async_trait::async_trait;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// How [`Retry`] retries: how many attempts in all, and the backoff between them.
///
/// The delay before the *n*-th retry is `base · 2ⁿ⁻¹`, at most `max`; a provider's
/// [`retry_after`](Classify::retry_after) hint is waited instead when it is longer (cut to
/// `max` too, so one call's retries stay bounded). The default: 3 attempts, 100 ms then
/// 200 ms between them, never more than 2 s.
///
/// ```
/// use infrakit_core::layer::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::new()
///     .attempts(5)
///     .base(Duration::from_millis(50))
///     .max(Duration::from_secs(1));
/// assert_eq!(policy.attempts, 5);
/// assert_eq!(RetryPolicy::default().attempts, 3);
/// assert_eq!(RetryPolicy::default().base, Duration::from_millis(100));
/// assert_eq!(RetryPolicy::default().max, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first one included: `1` never retries (`0` counts as `1`).
    pub attempts: u32,
    /// The delay before the first retry; it doubles at each next one.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The default policy: 3 attempts, from 100 ms to 2 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the attempts in all, the first one included.
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Sets the delay before the first retry.
    #[must_use]
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the longest delay between two attempts.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }
}

/// A plugin whose transient errors ([`Classify::is_transient`]) are retried with exponential
/// backoff ([`RetryPolicy`]), honouring a provider's retry-after hint. A permanent error is
/// returned at once, and so is the last attempt's error. Each retry is a `tracing` debug
/// event (operation, attempt, delay, error).
///
/// # What is retried
///
/// | call | retried on |
/// |---|---|
/// | `validate`, `describe`, `label`, `destroy`; flavor `validate`, `prepare`, `healthy`, `drain` | any transient error |
/// | `provision` | only [`Throttled`](InstanceError::Throttled) and [`Conflict`](InstanceError::Conflict) |
///
/// **`provision` is not idempotent.** A throttled or conflicting provision was refused by
/// the provider before it acted, so repeating it cannot create a second instance. Any other
/// failure ([`TimedOut`](InstanceError::TimedOut), [`Unavailable`](InstanceError::Unavailable),
/// a lost response, a transient provider error) may come after the instance was created:
/// repeating it could create two. Such an error is returned at once; the engine's next
/// `describe` finds the instance by its tags if it exists, and provisions again only if it
/// does not.
///
/// The other calls are safe to repeat: the reads (`validate`, `describe`, flavor `prepare`
/// and `healthy`) change nothing, `label` sets the same tags again, and `drain` of a drained
/// member is a no-op. A `destroy` whose earlier attempt did act answers
/// [`NotFound`](InstanceError::NotFound) on its retry, which is what the contract says of an
/// instance already gone.
///
/// ```
/// use infrakit_core::layer::{Retry, RetryPolicy};
/// use infrakit_core::simulator::Fault;
/// use infrakit_core::{Instance, InstanceSpec, Simulator, Tags};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let cloud = Simulator::new();
/// let retried = Retry::new(cloud.clone(), RetryPolicy::default());
///
/// // Two outages, then an answer: `describe` is a read, retried.
/// cloud.fail_next(2, Fault::Unavailable);
/// assert!(retried.describe(&Tags::new(), false).await.is_ok());
///
/// // A throttled provision was refused before anything happened: retried.
/// cloud.fail_next(1, Fault::Throttled);
/// assert!(retried.provision(InstanceSpec::default()).await.is_ok());
///
/// // An outage during a provision may hide a created instance: returned at once.
/// cloud.fail_next(1, Fault::Unavailable);
/// assert!(retried.provision(InstanceSpec::default()).await.is_err());
/// assert_eq!(cloud.len(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Retry<P> {
    plugin: P,
    policy: RetryPolicy,
}

impl<P> Retry<P> {
    /// Retries the calls of `plugin` by `policy`.
    pub fn new(plugin: P, policy: RetryPolicy) -> Self {
        Self { plugin, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wrapped plugin.
    pub fn get_ref(&self) -> &P {
        &self.plugin
    }

    /// The wrapped plugin, mutably.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.plugin
    }

    /// Unwraps the plugin.
    pub fn into_inner(self) -> P {
        self.plugin
    }

    /// Runs `call` until it succeeds, fails in a way `retryable` refuses, or has used every
    /// attempt, sleeping the backoff between attempts.
    async fn run<T, E, C, F>(
        &self,
        operation: PluginCall,
        retryable: fn(&E) -> bool,
        mut call: C,
    ) -> Result<T, E>
    where
        C: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
        E: Classify + fmt::Display,
    {
        let attempts = self.policy.attempts.max(1);
        let mut backoff = Backoff::new(self.policy.base, self.policy.max);
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if attempt < attempts && retryable(&error) => {
                    let delay = backoff.next_delay(error.retry_after());
                    tracing::debug!(
                        op = operation.as_str(),
                        attempt,
                        attempts,
                        delay = ?delay,
                        error = %error,
                        "retrying a plugin call after a transient error"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// Any transient error.
fn transient<E: Classify>(error: &E) -> bool {
    error.is_transient()
}

/// The provider refused the provision before acting, so repeating it creates nothing twice.
fn refused_before_acting(error: &InstanceError) -> bool {
    matches!(
        error,
        InstanceError::Throttled { .. } | InstanceError::Conflict { .. }
    )
}

#[async_trait]
impl<P: Instance> Instance for Retry<P> {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.run(PluginCall::Validate, transient, move || {
            self.plugin.validate(properties)
        })
        .await
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let result = self
            .run(PluginCall::Provision, refused_before_acting, || {
                self.plugin.provision(spec.clone())
            })
            .await;
        if let Err(error) = &result
            && error.is_transient()
            && !refused_before_acting(error)
        {
            tracing::debug!(
                op = PluginCall::Provision.as_str(),
                error = %error,
                "not retrying a provision that may have acted"
            );
        }
        result
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.run(PluginCall::Label, transient, move || {
            self.plugin.label(id, labels)
        })
        .await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.run(PluginCall::Destroy, transient, move || {
            self.plugin.destroy(id, context)
        })
        .await
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        self.run(PluginCall::Describe, transient, move || {
            self.plugin.describe(tags, with_properties)
        })
        .await
    }

    fn events(&self) -> Option<InstanceEvents> {
        self.plugin.events()
    }

    fn call_limit(&self) -> Option<CallLimit> {
        self.plugin.call_limit()
    }
}

#[async_trait]
impl<P: Flavor> Flavor for Retry<P> {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        self.run(PluginCall::Validate, transient, move || {
            self.plugin.validate(properties, allocation)
        })
        .await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        // A read: it only completes the spec, so every transient error is retried.
        self.run(PluginCall::Prepare, transient, || {
            self.plugin
                .prepare(properties, spec.clone(), allocation, index)
        })
        .await
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        self.run(PluginCall::Healthy, transient, move || {
            self.plugin.healthy(properties, description)
        })
        .await
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        self.run(PluginCall::Drain, transient, move || {
            self.plugin.drain(properties, description)
        })
        .await
    }

    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        self.run(PluginCall::Healthy, transient, move || async move {
            self.plugin
                .healthy_batch(properties, descriptions)
                .await
                .transpose()
        })
        .await
        .transpose()
    }
}

/// Wraps plugins in a [`Retry`] with the same policy.
///
/// ```
/// use infrakit_core::layer::{Layer, Retry, RetryLayer, RetryPolicy};
/// use infrakit_core::{Simulator, flavor::Vanilla};
///
/// let layer = RetryLayer::new(RetryPolicy::new().attempts(4));
/// let provider: Retry<Simulator> = layer.layer(Simulator::new());
/// let flavor: Retry<Vanilla> = layer.layer(Vanilla);
/// assert_eq!(provider.policy().attempts, 4);
/// assert_eq!(flavor.policy(), provider.policy());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// Retries by `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<P> Layer<P> for RetryLayer {
    type Service = Retry<P>;

    fn layer(&self, plugin: P) -> Retry<P> {
        Retry::new(plugin, self.policy)
    }
}

#[cfg(test)]
mod tests {
    use super::super::capture::Captured;
    use super::super::stub::{Stub, described};
    use super::*;
    use crate::layer::PluginExt;
    use crate::timeouts::CallTimeouts;
    use serde_json::json;
    use std::sync::Arc;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    fn unavailable() -> InstanceError {
        InstanceError::Unavailable {
            message: "connection reset".into(),
        }
    }

    fn throttled(retry_after: Option<Duration>) -> InstanceError {
        InstanceError::Throttled {
            message: "Rate exceeded".into(),
            retry_after,
        }
    }

    fn retried(stub: &Arc<Stub>) -> Retry<Arc<Stub>> {
        Retry::new(Arc::clone(stub), RetryPolicy::default())
    }

    /// When each call started, from `start`.
    fn offsets(stub: &Stub, start: Instant) -> Vec<Duration> {
        stub.call_times().iter().map(|t| *t - start).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_after_doubling_delays() {
        let stub = Arc::new(Stub::failing(2, unavailable()));
        let start = Instant::now();
        let found = retried(&stub).describe(&Tags::new(), false).await.unwrap();
        assert_eq!(found, vec![described()]);
        assert_eq!(offsets(&stub, start), [Duration::ZERO, 100 * MS, 300 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_attempts_with_the_last_error() {
        let stub = Arc::new(Stub::failing(10, unavailable()));
        let policy = RetryPolicy::new()
            .attempts(4)
            .max(Duration::from_millis(250));
        let start = Instant::now();
        let result = Retry::new(Arc::clone(&stub), policy)
            .label(&"i-1".into(), &Tags::new())
            .await;
        assert_eq!(result, Err(unavailable()));
        // 100 ms, 200 ms, then capped at 250 ms.
        assert_eq!(
            offsets(&stub, start),
            [Duration::ZERO, 100 * MS, 300 * MS, 550 * MS]
        );
        assert_eq!(start.elapsed(), 550 * MS, "no sleep after the last attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn one_attempt_never_retries() {
        let stub = Arc::new(Stub::failing(1, unavailable()));
        let plugin = Retry::new(Arc::clone(&stub), RetryPolicy::new().attempts(0));
        assert_eq!(
            plugin.describe(&Tags::new(), false).await,
            Err(unavailable())
        );
        assert_eq!(stub.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_never_retried() {
        let denied = InstanceError::Provider {
            message: "UnauthorizedOperation".into(),
            transient: false,
        };
        let stub = Arc::new(Stub::failing(3, denied.clone()));
        let start = Instant::now();
        let result = retried(&stub)
            .destroy(&"i-1".into(), DestroyContext::Terminate)
            .await;
        assert_eq!(result, Err(denied));
        assert_eq!(stub.calls().len(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_hint_longer_than_the_backoff_is_waited() {
        let stub = Arc::new(Stub::failing(1, throttled(Some(700 * MS))));
        let start = Instant::now();
        retried(&stub).describe(&Tags::new(), false).await.unwrap();
        assert_eq!(offsets(&stub, start), [Duration::ZERO, 700 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_or_unavailable_provision_is_returned_at_once() {
        let timed_out = InstanceError::TimedOut {
            operation: PluginCall::Provision,
            after: Duration::from_secs(120),
        };
        let lost = InstanceError::Provider {
            message: "connection closed mid-response".into(),
            transient: true,
        };
        for error in [timed_out, unavailable(), lost] {
            let stub = Arc::new(Stub::failing(1, error.clone()));
            let result = retried(&stub).provision(InstanceSpec::default()).await;
            assert_eq!(result, Err(error));
            assert_eq!(stub.calls(), [PluginCall::Provision], "provision repeated");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_or_conflicting_provision_is_retried() {
        let conflict = InstanceError::Conflict {
            message: "10.0.0.5 is in use".into(),
        };
        for error in [throttled(None), conflict] {
            let stub = Arc::new(Stub::failing(2, error));
            let start = Instant::now();
            let id = retried(&stub)
                .provision(InstanceSpec::default())
                .await
                .unwrap();
            assert_eq!(id.as_str(), "stub-0");
            assert_eq!(offsets(&stub, start), [Duration::ZERO, 100 * MS, 300 * MS]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timed_out_attempts_of_a_read_are_retried() {
        // The recommended order: each attempt bounded, the attempts retried.
        let stub = Arc::new(Stub::hanging());
        let deadline = Duration::from_secs(1);
        let plugin = Arc::clone(&stub)
            .with_timeouts(CallTimeouts::all(deadline))
            .with_retry(RetryPolicy::default());
        let start = Instant::now();
        let err = plugin.describe(&Tags::new(), false).await.unwrap_err();
        assert!(matches!(err, InstanceError::TimedOut { .. }), "{err:?}");
        assert_eq!(stub.calls().len(), 3);
        assert_eq!(start.elapsed(), 3 * deadline + 300 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn flavor_calls_are_retried_on_transient_errors_only() {
        let unavailable = FlavorError::Unavailable {
            message: "no swarm manager answers".into(),
            retry_after: None,
        };
        let props = json!({});
        let alloc = Allocation::size(1);
        let index = Index {
            group: "g".into(),
            sequence: 1,
        };

        let stub = Arc::new(Stub::failing_flavor(2, unavailable.clone()));
        let spec = Retry::new(Arc::clone(&stub), RetryPolicy::default())
            .prepare(&props, InstanceSpec::default(), &alloc, &index)
            .await
            .unwrap();
        assert_eq!(spec.init, "prepared");
        assert_eq!(stub.calls().len(), 3, "prepare is a read: retried");

        let stub = Arc::new(Stub::failing_flavor(1, unavailable));
        Retry::new(Arc::clone(&stub), RetryPolicy::default())
            .drain(&props, &described())
            .await
            .unwrap();
        assert_eq!(stub.calls().len(), 2, "drain is retried");

        let refused = FlavorError::Refused {
            message: "the last manager".into(),
        };
        let stub = Arc::new(Stub::failing_flavor(1, refused.clone()));
        let result = Retry::new(Arc::clone(&stub), RetryPolicy::default())
            .drain(&props, &described())
            .await;
        assert_eq!(result, Err(refused));
        assert_eq!(stub.calls().len(), 1, "a refusal is permanent");
    }

    #[tokio::test(start_paused = true)]
    async fn each_retry_is_a_debug_event() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber());
        let stub = Arc::new(Stub::failing(2, unavailable()));
        retried(&stub).describe(&Tags::new(), false).await.unwrap();
        let lines = captured.lines();
        let retries: Vec<&String> = lines.iter().filter(|l| l.contains("retrying")).collect();
        assert_eq!(retries.len(), 2, "{lines:#?}");
        assert!(retries[0].contains("DEBUG"), "{}", retries[0]);
        assert!(retries[0].contains("op=\"describe\""), "{}", retries[0]);
        assert!(retries[1].contains("attempt=2"), "{}", retries[1]);
        assert!(retries[1].contains("delay=200ms"), "{}", retries[1]);
    }
}
