//! The manager: one per replica. It follows the leadership stream, runs a controller per group
//! while (and only while) its replica leads, and serves the [`Group`] API.

use crate::error::Classify;
use crate::flavor::Flavor;
use crate::group::{Group, GroupDescription, GroupError, GroupSpec};
use crate::id::{GroupId, InstanceId};
use crate::instance::DestroyContext;
use crate::instance::Instance;
use crate::leadership::{Leadership, LeadershipState, Term};
use crate::plugins::Plugins;
use crate::reconcile::controller::{Context, Controller, Fence};
use crate::reconcile::{EngineEvent, EngineOptions, RateLimiter, Trigger};
use crate::spec_error::SpecError;
use crate::store::{GlobalSpec, Store, StoreError};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;

/// A group's instance and flavor plugins.
type PluginPair = (Arc<dyn Instance>, Arc<dyn Flavor>);

/// A replica's manager. Cheap to clone; clones share the replica.
///
/// ```
/// use infrakit_core::*;
/// use infrakit_core::reconcile::EngineOptions;
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let cloud = Simulator::new();
/// let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
///     .plugins(Plugins::new().instance("simulator", cloud.clone()).flavor("vanilla", flavor::Vanilla))
///     .build();
/// manager.start();
/// manager.wait_leading().await;
///
/// let spec = GroupSpec::new("workers", PluginSpec::new("simulator", json!({})),
///     PluginSpec::new("vanilla", json!({})), Allocation::size(3));
/// let plan = manager.commit(spec, false).await?;
/// assert_eq!(plan, "add 3 to reach 3");
/// manager.wait_converged(&"workers".into(), std::time::Duration::from_secs(5)).await?;
/// assert_eq!(cloud.len(), 3);
/// manager.shutdown().await;
/// # Ok::<(), GroupError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    leadership: Arc<dyn Leadership>,
    store: Arc<dyn Store>,
    plugins: Plugins,
    options: EngineOptions,
    events: broadcast::Sender<EngineEvent>,
    state: watch::Sender<LeadershipState>,
    limiter: Option<Arc<RateLimiter>>,
    groups: Mutex<Groups>,
    runner: StdMutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Groups {
    term: Option<Term>,
    ctx: Option<Arc<Context>>,
    controllers: BTreeMap<GroupId, Controller>,
    loader: Option<JoinHandle<()>>,
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    leadership: Arc<dyn Leadership>,
    store: Arc<dyn Store>,
    plugins: Plugins,
    options: EngineOptions,
}

impl ManagerBuilder {
    /// The plugins group specs may name.
    #[must_use]
    pub fn plugins(mut self, plugins: Plugins) -> Self {
        self.plugins = plugins;
        self
    }

    /// Engine options.
    #[must_use]
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the manager (not started: see [`Manager::start`]).
    pub fn build(self) -> Manager {
        let (events, _) = broadcast::channel(4096);
        let (state, _) = watch::channel(LeadershipState::Follower { leader: None });
        let limiter = self
            .options
            .calls_per_second
            .map(|n| Arc::new(RateLimiter::new(n, n.max(1))));
        Manager {
            inner: Arc::new(Inner {
                leadership: self.leadership,
                store: self.store,
                plugins: self.plugins,
                options: self.options,
                events,
                state,
                limiter,
                groups: Mutex::new(Groups::default()),
                runner: StdMutex::new(None),
            }),
        }
    }
}

impl Manager {
    /// Starts building a manager from a leadership source and a store.
    pub fn builder(
        leadership: impl Leadership + 'static,
        store: impl Store + 'static,
    ) -> ManagerBuilder {
        Self::builder_arc(Arc::new(leadership), Arc::new(store))
    }

    /// Like [`builder`](Self::builder), with shared parts.
    pub fn builder_arc(leadership: Arc<dyn Leadership>, store: Arc<dyn Store>) -> ManagerBuilder {
        ManagerBuilder {
            leadership,
            store,
            plugins: Plugins::new(),
            options: EngineOptions::default(),
        }
    }

    /// Every action of the engine, as it happens.
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// This replica's leadership as the manager last saw it.
    pub fn leadership(&self) -> LeadershipState {
        self.inner.state.borrow().clone()
    }

    /// Starts following leadership in a background task (idempotent).
    pub fn start(&self) {
        let mut runner = self.inner.runner.lock().unwrap_or_else(|p| p.into_inner());
        if runner.is_some() {
            return;
        }
        let this = self.clone();
        *runner = Some(tokio::spawn(async move { this.run().await }));
    }

    /// Follows leadership until the source's stream ends. [`start`](Self::start) runs this in
    /// a task; call it directly to drive the manager from your own task.
    pub async fn run(&self) {
        let mut states = self.inner.leadership.watch();
        while let Some(state) = states.next().await {
            self.on_leadership(state).await;
        }
        self.on_leadership(LeadershipState::Follower { leader: None })
            .await;
    }

    /// Stops following leadership and stops every controller. Instances keep running.
    pub async fn shutdown(&self) {
        let runner = self
            .inner
            .runner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = runner {
            r.abort();
            let _ = r.await;
        }
        self.on_leadership(LeadershipState::Follower { leader: None })
            .await;
    }

    /// Waits until this replica leads and its controllers are started.
    pub async fn wait_leading(&self) -> Term {
        let mut events = self.events();
        loop {
            {
                let g = self.inner.groups.lock().await;
                if let (Some(term), None) = (g.term, &g.loader) {
                    return term;
                }
                if let (Some(term), Some(l)) = (g.term, &g.loader)
                    && l.is_finished()
                {
                    return term;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
        }
    }

    /// Waits until a group is converged, or fails after `timeout`.
    pub async fn wait_converged(
        &self,
        id: &GroupId,
        timeout: Duration,
    ) -> Result<GroupDescription, GroupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.events();
        loop {
            let d = self.describe(id).await?;
            if d.converged {
                return Ok(d);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GroupError::Other {
                    message: format!(
                        "group {id} not converged after {timeout:?}: {}",
                        d.plan.unwrap_or_default()
                    ),
                    transient: true,
                });
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                events.recv(),
            )
            .await;
        }
    }

    async fn on_leadership(&self, state: LeadershipState) {
        let mut g = self.inner.groups.lock().await;
        match state {
            LeadershipState::Leader { term } => {
                if g.term == Some(term) {
                    return;
                }
                if g.term.is_some() {
                    Self::stop_term(&self.inner, &mut g).await;
                }
                self.inner.state.send_replace(state);
                let ctx = Arc::new(Context {
                    options: self.inner.options.clone(),
                    events: self.inner.events.clone(),
                    limiter: self.inner.limiter.clone(),
                    fence: Fence {
                        rx: self.inner.state.subscribe(),
                        term,
                    },
                });
                g.term = Some(term);
                g.ctx = Some(Arc::clone(&ctx));
                tracing::info!(%term, "leading: loading specs");
                let _ = self
                    .inner
                    .events
                    .send(EngineEvent::LeadershipGained { term });
                let this = self.clone();
                g.loader = Some(tokio::spawn(async move { this.load_and_start(ctx).await }));
            }
            other => {
                // Fence first: every in-flight check fails from here on.
                self.inner.state.send_replace(other);
                if g.term.is_some() {
                    Self::stop_term(&self.inner, &mut g).await;
                }
            }
        }
    }

    async fn stop_term(inner: &Inner, g: &mut Groups) {
        if let Some(l) = g.loader.take() {
            l.abort();
            let _ = l.await;
        }
        let controllers = std::mem::take(&mut g.controllers);
        for (_, c) in controllers {
            c.stop().await;
        }
        g.ctx = None;
        if let Some(term) = g.term.take() {
            tracing::warn!(%term, "no longer leading: controllers stopped");
            let _ = inner.events.send(EngineEvent::LeadershipLost { term });
        }
    }

    /// On gaining leadership: load the specs (retrying) and start a controller per group.
    async fn load_and_start(&self, ctx: Arc<Context>) {
        let mut backoff =
            crate::reconcile::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let global = loop {
            if ctx.fence.check().is_err() {
                return;
            }
            match self.inner.store.load().await {
                Ok(v) => break v.map(|v| v.value).unwrap_or_default(),
                Err(e) => {
                    let d = backoff.next_delay(None);
                    tracing::warn!(error = %e, retry_in = ?d, "cannot load specs");
                    tokio::time::sleep(d).await;
                }
            }
        };
        let mut g = self.inner.groups.lock().await;
        if g.ctx.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &ctx)) {
            return;
        }
        for spec in global.groups.into_values() {
            // A commit that raced the load already started this group's controller.
            if g.controllers.contains_key(&spec.id) {
                continue;
            }
            match self.controller_for(spec, &ctx) {
                Ok(c) => {
                    g.controllers.insert(c.shared.id.clone(), c);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a controller for a stored group")
                }
            }
        }
    }

    /// The instance and flavor plugins a spec names; errors name the spec's field.
    fn resolve(&self, spec: &GroupSpec) -> Result<PluginPair, SpecError> {
        let instance = self
            .inner
            .plugins
            .resolve_instance(&spec.instance)
            .map_err(|e| e.under("Properties.Instance"))?;
        let flavor = self
            .inner
            .plugins
            .resolve_flavor(&spec.flavor)
            .map_err(|e| e.under("Properties.Flavor"))?;
        Ok((instance, flavor))
    }

    fn controller_for(&self, spec: GroupSpec, ctx: &Arc<Context>) -> Result<Controller, SpecError> {
        let (instance, flavor) = self.resolve(&spec)?;
        Ok(Controller::start(spec, instance, flavor, Arc::clone(ctx)))
    }

    /// Runs a read-only step, retrying transient provider errors a few times with backoff,
    /// so a throttled `validate` or `describe` does not fail a user's call.
    async fn retrying<T, F, Fut>(&self, mut step: F) -> Result<T, GroupError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GroupError>>,
    {
        let mut backoff = crate::reconcile::Backoff::new(
            self.inner.options.backoff_base,
            self.inner.options.backoff_max.min(Duration::from_secs(2)),
        );
        loop {
            match step().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if e.is_transient()
                        && backoff.failures() < 5
                        && !matches!(e, GroupError::NotLeader { .. }) =>
                {
                    let d = backoff.next_delay(e.retry_after());
                    tracing::debug!(error = %e, retry_in = ?d, "transient error: retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn require_leader(&self) -> Result<Term, GroupError> {
        match &*self.inner.state.borrow() {
            LeadershipState::Leader { term } => Ok(*term),
            other => Err(GroupError::NotLeader {
                leader: other.leader_location().map(str::to_owned),
            }),
        }
    }

    /// Validates a spec fully: its own rules, then the plugins' own validation.
    async fn validate(&self, spec: &GroupSpec) -> Result<(), GroupError> {
        spec.validate()?;
        let (instance, flavor) = self.resolve(spec)?;
        instance
            .validate(&spec.instance.properties)
            .await
            .map_err(|e| match e {
                crate::instance::InstanceError::InvalidProperties(s) => {
                    GroupError::InvalidSpec(s.under("Properties.Instance.Properties"))
                }
                other => other.into(),
            })?;
        flavor
            .validate(&spec.flavor.properties, &spec.allocation)
            .await
            .map_err(|e| match e {
                crate::flavor::FlavorError::InvalidProperties(s) => {
                    GroupError::InvalidSpec(s.under("Properties.Flavor.Properties"))
                }
                other => other.into(),
            })?;
        Ok(())
    }

    /// Applies `change` to the stored specs with compare-and-swap, retrying on conflicts,
    /// and only while this replica leads in `term`.
    async fn update_store<T>(
        &self,
        term: Term,
        mut change: impl FnMut(&mut GlobalSpec) -> Result<T, GroupError>,
    ) -> Result<T, GroupError> {
        for _ in 0..8 {
            let current = self.inner.store.load().await?;
            let (version, mut global) = match current {
                Some(v) => (Some(v.version), v.value),
                None => (None, GlobalSpec::default()),
            };
            let out = change(&mut global)?;
            if self.require_leader()? != term {
                return Err(GroupError::NotLeader { leader: None });
            }
            match self.inner.store.save(&global, version).await {
                Ok(_) => return Ok(out),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(GroupError::Store(StoreError::Other {
            message: "too many concurrent writers".into(),
            transient: true,
        }))
    }

    async fn stored_spec(&self, id: &GroupId) -> Result<GroupSpec, GroupError> {
        let g = self.inner.groups.lock().await;
        if let Some(c) = g.controllers.get(id) {
            return Ok(c.shared.spec());
        }
        drop(g);
        self.inner
            .store
            .load()
            .await?
            .and_then(|v| v.value.groups.get(id).cloned())
            .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })
    }

    /// Removes a group from the store (an unknown group is an error if `must_exist`), stops its
    /// controller and reports `event`. Instances are not touched.
    async fn forget(
        &self,
        term: Term,
        id: &GroupId,
        must_exist: bool,
        event: EngineEvent,
    ) -> Result<(), GroupError> {
        let gid = id.clone();
        self.update_store(term, move |global| match global.remove(&gid) {
            None if must_exist => Err(GroupError::UnknownGroup { id: gid.clone() }),
            _ => Ok(()),
        })
        .await?;
        let c = self.inner.groups.lock().await.controllers.remove(id);
        if let Some(c) = c {
            c.stop().await;
        }
        let _ = self.inner.events.send(event);
        Ok(())
    }

    /// A plan for `spec` against what exists now, without acting.
    async fn preview(&self, spec: &GroupSpec) -> Result<crate::reconcile::Plan, GroupError> {
        let existing = {
            let g = self.inner.groups.lock().await;
            g.controllers.get(&spec.id).map(|c| Arc::clone(&c.shared))
        };
        if let Some(shared) = existing {
            return shared.preview(spec).await;
        }
        // A group not running here: a throw-away controller state, observing only.
        let (instance, flavor) = self.resolve(spec)?;
        let (tx, _) = watch::channel(LeadershipState::Follower { leader: None });
        let ctx = Arc::new(Context {
            options: self.inner.options.clone(),
            events: broadcast::channel(1).0,
            limiter: self.inner.limiter.clone(),
            fence: Fence {
                rx: tx.subscribe(),
                term: Term(0),
            },
        });
        crate::reconcile::controller::preview_detached(spec, instance, flavor, ctx).await
    }
}

#[async_trait]
impl Group for Manager {
    async fn commit(&self, spec: GroupSpec, pretend: bool) -> Result<String, GroupError> {
        self.retrying(|| self.validate(&spec)).await?;
        let plan = self.retrying(|| self.preview(&spec)).await?;
        if pretend {
            return Ok(plan.explain());
        }
        let term = self.require_leader()?;
        let stored = spec.clone();
        self.update_store(term, move |global| {
            global.put(stored.clone());
            Ok(())
        })
        .await?;
        let mut g = self.inner.groups.lock().await;
        if g.term != Some(term) {
            return Err(GroupError::NotLeader { leader: None });
        }
        if let Some(c) = g.controllers.get(&spec.id) {
            c.shared.set_spec(spec);
            c.shared.destroying.store(false, Ordering::SeqCst);
            c.shared.trigger(Trigger::SpecChanged);
        } else if let Some(ctx) = g.ctx.clone() {
            let c = self.controller_for(spec, &ctx)?;
            g.controllers.insert(c.shared.id.clone(), c);
        }
        Ok(plan.explain())
    }

    async fn free(&self, id: &GroupId) -> Result<(), GroupError> {
        let term = self.require_leader()?;
        self.forget(
            term,
            id,
            true,
            EngineEvent::GroupFreed { group: id.clone() },
        )
        .await
    }

    async fn destroy(&self, id: &GroupId) -> Result<(), GroupError> {
        let term = self.require_leader()?;
        let shared = {
            let g = self.inner.groups.lock().await;
            g.controllers
                .get(id)
                .map(|c| Arc::clone(&c.shared))
                .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })?
        };
        // From now on the controller only destroys; it keeps retrying what fails.
        shared.destroying.store(true, Ordering::SeqCst);
        shared.mark_stale();
        let spec = shared.spec();
        let (destroyed, error) = {
            let _work = shared.work.lock().await;
            let members = self
                .retrying(|| async { Ok(shared.describe_members().await?) })
                .await?;
            shared
                .destroy_now(&spec, members, DestroyContext::Terminate)
                .await
        };
        let left = self
            .retrying(|| async { Ok(shared.describe_members().await?) })
            .await?;
        if let Some(e) = error.filter(|_| !left.is_empty()) {
            shared.trigger(Trigger::SpecChanged);
            return Err(GroupError::Other {
                message: format!(
                    "group {id}: {} destroyed, {} left ({e}); the group stays managed and the rest is retried",
                    destroyed.len(),
                    left.len()
                ),
                transient: e.is_transient(),
            });
        }
        if !left.is_empty() {
            shared.trigger(Trigger::SpecChanged);
            return Err(GroupError::Other {
                message: format!(
                    "group {id}: {} members appeared while destroying; retried",
                    left.len()
                ),
                transient: true,
            });
        }
        // Every member is gone: now forget the group.
        self.forget(
            term,
            id,
            false,
            EngineEvent::GroupDestroyed { group: id.clone() },
        )
        .await
    }

    async fn describe(&self, id: &GroupId) -> Result<GroupDescription, GroupError> {
        let shared = {
            let g = self.inner.groups.lock().await;
            g.controllers.get(id).map(|c| Arc::clone(&c.shared))
        };
        match shared {
            Some(s) => Ok(s.description()),
            None => {
                // Not controlled here (a follower): observe, read-only.
                let spec = self.stored_spec(id).await?;
                let plan = self.retrying(|| self.preview(&spec)).await?;
                Ok(GroupDescription {
                    converged: plan.converged(),
                    plan: Some(plan.explain()),
                    update: Some(plan.update.clone()),
                    ..GroupDescription::default()
                })
            }
        }
    }

    async fn inspect(&self) -> Result<Vec<GroupSpec>, GroupError> {
        Ok(self
            .inner
            .store
            .load()
            .await?
            .map(|v| v.value.groups.into_values().collect())
            .unwrap_or_default())
    }

    async fn destroy_instances(&self, id: &GroupId, ids: &[InstanceId]) -> Result<(), GroupError> {
        let term = self.require_leader()?;
        let shared = {
            let g = self.inner.groups.lock().await;
            g.controllers
                .get(id)
                .map(|c| Arc::clone(&c.shared))
                .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })?
        };
        // Hold the pass lock: no reconcile pass runs until the size is lowered.
        let _work = shared.work.lock().await;
        let members = self
            .retrying(|| async { Ok(shared.describe_members().await?) })
            .await?;
        let not_members: Vec<InstanceId> = ids
            .iter()
            .filter(|i| !members.iter().any(|m| &m.id == *i))
            .cloned()
            .collect();
        if !not_members.is_empty() {
            return Err(GroupError::NotMember {
                group: id.clone(),
                ids: not_members,
            });
        }
        let spec = shared.spec();
        let victims: Vec<_> = members
            .into_iter()
            .filter(|m| ids.contains(&m.id))
            .collect();
        let context = if spec.allocation.is_quorum() {
            // A quorum member is replaced under its logical ID: keep its attachments.
            DestroyContext::RollingUpdate
        } else {
            DestroyContext::ScaleDown
        };
        let (destroyed, error) = shared.destroy_now(&spec, victims, context).await;
        if let crate::group::Allocation::Size(n) = spec.allocation
            && !destroyed.is_empty()
        {
            let new_size = n.saturating_sub(destroyed.len() as u32);
            let gid = id.clone();
            let updated = self
                .update_store(term, move |global| {
                    let s = global
                        .groups
                        .get_mut(&gid)
                        .ok_or_else(|| GroupError::UnknownGroup { id: gid.clone() })?;
                    s.allocation = crate::group::Allocation::Size(new_size);
                    Ok(s.clone())
                })
                .await?;
            shared.set_spec(updated);
        }
        shared.trigger(Trigger::SpecChanged);
        match error {
            Some(e) => Err(GroupError::Other {
                message: format!(
                    "{} of {} destroyed; the size was lowered by {}: {e}",
                    destroyed.len(),
                    ids.len(),
                    destroyed.len()
                ),
                transient: e.is_transient(),
            }),
            None => Ok(()),
        }
    }

    async fn size(&self, id: &GroupId) -> Result<u32, GroupError> {
        Ok(self.stored_spec(id).await?.allocation.target_size() as u32)
    }

    /// Asks the group's controller for a pass now (instead of at its next resync or event)
    /// and returns the number of passes started so far: the requested pass, and any later,
    /// has a higher [`GroupDescription::pass`]. Only the leader runs controllers.
    ///
    /// ```
    /// use infrakit_core::*;
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
    ///     .plugins(Plugins::new().instance("sim", Simulator::new()).flavor("vanilla", flavor::Vanilla))
    ///     .build();
    /// manager.start();
    /// manager.wait_leading().await;
    /// let spec = GroupSpec::new("web", PluginSpec::new("sim", serde_json::json!({})),
    ///     PluginSpec::new("vanilla", serde_json::json!({})), Allocation::size(1));
    /// manager.commit(spec, false).await?;
    /// let before = manager.trigger(&"web".into()).await?;
    /// // A description observed by a pass that started after the request:
    /// loop {
    ///     let d = manager.describe(&"web".into()).await?;
    ///     if d.pass > before { break; }
    ///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// }
    /// manager.shutdown().await;
    /// # Ok::<(), GroupError>(())
    /// # }).unwrap();
    /// ```
    async fn trigger(&self, id: &GroupId) -> Result<u64, GroupError> {
        let shared = {
            let g = self.inner.groups.lock().await;
            g.controllers.get(id).map(|c| Arc::clone(&c.shared))
        };
        match shared {
            Some(s) => {
                let started = s.passes_started();
                s.trigger(Trigger::Requested);
                Ok(started)
            }
            None => {
                self.require_leader()?;
                Err(GroupError::UnknownGroup { id: id.clone() })
            }
        }
    }

    async fn set_size(&self, id: &GroupId, size: u32) -> Result<(), GroupError> {
        let term = self.require_leader()?;
        let gid = id.clone();
        let updated = self
            .update_store(term, move |global| {
                let s = global
                    .groups
                    .get_mut(&gid)
                    .ok_or_else(|| GroupError::UnknownGroup { id: gid.clone() })?;
                if s.allocation.is_quorum() {
                    return Err(SpecError::new(
                        "Properties.Allocation",
                        "a quorum group's size is its list of logical IDs: commit a new spec",
                    )
                    .into());
                }
                s.allocation = crate::group::Allocation::Size(size);
                Ok(s.clone())
            })
            .await?;
        let g = self.inner.groups.lock().await;
        if let Some(c) = g.controllers.get(id) {
            c.shared.set_spec(updated);
            c.shared.trigger(Trigger::SpecChanged);
        }
        Ok(())
    }
}
