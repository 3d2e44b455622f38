//! Layers: wrappers around a plugin, one concern each.
//!
//! A *layer* wraps an [`Instance`](crate::Instance) or a [`Flavor`](crate::Flavor) plugin (yours, ours, a remote one) in
//! another plugin of the same kind that adds exactly one concern and forwards everything
//! else:
//!
//! | wrapper | its layer | concern |
//! |---|---|---|
//! | [`Timeout`] | [`TimeoutLayer`] | each call bounded by its operation's deadline ([`CallTimeouts`]) |
//! | [`Retry`] | [`RetryLayer`] | transient errors retried with backoff ([`RetryPolicy`]); never a `provision` that may have acted |
//! | [`RateLimit`] | [`RateLimitLayer`] | each call waits for a token of a budget ([`CallLimit`]) |
//! | [`Metrics`] | [`MetricsLayer`] | a histogram and a counter per call, through the `metrics` facade |
//! | [`Logged`] | [`LogLayer`] | a `tracing` event per call: `debug` on success, `warn` on error |
//!
//! A wrapped plugin is a plugin of the same kind: register it in [`Plugins`](crate::Plugins),
//! wrap it again, or call it yourself. *Invariant:* every wrapper forwards every method,
//! [`Instance::events`](crate::Instance::events) and
//! [`Instance::call_limit`](crate::Instance::call_limit) included, so wrapping a plugin never hides
//! its events or its provider's budget from the engine. Wrap an `Arc<T>` to keep calling the
//! same plugin yourself ([`Arc`](std::sync::Arc) and [`Box`] of a plugin are plugins).
//!
//! # Stacking
//!
//! With the [`PluginExt`] methods, read from the inside out (the first call wraps the
//! plugin, the last one is the outermost):
//! `plugin.with_rate_limit(limit).with_timeouts(timeouts).with_retry(policy)`. Or with the
//! layers: each `…Layer` implements tower's [`Layer`] (re-exported here with [`Stack`] and
//! [`Identity`]), so a stack of layers is built once and applied to many plugins, and
//! `tower::ServiceBuilder` stacks them too.
//!
//! # Order
//!
//! From the outside in, the recommended stack is
//! `Logged(Metrics(Retry(Timeout(RateLimit(plugin)))))`:
//!
//! - **`RateLimit` innermost**: every attempt, retries included, spends a token, so retries
//!   cannot exceed the provider's budget.
//! - **`Timeout` around it**: the deadline bounds one *attempt*, its wait for a token
//!   included, so a starved budget fails the attempt at its deadline instead of hanging.
//! - **`Retry` around the timeout**: a timed-out attempt is a transient error that the retry
//!   may repeat (never for `provision`, see [`Retry`]). Put `Timeout` outside `Retry` instead
//!   and its deadline bounds the whole retried call.
//! - **`Metrics` and `Logged` outermost**: they see the call as its caller does: one sample
//!   and one event per call, with its total time (backoff and waits included) and its final
//!   outcome. Inside `Retry` they would count each attempt instead.
//!
//! The engine already bounds every call it makes by the group's deadlines, limits each
//! instance plugin's calls by its [`call_limit`](crate::Instance::call_limit), retries a failed pass
//! with backoff and records `infrakit_provider_call_seconds`; layers are for what it does not
//! do (retrying one call within a pass, a budget of your own, per-plugin metrics and logs)
//! and for calls made outside the engine. The engine's deadlines still bound a layered call
//! from the outside: a retry that outlasts them is cut there.
//!
//! ```
//! use infrakit_core::layer::{
//!     Layer, LogLayer, Logged, Metrics, MetricsLayer, PluginExt, RateLimit, RateLimitLayer,
//!     Retry, RetryLayer, RetryPolicy, Stack, Timeout, TimeoutLayer,
//! };
//! use infrakit_core::timeouts::CallTimeouts;
//! use infrakit_core::{CallLimit, Instance, InstanceSpec, Plugins, Simulator, Tags};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cloud = Simulator::new();
//!
//! // With the extension methods, from the inside out.
//! let stacked = cloud
//!     .clone()
//!     .with_rate_limit(CallLimit::per_second(50))
//!     .with_timeouts(CallTimeouts::all(Duration::from_secs(10)))
//!     .with_retry(RetryPolicy::default())
//!     .with_metrics("sim")
//!     .logged("sim");
//! let id = stacked.provision(InstanceSpec::default().with_tag("infrakit.group", "web")).await?;
//! assert_eq!(stacked.describe(&Tags::new(), false).await?[0].id, id);
//!
//! // The same stack as layers, built once (the innermost first) and applied to any plugin.
//! let layers = Stack::new(
//!     Stack::new(
//!         Stack::new(
//!             Stack::new(
//!                 RateLimitLayer::new(CallLimit::per_second(50)),
//!                 TimeoutLayer::new(CallTimeouts::all(Duration::from_secs(10))),
//!             ),
//!             RetryLayer::new(RetryPolicy::default()),
//!         ),
//!         MetricsLayer::new("sim"),
//!     ),
//!     LogLayer::new("sim"),
//! );
//! let same: Logged<Metrics<Retry<Timeout<RateLimit<Simulator>>>>> = layers.layer(cloud.clone());
//! assert_eq!(same.describe(&Tags::new(), false).await?.len(), 1);
//!
//! // A stacked plugin is a plugin: the engine calls it like any other.
//! let plugins = Plugins::new().instance("sim", stacked);
//! # let _ = plugins;
//! # Ok::<(), infrakit_core::InstanceError>(())
//! # }).unwrap();
//! ```

use crate::error::Classify;
use crate::flavor::FlavorError;
use crate::instance::InstanceError;
use std::fmt;

mod log;
mod metrics;
mod rate_limit;
mod retry;
mod timeout;

pub use self::log::{LogLayer, Logged};
pub use self::metrics::{Metrics, MetricsLayer};
pub use self::rate_limit::{RateLimit, RateLimitLayer};
pub use self::retry::{Retry, RetryLayer, RetryPolicy};
pub use self::timeout::{Timeout, TimeoutLayer};
pub use tower_layer::{Identity, Layer, Stack};

use crate::instance::CallLimit;
use crate::timeouts::CallTimeouts;

/// Stacking methods on every plugin: `plugin.with_timeouts(t).with_retry(p)` wraps the plugin
/// in a [`Timeout`], then that in a [`Retry`].
///
/// Implemented for every type, so that it works on any [`Instance`](crate::Instance), any
/// [`Flavor`](crate::Flavor) and any wrapper of them; the result is a plugin when the wrapped
/// value is one.
///
/// [`with_layer`](PluginExt::with_layer) is named apart from [`Layer::layer`] so that
/// `layer.layer(plugin)` and `plugin.with_layer(layer)` both read as they mean.
///
/// ```
/// use infrakit_core::layer::{PluginExt, RetryPolicy, TimeoutLayer};
/// use infrakit_core::timeouts::{CallTimeouts, PluginCall};
/// use infrakit_core::{CallLimit, Flavor, Instance, Simulator, flavor::Vanilla};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let cloud = Arc::new(Simulator::new());
/// let provider = Arc::clone(&cloud)
///     .with_layer(TimeoutLayer::new(CallTimeouts::new().set(PluginCall::Provision, Duration::from_secs(60))))
///     .with_retry(RetryPolicy::new().attempts(5))
///     .with_rate_limit(CallLimit::per_second(10));
/// let flavor = Vanilla.with_timeouts(CallTimeouts::all(Duration::from_secs(5))).logged("vanilla");
/// fn is_instance(_: &impl Instance) {}
/// fn is_flavor(_: &impl Flavor) {}
/// is_instance(&provider);
/// is_flavor(&flavor);
/// ```
pub trait PluginExt: Sized {
    /// Wraps `self` with a [`Layer`]: `plugin.with_layer(l)` is `l.layer(plugin)`.
    fn with_layer<L: Layer<Self>>(self, layer: L) -> L::Service {
        Layer::layer(&layer, self)
    }

    /// Bounds each call by its operation's deadline: [`Timeout`].
    fn with_timeouts(self, timeouts: CallTimeouts) -> Timeout<Self> {
        Timeout::new(self, timeouts)
    }

    /// Retries transient errors with backoff: [`Retry`].
    fn with_retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry::new(self, policy)
    }

    /// Makes each call wait for a token of a budget of its own: [`RateLimit`]. To share one
    /// budget among several plugins, apply one [`RateLimitLayer`] to each of them.
    fn with_rate_limit(self, limit: CallLimit) -> RateLimit<Self> {
        RateLimit::new(self, limit)
    }

    /// Records each call's duration and outcome, labelled `plugin = name`: [`Metrics`].
    fn with_metrics(self, name: impl Into<String>) -> Metrics<Self> {
        Metrics::new(self, name)
    }

    /// Logs each call with `tracing`, as `plugin = name`: [`Logged`].
    fn logged(self, name: impl Into<String>) -> Logged<Self> {
        Logged::new(self, name)
    }
}

impl<T> PluginExt for T {}

/// How a plugin call ended, as the metrics and log layers label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It returned `Ok`.
    Ok,
    /// It returned an error other than a timeout.
    Error,
    /// It missed its deadline.
    Timeout,
}

impl Outcome {
    /// The label: `ok`, `error` or `timeout`.
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }

    /// The outcome of a call's result.
    fn of<T, E: CallError>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(e) if e.timed_out() => Outcome::Timeout,
            Err(_) => Outcome::Error,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a plugin call, as the layers look at it.
trait CallError: Classify + fmt::Display {
    /// The call missed its deadline.
    fn timed_out(&self) -> bool;
}

impl CallError for InstanceError {
    fn timed_out(&self) -> bool {
        matches!(self, InstanceError::TimedOut { .. })
    }
}

impl CallError for FlavorError {
    fn timed_out(&self) -> bool {
        matches!(self, FlavorError::TimedOut { .. })
    }
}

/// A capture of `tracing` output for the layers' unit tests.
#[cfg(test)]
mod capture {
    use std::io;
    use std::sync::{Arc, Mutex};

    /// What a test's subscriber printed, one event a line.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// A subscriber that prints every event, `trace` and up, with its spans, here. Set it
        /// with `tracing::subscriber::set_default` in a current-thread test.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
            tracing_subscriber::fmt()
                .with_writer(self.clone())
                .with_max_level(tracing::Level::TRACE)
                // Plain text whatever features the workspace unifies (`ansi` colours).
                .with_ansi(false)
                .without_time()
                .finish()
        }

        /// The lines printed so far.
        pub(crate) fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }
}

/// A scripted plugin for the layers' unit tests.
#[cfg(test)]
mod stub {
    use crate::flavor::{Flavor, FlavorError, Health, Index};
    use crate::group::Allocation;
    use crate::id::InstanceId;
    use crate::instance::{
        CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvent,
        InstanceEvents, InstanceSpec,
    };
    use crate::tags::Tags;
    use crate::timeouts::PluginCall;
    use async_trait::async_trait;
    use futures::StreamExt;
    use serde_json::Value;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A plugin (instance and flavor) that records its calls and answers from a script: each
    /// call fails with the next scripted error of its kind, then succeeds once none is left.
    #[derive(Debug, Default)]
    pub(crate) struct Stub {
        calls: Mutex<Vec<(PluginCall, Instant)>>,
        instance_errors: Mutex<VecDeque<InstanceError>>,
        flavor_errors: Mutex<VecDeque<FlavorError>>,
        latency: Duration,
        hangs: bool,
        limit: Option<CallLimit>,
        batches: bool,
    }

    impl Stub {
        /// Answers every call at once with success.
        pub(crate) fn new() -> Self {
            Self::default()
        }

        /// Never answers.
        pub(crate) fn hanging() -> Self {
            Self {
                hangs: true,
                ..Self::default()
            }
        }

        /// The first `n` instance calls fail with `error`.
        pub(crate) fn failing(n: usize, error: InstanceError) -> Self {
            let stub = Self::default();
            stub.fail_next(n, error);
            stub
        }

        /// The first `n` flavor calls fail with `error`.
        pub(crate) fn failing_flavor(n: usize, error: FlavorError) -> Self {
            let stub = Self::default();
            stub.flavor_errors
                .lock()
                .unwrap()
                .extend(std::iter::repeat_n(error, n));
            stub
        }

        /// The next `n` instance calls fail with `error`.
        pub(crate) fn fail_next(&self, n: usize, error: InstanceError) {
            self.instance_errors
                .lock()
                .unwrap()
                .extend(std::iter::repeat_n(error, n));
        }

        /// Every call takes `latency`.
        pub(crate) fn latency(mut self, latency: Duration) -> Self {
            self.latency = latency;
            self
        }

        /// Judges health in batches (by default it answers per member).
        pub(crate) fn batching(mut self) -> Self {
            self.batches = true;
            self
        }

        /// Reports `limit` as its call limit.
        pub(crate) fn limit(mut self, limit: CallLimit) -> Self {
            self.limit = Some(limit);
            self
        }

        /// The operations called, in order.
        pub(crate) fn calls(&self) -> Vec<PluginCall> {
            self.calls.lock().unwrap().iter().map(|c| c.0).collect()
        }

        /// When each call started.
        pub(crate) fn call_times(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().iter().map(|c| c.1).collect()
        }

        async fn enter(&self, op: PluginCall) {
            self.calls.lock().unwrap().push((op, Instant::now()));
            if self.hangs {
                std::future::pending::<()>().await;
            }
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
        }

        async fn instance_call<T>(&self, op: PluginCall, ok: T) -> Result<T, InstanceError> {
            self.enter(op).await;
            match self.instance_errors.lock().unwrap().pop_front() {
                Some(e) => Err(e),
                None => Ok(ok),
            }
        }

        async fn flavor_call<T>(&self, op: PluginCall, ok: T) -> Result<T, FlavorError> {
            self.enter(op).await;
            match self.flavor_errors.lock().unwrap().pop_front() {
                Some(e) => Err(e),
                None => Ok(ok),
            }
        }
    }

    /// The description every stub `describe` returns.
    pub(crate) fn described() -> Description {
        Description::new("stub-1", Tags::from_iter([("role", "stub")]))
    }

    #[async_trait]
    impl Instance for Stub {
        async fn validate(&self, _: &Value) -> Result<(), InstanceError> {
            self.instance_call(PluginCall::Validate, ()).await
        }
        async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
            let id = InstanceId::new(format!("stub-{}", spec.tags.len()));
            self.instance_call(PluginCall::Provision, id).await
        }
        async fn label(&self, _: &InstanceId, _: &Tags) -> Result<(), InstanceError> {
            self.instance_call(PluginCall::Label, ()).await
        }
        async fn destroy(&self, _: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
            self.instance_call(PluginCall::Destroy, ()).await
        }
        async fn describe(&self, _: &Tags, _: bool) -> Result<Vec<Description>, InstanceError> {
            self.instance_call(PluginCall::Describe, vec![described()])
                .await
        }
        fn events(&self) -> Option<InstanceEvents> {
            Some(futures::stream::iter([InstanceEvent::Lagged]).boxed())
        }
        fn call_limit(&self) -> Option<CallLimit> {
            self.limit
        }
    }

    #[async_trait]
    impl Flavor for Stub {
        async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
            self.flavor_call(PluginCall::Validate, ()).await
        }
        async fn prepare(
            &self,
            _: &Value,
            spec: InstanceSpec,
            _: &Allocation,
            _: &Index,
        ) -> Result<InstanceSpec, FlavorError> {
            self.flavor_call(PluginCall::Prepare, spec.with_init("prepared"))
                .await
        }
        async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
            self.flavor_call(PluginCall::Healthy, Health::Healthy).await
        }
        async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
            self.flavor_call(PluginCall::Drain, ()).await
        }
        async fn healthy_batch(
            &self,
            _: &Value,
            descriptions: &[Description],
        ) -> Option<Result<Vec<Health>, FlavorError>> {
            if !self.batches {
                return None;
            }
            let all = vec![Health::Healthy; descriptions.len()];
            Some(self.flavor_call(PluginCall::Healthy, all).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stub::{Stub, described};
    use super::*;
    use crate::flavor::{Flavor, FlavorError, Health, Index};
    use crate::group::Allocation;
    use crate::instance::{DestroyContext, Instance, InstanceEvent, InstanceSpec};
    use crate::tags::Tags;
    use crate::timeouts::PluginCall;
    use futures::StreamExt;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    /// The recommended stack, from the inside out.
    type FullStack = Logged<Metrics<Retry<Timeout<RateLimit<Arc<Stub>>>>>>;

    fn full_stack(stub: Arc<Stub>) -> FullStack {
        stub.with_rate_limit(CallLimit::per_second(100))
            .with_timeouts(CallTimeouts::all(Duration::from_secs(1)))
            .with_retry(RetryPolicy::default())
            .with_metrics("stub")
            .logged("stub")
    }

    #[tokio::test(start_paused = true)]
    async fn every_wrapper_forwards_events_and_the_call_limit() {
        let limit = CallLimit::per_second(7).burst(3);
        let stub = Arc::new(Stub::new().limit(limit));
        let wrapped: Vec<Box<dyn Instance>> = vec![
            Box::new(Arc::clone(&stub).with_timeouts(CallTimeouts::new())),
            Box::new(Arc::clone(&stub).with_retry(RetryPolicy::default())),
            Box::new(Arc::clone(&stub).with_rate_limit(CallLimit::per_second(1))),
            Box::new(Arc::clone(&stub).with_metrics("stub")),
            Box::new(Arc::clone(&stub).logged("stub")),
            Box::new(full_stack(Arc::clone(&stub))),
        ];
        for plugin in wrapped {
            assert_eq!(plugin.call_limit(), Some(limit));
            let mut events = plugin.events().expect("the stub's events");
            assert_eq!(events.next().await, Some(InstanceEvent::Lagged));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_stack_forwards_every_call_and_its_result() {
        let stub = Arc::new(Stub::new());
        let plugin = full_stack(Arc::clone(&stub));
        let tags = Tags::from_iter([("role", "stub")]);
        Instance::validate(&plugin, &json!({})).await.unwrap();
        let id = plugin
            .provision(InstanceSpec::default().with_tag("a", "b"))
            .await
            .unwrap();
        assert_eq!(id.as_str(), "stub-1");
        plugin.label(&id, &tags).await.unwrap();
        plugin
            .destroy(&id, DestroyContext::ScaleDown)
            .await
            .unwrap();
        assert_eq!(
            plugin.describe(&tags, true).await.unwrap(),
            vec![described()]
        );

        let alloc = Allocation::size(1);
        Flavor::validate(&plugin, &json!({}), &alloc).await.unwrap();
        let spec = plugin
            .prepare(
                &json!({}),
                InstanceSpec::default(),
                &alloc,
                &Index {
                    group: "g".into(),
                    sequence: 1,
                },
            )
            .await
            .unwrap();
        assert_eq!(spec.init, "prepared");
        let health = plugin.healthy(&json!({}), &described()).await.unwrap();
        assert_eq!(health, Health::Healthy);
        plugin.drain(&json!({}), &described()).await.unwrap();

        assert_eq!(
            stub.calls(),
            [
                PluginCall::Validate,
                PluginCall::Provision,
                PluginCall::Label,
                PluginCall::Destroy,
                PluginCall::Describe,
                PluginCall::Validate,
                PluginCall::Prepare,
                PluginCall::Healthy,
                PluginCall::Drain,
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_stack_forwards_batch_health_and_its_absence() {
        let members = [described(), described(), described()];
        let batching = Arc::new(Stub::new().batching());
        let plugin = full_stack(Arc::clone(&batching));
        let all = plugin.healthy_batch(&json!({}), &members).await;
        assert_eq!(all, Some(Ok(vec![Health::Healthy; 3])));
        assert_eq!(
            batching.calls(),
            [PluginCall::Healthy],
            "one call for the batch"
        );

        let per_member = Arc::new(Stub::new());
        let plugin = full_stack(Arc::clone(&per_member));
        assert_eq!(plugin.healthy_batch(&json!({}), &members).await, None);
        assert!(per_member.calls().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_batch_fails_at_the_healthy_deadline() {
        let stub = Arc::new(Stub::hanging().batching());
        let timeouts = CallTimeouts::new().set(PluginCall::Healthy, Duration::from_secs(2));
        let plugin = Arc::clone(&stub).with_timeouts(timeouts);
        let start = tokio::time::Instant::now();
        let all = plugin.healthy_batch(&json!({}), &[described()]).await;
        assert_eq!(
            all,
            Some(Err(FlavorError::TimedOut {
                operation: PluginCall::Healthy,
                after: Duration::from_secs(2)
            }))
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_goes_through_the_stack_unchanged() {
        let error = InstanceError::Provider {
            message: "no such image".into(),
            transient: false,
        };
        let stub = Arc::new(Stub::failing(1, error.clone()));
        let plugin = full_stack(Arc::clone(&stub));
        assert_eq!(plugin.describe(&Tags::new(), false).await, Err(error));
        assert_eq!(stub.calls().len(), 1);
    }

    #[test]
    fn outcomes_name_timeouts_apart_from_other_errors() {
        let timed_out: Result<(), _> = Err(InstanceError::TimedOut {
            operation: PluginCall::Describe,
            after: Duration::from_secs(1),
        });
        let failed: Result<(), _> = Err(FlavorError::Refused {
            message: "no".into(),
        });
        assert_eq!(Outcome::of(&timed_out).as_str(), "timeout");
        assert_eq!(Outcome::of(&failed).as_str(), "error");
        assert_eq!(Outcome::of(&Ok::<(), FlavorError>(())).as_str(), "ok");
    }
}
