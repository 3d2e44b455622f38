//! [`RateLimit`]: each call waits for a token of a budget.

use super::Layer;
use crate::flavor::{Flavor, FlavorError, Health, Index};
use crate::group::Allocation;
use crate::id::InstanceId;
use crate::instance::{
    CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvents, InstanceSpec,
};
use crate::reconcile::RateLimiter;
use crate::tags::Tags;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

/// A plugin whose every call (`validate` included, and every flavor call) first waits for a
/// token of a [`RateLimiter`]: at most [`CallLimit::per_second`] calls per second on average,
/// bursts up to its [`burst_size`](CallLimit::burst_size).
///
/// [`RateLimit::new`] gives the plugin a budget of its own. Plugins built from one
/// [`RateLimitLayer`] (or given one limiter with [`RateLimit::sharing`]) share **one**
/// budget: e.g. two views of one cloud account, or one budget for a group's instance and
/// flavor calls.
///
/// [`call_limit`](Instance::call_limit) still answers the wrapped plugin's own limit, which
/// the engine applies on top (its provider's budget, shared by every group that uses the
/// plugin): this layer adds a budget, it does not replace the provider's.
///
/// ```
/// use infrakit_core::layer::RateLimit;
/// use infrakit_core::{CallLimit, Instance, Simulator, Tags};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let limited = RateLimit::new(Simulator::new(), CallLimit::per_second(10).burst(1));
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     limited.describe(&Tags::new(), false).await.unwrap();
/// }
/// // One call at once, then one every 100 ms.
/// assert!(start.elapsed() >= Duration::from_millis(200));
/// assert_eq!(limited.call_limit(), None, "the simulator's own limit: none");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct RateLimit<P> {
    plugin: P,
    limiter: Arc<RateLimiter>,
}

impl<P> RateLimit<P> {
    /// Limits the calls of `plugin` to `limit`, with a budget of its own.
    pub fn new(plugin: P, limit: CallLimit) -> Self {
        Self::sharing(plugin, Arc::new(RateLimiter::from_limit(limit)))
    }

    /// Limits the calls of `plugin` by `limiter`, whose budget every other user of the same
    /// limiter shares.
    pub fn sharing(plugin: P, limiter: Arc<RateLimiter>) -> Self {
        Self { plugin, limiter }
    }

    /// The limiter the calls wait on.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
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
}

#[async_trait]
impl<P: Instance> Instance for RateLimit<P> {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.limiter.acquire().await;
        self.plugin.validate(properties).await
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.limiter.acquire().await;
        self.plugin.provision(spec).await
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.limiter.acquire().await;
        self.plugin.label(id, labels).await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.limiter.acquire().await;
        self.plugin.destroy(id, context).await
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        self.limiter.acquire().await;
        self.plugin.describe(tags, with_properties).await
    }

    fn events(&self) -> Option<InstanceEvents> {
        self.plugin.events()
    }

    fn call_limit(&self) -> Option<CallLimit> {
        self.plugin.call_limit()
    }
}

#[async_trait]
impl<P: Flavor> Flavor for RateLimit<P> {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        self.limiter.acquire().await;
        self.plugin.validate(properties, allocation).await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        self.limiter.acquire().await;
        self.plugin
            .prepare(properties, spec, allocation, index)
            .await
    }

    async fn healthy(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<Health, FlavorError> {
        self.limiter.acquire().await;
        self.plugin.healthy(properties, description).await
    }

    async fn drain(
        &self,
        properties: &Value,
        description: &Description,
    ) -> Result<(), FlavorError> {
        self.limiter.acquire().await;
        self.plugin.drain(properties, description).await
    }

    /// A batch spends one token. (A flavor that answers per member spends one on its `None`
    /// too, then one per member.)
    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        self.limiter.acquire().await;
        self.plugin.healthy_batch(properties, descriptions).await
    }
}

/// Wraps plugins in a [`RateLimit`] that all share **one** budget: the layer holds one
/// [`RateLimiter`] (behind an `Arc`) and gives it to every plugin it wraps, and clones of the
/// layer share it too. For a budget per plugin, use one layer per plugin (or
/// [`PluginExt::with_rate_limit`](super::PluginExt::with_rate_limit)).
///
/// ```
/// use infrakit_core::layer::{Layer, RateLimit, RateLimitLayer};
/// use infrakit_core::{CallLimit, Simulator};
/// use std::sync::Arc;
///
/// let account = RateLimitLayer::new(CallLimit::per_second(20));
/// let cloud = Simulator::new();
/// let a: RateLimit<Simulator> = account.layer(cloud.with_caller("a"));
/// let b: RateLimit<Simulator> = account.clone().layer(cloud.with_caller("b"));
/// assert!(Arc::ptr_eq(a.limiter(), b.limiter()), "one budget for both");
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
}

impl RateLimitLayer {
    /// One budget of `limit` for every plugin this layer wraps.
    pub fn new(limit: CallLimit) -> Self {
        Self::sharing(Arc::new(RateLimiter::from_limit(limit)))
    }

    /// The budget of `limiter`, shared with whoever else holds it.
    pub fn sharing(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }

    /// The limiter every wrapped plugin waits on.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

impl<P> Layer<P> for RateLimitLayer {
    type Service = RateLimit<P>;

    fn layer(&self, plugin: P) -> RateLimit<P> {
        RateLimit::sharing(plugin, Arc::clone(&self.limiter))
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::{Stub, described};
    use super::*;
    use serde_json::json;
    use std::time::Duration;
    use tokio::time::Instant;

    const TENTH: Duration = Duration::from_millis(100);

    fn ten_per_second() -> CallLimit {
        CallLimit::per_second(10).burst(1)
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_by_the_rate() {
        let stub = Arc::new(Stub::new());
        let plugin = RateLimit::new(Arc::clone(&stub), ten_per_second());
        let start = Instant::now();
        for _ in 0..5 {
            plugin.describe(&Tags::new(), false).await.unwrap();
        }
        assert!(start.elapsed() >= 4 * TENTH, "{:?}", start.elapsed());
        let times = stub.call_times();
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= TENTH, "{times:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_rate_applies() {
        let stub = Arc::new(Stub::new());
        let plugin = RateLimit::new(Arc::clone(&stub), CallLimit::per_second(10).burst(3));
        let start = Instant::now();
        for _ in 0..4 {
            plugin.healthy(&json!({}), &described()).await.unwrap();
        }
        let offsets: Vec<Duration> = stub.call_times().iter().map(|t| *t - start).collect();
        assert_eq!(offsets[..3], [Duration::ZERO; 3]);
        assert!(offsets[3] >= TENTH, "{offsets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn plugins_from_one_layer_share_one_budget() {
        let layer = RateLimitLayer::new(ten_per_second());
        let first = Arc::new(Stub::new());
        let second = Arc::new(Stub::new());
        let a = layer.layer(Arc::clone(&first));
        let b = layer.clone().layer(Arc::clone(&second));
        let start = Instant::now();
        for _ in 0..3 {
            a.describe(&Tags::new(), false).await.unwrap();
            b.describe(&Tags::new(), false).await.unwrap();
        }
        // Six calls on one budget of 10/s, burst 1: at least 500 ms, not the 200 ms two
        // budgets would take.
        assert!(start.elapsed() >= 5 * TENTH, "{:?}", start.elapsed());
        assert_eq!(first.calls().len(), 3);
        assert_eq!(second.calls().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn plugins_limited_apart_have_budgets_apart() {
        let a = RateLimit::new(Stub::new(), ten_per_second());
        let b = RateLimit::new(Stub::new(), ten_per_second());
        let start = Instant::now();
        for _ in 0..3 {
            a.describe(&Tags::new(), false).await.unwrap();
            b.describe(&Tags::new(), false).await.unwrap();
        }
        // Three calls on each of two budgets: about 200 ms, not the 500 ms of one budget.
        let elapsed = start.elapsed();
        assert!(elapsed >= 2 * TENTH && elapsed < 3 * TENTH, "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wrapped_plugins_own_limit_is_still_reported() {
        let own = CallLimit::per_second(50);
        let plugin = RateLimit::new(Stub::new().limit(own), ten_per_second());
        assert_eq!(plugin.call_limit(), Some(own));
    }
}
