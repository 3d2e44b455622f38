//! A group controller: one task per group, driven by [`Trigger`]s, running reconcile passes
//! (observe → plan → execute) with bounded parallelism, backoff and fencing.

use super::backoff::Backoff;
use super::event::{EngineEvent, Trigger};
use super::plan::{
    Action, Cause, InFlight, Member, Plan, PlanInput, UpdateClock, UpdateProgress, plan,
};
use super::rate::RateLimiter;
use crate::error::Classify;
use crate::flavor::{Flavor, FlavorError, Health, Index};
use crate::group::{GroupDescription, GroupError, GroupSpec, MemberStatus};
use crate::id::{GroupId, InstanceId, LogicalId};
use crate::instance::{
    Description, DestroyContext, Instance, InstanceError, InstanceEvent, InstanceSpec,
};
use crate::leadership::{LeadershipState, Term};
use crate::tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Tags};
use futures::StreamExt;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How the engine runs. The defaults suit a cloud provider; tests and demos shorten them.
///
/// | option | default |
/// |---|---|
/// | [`resync`](Self::resync) | 10 s |
/// | [`parallelism`](Self::parallelism) | 16 calls per group |
/// | [`calls_per_second`](Self::calls_per_second) | 50, for all groups of a manager |
/// | [`backoff_base`](Self::backoff_base) / [`backoff_max`](Self::backoff_max) | 200 ms / 30 s |
/// | [`settle`](Self::settle) | 100 ms |
/// | [`describe_lag`](Self::describe_lag) | 60 s |
///
/// Built from the default with one method per option (the struct may grow):
///
/// ```
/// use infrakit_core::EngineOptions;
/// use std::time::Duration;
///
/// let options = EngineOptions::default()
///     .resync(Duration::from_secs(1))
///     .calls_per_second(None); // an embedded provider: no limit
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
    /// Global limit on provider calls per second (all groups of a manager); `None`: no limit.
    pub calls_per_second: Option<u32>,
    /// First retry delay after a failed pass.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Delay before re-observing after a pass that changed something.
    pub settle: Duration,
    /// How long a provisioned instance may stay invisible to `describe` (eventually
    /// consistent providers) before it is no longer counted.
    pub describe_lag: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(10),
            parallelism: 16,
            calls_per_second: Some(50),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            settle: Duration::from_millis(100),
            describe_lag: Duration::from_secs(60),
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

    /// Sets the limit on provider calls per second for all groups; `None` lifts it.
    pub fn calls_per_second(mut self, calls_per_second: Option<u32>) -> Self {
        self.calls_per_second = calls_per_second;
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
}

/// The leadership term a controller acts for. Every provider mutation checks it first; when
/// the term ends the check fails and the pass stops.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub(crate) rx: watch::Receiver<LeadershipState>,
    pub(crate) term: Term,
}

impl Fence {
    pub(crate) fn check(&self) -> Result<(), PassError> {
        match &*self.rx.borrow() {
            LeadershipState::Leader { term } if *term == self.term => Ok(()),
            _ => Err(PassError::Fenced),
        }
    }
}

/// Shared by every controller of one leadership term.
pub(crate) struct Context {
    pub(crate) options: EngineOptions,
    pub(crate) events: broadcast::Sender<EngineEvent>,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) fence: Fence,
}

impl Context {
    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }
}

/// Why a pass failed.
#[derive(Debug, Clone)]
pub(crate) enum PassError {
    /// The leadership term ended.
    Fenced,
    /// A plugin call failed.
    Group(GroupError),
}

impl From<InstanceError> for PassError {
    fn from(e: InstanceError) -> Self {
        PassError::Group(e.into())
    }
}

impl From<FlavorError> for PassError {
    fn from(e: FlavorError) -> Self {
        PassError::Group(e.into())
    }
}

/// How long until the first member's health passes its healing limit, if any will.
fn healing_wake(spec: &GroupSpec, members: &[Member]) -> Option<Duration> {
    members
        .iter()
        .filter_map(|m| {
            let limit = match m.health {
                Health::Healthy => None,
                Health::Unhealthy => spec.healing.replace_unhealthy_after,
                Health::Unknown => spec.healing.replace_unknown_after,
            }?;
            Some(limit.saturating_sub(m.health_age))
        })
        .min()
}

#[derive(Debug, Clone, Copy)]
struct HealthRecord {
    /// The last answer; `None` after a failed check.
    health: Option<Health>,
    since: Instant,
    first_seen: u64,
}

#[derive(Debug, Default)]
struct UpdateTrack {
    hash: Option<String>,
    started: Option<Instant>,
    failed: bool,
}

/// What a controller remembers between passes. Held (locked) for the whole of a pass.
#[derive(Debug, Default)]
pub(crate) struct Work {
    health: HashMap<InstanceId, HealthRecord>,
    seen: u64,
    /// Provisioned, not yet seen in a describe: (logical ID, when).
    recent: HashMap<InstanceId, (Option<LogicalId>, Instant)>,
    update: UpdateTrack,
    sequence: u64,
    converged_reported: bool,
}

/// The latest view of a group, for `describe`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub(crate) description: GroupDescription,
}

/// The parts of a controller shared with the manager.
pub(crate) struct Shared {
    pub(crate) id: GroupId,
    pub(crate) spec: RwLock<GroupSpec>,
    pub(crate) status: RwLock<Status>,
    pub(crate) work: Mutex<Work>,
    pub(crate) destroying: AtomicBool,
    pub(crate) instance: Arc<dyn Instance>,
    pub(crate) flavor: Arc<dyn Flavor>,
    pub(crate) ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<Trigger>,
    /// Bumped by every spec change, so a pass planned on an older spec never reports
    /// the group converged.
    generation: AtomicU64,
    /// Passes started so far; the running (or last) pass has this number.
    passes: AtomicU64,
}

/// A running controller.
pub(crate) struct Controller {
    pub(crate) shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Starts a controller task (and a task forwarding the provider's events).
    pub(crate) fn start(
        spec: GroupSpec,
        instance: Arc<dyn Instance>,
        flavor: Arc<dyn Flavor>,
        ctx: Arc<Context>,
    ) -> Controller {
        let (shared, rx) = Shared::new(spec, instance, flavor, ctx);
        let shared = Arc::new(shared);
        let mut tasks = Vec::new();
        if let Some(events) = shared.instance.events() {
            tasks.push(tokio::spawn(forward_events(
                shared.id.clone(),
                events,
                shared.triggers.clone(),
            )));
        }
        shared.ctx.emit(EngineEvent::GroupStarted {
            group: shared.id.clone(),
        });
        let runner = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move { runner.run(rx).await }));
        Controller { shared, tasks }
    }

    /// Stops the controller's tasks and waits until they are gone. Instances are left alone.
    pub(crate) async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Controller {
    /// A controller dropped without [`stop`](Controller::stop) still stops acting.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn forward_events(
    group: GroupId,
    mut events: crate::instance::InstanceEvents,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    while let Some(event) = events.next().await {
        let ours = match &event {
            InstanceEvent::Lagged => true,
            other => other
                .tags()
                .is_some_and(|t| t.get(GROUP_TAG) == Some(group.as_str())),
        };
        tracing::trace!(%group, ours, ?event, "provider event");
        if ours && triggers.send(Trigger::ProviderEvent).is_err() {
            return;
        }
    }
}

struct Outcome {
    requeue: Option<Duration>,
}

impl Shared {
    fn new(
        spec: GroupSpec,
        instance: Arc<dyn Instance>,
        flavor: Arc<dyn Flavor>,
        ctx: Arc<Context>,
    ) -> (Shared, mpsc::UnboundedReceiver<Trigger>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            id: spec.id.clone(),
            spec: RwLock::new(spec),
            status: RwLock::new(Status::default()),
            work: Mutex::new(Work::default()),
            destroying: AtomicBool::new(false),
            instance,
            flavor,
            ctx,
            triggers: tx,
            generation: AtomicU64::new(0),
            passes: AtomicU64::new(0),
        };
        (shared, rx)
    }

    pub(crate) fn trigger(&self, t: Trigger) {
        let _ = self.triggers.send(t);
    }

    pub(crate) fn spec(&self) -> GroupSpec {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the spec; until a pass has planned with it, the group is not converged.
    pub(crate) fn set_spec(&self, spec: GroupSpec) {
        let mut guard = self.spec.write().unwrap_or_else(|p| p.into_inner());
        *guard = spec;
        self.generation.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        self.mark_stale();
    }

    /// Marks the published status as out of date (after a spec or mode change).
    pub(crate) fn mark_stale(&self) {
        let mut st = self.status.write().unwrap_or_else(|p| p.into_inner());
        st.description.converged = false;
        st.description.plan = Some("spec changed: planning".into());
    }

    fn spec_and_generation(&self) -> (GroupSpec, u64) {
        let guard = self.spec.read().unwrap_or_else(|p| p.into_inner());
        (guard.clone(), self.generation.load(Ordering::SeqCst))
    }

    pub(crate) fn description(&self) -> GroupDescription {
        let mut d = self
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .description
            .clone();
        d.passes_started = self.passes.load(Ordering::SeqCst);
        d
    }

    /// Passes started so far: a pass numbered higher starts after this call.
    pub(crate) fn passes_started(&self) -> u64 {
        self.passes.load(Ordering::SeqCst)
    }

    /// Records a failed pass: the group is not known to be converged any more.
    fn set_last_error(&self, error: String) {
        let mut st = self.status.write().unwrap_or_else(|p| p.into_inner());
        st.description.last_error = Some(error);
        st.description.converged = false;
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Trigger>) {
        let opts = self.ctx.options.clone();
        let mut backoff = Backoff::new(opts.backoff_base, opts.backoff_max);
        let mut trigger = Trigger::LeadershipChanged;
        loop {
            let span = tracing::info_span!("reconcile", group = %self.id, ?trigger);
            let result = {
                let mut work = self.work.lock().await;
                self.passes.fetch_add(1, Ordering::SeqCst);
                self.pass(&mut work).instrument(span).await
            };
            metrics::counter!("infrakit_reconcile_passes_total", "group" => self.id.to_string())
                .increment(1);
            let (delay, next) = match result {
                Ok(outcome) => {
                    backoff.reset();
                    match outcome.requeue {
                        Some(d) => (d, Trigger::Retry),
                        None => (opts.resync, Trigger::Resync),
                    }
                }
                Err(PassError::Fenced) => {
                    tracing::info!(group = %self.id, "term ended: controller stops");
                    return;
                }
                Err(PassError::Group(e)) => {
                    let delay = backoff.next_delay(e.retry_after());
                    metrics::counter!("infrakit_reconcile_errors_total", "group" => self.id.to_string())
                        .increment(1);
                    tracing::warn!(group = %self.id, error = %e, transient = e.is_transient(), retry_in = ?delay, "reconcile pass failed");
                    self.set_last_error(e.to_string());
                    self.ctx.emit(EngineEvent::PassFailed {
                        group: self.id.clone(),
                        error: e.to_string(),
                        retry_in: delay,
                    });
                    (delay, Trigger::Retry)
                }
            };
            let deadline = Instant::now() + delay;
            trigger = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => next,
                t = rx.recv() => match t {
                    Some(t) => t,
                    None => return,
                },
            };
            // Coalesce whatever else queued up: one pass observes it all.
            while rx.try_recv().is_ok() {}
        }
    }

    fn group_tags(&self) -> Tags {
        Tags::new().with(GROUP_TAG, self.id.as_str())
    }

    async fn limited(&self) {
        if let Some(l) = &self.ctx.limiter {
            l.acquire().await;
        }
    }

    /// Describes the group's members, timing the call.
    pub(crate) async fn describe_members(&self) -> Result<Vec<Description>, InstanceError> {
        self.limited().await;
        let start = std::time::Instant::now();
        let result = self.instance.describe(&self.group_tags(), false).await;
        metrics::histogram!("infrakit_provider_call_seconds", "op" => "describe")
            .record(start.elapsed().as_secs_f64());
        // Never trust the provider's filtering with what we may destroy.
        result.map(|all| {
            all.into_iter()
                .filter(|d| d.tags.get(GROUP_TAG) == Some(self.id.as_str()))
                .collect()
        })
    }

    /// The flavor's answer for each member; `None` where the check itself failed.
    async fn health_of(
        &self,
        spec: &GroupSpec,
        descriptions: &[Description],
    ) -> Vec<Option<Health>> {
        let props = &spec.flavor.properties;
        let checks: Vec<BoxFuture<'_, Option<Health>>> = descriptions
            .iter()
            .map(|d| -> BoxFuture<'_, Option<Health>> {
                Box::pin(async move {
                    match self.flavor.healthy(props, d).await {
                        Ok(h) => Some(h),
                        Err(e) => {
                            tracing::debug!(id = %d.id, error = %e, "health check failed: unknown");
                            None
                        }
                    }
                })
            })
            .collect();
        futures::stream::iter(checks)
            .buffered(self.ctx.options.parallelism.max(1))
            .collect()
            .await
    }

    /// Observes and plans without acting (for `commit(pretend)` and `describe`).
    pub(crate) async fn preview(&self, spec: &GroupSpec) -> Result<Plan, GroupError> {
        let mut work = self.work.lock().await;
        let descriptions = self.describe_members().await?;
        let healths = self.health_of(spec, &descriptions).await;
        let members = work.observe(descriptions, healths, Instant::now());
        let in_flight = work.in_flight(Instant::now(), self.ctx.options.describe_lag);
        let hash = spec.config_hash();
        let clock = work.clock(&hash);
        Ok(plan(PlanInput {
            spec,
            config_hash: &hash,
            members: &members,
            in_flight: &in_flight,
            update: clock,
            destroying: self.destroying.load(Ordering::SeqCst),
        }))
    }

    /// One reconcile pass: observe, plan, execute.
    async fn pass(&self, work: &mut Work) -> Result<Outcome, PassError> {
        self.ctx.fence.check()?;
        let (spec, generation) = self.spec_and_generation();
        let hash = spec.config_hash();
        let descriptions = self.describe_members().await?;
        let healths = self.health_of(&spec, &descriptions).await;
        let now = Instant::now();
        let members = work.observe(descriptions, healths, now);
        let in_flight = work.in_flight(now, self.ctx.options.describe_lag);
        let update_event = self.track_update(work, &hash, &members, now);
        let destroying = self.destroying.load(Ordering::SeqCst);
        let plan = plan(PlanInput {
            spec: &spec,
            config_hash: &hash,
            members: &members,
            in_flight: &in_flight,
            update: work.clock(&hash),
            destroying,
        });
        let fresh = generation == self.generation.load(Ordering::SeqCst);
        self.publish(&hash, &members, &plan, fresh);
        if let Some(e) = update_event {
            self.ctx.emit(e);
        }
        // An update is complete when no member is outdated and the group is whole again.
        if work.update.started.is_some()
            && plan.update == UpdateProgress::UpToDate
            && plan.converged()
        {
            work.update.started = None;
            work.update.failed = false;
            tracing::info!(group = %self.id, hash, "rolling update completed");
            self.ctx.emit(EngineEvent::UpdateCompleted {
                group: self.id.clone(),
                hash: hash.clone(),
            });
        }
        if let UpdateProgress::Failed { outdated } = plan.update
            && !work.update.failed
        {
            work.update.failed = true;
            let reason = format!(
                "deadline {:?} passed with {outdated} members outdated",
                spec.update.deadline.unwrap_or_default()
            );
            tracing::error!(group = %self.id, %reason, "rolling update failed");
            self.ctx.emit(EngineEvent::UpdateFailed {
                group: self.id.clone(),
                reason,
            });
        }
        tracing::debug!(group = %self.id, plan = %plan, actions = plan.actions.len(), "planned");

        if plan.actions.is_empty() {
            if plan.converged() && !destroying && fresh {
                if !work.converged_reported {
                    work.converged_reported = true;
                    self.ctx.emit(EngineEvent::Converged {
                        group: self.id.clone(),
                        size: plan.target,
                    });
                }
                // Look again when a member's health passes a healing limit, if one will.
                let requeue = healing_wake(&spec, &members)
                    .map(|d| d.clamp(Duration::from_millis(10), self.ctx.options.resync));
                return Ok(Outcome { requeue });
            }
            // Waiting for time to pass (health gating, describe lag): look again soon.
            return Ok(Outcome {
                requeue: Some(self.waiting_requeue(&spec, &members)),
            });
        }
        work.converged_reported = false;
        let by_id: HashMap<&InstanceId, &Description> =
            members.iter().map(|m| (m.id(), &m.description)).collect();
        type Done = (Action, Result<Option<InstanceId>, PassError>);
        let mut steps: Vec<BoxFuture<'_, Done>> = Vec::with_capacity(plan.actions.len());
        for action in plan.actions.iter().cloned() {
            let sequence = work.next_sequence();
            let desc = match &action {
                Action::Destroy { id, .. } | Action::Adopt { id } => {
                    by_id.get(id).map(|d| (*d).clone())
                }
                Action::Provision { .. } => None,
            };
            let spec = &spec;
            let hash = hash.as_str();
            steps.push(Box::pin(async move {
                let r = self.execute(spec, hash, &action, desc, sequence).await;
                (action, r)
            }));
        }
        let results: Vec<Done> = futures::stream::iter(steps)
            .buffer_unordered(self.ctx.options.parallelism.max(1))
            .collect()
            .await;

        let mut first_error: Option<PassError> = None;
        for (action, result) in results {
            match result {
                Ok(Some(id)) => {
                    if let Action::Provision { logical_id, .. } = action {
                        work.recent.insert(id, (logical_id, Instant::now()));
                    }
                }
                Ok(None) => {}
                Err(PassError::Fenced) => return Err(PassError::Fenced),
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Outcome {
                requeue: Some(self.ctx.options.settle),
            }),
        }
    }

    fn waiting_requeue(&self, spec: &GroupSpec, members: &[Member]) -> Duration {
        let opts = &self.ctx.options;
        // The soonest moment a new member passes its minimum healthy time.
        let gate = members
            .iter()
            .filter(|m| m.health == Health::Healthy && m.health_age < spec.update.min_healthy)
            .map(|m| spec.update.min_healthy - m.health_age)
            .min();
        let d = gate.unwrap_or(opts.settle.max(Duration::from_millis(250)));
        let d = healing_wake(spec, members).map_or(d, |h| h.min(d));
        d.clamp(Duration::from_millis(10), opts.resync)
    }

    fn track_update(
        &self,
        work: &mut Work,
        hash: &str,
        members: &[Member],
        now: Instant,
    ) -> Option<EngineEvent> {
        let outdated = members
            .iter()
            .filter(|m| {
                m.description
                    .tags
                    .get(CONFIG_HASH_TAG)
                    .is_some_and(|h| h != hash)
            })
            .count();
        if work.update.hash.as_deref() != Some(hash) {
            // A new configuration: a new update (or none).
            work.update = UpdateTrack {
                hash: Some(hash.to_owned()),
                started: (outdated > 0).then_some(now),
                failed: false,
            };
            if outdated > 0 {
                tracing::info!(group = %self.id, hash, outdated, "rolling update started");
                return Some(EngineEvent::UpdateStarted {
                    group: self.id.clone(),
                    hash: hash.to_owned(),
                    outdated,
                });
            }
        } else if outdated > 0 && work.update.started.is_none() {
            work.update.started = Some(now);
        }
        None
    }

    fn publish(&self, hash: &str, members: &[Member], plan: &Plan, fresh: bool) {
        let mut healthy = 0u32;
        let mut unhealthy = 0u32;
        let mut unknown = 0u32;
        let mut outdated = 0u32;
        let statuses: Vec<MemberStatus> = members
            .iter()
            .map(|m| {
                let up_to_date = m
                    .description
                    .tags
                    .get(CONFIG_HASH_TAG)
                    .is_none_or(|h| h == hash);
                match m.health {
                    Health::Healthy => healthy += 1,
                    Health::Unhealthy => unhealthy += 1,
                    Health::Unknown => unknown += 1,
                }
                outdated += u32::from(!up_to_date);
                MemberStatus {
                    id: m.id().clone(),
                    logical_id: m.description.effective_logical_id(),
                    health: m.health,
                    up_to_date,
                }
            })
            .collect();
        let g = self.id.to_string();
        metrics::gauge!("infrakit_group_members", "group" => g.clone(), "state" => "healthy")
            .set(healthy);
        metrics::gauge!("infrakit_group_members", "group" => g.clone(), "state" => "unhealthy")
            .set(unhealthy);
        metrics::gauge!("infrakit_group_members", "group" => g.clone(), "state" => "unknown")
            .set(unknown);
        metrics::gauge!("infrakit_group_members", "group" => g, "state" => "outdated")
            .set(outdated);
        let mut st = self.status.write().unwrap_or_else(|p| p.into_inner());
        st.description = GroupDescription {
            instances: members.iter().map(|m| m.description.clone()).collect(),
            converged: fresh && plan.converged() && !self.destroying.load(Ordering::SeqCst),
            members: statuses,
            update: Some(plan.update.clone()),
            plan: Some(plan.explain()),
            // This pass observed the provider; an error of its actions is set afterwards.
            last_error: None,
            pass: self.passes.load(Ordering::SeqCst),
            passes_started: 0,
        };
    }

    /// Executes one action. Returns the new instance's ID for a provision.
    async fn execute(
        &self,
        spec: &GroupSpec,
        hash: &str,
        action: &Action,
        desc: Option<Description>,
        sequence: u64,
    ) -> Result<Option<InstanceId>, PassError> {
        match action {
            Action::Provision {
                logical_id,
                attachments,
                cause,
            } => {
                self.ctx.emit(EngineEvent::Provisioning {
                    group: self.id.clone(),
                    logical_id: logical_id.clone(),
                    cause: *cause,
                });
                match self
                    .provision(spec, hash, logical_id, attachments, sequence)
                    .await
                {
                    Ok(id) => {
                        tracing::info!(group = %self.id, %id, logical_id = ?logical_id, %cause, "provisioned");
                        self.ctx.emit(EngineEvent::Provisioned {
                            group: self.id.clone(),
                            id: id.clone(),
                            logical_id: logical_id.clone(),
                            cause: *cause,
                        });
                        Ok(Some(id))
                    }
                    Err(PassError::Fenced) => Err(PassError::Fenced),
                    Err(PassError::Group(e)) => {
                        self.ctx.emit(EngineEvent::ProvisionFailed {
                            group: self.id.clone(),
                            logical_id: logical_id.clone(),
                            error: e.to_string(),
                        });
                        Err(PassError::Group(e))
                    }
                }
            }
            Action::Destroy { id, context, cause } => {
                let Some(desc) = desc else {
                    return Ok(None);
                };
                match self.drain_and_destroy(spec, &desc, *context).await {
                    Ok(()) => {
                        tracing::info!(group = %self.id, %id, %cause, "destroyed");
                        self.ctx.emit(EngineEvent::Destroyed {
                            group: self.id.clone(),
                            id: id.clone(),
                            cause: *cause,
                        });
                        Ok(None)
                    }
                    Err(PassError::Fenced) => Err(PassError::Fenced),
                    Err(PassError::Group(e)) => {
                        self.ctx.emit(EngineEvent::DestroyFailed {
                            group: self.id.clone(),
                            id: id.clone(),
                            error: e.to_string(),
                        });
                        Err(PassError::Group(e))
                    }
                }
            }
            Action::Adopt { id } => {
                let labels = Tags::new().with(CONFIG_HASH_TAG, hash);
                self.ctx.fence.check()?;
                self.limited().await;
                self.ctx.fence.check()?;
                self.timed("label", self.instance.label(id, &labels))
                    .await?;
                self.ctx.emit(EngineEvent::Adopted {
                    group: self.id.clone(),
                    id: id.clone(),
                });
                Ok(None)
            }
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, InstanceError>>,
    ) -> Result<T, InstanceError> {
        let start = std::time::Instant::now();
        let r = fut.await;
        metrics::histogram!("infrakit_provider_call_seconds", "op" => op)
            .record(start.elapsed().as_secs_f64());
        r
    }

    async fn provision(
        &self,
        spec: &GroupSpec,
        hash: &str,
        logical_id: &Option<LogicalId>,
        attachments: &[crate::instance::Attachment],
        sequence: u64,
    ) -> Result<InstanceId, PassError> {
        let mut ours = Tags::new()
            .with(GROUP_TAG, self.id.as_str())
            .with(CONFIG_HASH_TAG, hash);
        if let Some(l) = logical_id {
            ours.insert(LOGICAL_ID_TAG, l.as_str());
        }
        let mut base = InstanceSpec::new(spec.instance.properties.clone());
        base.tags = ours.clone();
        base.logical_id = logical_id.clone();
        base.attachments = attachments.to_vec();
        let index = Index {
            group: self.id.clone(),
            sequence,
        };
        let mut prepared = self
            .flavor
            .prepare(&spec.flavor.properties, base, &spec.allocation, &index)
            .await?;
        // The controller's tags and identity are not the flavor's to change.
        prepared.tags.merge(&ours);
        prepared.logical_id = logical_id.clone();
        self.ctx.fence.check()?;
        self.limited().await;
        self.ctx.fence.check()?;
        Ok(self
            .timed("provision", self.instance.provision(prepared))
            .await?)
    }

    async fn drain_and_destroy(
        &self,
        spec: &GroupSpec,
        desc: &Description,
        context: DestroyContext,
    ) -> Result<(), PassError> {
        // Only members: the planner only names described members, but a destroy is
        // irreversible, so check the tag once more.
        if desc.tags.get(GROUP_TAG) != Some(self.id.as_str()) {
            return Err(PassError::Group(GroupError::NotMember {
                group: self.id.clone(),
                ids: vec![desc.id.clone()],
            }));
        }
        self.ctx.fence.check()?;
        self.flavor.drain(&spec.flavor.properties, desc).await?;
        self.ctx.fence.check()?;
        self.limited().await;
        self.ctx.fence.check()?;
        match self
            .timed("destroy", self.instance.destroy(&desc.id, context))
            .await
        {
            Ok(()) | Err(InstanceError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Destroys the given members now (for `destroy_instances`), with the pass lock held by
    /// the caller. Returns the IDs destroyed and the first error.
    pub(crate) async fn destroy_now(
        &self,
        spec: &GroupSpec,
        victims: Vec<Description>,
        context: DestroyContext,
    ) -> (Vec<InstanceId>, Option<GroupError>) {
        type Done = (InstanceId, Result<(), PassError>);
        let steps: Vec<BoxFuture<'_, Done>> = victims
            .into_iter()
            .map(|d| -> BoxFuture<'_, Done> {
                Box::pin(async move {
                    let r = self.drain_and_destroy(spec, &d, context).await;
                    (d.id, r)
                })
            })
            .collect();
        let results: Vec<Done> = futures::stream::iter(steps)
            .buffer_unordered(self.ctx.options.parallelism.max(1))
            .collect()
            .await;
        let mut done = Vec::new();
        let mut error = None;
        for (id, r) in results {
            match r {
                Ok(()) => {
                    self.ctx.emit(EngineEvent::Destroyed {
                        group: self.id.clone(),
                        id: id.clone(),
                        cause: Cause::ScaleDown,
                    });
                    done.push(id);
                }
                Err(e) => {
                    let e = match e {
                        PassError::Fenced => GroupError::NotLeader { leader: None },
                        PassError::Group(e) => e,
                    };
                    self.ctx.emit(EngineEvent::DestroyFailed {
                        group: self.id.clone(),
                        id,
                        error: e.to_string(),
                    });
                    error.get_or_insert(e);
                }
            }
        }
        (done, error)
    }
}

impl Work {
    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Turns descriptions and health into members, tracking how long each has had its health.
    fn observe(
        &mut self,
        descriptions: Vec<Description>,
        healths: Vec<Option<Health>>,
        now: Instant,
    ) -> Vec<Member> {
        let mut alive: HashSet<InstanceId> = HashSet::with_capacity(descriptions.len());
        let mut members = Vec::with_capacity(descriptions.len());
        for (d, answer) in descriptions.into_iter().zip(healths) {
            // A failed check reads as unknown, and its clock starts again: only the flavor's
            // answers age a health (see `HealingPolicy::replace_unknown_after`).
            let health = answer.unwrap_or(Health::Unknown);
            alive.insert(d.id.clone());
            self.recent.remove(&d.id);
            let seen = &mut self.seen;
            let rec = self.health.entry(d.id.clone()).or_insert_with(|| {
                *seen += 1;
                HealthRecord {
                    health: answer,
                    since: now,
                    first_seen: *seen,
                }
            });
            if rec.health != answer || answer.is_none() {
                rec.health = answer;
                rec.since = now;
            }
            members.push(Member {
                description: d,
                health,
                health_age: now.saturating_duration_since(rec.since),
                first_seen: rec.first_seen,
            });
        }
        self.health.retain(|id, _| alive.contains(id));
        members
    }

    fn in_flight(&mut self, now: Instant, lag: Duration) -> InFlight {
        self.recent
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < lag);
        let mut f = InFlight::default();
        for (lid, _) in self.recent.values() {
            match lid {
                Some(l) => {
                    f.logical_ids.insert(l.clone());
                }
                None => f.provisions += 1,
            }
        }
        f
    }

    fn clock(&self, hash: &str) -> UpdateClock {
        if self.update.hash.as_deref() != Some(hash) {
            return UpdateClock::Idle;
        }
        if self.update.failed {
            return UpdateClock::Failed;
        }
        match self.update.started {
            Some(s) => UpdateClock::Running(Instant::now().saturating_duration_since(s)),
            None => UpdateClock::Idle,
        }
    }
}

/// Plans a group that has no running controller here (a new group, or a follower's view).
pub(crate) async fn preview_detached(
    spec: &GroupSpec,
    instance: Arc<dyn Instance>,
    flavor: Arc<dyn Flavor>,
    ctx: Arc<Context>,
) -> Result<Plan, GroupError> {
    let (shared, _triggers) = Shared::new(spec.clone(), instance, flavor, ctx);
    shared.preview(spec).await
}
