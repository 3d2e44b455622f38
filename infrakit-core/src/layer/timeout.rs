//! [`Timeout`]: each call bounded by its operation's deadline.

use super::Layer;
use crate::flavor::{Flavor, FlavorError, Health, Index};
use crate::group::Allocation;
use crate::id::InstanceId;
use crate::instance::{
    CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvents, InstanceSpec,
};
use crate::tags::Tags;
use crate::timeouts::{CallTimeouts, PluginCall};
use async_trait::async_trait;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// A plugin whose every call is bounded by its operation's deadline
/// ([`CallTimeouts::get`]): a call still running at its deadline is dropped and fails with
/// [`InstanceError::TimedOut`] or [`FlavorError::TimedOut`], naming the operation and the
/// deadline.
///
/// Dropping a call stops waiting for it, not what the plugin had already sent: a timed-out
/// `provision` or `destroy` may still happen at the provider (the next `describe` tells).
///
/// ```
/// use infrakit_core::layer::Timeout;
/// use infrakit_core::timeouts::{CallTimeouts, PluginCall};
/// use infrakit_core::{Instance, InstanceError, Simulator, Tags};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let slow = Simulator::builder().latency(Duration::from_secs(5)).build();
/// let bounded = Timeout::new(
///     slow,
///     CallTimeouts::new().set(PluginCall::Describe, Duration::from_secs(1)),
/// );
/// let err = bounded.describe(&Tags::new(), false).await.unwrap_err();
/// assert_eq!(
///     err,
///     InstanceError::TimedOut { operation: PluginCall::Describe, after: Duration::from_secs(1) }
/// );
/// assert_eq!(err.to_string(), "describe timed out after 1s");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<P> {
    plugin: P,
    timeouts: CallTimeouts,
}

impl<P> Timeout<P> {
    /// Bounds each call of `plugin` by `timeouts` (an unset operation has its default).
    pub fn new(plugin: P, timeouts: CallTimeouts) -> Self {
        Self { plugin, timeouts }
    }

    /// The deadlines.
    pub fn timeouts(&self) -> &CallTimeouts {
        &self.timeouts
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

    /// Runs `call`, or fails with `timed_out(operation, deadline)` at the deadline.
    async fn bounded<T, E>(
        &self,
        operation: PluginCall,
        call: impl Future<Output = Result<T, E>>,
        timed_out: impl FnOnce(PluginCall, Duration) -> E,
    ) -> Result<T, E> {
        let after = self.timeouts.get(operation);
        tokio::time::timeout(after, call)
            .await
            .unwrap_or_else(|_elapsed| Err(timed_out(operation, after)))
    }
}

fn instance_timed_out(operation: PluginCall, after: Duration) -> InstanceError {
    InstanceError::TimedOut { operation, after }
}

fn flavor_timed_out(operation: PluginCall, after: Duration) -> FlavorError {
    FlavorError::TimedOut { operation, after }
}

#[async_trait]
impl<P: Instance> Instance for Timeout<P> {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        let call = self.plugin.validate(properties);
        self.bounded(PluginCall::Validate, call, instance_timed_out)
            .await
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let call = self.plugin.provision(spec);
        self.bounded(PluginCall::Provision, call, instance_timed_out)
            .await
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        let call = self.plugin.label(id, labels);
        self.bounded(PluginCall::Label, call, instance_timed_out)
            .await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        let call = self.plugin.destroy(id, context);
        self.bounded(PluginCall::Destroy, call, instance_timed_out)
            .await
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let call = self.plugin.describe(tags, with_properties);
        self.bounded(PluginCall::Describe, call, instance_timed_out)
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
impl<P: Flavor> Flavor for Timeout<P> {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.validate(properties, allocation);
        self.bounded(PluginCall::Validate, call, flavor_timed_out)
            .await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let call = self.plugin.prepare(properties, spec, allocation, index);
        self.bounded(PluginCall::Prepare, call, flavor_timed_out)
            .await
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        let call = self.plugin.healthy(properties, description);
        self.bounded(PluginCall::Healthy, call, flavor_timed_out)
            .await
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        let call = self.plugin.drain(properties, description);
        self.bounded(PluginCall::Drain, call, flavor_timed_out)
            .await
    }

    /// Bounded by the `healthy` deadline, the whole batch at once.
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let call = async {
            self.plugin
                .healthy_batch(properties, descriptions)
                .await
                .transpose()
        };
        self.bounded(PluginCall::Healthy, call, flavor_timed_out)
            .await
            .transpose()
    }
}

/// Wraps plugins in a [`Timeout`] with the same deadlines.
///
/// ```
/// use infrakit_core::layer::{Layer, Timeout, TimeoutLayer};
/// use infrakit_core::timeouts::{CallTimeouts, PluginCall};
/// use infrakit_core::{Simulator, flavor::Vanilla};
/// use std::time::Duration;
///
/// let layer = TimeoutLayer::new(CallTimeouts::new().set(PluginCall::Healthy, Duration::from_secs(2)));
/// let provider: Timeout<Simulator> = layer.layer(Simulator::new());
/// let flavor: Timeout<Vanilla> = layer.layer(Vanilla);
/// assert_eq!(flavor.timeouts().get(PluginCall::Healthy), Duration::from_secs(2));
/// assert_eq!(provider.timeouts().get(PluginCall::Provision), Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    timeouts: CallTimeouts,
}

impl TimeoutLayer {
    /// Bounds each call by `timeouts` (an unset operation has its default).
    pub fn new(timeouts: CallTimeouts) -> Self {
        Self { timeouts }
    }
}

impl<P> Layer<P> for TimeoutLayer {
    type Service = Timeout<P>;

    fn layer(&self, plugin: P) -> Timeout<P> {
        Timeout::new(plugin, self.timeouts)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::Stub;
    use super::*;
    use crate::flavor::Flavor;
    use serde_json::json;
    use std::sync::Arc;
    use tokio::time::Instant;

    const DEADLINE: Duration = Duration::from_millis(1500);

    fn bounded(stub: Stub, call: PluginCall) -> Timeout<Stub> {
        Timeout::new(stub, CallTimeouts::new().set(call, DEADLINE))
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_fails_at_exactly_its_deadline_naming_the_operation() {
        let plugin = bounded(Stub::hanging(), PluginCall::Provision);
        let start = Instant::now();
        let err = plugin.provision(InstanceSpec::default()).await.unwrap_err();
        assert_eq!(start.elapsed(), DEADLINE);
        assert_eq!(
            err,
            InstanceError::TimedOut {
                operation: PluginCall::Provision,
                after: DEADLINE,
            }
        );
        assert_eq!(err.to_string(), "provision timed out after 1500ms");
    }

    #[tokio::test(start_paused = true)]
    async fn each_operation_has_its_own_deadline() {
        let plugin = bounded(Stub::hanging(), PluginCall::Describe);
        let start = Instant::now();
        let err = plugin.label(&"i-1".into(), &Tags::new()).await.unwrap_err();
        // Label is unset here: its default, not the describe deadline.
        assert_eq!(
            start.elapsed(),
            CallTimeouts::default_for(PluginCall::Label)
        );
        assert!(
            matches!(err, InstanceError::TimedOut { operation: PluginCall::Label, after }
                if after == CallTimeouts::default_for(PluginCall::Label)),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_flavor_call_fails_with_a_flavor_timeout() {
        let plugin = bounded(Stub::hanging(), PluginCall::Healthy);
        let start = Instant::now();
        let err = plugin
            .healthy(&json!({}), &super::super::stub::described())
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), DEADLINE);
        assert_eq!(
            err,
            FlavorError::TimedOut {
                operation: PluginCall::Healthy,
                after: DEADLINE,
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_answers_in_time_is_untouched() {
        let stub = Arc::new(Stub::new().latency(DEADLINE - Duration::from_millis(1)));
        let plugin = Timeout::new(Arc::clone(&stub), CallTimeouts::all(DEADLINE));
        let start = Instant::now();
        let found = plugin.describe(&Tags::new(), false).await.unwrap();
        assert_eq!(found, vec![super::super::stub::described()]);
        assert_eq!(start.elapsed(), DEADLINE - Duration::from_millis(1));

        let error = InstanceError::NotFound { id: "i-9".into() };
        stub.fail_next(1, error.clone());
        let result = plugin
            .destroy(&"i-9".into(), DestroyContext::Terminate)
            .await;
        assert_eq!(
            result,
            Err(error),
            "the plugin's own error passes unchanged"
        );
        assert_eq!(stub.calls().len(), 2);
    }
}
