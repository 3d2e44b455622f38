//! The manager: one per replica. It follows the leadership stream, claims a leader epoch
//! from the store when it gains leadership, runs a controller per group while (and only
//! while) its replica leads, and serves the [`Group`] API.
//!
//! Invariants: the manager holds only handles to its controllers and sends them commands; it
//! never reads or writes a controller's state. Every store write goes through the term's
//! [`FencedStore`] (refused once a newer epoch is stored), and intent is written before it is
//! acted on: a commit's spec, a destroy's mark, a free's removal. Plugins are resolved once
//! per commit. On leadership loss the state is published (the fence closes) before the
//! controllers are stopped and awaited, and `LeadershipLost` is emitted only after that.

use crate::error::Classify;
use crate::flavor::FlavorError;
use crate::group::{Allocation, Group, GroupDescription, GroupError, GroupSpec};
use crate::id::{GroupId, InstanceId};
use crate::instance::InstanceError;
use crate::leadership::{Leadership, LeadershipState, Term};
use crate::plugins::{GroupPlugins, Plugins};
use crate::reconcile::controller::{
    Controller, ControllerClient, LeaderTerm, Report, preview_detached,
};
use crate::reconcile::fence::Fence;
use crate::reconcile::{Backoff, EngineEvent, EngineOptions, GroupOptions, Plan, PlanHook};
use crate::spec_error::SpecError;
use crate::store::{Epoch, FencedStore, GlobalSpec, Store, StoreError};
use crate::timeouts::PluginCall;
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// How long a mutating call waits for a new leader to finish claiming its epoch.
const READY_WAIT: Duration = Duration::from_secs(10);

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
/// manager.wait_leading(std::time::Duration::from_secs(30)).await?;
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
    replica: Arc<Replica>,
}

/// One replica's parts.
struct Replica {
    leadership: Arc<dyn Leadership>,
    store: Arc<dyn Store>,
    plugins: Plugins,
    options: EngineOptions,
    /// The builder's options per group (under each spec's own).
    group_options: BTreeMap<GroupId, GroupOptions>,
    hooks: Vec<Arc<dyn PlanHook>>,
    events: broadcast::Sender<EngineEvent>,
    /// What the replica believes about leadership; every fence reads it.
    state: watch::Sender<LeadershipState>,
    /// Notified when a term becomes ready or ends.
    changed: Notify,
    /// Notified when the replica stepped down for a newer epoch.
    relead: Notify,
    /// The epoch this replica claimed last (a later claim over it needs no wait).
    last_epoch: StdMutex<Option<Epoch>>,
    terms: Mutex<Option<Leading>>,
    runner: StdMutex<Option<JoinHandle<()>>>,
    /// The tasks feeding external triggers ([`Manager::reconcile_on`]).
    feeds: StdMutex<Vec<JoinHandle<()>>>,
}

/// The term this replica leads in.
struct Leading {
    term: Term,
    /// Set once the epoch is claimed and the stored groups' controllers are started.
    ready: Option<Arc<LeaderTerm>>,
    controllers: BTreeMap<GroupId, Controller>,
    /// Claims the epoch, starts the controllers, then handles their reports.
    task: Option<JoinHandle<()>>,
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    leadership: Arc<dyn Leadership>,
    store: Arc<dyn Store>,
    plugins: Plugins,
    options: EngineOptions,
    group_options: BTreeMap<GroupId, GroupOptions>,
    hooks: Vec<Arc<dyn PlanHook>>,
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

    /// A group's own options, under those of its spec (`Properties.Options`) and over the
    /// engine's: resync, parallelism, settle, pass timeout, call deadlines, events, call
    /// limit.
    ///
    /// ```
    /// use infrakit_core::{Manager, MemoryStore, StaticLeadership, reconcile::GroupOptions};
    /// use std::time::Duration;
    /// let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
    ///     .group_options("databases", GroupOptions::new().parallelism(1).resync(Duration::from_secs(60)))
    ///     .build();
    /// # let _ = manager;
    /// ```
    #[must_use]
    pub fn group_options(mut self, group: impl Into<GroupId>, options: GroupOptions) -> Self {
        self.group_options.insert(group.into(), options);
        self
    }

    /// Adds a [`PlanHook`]: it reviews every plan of every group before anything is done
    /// (and the plans `commit(pretend)` explains). With several hooks, an action runs only
    /// if every hook approves it; a veto wins over a deferral.
    #[must_use]
    pub fn plan_hook(mut self, hook: impl PlanHook + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Builds the manager (not started: see [`Manager::start`]).
    pub fn build(self) -> Manager {
        let (events, _) = broadcast::channel(4096);
        let (state, _) = watch::channel(LeadershipState::Follower { leader: None });
        Manager {
            replica: Arc::new(Replica {
                leadership: self.leadership,
                store: self.store,
                plugins: self.plugins,
                options: self.options,
                group_options: self.group_options,
                hooks: self.hooks,
                events,
                state,
                changed: Notify::new(),
                relead: Notify::new(),
                last_epoch: StdMutex::new(None),
                terms: Mutex::new(None),
                runner: StdMutex::new(None),
                feeds: StdMutex::new(Vec::new()),
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
            group_options: BTreeMap::new(),
            hooks: Vec::new(),
        }
    }

    /// Every action of the engine, as it happens.
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.replica.events.subscribe()
    }

    fn emit(&self, event: EngineEvent) {
        let _ = self.replica.events.send(event);
    }

    /// This replica's leadership as the manager last saw it.
    pub fn leadership(&self) -> LeadershipState {
        self.replica.state.borrow().clone()
    }

    /// The epoch this replica writes with while it leads: the one it claimed for its
    /// current term (`None` while it follows, or before its first claim).
    pub fn epoch(&self) -> Option<Epoch> {
        if !self.replica.state.borrow().is_leader() {
            return None;
        }
        *self
            .replica
            .last_epoch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following leadership in a background task (idempotent).
    pub fn start(&self) {
        let mut runner = self
            .replica
            .runner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if runner.is_some() {
            return;
        }
        let this = self.clone();
        *runner = Some(tokio::spawn(async move { this.run().await }));
    }

    /// Follows leadership until the source's stream ends. [`start`](Self::start) runs this in
    /// a task; call it directly to drive the manager from your own task.
    pub async fn run(&self) {
        let mut states = self.replica.leadership.watch();
        loop {
            tokio::select! {
                state = states.next() => match state {
                    Some(state) => self.on_leadership(state).await,
                    None => break,
                },
                () = self.replica.relead.notified() => {
                    // Stepped down for a newer epoch: lead again only if the source still
                    // says so once the other leader had its chance.
                    tokio::time::sleep((self.replica.options.fence_ttl * 2).max(Duration::from_secs(1))).await;
                    let now = self.replica.leadership.current().await;
                    if now.is_leader() && self.replica.terms.lock().await.is_none() {
                        self.on_leadership(now).await;
                    }
                }
            }
        }
        self.on_leadership(LeadershipState::Follower { leader: None })
            .await;
    }

    /// Stops following leadership, stops every controller, then resigns leadership at its
    /// source ([`Leadership::resign`]) so another replica leads at once. Instances keep
    /// running.
    pub async fn shutdown(&self) {
        let runner = self
            .replica
            .runner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = runner {
            r.abort();
            let _ = r.await;
        }
        let feeds =
            std::mem::take(&mut *self.replica.feeds.lock().unwrap_or_else(|p| p.into_inner()));
        for f in feeds {
            f.abort();
        }
        self.on_leadership(LeadershipState::Follower { leader: None })
            .await;
        self.replica.leadership.resign().await;
    }

    /// Waits until this replica leads, has claimed its epoch and has started its
    /// controllers; [`GroupError::TimedOut`] after `timeout`.
    ///
    /// ```
    /// use infrakit_core::{GroupError, Manager, ManualLeadership, MemoryStore};
    /// use std::time::Duration;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = Manager::builder(ManualLeadership::new(), MemoryStore::new()).build();
    /// manager.start();
    /// // Nobody made this replica the leader:
    /// let err = manager.wait_leading(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err, GroupError::TimedOut { .. }), "{err}");
    /// # });
    /// ```
    pub async fn wait_leading(&self, timeout: Duration) -> Result<Term, GroupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.replica.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(l) = &*self.replica.terms.lock().await
                && l.ready.is_some()
            {
                return Ok(l.term);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(GroupError::TimedOut {
                    what: "waiting to lead".into(),
                    after: timeout,
                });
            }
            let _ =
                tokio::time::timeout_at(deadline.min(now + Duration::from_millis(200)), changed)
                    .await;
        }
    }

    /// Runs a pass of a group each time `triggers` yields its ID (a queue, a webhook, a
    /// file watcher: any stream), like kube-runtime's `reconcile_on`. A trigger while this
    /// replica does not lead, or for a group it does not manage, is dropped (logged). The
    /// feed stops when the stream ends or at [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// use infrakit_core::*;
    /// use infrakit_core::reconcile::EngineEvent;
    /// use std::time::Duration;
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
    ///     .plugins(Plugins::new().instance("sim", Simulator::new()).flavor("vanilla", flavor::Vanilla))
    ///     .build();
    /// manager.start();
    /// manager.wait_leading(Duration::from_secs(5)).await?;
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<GroupId>();
    /// manager.reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    /// let spec = GroupSpec::new("web", PluginSpec::new("sim", serde_json::json!({})),
    ///     PluginSpec::new("vanilla", serde_json::json!({})), Allocation::size(1));
    /// manager.commit(spec, false).await?;
    /// let before = manager.describe(&"web".into()).await?.passes_started;
    /// tx.send("web".into()).unwrap();
    /// while manager.describe(&"web".into()).await?.passes_started <= before {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// manager.shutdown().await;
    /// # Ok::<(), GroupError>(())
    /// # }).unwrap();
    /// ```
    pub fn reconcile_on(&self, triggers: impl futures::Stream<Item = GroupId> + Send + 'static) {
        let this = self.clone();
        let feed = tokio::spawn(async move {
            let mut triggers = std::pin::pin!(triggers);
            while let Some(group) = triggers.next().await {
                if let Err(e) = this.trigger(&group).await {
                    tracing::debug!(%group, error = %e, "external trigger dropped");
                }
            }
        });
        self.replica
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(feed);
    }

    /// Runs a pass of every group this replica controls each time `triggers` yields (a
    /// config reload, a timer of your own), like kube-runtime's `reconcile_all_on`.
    pub fn reconcile_all_on(&self, triggers: impl futures::Stream<Item = ()> + Send + 'static) {
        let this = self.clone();
        let feed = tokio::spawn(async move {
            let mut triggers = std::pin::pin!(triggers);
            while triggers.next().await.is_some() {
                let clients: Vec<ControllerClient> = this
                    .replica
                    .terms
                    .lock()
                    .await
                    .as_ref()
                    .map(|l| l.controllers.values().map(Controller::client).collect())
                    .unwrap_or_default();
                for c in clients {
                    let _ = c.trigger().await;
                }
            }
        });
        self.replica
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(feed);
    }

    /// Waits until a group is converged; [`GroupError::NotConverged`] after `timeout`.
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
                return Err(GroupError::NotConverged {
                    group: id.clone(),
                    waited: timeout,
                    plan: d.plan.unwrap_or_default(),
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
        let mut terms = self.replica.terms.lock().await;
        match state {
            LeadershipState::Leader { term } => {
                if terms.as_ref().is_some_and(|l| l.term == term) {
                    return;
                }
                if let Some(old) = terms.take() {
                    self.stop_term(old).await;
                }
                self.replica.state.send_replace(state);
                tracing::info!(%term, "leading: claiming an epoch");
                self.emit(EngineEvent::LeadershipGained { term });
                let this = self.clone();
                *terms = Some(Leading {
                    term,
                    ready: None,
                    controllers: BTreeMap::new(),
                    task: Some(tokio::spawn(async move { this.lead(term).await })),
                });
            }
            other => {
                // Fence first: every check fails from here on.
                self.replica.state.send_replace(other);
                if let Some(old) = terms.take() {
                    self.stop_term(old).await;
                }
            }
        }
    }

    async fn stop_term(&self, mut leading: Leading) {
        if let Some(t) = leading.task.take() {
            t.abort();
            let _ = t.await;
        }
        for (_, c) in std::mem::take(&mut leading.controllers) {
            c.stop().await;
        }
        tracing::warn!(term = %leading.term, "no longer leading: controllers stopped");
        self.emit(EngineEvent::LeadershipLost { term: leading.term });
        self.replica.changed.notify_waiters();
    }

    /// A term's own task: claim an epoch, start a controller per stored group, then handle
    /// the controllers' reports until the term ends.
    async fn lead(&self, term: Term) {
        let (reports, mut rx) = mpsc::unbounded_channel();
        let Some(leader) = self.claim(term, reports).await else {
            return;
        };
        while let Some(report) = rx.recv().await {
            match report {
                Report::Destroyed { group } => {
                    if let Err(e) = self.forget_destroyed(&leader, &group).await {
                        tracing::warn!(%group, error = %e, "cannot remove a destroyed group from the store");
                    }
                }
                Report::Superseded { current } => {
                    self.superseded(term, current).await;
                    return;
                }
            }
        }
    }

    /// Claims an epoch (retrying while this replica leads in `term`) and starts the stored
    /// groups' controllers. `None` if the term ended first.
    async fn claim(
        &self,
        term: Term,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Option<Arc<LeaderTerm>> {
        let opts = &self.replica.options;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let claim = loop {
            if self.replica.state.borrow().term() != Some(term) {
                return None;
            }
            match FencedStore::claim_in(Arc::clone(&self.replica.store), term).await {
                Ok(c) => break c,
                Err(e) => {
                    let d = backoff.next_delay(None);
                    tracing::warn!(error = %e, retry_in = ?d, "cannot claim an epoch");
                    tokio::time::sleep(d).await;
                }
            }
        };
        let epoch = claim.store.epoch();
        let mine = {
            let mut last = self
                .replica
                .last_epoch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mine = claim.previous.is_none() || claim.previous == *last;
            *last = Some(epoch);
            mine
        };
        let fence = Arc::new(Fence::new(
            self.replica.state.subscribe(),
            term,
            claim.store,
            opts.fence_ttl,
            !mine && !claim.from_leadership,
            claim.from_leadership,
        ));
        let leader = Arc::new(LeaderTerm {
            options: opts.clone(),
            hooks: self.replica.hooks.clone(),
            events: self.replica.events.clone(),
            fence,
            reports,
        });
        self.emit(EngineEvent::EpochClaimed { term, epoch });
        let mut terms = self.replica.terms.lock().await;
        let leading = terms.as_mut().filter(|l| l.term == term)?;
        let global = claim.global;
        for spec in global.groups.values() {
            match self.resolve(spec) {
                Ok(plugins) => {
                    let destroying = global.is_destroying(&spec.id);
                    leading.controllers.insert(
                        spec.id.clone(),
                        Controller::start(spec.clone(), plugins, destroying, Arc::clone(&leader)),
                    );
                }
                Err(e) => {
                    tracing::error!(group = %spec.id, error = %e, "cannot start a controller for a stored group")
                }
            }
        }
        leading.ready = Some(Arc::clone(&leader));
        drop(terms);
        tracing::info!(%term, %epoch, "leading: controllers started");
        self.replica.changed.notify_waiters();
        Some(leader)
    }

    /// A newer epoch is stored while the source still says this replica leads: end the term;
    /// [`run`](Self::run) leads again (with a new epoch) only if the source still says so
    /// after a while.
    async fn superseded(&self, term: Term, current: Epoch) {
        tracing::warn!(%term, %current, "a newer leader claimed the store: stepping down");
        let this = self.clone();
        // The term's own task runs this: stop the term from another task.
        tokio::spawn(async move {
            let mut terms = this.replica.terms.lock().await;
            if terms.as_ref().is_some_and(|l| l.term == term) {
                this.replica
                    .state
                    .send_replace(LeadershipState::Follower { leader: None });
                if let Some(old) = terms.take() {
                    this.stop_term(old).await;
                }
            }
            drop(terms);
            this.replica.relead.notify_one();
        });
    }

    /// The term a mutation acts in, waiting (briefly) for a new leader's claim.
    async fn leading(&self) -> Result<Arc<LeaderTerm>, GroupError> {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            let changed = self.replica.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let terms = self.replica.terms.lock().await;
                match &*terms {
                    Some(Leading {
                        ready: Some(l),
                        term,
                        ..
                    }) if self.replica.state.borrow().term() == Some(*term) => {
                        return Ok(Arc::clone(l));
                    }
                    Some(_) => {}
                    None => return Err(self.not_leader()),
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.not_leader());
            }
        }
    }

    fn not_leader(&self) -> GroupError {
        GroupError::NotLeader {
            leader: self
                .replica
                .state
                .borrow()
                .leader_location()
                .map(str::to_owned),
        }
    }

    /// A group's plugins and effective options: the spec's options over the builder's.
    fn resolve(&self, spec: &GroupSpec) -> Result<GroupPlugins, SpecError> {
        let options = match self.replica.group_options.get(&spec.id) {
            Some(builder) => spec.options.or(builder),
            None => spec.options.clone(),
        };
        self.replica
            .plugins
            .resolve_group(spec, &options, &self.replica.options.timeouts)
    }

    /// The controller of a group, if it runs here (in the current term).
    async fn controller(&self, id: &GroupId) -> Option<ControllerClient> {
        let terms = self.replica.terms.lock().await;
        terms
            .as_ref()
            .and_then(|l| l.controllers.get(id))
            .map(Controller::client)
    }

    /// The controller of a group in `leader`'s term, or `UnknownGroup`.
    async fn controller_in(
        &self,
        leader: &Arc<LeaderTerm>,
        id: &GroupId,
    ) -> Result<ControllerClient, GroupError> {
        let terms = self.replica.terms.lock().await;
        let leading = terms
            .as_ref()
            .filter(|l| l.ready.as_ref().is_some_and(|r| Arc::ptr_eq(r, leader)))
            .ok_or_else(|| self.not_leader())?;
        leading
            .controllers
            .get(id)
            .map(Controller::client)
            .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })
    }

    /// Runs a read-only step, retrying transient provider errors a few times with backoff,
    /// so a throttled `validate` or `describe` does not fail a user's call.
    async fn retrying<T, F, Fut>(&self, mut step: F) -> Result<T, GroupError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GroupError>>,
    {
        let mut backoff = Backoff::new(
            self.replica.options.backoff_base,
            self.replica.options.backoff_max.min(Duration::from_secs(2)),
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

    /// The plugins' own validation of a spec, each within the validate deadline.
    async fn validate(spec: &GroupSpec, plugins: &GroupPlugins) -> Result<(), GroupError> {
        let after = plugins.timeouts.get(PluginCall::Validate);
        let timed_out = InstanceError::TimedOut {
            operation: PluginCall::Validate,
            after,
        };
        tokio::time::timeout(after, plugins.instance.validate(&spec.instance.properties))
            .await
            .unwrap_or(Err(timed_out))
            .map_err(|e| match e {
                crate::instance::InstanceError::InvalidProperties(s) => {
                    GroupError::InvalidSpec(s.under("Properties.Instance.Properties"))
                }
                other => other.into(),
            })?;
        let timed_out = FlavorError::TimedOut {
            operation: PluginCall::Validate,
            after,
        };
        tokio::time::timeout(
            after,
            plugins
                .flavor
                .validate(&spec.flavor.properties, &spec.allocation),
        )
        .await
        .unwrap_or(Err(timed_out))
        .map_err(|e| match e {
            crate::flavor::FlavorError::InvalidProperties(s) => {
                GroupError::InvalidSpec(s.under("Properties.Flavor.Properties"))
            }
            other => other.into(),
        })
    }

    /// A plan for `spec` against what exists now, without acting: the group's controller
    /// plans it if the group runs here; otherwise it is observed read-only.
    async fn preview(
        &self,
        spec: &GroupSpec,
        plugins: &GroupPlugins,
        destroying: bool,
    ) -> Result<Plan, GroupError> {
        match self.controller(&spec.id).await {
            Some(c) => c.preview(spec.clone(), plugins.clone()).await,
            None => {
                preview_detached(
                    spec,
                    plugins.clone(),
                    &self.replica.options,
                    &self.replica.hooks,
                    destroying,
                )
                .await
            }
        }
    }

    /// Writes the stored specs with the term's epoch. A refusal for a newer epoch means
    /// another replica leads: the term ends here too, not only for this call.
    async fn write<T>(
        &self,
        leader: &Arc<LeaderTerm>,
        change: impl FnMut(&mut GlobalSpec) -> Result<T, GroupError>,
    ) -> Result<T, GroupError> {
        let r = leader.fence.store().update(change).await;
        if let Err(GroupError::Store(StoreError::Fenced { current, .. })) = &r {
            let _ = leader
                .reports
                .send(Report::Superseded { current: *current });
        }
        r
    }

    async fn stored(&self) -> Result<GlobalSpec, GroupError> {
        Ok(self
            .replica
            .store
            .load()
            .await?
            .map(|v| v.value)
            .unwrap_or_default())
    }

    /// Removes a destroyed group from the store (only while it is still marked destroying:
    /// a commit since then manages it again), stops its controller and reports it.
    async fn forget_destroyed(
        &self,
        leader: &Arc<LeaderTerm>,
        id: &GroupId,
    ) -> Result<(), GroupError> {
        let gid = id.clone();
        let removed = self
            .write(leader, move |global| {
                Ok::<_, GroupError>(global.is_destroying(&gid) && global.remove(&gid).is_some())
            })
            .await?;
        if removed {
            self.stop_controller(id).await;
            tracing::info!(group = %id, "destroyed and forgotten");
            self.emit(EngineEvent::GroupDestroyed { group: id.clone() });
        }
        Ok(())
    }

    async fn stop_controller(&self, id: &GroupId) {
        let c = self
            .replica
            .terms
            .lock()
            .await
            .as_mut()
            .and_then(|l| l.controllers.remove(id));
        if let Some(c) = c {
            c.stop().await;
        }
    }
}

#[async_trait]
impl Group for Manager {
    async fn commit(&self, spec: GroupSpec, pretend: bool) -> Result<String, GroupError> {
        spec.validate()?;
        let plugins = self.resolve(&spec)?;
        self.retrying(|| Self::validate(&spec, &plugins)).await?;
        let plan = self
            .retrying(|| self.preview(&spec, &plugins, false))
            .await?;
        if pretend {
            return Ok(plan.explain());
        }
        let leader = self.leading().await?;
        let stored = spec.clone();
        self.write(&leader, move |global| {
            global.put(stored.clone());
            Ok::<_, GroupError>(())
        })
        .await?;
        let mut terms = self.replica.terms.lock().await;
        let leading = terms
            .as_mut()
            .filter(|l| l.ready.as_ref().is_some_and(|r| Arc::ptr_eq(r, &leader)))
            .ok_or_else(|| self.not_leader())?;
        match leading.controllers.get(&spec.id) {
            Some(c) => {
                let c = c.client();
                drop(terms);
                c.set_spec(spec, Some(plugins)).await?;
            }
            None => {
                leading.controllers.insert(
                    spec.id.clone(),
                    Controller::start(spec, plugins, false, Arc::clone(&leader)),
                );
            }
        }
        Ok(plan.explain())
    }

    async fn free(&self, id: &GroupId) -> Result<(), GroupError> {
        let leader = self.leading().await?;
        let gid = id.clone();
        self.write(&leader, move |global| match global.remove(&gid) {
            Some(_) => Ok(()),
            None => Err(GroupError::UnknownGroup { id: gid.clone() }),
        })
        .await?;
        self.stop_controller(id).await;
        self.emit(EngineEvent::GroupFreed { group: id.clone() });
        Ok(())
    }

    async fn destroy(&self, id: &GroupId) -> Result<(), GroupError> {
        let leader = self.leading().await?;
        // The intent first: a leader after this one resumes the destroy.
        let gid = id.clone();
        self.write(&leader, move |global| {
            if !global.groups.contains_key(&gid) {
                return Err(GroupError::UnknownGroup { id: gid.clone() });
            }
            global.destroying.insert(gid.clone());
            Ok(())
        })
        .await?;
        let controller = match self.controller_in(&leader, id).await {
            Ok(c) => c,
            Err(GroupError::UnknownGroup { .. }) => {
                // Stored but not running (its plugins did not resolve): nothing to destroy
                // here; the mark stays until a commit or a leader that can reach them.
                return Err(GroupError::UnknownGroup { id: id.clone() });
            }
            Err(e) => return Err(e),
        };
        controller.destroy().await?;
        self.forget_destroyed(&leader, id).await
    }

    async fn describe(&self, id: &GroupId) -> Result<GroupDescription, GroupError> {
        if let Some(c) = self.controller(id).await {
            return c.describe().await;
        }
        // Not controlled here (a follower): observe, read-only.
        let global = self.stored().await?;
        let spec = global
            .get(id)
            .cloned()
            .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })?;
        let plugins = self.resolve(&spec)?;
        let destroying = global.is_destroying(id);
        let plan = self
            .retrying(|| self.preview(&spec, &plugins, destroying))
            .await?;
        Ok(GroupDescription {
            converged: plan.converged() && !destroying,
            plan: Some(plan.explain()),
            update: Some(plan.update.clone()),
            ..GroupDescription::default()
        })
    }

    async fn inspect(&self) -> Result<Vec<GroupSpec>, GroupError> {
        Ok(self.stored().await?.groups.into_values().collect())
    }

    async fn destroy_instances(&self, id: &GroupId, ids: &[InstanceId]) -> Result<(), GroupError> {
        let leader = self.leading().await?;
        let controller = self.controller_in(&leader, id).await?;
        // The controller holds its passes from here until the size is lowered (or released).
        let outcome = controller.destroy_members(ids.to_vec()).await?;
        let gone = outcome.destroyed.len();
        if gone > 0 {
            let gid = id.clone();
            let lowered = self
                .write(&leader, move |global| {
                    let s = global
                        .groups
                        .get_mut(&gid)
                        .ok_or_else(|| GroupError::UnknownGroup { id: gid.clone() })?;
                    if let Allocation::Size(n) = s.allocation {
                        s.allocation = Allocation::Size(n.saturating_sub(gone as u32));
                    }
                    Ok(s.clone())
                })
                .await;
            match lowered {
                Ok(spec) => controller.set_spec(spec, None).await?,
                Err(e) => {
                    controller.release();
                    return Err(e);
                }
            }
        }
        match outcome.error {
            Some(cause) => Err(GroupError::PartialDestroy {
                group: id.clone(),
                destroyed: gone,
                remaining: ids
                    .iter()
                    .filter(|i| !outcome.destroyed.contains(i))
                    .cloned()
                    .collect(),
                cause: Box::new(cause),
            }),
            None => Ok(()),
        }
    }

    async fn size(&self, id: &GroupId) -> Result<u32, GroupError> {
        self.stored()
            .await?
            .get(id)
            .map(|s| s.allocation.target_size() as u32)
            .ok_or_else(|| GroupError::UnknownGroup { id: id.clone() })
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
    /// manager.wait_leading(std::time::Duration::from_secs(30)).await?;
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
        match self.controller(id).await {
            Some(c) => c.trigger().await,
            None => {
                self.leading().await?;
                Err(GroupError::UnknownGroup { id: id.clone() })
            }
        }
    }

    async fn set_size(&self, id: &GroupId, size: u32) -> Result<(), GroupError> {
        let leader = self.leading().await?;
        let gid = id.clone();
        let updated = self
            .write(&leader, move |global| {
                let s = global
                    .groups
                    .get_mut(&gid)
                    .ok_or_else(|| GroupError::UnknownGroup { id: gid.clone() })?;
                if s.allocation.is_quorum() {
                    return Err::<GroupSpec, GroupError>(
                        SpecError::new(
                            "Properties.Allocation",
                            "a quorum group's size is its list of logical IDs: commit a new spec",
                        )
                        .into(),
                    );
                }
                s.allocation = Allocation::Size(size);
                Ok(s.clone())
            })
            .await?;
        if let Some(c) = self.controller(id).await {
            c.set_spec(updated, None).await?;
        }
        Ok(())
    }
}
