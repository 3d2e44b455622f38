//! [`Logged`]: a `tracing` event per call.

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
use tracing::Instrument;

/// A plugin whose every call is logged with [`tracing`](https://docs.rs/tracing), once it
/// ends: a `debug` event on success (`plugin call succeeded`), a `warn` event on error
/// (`plugin call failed`, with the error and whether it is transient). Each event carries
/// `plugin` (the name given here), `op` ([`PluginCall::as_str`]), `elapsed` and `outcome`
/// (`ok`, `error` or `timeout`).
///
/// The call itself runs in a `plugin_call` span (debug level) with `plugin` and `op`, so what
/// the wrapped plugin logs, and what inner layers log (a [`Retry`](super::Retry)'s retries),
/// says which call it belongs to.
///
/// ```
/// use infrakit_core::layer::Logged;
/// use infrakit_core::simulator::Fault;
/// use infrakit_core::{Instance, Simulator, Tags};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cloud = Simulator::new();
/// let logged = Logged::new(cloud.clone(), "sim");
/// // DEBUG plugin call succeeded plugin=sim op="describe" elapsed=.. outcome="ok"
/// assert!(logged.describe(&Tags::new(), false).await.is_ok());
/// // WARN plugin call failed plugin=sim op="describe" .. outcome="error" transient=true error=..
/// cloud.fail_next(1, Fault::Unavailable);
/// assert!(logged.describe(&Tags::new(), false).await.is_err());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Logged<P> {
    plugin: P,
    name: Arc<str>,
}

impl<P> Logged<P> {
    /// Logs the calls of `plugin` as `plugin = name`.
    pub fn new(plugin: P, name: impl Into<String>) -> Self {
        Self {
            plugin,
            name: Arc::from(name.into()),
        }
    }

    /// The `plugin` field.
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

    /// Runs `call` in its span, then logs how it ended.
    async fn logged<T, E: CallError>(
        &self,
        operation: PluginCall,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let op = operation.as_str();
        let span = tracing::debug_span!("plugin_call", plugin = %self.name, op);
        let start = Instant::now();
        let result = call.instrument(span).await;
        self.report(op, start.elapsed(), &result);
        result
    }

    /// One event for a call that ended.
    fn report<T, E: CallError>(&self, op: &'static str, elapsed: Duration, result: &Result<T, E>) {
        let outcome = Outcome::of(result).as_str();
        match result {
            Ok(_) => tracing::debug!(
                plugin = %self.name,
                op,
                elapsed = ?elapsed,
                outcome,
                "plugin call succeeded"
            ),
            Err(error) => tracing::warn!(
                plugin = %self.name,
                op,
                elapsed = ?elapsed,
                outcome,
                transient = error.is_transient(),
                error = %error,
                "plugin call failed"
            ),
        }
    }
}

#[async_trait]
impl<P: Instance> Instance for Logged<P> {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.logged(PluginCall::Validate, self.plugin.validate(properties))
            .await
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.logged(PluginCall::Provision, self.plugin.provision(spec))
            .await
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.logged(PluginCall::Label, self.plugin.label(id, labels))
            .await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.logged(PluginCall::Destroy, self.plugin.destroy(id, context))
            .await
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let call = self.plugin.describe(tags, with_properties);
        self.logged(PluginCall::Describe, call).await
    }

    fn events(&self) -> Option<InstanceEvents> {
        self.plugin.events()
    }

    fn call_limit(&self) -> Option<CallLimit> {
        self.plugin.call_limit()
    }
}

#[async_trait]
impl<P: Flavor> Flavor for Logged<P> {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.validate(properties, allocation);
        self.logged(PluginCall::Validate, call).await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let call = self.plugin.prepare(properties, spec, allocation, index);
        self.logged(PluginCall::Prepare, call).await
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        let call = self.plugin.healthy(properties, description);
        self.logged(PluginCall::Healthy, call).await
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.drain(properties, description);
        self.logged(PluginCall::Drain, call).await
    }

    /// Logged as one `healthy` call when the flavor answers the batch; not at all when it
    /// answers per member (its per-member calls are logged).
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let op = PluginCall::Healthy.as_str();
        let span = tracing::debug_span!("plugin_call", plugin = %self.name, op, batch = descriptions.len());
        let start = Instant::now();
        let answer = self
            .plugin
            .healthy_batch(properties, descriptions)
            .instrument(span)
            .await?;
        self.report(op, start.elapsed(), &answer);
        Some(answer)
    }
}

/// Wraps plugins in a [`Logged`] with the same `plugin` name.
///
/// ```
/// use infrakit_core::layer::{Layer, LogLayer, Logged};
/// use infrakit_core::flavor::Vanilla;
///
/// let layer = LogLayer::new("vanilla");
/// let flavor: Logged<Vanilla> = layer.layer(Vanilla);
/// assert_eq!(flavor.name(), "vanilla");
/// ```
#[derive(Debug, Clone)]
pub struct LogLayer {
    name: Arc<str>,
}

impl LogLayer {
    /// Logs calls as `plugin = name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
        }
    }
}

impl<P> Layer<P> for LogLayer {
    type Service = Logged<P>;

    fn layer(&self, plugin: P) -> Logged<P> {
        Logged {
            plugin,
            name: Arc::clone(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::capture::Captured;
    use super::super::stub::{Stub, described};
    use super::*;
    use crate::layer::{PluginExt, RetryPolicy};
    use crate::timeouts::CallTimeouts;
    use serde_json::json;
    use std::time::Duration;

    fn only<'a>(lines: &'a [String], needle: &str) -> &'a str {
        let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
        assert_eq!(found.len(), 1, "one line with {needle:?} in {lines:#?}");
        found[0]
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_is_a_debug_event_with_op_elapsed_and_outcome() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber());
        let stub = Stub::new().latency(Duration::from_millis(40));
        let plugin = stub.logged("stub");
        let found = plugin.describe(&Tags::new(), false).await.unwrap();
        assert_eq!(found, vec![described()], "the result passes unchanged");

        let lines = captured.lines();
        let line = only(&lines, "plugin call succeeded");
        assert!(line.starts_with("DEBUG"), "{line}");
        for field in [
            "plugin=stub",
            "op=\"describe\"",
            "elapsed=40ms",
            "outcome=\"ok\"",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_a_warn_event_with_the_error() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber());
        let refused = FlavorError::Refused {
            message: "the last manager".into(),
        };
        let plugin = Stub::failing_flavor(1, refused.clone()).logged("swarm");
        let result = plugin.drain(&json!({}), &described()).await;
        assert_eq!(result, Err(refused), "the error passes unchanged");

        let lines = captured.lines();
        let line = only(&lines, "plugin call failed");
        assert!(line.trim_start().starts_with("WARN"), "{line}");
        for field in [
            "plugin=swarm",
            "op=\"drain\"",
            "outcome=\"error\"",
            "transient=false",
            "error=refused: the last manager",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_logged_as_one() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber());
        let plugin = Stub::hanging()
            .with_timeouts(CallTimeouts::all(Duration::from_secs(2)))
            .logged("slow");
        plugin.provision(InstanceSpec::default()).await.unwrap_err();
        let lines = captured.lines();
        let line = only(&lines, "plugin call failed");
        for field in [
            "outcome=\"timeout\"",
            "elapsed=2s",
            "error=provision timed out after 2s",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn what_inner_layers_log_is_in_the_calls_span() {
        let captured = Captured::default();
        let _guard = tracing::subscriber::set_default(captured.subscriber());
        let plugin = Stub::failing(
            1,
            InstanceError::Unavailable {
                message: "reset".into(),
            },
        )
        .with_retry(RetryPolicy::default())
        .logged("stub");
        plugin.label(&"i-1".into(), &Tags::new()).await.unwrap();
        let lines = captured.lines();
        let retry = only(&lines, "retrying");
        assert!(
            retry.contains("plugin_call{plugin=stub op=\"label\"}"),
            "{retry}"
        );
        let done = only(&lines, "plugin call succeeded");
        assert!(!done.contains("plugin_call{"), "outside the span: {done}");
    }
}
