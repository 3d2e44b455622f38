//! [`Metrics`]: each call's duration and outcome, through the `metrics` facade.

use super::{CallError, Layer, Outcome};
use crate::flavor::{Flavor, FlavorError, Health, Index};
use crate::group::Allocation;
use crate::id::InstanceId;
use crate::instance::{
    CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvents, InstanceSpec,
};
use crate::tags::Tags;
use crate::timeouts::PluginCall;
use async_trait::async_trait;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The histogram of call durations.
const CALL_SECONDS: &str = "infrakit_plugin_call_seconds";
/// The counter of calls.
const CALLS_TOTAL: &str = "infrakit_plugin_calls_total";

/// A plugin whose every call is recorded through the [`metrics`](https://docs.rs/metrics)
/// facade (install any recorder, e.g. a Prometheus exporter, to see them):
///
/// - `infrakit_plugin_call_seconds`, a histogram of the call's duration in seconds;
/// - `infrakit_plugin_calls_total`, a counter of calls;
///
/// both labelled `plugin` (the name given here), `op` (the operation:
/// [`PluginCall::as_str`], `describe`, `provision`, …) and `outcome` (`ok`, `error`, or
/// `timeout` for a [`TimedOut`](InstanceError::TimedOut) error). A call dropped before it
/// ends (its caller stopped waiting) is not recorded.
///
/// Outside a [`Retry`](super::Retry), a sample is a whole call, retries and backoff
/// included; inside, one attempt.
///
/// ```
/// use infrakit_core::layer::Metrics;
/// use infrakit_core::{Instance, Simulator, Tags};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let measured = Metrics::new(Simulator::new(), "sim");
/// // Records infrakit_plugin_calls_total{plugin="sim",op="describe",outcome="ok"} 1
/// assert!(measured.describe(&Tags::new(), false).await?.is_empty());
/// assert_eq!(measured.name(), "sim");
/// # Ok::<(), infrakit_core::InstanceError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Metrics<P> {
    plugin: P,
    name: Arc<str>,
}

impl<P> Metrics<P> {
    /// Records the calls of `plugin` with the label `plugin = name`.
    pub fn new(plugin: P, name: impl Into<String>) -> Self {
        Self {
            plugin,
            name: Arc::from(name.into()),
        }
    }

    /// The `plugin` label.
    pub fn name(&self) -> &str {
        &self.name
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

    /// Runs `call` and records its duration and outcome.
    async fn measured<T, E: CallError>(
        &self,
        operation: PluginCall,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let start = Instant::now();
        let result = call.await;
        self.record(operation, start.elapsed(), &result);
        result
    }

    /// Records one call's sample and count.
    fn record<T, E: CallError>(
        &self,
        operation: PluginCall,
        elapsed: Duration,
        result: &Result<T, E>,
    ) {
        let outcome = Outcome::of(result).as_str();
        let op = operation.as_str();
        ::metrics::histogram!(
            CALL_SECONDS,
            "plugin" => Arc::clone(&self.name),
            "op" => op,
            "outcome" => outcome
        )
        .record(elapsed.as_secs_f64());
        ::metrics::counter!(
            CALLS_TOTAL,
            "plugin" => Arc::clone(&self.name),
            "op" => op,
            "outcome" => outcome
        )
        .increment(1);
    }
}

#[async_trait]
impl<P: Instance> Instance for Metrics<P> {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.measured(PluginCall::Validate, self.plugin.validate(properties))
            .await
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.measured(PluginCall::Provision, self.plugin.provision(spec))
            .await
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.measured(PluginCall::Label, self.plugin.label(id, labels))
            .await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.measured(PluginCall::Destroy, self.plugin.destroy(id, context))
            .await
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let call = self.plugin.describe(tags, with_properties);
        self.measured(PluginCall::Describe, call).await
    }

    fn events(&self) -> Option<InstanceEvents> {
        self.plugin.events()
    }

    fn call_limit(&self) -> Option<CallLimit> {
        self.plugin.call_limit()
    }
}

#[async_trait]
impl<P: Flavor> Flavor for Metrics<P> {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.validate(properties, allocation);
        self.measured(PluginCall::Validate, call).await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let call = self.plugin.prepare(properties, spec, allocation, index);
        self.measured(PluginCall::Prepare, call).await
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        let call = self.plugin.healthy(properties, description);
        self.measured(PluginCall::Healthy, call).await
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.drain(properties, description);
        self.measured(PluginCall::Drain, call).await
    }

    /// Recorded as one `healthy` call when the flavor answers the batch; nothing when it
    /// answers per member (its per-member calls are recorded).
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let start = Instant::now();
        let answer = self.plugin.healthy_batch(properties, descriptions).await?;
        self.record(PluginCall::Healthy, start.elapsed(), &answer);
        Some(answer)
    }
}

/// Wraps plugins in a [`Metrics`] with the same `plugin` label.
///
/// ```
/// use infrakit_core::layer::{Layer, Metrics, MetricsLayer};
/// use infrakit_core::Simulator;
///
/// let layer = MetricsLayer::new("cloud");
/// let provider: Metrics<Simulator> = layer.layer(Simulator::new());
/// assert_eq!(provider.name(), "cloud");
/// ```
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    name: Arc<str>,
}

impl MetricsLayer {
    /// Records calls with the label `plugin = name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
        }
    }
}

impl<P> Layer<P> for MetricsLayer {
    type Service = Metrics<P>;

    fn layer(&self, plugin: P) -> Metrics<P> {
        Metrics {
            plugin,
            name: Arc::clone(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::{Stub, described};
    use super::*;
    use crate::layer::PluginExt;
    use crate::timeouts::CallTimeouts;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// A metric's name and labels, `name{k=v,...}`, labels sorted.
    type Series = String;

    /// Runs `test` on a paused current-thread runtime with a recorder of its own, and returns
    /// what was recorded.
    fn recorded(test: impl Future<Output = ()>) -> BTreeMap<Series, DebugValue> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(test)
        });
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }

    fn seconds(value: &DebugValue) -> Vec<f64> {
        match value {
            DebugValue::Histogram(samples) => samples.iter().map(|s| s.0).collect(),
            other => panic!("not a histogram: {other:?}"),
        }
    }

    #[test]
    fn calls_are_counted_and_timed_by_plugin_op_and_outcome() {
        let metrics = recorded(async {
            let stub = Arc::new(Stub::new().latency(Duration::from_millis(250)));
            let plugin = Arc::clone(&stub).with_metrics("stub");
            plugin.describe(&Tags::new(), false).await.unwrap();
            plugin.describe(&Tags::new(), false).await.unwrap();
            let gone = InstanceError::NotFound { id: "i-1".into() };
            stub.fail_next(1, gone.clone());
            let result = plugin
                .destroy(&"i-1".into(), DestroyContext::Terminate)
                .await;
            assert_eq!(result, Err(gone), "the error passes unchanged");

            let slow = Stub::hanging()
                .with_timeouts(CallTimeouts::all(Duration::from_secs(1)))
                .with_metrics("slow");
            let err = slow.healthy(&json!({}), &described()).await.unwrap_err();
            assert!(matches!(err, FlavorError::TimedOut { .. }), "{err:?}");
        });

        let count = |series: &str| match metrics.get(series) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{series}: {other:?} in {metrics:#?}"),
        };
        assert_eq!(
            count("infrakit_plugin_calls_total{op=describe,outcome=ok,plugin=stub}"),
            2
        );
        assert_eq!(
            count("infrakit_plugin_calls_total{op=destroy,outcome=error,plugin=stub}"),
            1
        );
        assert_eq!(
            count("infrakit_plugin_calls_total{op=healthy,outcome=timeout,plugin=slow}"),
            1
        );
        assert_eq!(
            seconds(&metrics["infrakit_plugin_call_seconds{op=describe,outcome=ok,plugin=stub}"]),
            [0.25, 0.25]
        );
        assert_eq!(
            seconds(
                &metrics["infrakit_plugin_call_seconds{op=healthy,outcome=timeout,plugin=slow}"]
            ),
            [1.0]
        );
        assert_eq!(metrics.len(), 6, "{metrics:#?}");
    }

    #[test]
    fn outside_a_retry_one_sample_covers_the_whole_call() {
        let metrics = recorded(async {
            let stub = Stub::failing(
                2,
                InstanceError::Unavailable {
                    message: "reset".into(),
                },
            );
            let plugin = stub
                .with_retry(crate::layer::RetryPolicy::default())
                .with_metrics("stub");
            plugin.describe(&Tags::new(), false).await.unwrap();
        });
        assert_eq!(
            metrics["infrakit_plugin_calls_total{op=describe,outcome=ok,plugin=stub}"],
            DebugValue::Counter(1)
        );
        // 100 ms + 200 ms of backoff.
        assert_eq!(
            seconds(&metrics["infrakit_plugin_call_seconds{op=describe,outcome=ok,plugin=stub}"]),
            [0.3]
        );
    }
}
