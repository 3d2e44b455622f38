//! A group's controller: one task that owns everything about its group (spec, plugins, health
//! records, provisions in flight, the rolling update, the destroy under way) and is driven by
//! one closed set of inputs: triggers (resync, provider event, healing or gating deadline,
//! retry) and [`Command`]s from the manager, each answered on its own reply channel.
//!
//! Invariants: nothing outside this task reads or writes its state; a pass observes,
//! asks the pure planner, publishes what it saw, then executes through the guarded path
//! ([`Guarded`]); while a pass runs, `describe` and `trigger` are answered at once and the
//! other commands wait for the pass to end; a spec change marks every description stale
//! until a pass has planned with it; members are destroyed in one place
//! ([`Owner::destroy_member`]), by passes and by `destroy_members` alike.

use super::backoff::Backoff;
use super::event::{EngineEvent, Trigger};
use super::fence::{Fence, Fenced};
use super::guard::{GuardError, Guarded};
use super::hook::{HeldAction, Hold, PlanHook, Review};
use super::logical_ids::LogicalIdIndex;
use super::options::EngineOptions;
use super::plan::{Action, Cause, Member, Plan, PlanInput, RolloutStep, plan};
use super::state::GroupState;
use crate::error::Classify;
use crate::flavor::{Health, Index};
use crate::group::{GroupDescription, GroupError, GroupSpec, MemberStatus};
use crate::id::{GroupId, InstanceId};
use crate::instance::InstanceSpec;
use crate::instance::{Description, DestroyContext, InstanceError, InstanceEvent, InstanceEvents};
use crate::plugins::GroupPlugins;
use crate::store::Epoch;
use crate::tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Tags};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How long a controller holds its passes after `destroy_members`, waiting for the manager to
/// lower the size (or release it).
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// What every controller of one leadership term shares.
pub(crate) struct LeaderTerm {
    pub(crate) options: EngineOptions,
    pub(crate) hooks: Vec<Arc<dyn PlanHook>>,
    pub(crate) events: broadcast::Sender<EngineEvent>,
    pub(crate) fence: Arc<Fence>,
    pub(crate) reports: mpsc::UnboundedSender<Report>,
}

impl LeaderTerm {
    fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }
}

/// What a controller tells the manager on its own.
#[derive(Debug)]
pub(crate) enum Report {
    /// A destroy nobody waits for has finished: the group has no member left.
    Destroyed {
        /// The group.
        group: GroupId,
    },
    /// The store holds a newer epoch: this replica no longer leads.
    Superseded {
        /// The epoch stored.
        current: Epoch,
    },
}

/// The outcome of `destroy_members`.
#[derive(Debug)]
pub(crate) struct MembersDestroyed {
    /// What went.
    pub(crate) destroyed: Vec<InstanceId>,
    /// The first failure, if any.
    pub(crate) error: Option<GroupError>,
}

type Reply<T> = oneshot::Sender<T>;

/// The commands a controller takes.
enum Command {
    /// Plan with this spec (and these plugins) from now on.
    SetSpec {
        spec: GroupSpec,
        plugins: Option<GroupPlugins>,
        reply: Option<Reply<()>>,
    },
    /// Destroy every member; answered when none is left or a destroy pass fails.
    Destroy {
        reply: Reply<Result<(), GroupError>>,
    },
    /// Destroy these members (all must be members), then hold passes until `SetSpec` or
    /// `Release`.
    DestroyMembers {
        ids: Vec<InstanceId>,
        reply: Reply<Result<MembersDestroyed, GroupError>>,
    },
    /// Passes may run again after `DestroyMembers` (the spec did not change).
    Release,
    /// Observe and plan `spec` without acting.
    Preview {
        spec: GroupSpec,
        plugins: GroupPlugins,
        reply: Reply<Result<Plan, GroupError>>,
    },
    /// The latest description.
    Describe { reply: Reply<GroupDescription> },
    /// Run a pass now; answers the number of passes started so far.
    Trigger { reply: Reply<u64> },
}

/// A running controller: the handle the manager keeps (it stops the task when dropped).
pub(crate) struct Controller {
    client: ControllerClient,
    task: Option<JoinHandle<()>>,
}

/// A cheap handle for sending a controller commands, usable without holding the manager's
/// lock.
#[derive(Clone)]
pub(crate) struct ControllerClient {
    commands: mpsc::UnboundedSender<Command>,
}

/// The controller is gone: its term ended.
fn stopped() -> GroupError {
    GroupError::NotLeader { leader: None }
}

impl Controller {
    /// Starts a group's controller task (destroying from the start when `destroying`).
    pub(crate) fn start(
        spec: GroupSpec,
        plugins: GroupPlugins,
        destroying: bool,
        term: Arc<LeaderTerm>,
    ) -> Controller {
        let (commands, rx) = mpsc::unbounded_channel();
        let id = spec.id.clone();
        let events = plugins.instance.events();
        let (status, status_rx) = watch::channel(Status::default());
        let owner = Owner {
            options: term.options.for_group(&plugins.options),
            held: Vec::new(),
            hash: spec.config_hash(),
            logical_ids: Arc::new(LogicalIdIndex::new(&spec.allocation)),
            provider: Guarded::new(id.clone(), plugins, Arc::clone(&term.fence)),
            id: id.clone(),
            spec: Arc::new(spec),
            destroying,
            state: GroupState::default(),
            term: Arc::clone(&term),
            status,
            converged_reported: false,
            destroyed: 0,
            resubscribe: false,
        };
        term.emit(EngineEvent::GroupStarted { group: id.clone() });
        let span = tracing::info_span!("controller", group = %id);
        let task = tokio::spawn(run(owner, rx, status_rx, events).instrument(span));
        Controller {
            client: ControllerClient { commands },
            task: Some(task),
        }
    }

    /// A handle for commands.
    pub(crate) fn client(&self) -> ControllerClient {
        self.client.clone()
    }

    /// Stops the task and waits until it is gone. Instances are left alone.
    pub(crate) async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Controller {
    /// A controller dropped without [`stop`](Controller::stop) still stops acting.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl ControllerClient {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Plans with `spec` from now on (and with `plugins`, when given); answered at once, the
    /// description is stale until a pass has planned with it.
    pub(crate) async fn set_spec(
        &self,
        spec: GroupSpec,
        plugins: Option<GroupPlugins>,
    ) -> Result<(), GroupError> {
        self.ask(|reply| Command::SetSpec {
            spec,
            plugins,
            reply: Some(reply),
        })
        .await
    }

    /// Destroys every member: `Ok` once none is left.
    pub(crate) async fn destroy(&self) -> Result<(), GroupError> {
        self.ask(|reply| Command::Destroy { reply }).await?
    }

    /// Destroys these members, then holds passes until [`set_spec`](Self::set_spec) or
    /// [`release`](Self::release).
    pub(crate) async fn destroy_members(
        &self,
        ids: Vec<InstanceId>,
    ) -> Result<MembersDestroyed, GroupError> {
        self.ask(|reply| Command::DestroyMembers { ids, reply })
            .await?
    }

    /// Lets passes run again after `destroy_members`.
    pub(crate) fn release(&self) {
        let _ = self.commands.send(Command::Release);
    }

    /// Observes and plans `spec` without acting.
    pub(crate) async fn preview(
        &self,
        spec: GroupSpec,
        plugins: GroupPlugins,
    ) -> Result<Plan, GroupError> {
        self.ask(|reply| Command::Preview {
            spec,
            plugins,
            reply,
        })
        .await?
    }

    /// The latest description.
    pub(crate) async fn describe(&self) -> Result<GroupDescription, GroupError> {
        self.ask(|reply| Command::Describe { reply }).await
    }

    /// Asks for a pass now; the number of passes started before it.
    pub(crate) async fn trigger(&self) -> Result<u64, GroupError> {
        self.ask(|reply| Command::Trigger { reply }).await
    }
}

/// What passes publish for `describe`: the description and the spec generation it was
/// planned with.
#[derive(Debug, Clone, Default)]
struct Status {
    description: GroupDescription,
    generation: u64,
}

/// The task's bookkeeping beside the owner (what a running pass does not borrow).
struct Schedule {
    /// Bumped by every spec or mode change.
    generation: u64,
    /// Passes started so far.
    passes: u64,
    status: watch::Receiver<Status>,
    /// Callers waiting for the destroy to finish.
    waiters: Vec<Reply<Result<(), GroupError>>>,
    /// Passes held (after `destroy_members`) until this moment.
    held_until: Option<Instant>,
    backoff: Backoff,
}

impl Schedule {
    fn describe(&self) -> GroupDescription {
        let st = self.status.borrow();
        let mut d = st.description.clone();
        if st.generation != self.generation {
            d.converged = false;
            d.plan = Some("spec changed: planning".into());
        }
        d.passes_started = self.passes;
        d
    }
}

/// Everything a controller owns.
struct Owner {
    id: GroupId,
    /// The engine's options with the group's own applied.
    options: EngineOptions,
    /// What the plan hooks held at the last review (events are emitted when it changes).
    held: Vec<HeldAction>,
    /// The spec, shared with each pass (a pass never copies it).
    spec: Arc<GroupSpec>,
    /// Derived from the spec once, when it is set: its config hash and logical-ID index.
    hash: String,
    logical_ids: Arc<LogicalIdIndex>,
    provider: Guarded,
    destroying: bool,
    state: GroupState,
    term: Arc<LeaderTerm>,
    status: watch::Sender<Status>,
    converged_reported: bool,
    /// Members destroyed since the group's destroy began.
    destroyed: usize,
    /// The instance plugin changed: its event stream replaces the old one.
    resubscribe: bool,
}

/// What one pass found and did.
struct Pass {
    /// Actions were executed.
    acted: bool,
    converged: bool,
    wake_after: Option<Duration>,
    /// The members observed (`None`: the observation failed).
    observed: Option<Vec<InstanceId>>,
    /// Members this pass destroyed.
    destroyed: HashSet<InstanceId>,
    error: Option<GroupError>,
}

impl Pass {
    fn failed(error: GroupError) -> Self {
        Pass {
            acted: false,
            converged: false,
            wake_after: None,
            observed: None,
            destroyed: HashSet::new(),
            error: Some(error),
        }
    }
}

async fn run(
    mut owner: Owner,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Receiver<Status>,
    mut events: Option<InstanceEvents>,
) {
    let opts = owner.options.clone();
    let mut schedule = Schedule {
        generation: 0,
        passes: 0,
        status,
        waiters: Vec::new(),
        held_until: None,
        backoff: Backoff::new(opts.backoff_base, opts.backoff_max),
    };
    let mut trigger = Some(Trigger::LeadershipChanged);
    let mut deadline = Instant::now();
    let mut timer_trigger = Trigger::Resync;
    loop {
        // Wait for a reason to run a pass, answering commands meanwhile.
        let reason = match trigger.take() {
            Some(t) => t,
            None => loop {
                let held = schedule.held_until.is_some_and(|u| Instant::now() < u);
                let wake = if held {
                    schedule.held_until.unwrap_or(deadline)
                } else {
                    deadline
                };
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(c) => {
                            let t = owner.handle(c, &mut schedule).await;
                            if std::mem::take(&mut owner.resubscribe) {
                                events = owner.provider.instance().events();
                            }
                            if let Some(t) = t
                                && schedule.held_until.is_none()
                            {
                                break t;
                            }
                        }
                    },
                    ours = next_event(&mut events, &owner.id), if !held && owner.options.wake_on_events => {
                        if ours {
                            break Trigger::ProviderEvent;
                        }
                    },
                    _ = tokio::time::sleep_until(wake) => {
                        if held {
                            schedule.held_until = None;
                            break Trigger::Retry;
                        }
                        break timer_trigger;
                    },
                }
            },
        };
        drain_events(&mut events);

        // Run a pass; describe and trigger are answered while it runs, the rest waits.
        schedule.passes += 1;
        let number = schedule.passes;
        let generation = schedule.generation;
        let mut queued = Vec::new();
        let mut again = false;
        let span =
            tracing::info_span!("reconcile", group = %owner.id, trigger = ?reason, pass = number);
        let pass_timeout = owner.options.pass_timeout;
        let result = {
            let pass =
                tokio::time::timeout(pass_timeout, owner.pass(number, generation)).instrument(span);
            tokio::pin!(pass);
            loop {
                tokio::select! {
                    r = &mut pass => break r,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Describe { reply }) => {
                            let _ = reply.send(schedule.describe());
                        }
                        Some(Command::Trigger { reply }) => {
                            again = true;
                            let _ = reply.send(schedule.passes);
                        }
                        Some(Command::SetSpec { spec, plugins, reply }) => {
                            // Stale from now on; applied when the pass ends.
                            schedule.generation += 1;
                            if let Some(r) = reply {
                                let _ = r.send(());
                            }
                            queued.push(Command::SetSpec { spec, plugins, reply: None });
                        }
                        Some(other) => queued.push(other),
                    },
                }
            }
        };
        metrics::counter!("infrakit_reconcile_passes_total", "group" => owner.id.to_string())
            .increment(1);
        let pass = match result {
            Ok(Ok(p)) => p,
            Ok(Err(fenced)) => {
                owner.fenced(fenced);
                return;
            }
            Err(_) => Pass::failed(GroupError::TimedOut {
                what: "reconcile pass".into(),
                after: pass_timeout,
            }),
        };
        let delay = owner.after_pass(pass, generation, &mut schedule);
        deadline = Instant::now() + delay.0;
        timer_trigger = delay.1;
        for c in queued {
            if owner.handle(c, &mut schedule).await.is_some() {
                again = true;
            }
        }
        if std::mem::take(&mut owner.resubscribe) {
            events = owner.provider.instance().events();
        }
        if again && schedule.held_until.is_none() {
            trigger = Some(Trigger::Requested);
        }
    }
}

/// The next provider event: `true` if it concerns the group (or events were lost).
async fn next_event(events: &mut Option<InstanceEvents>, group: &GroupId) -> bool {
    let Some(stream) = events else {
        return std::future::pending().await;
    };
    match stream.next().await {
        Some(event) => {
            let ours = match &event {
                InstanceEvent::Lagged => true,
                other => other
                    .tags()
                    .is_some_and(|t| t.get(GROUP_TAG) == Some(group.as_str())),
            };
            tracing::trace!(%group, ours, ?event, "provider event");
            ours
        }
        None => {
            // The stream ended: resyncs only from now on.
            *events = None;
            false
        }
    }
}

/// Drops the events already queued: the pass about to run observes them all.
fn drain_events(events: &mut Option<InstanceEvents>) {
    if let Some(stream) = events {
        while let Some(Some(_)) = stream.next().now_or_never() {}
    }
}

impl Owner {
    fn emit(&self, event: EngineEvent) {
        self.term.emit(event);
    }

    /// Handles a command between passes; `Some` asks for a pass.
    async fn handle(&mut self, command: Command, schedule: &mut Schedule) -> Option<Trigger> {
        match command {
            Command::Describe { reply } => {
                let _ = reply.send(schedule.describe());
                None
            }
            Command::Trigger { reply } => {
                let _ = reply.send(schedule.passes);
                Some(Trigger::Requested)
            }
            Command::SetSpec {
                spec,
                plugins,
                reply,
            } => {
                schedule.generation += 1;
                schedule.held_until = None;
                if self.destroying {
                    for w in schedule.waiters.drain(..) {
                        let _ = w.send(Err(GroupError::Other {
                            message: format!(
                                "the destroy of group {} was cancelled: a new spec was committed",
                                self.id
                            ),
                            transient: false,
                        }));
                    }
                }
                self.set_spec(spec, plugins);
                if let Some(r) = reply {
                    let _ = r.send(());
                }
                Some(Trigger::SpecChanged)
            }
            Command::Destroy { reply } => {
                if !self.destroying {
                    schedule.generation += 1;
                    self.destroying = true;
                    self.destroyed = 0;
                    tracing::info!(group = %self.id, "destroying the group");
                }
                schedule.held_until = None;
                schedule.waiters.push(reply);
                Some(Trigger::SpecChanged)
            }
            Command::DestroyMembers { ids, reply } => {
                let outcome = self.destroy_members(&ids).await;
                if outcome.as_ref().is_ok_and(|o| !o.destroyed.is_empty()) {
                    schedule.held_until = Some(Instant::now() + HOLD_LIMIT);
                }
                let _ = reply.send(outcome);
                None
            }
            Command::Release => {
                schedule.held_until = None;
                Some(Trigger::SpecChanged)
            }
            Command::Preview {
                spec,
                plugins,
                reply,
            } => {
                let guarded = self.provider.with_plugins(plugins);
                let r = match observe_and_plan(
                    &guarded,
                    &mut self.state,
                    &spec,
                    None,
                    &self.options,
                    false,
                )
                .await
                {
                    Ok(mut seen) => {
                        review(&self.term.hooks, &spec, &seen.members, &mut seen.plan, true).await;
                        Ok(seen.plan)
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
                None
            }
        }
    }

    fn set_spec(&mut self, spec: GroupSpec, plugins: Option<GroupPlugins>) {
        self.hash = spec.config_hash();
        self.logical_ids = Arc::new(LogicalIdIndex::new(&spec.allocation));
        self.spec = Arc::new(spec);
        if let Some(plugins) = plugins {
            self.options = self.term.options.for_group(&plugins.options);
            self.resubscribe |= !Arc::ptr_eq(&plugins.instance, self.provider.instance());
            self.provider = self.provider.with_plugins(plugins);
        }
        if self.destroying {
            tracing::info!(group = %self.id, "a new spec: the destroy is cancelled");
        }
        self.destroying = false;
        self.converged_reported = false;
    }

    /// The term ended (or was superseded) under a pass: the controller stops.
    fn fenced(&self, fenced: Fenced) {
        match fenced {
            Fenced::Superseded { current } => {
                tracing::warn!(group = %self.id, %current, "a newer leader exists: controller stops");
                let _ = self.term.reports.send(Report::Superseded { current });
            }
            other => {
                tracing::info!(group = %self.id, reason = ?other, "term ended: controller stops");
            }
        }
    }

    /// Books a pass's outcome; returns when (and why) to run the next one.
    fn after_pass(
        &mut self,
        pass: Pass,
        generation: u64,
        schedule: &mut Schedule,
    ) -> (Duration, Trigger) {
        let opts = &self.options;
        if self.destroying {
            self.destroyed += pass.destroyed.len();
            self.answer_destroy(&pass, schedule);
        }
        match pass.error {
            None => {
                schedule.backoff.reset();
                if pass.acted {
                    return (opts.settle, Trigger::Retry);
                }
                if pass.converged && generation == schedule.generation {
                    if !self.converged_reported {
                        self.converged_reported = true;
                        self.emit(EngineEvent::Converged {
                            group: self.id.clone(),
                            size: self.spec.allocation.target_size(),
                        });
                    }
                    return match pass.wake_after {
                        Some(d) => (clamp(d, opts), Trigger::Retry),
                        None => (opts.resync, Trigger::Resync),
                    };
                }
                // Waiting on time (health gating, in-flight work): look again soon.
                let d = pass
                    .wake_after
                    .unwrap_or(opts.settle.max(Duration::from_millis(250)));
                (clamp(d, opts), Trigger::Retry)
            }
            Some(e) => {
                let delay = schedule.backoff.next_delay(e.retry_after());
                metrics::counter!("infrakit_reconcile_errors_total", "group" => self.id.to_string())
                    .increment(1);
                tracing::warn!(group = %self.id, error = %e, transient = e.is_transient(), retry_in = ?delay, "reconcile pass failed");
                self.status.send_modify(|s| {
                    s.description.last_error = Some(e.to_string());
                    s.description.converged = false;
                });
                self.emit(EngineEvent::PassFailed {
                    group: self.id.clone(),
                    error: e.to_string(),
                    retry_in: delay,
                });
                (delay, Trigger::Retry)
            }
        }
    }

    /// A destroy pass ended: answer the callers (or report the end to the manager).
    fn answer_destroy(&self, pass: &Pass, schedule: &mut Schedule) {
        let remaining: Option<Vec<InstanceId>> = pass.observed.as_ref().map(|seen| {
            seen.iter()
                .filter(|id| !pass.destroyed.contains(*id))
                .cloned()
                .collect()
        });
        match (&pass.error, remaining) {
            (None, Some(left)) if left.is_empty() && !pass.acted => {
                tracing::info!(group = %self.id, destroyed = self.destroyed, "every member is gone");
                if schedule.waiters.is_empty() {
                    let _ = self.term.reports.send(Report::Destroyed {
                        group: self.id.clone(),
                    });
                }
                for w in schedule.waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            (Some(e), remaining) => {
                for w in schedule.waiters.drain(..) {
                    let _ = w.send(Err(match &remaining {
                        Some(left) => GroupError::PartialDestroy {
                            group: self.id.clone(),
                            destroyed: self.destroyed,
                            remaining: left.clone(),
                            cause: Box::new(e.clone()),
                        },
                        None => e.clone(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// One reconcile pass: observe, plan, publish, execute. `Err` only when fenced.
    async fn pass(&mut self, number: u64, generation: u64) -> Result<Pass, Fenced> {
        self.provider.holds()?;
        let spec = Arc::clone(&self.spec);
        let hash = self.hash.clone();
        let logical_ids = Arc::clone(&self.logical_ids);
        let Observed {
            members,
            mut plan,
            health_error,
        } = match observe_and_plan(
            &self.provider,
            &mut self.state,
            &spec,
            Some((&hash, &logical_ids)),
            &self.options,
            self.destroying,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => return Ok(Pass::failed(e)),
        };
        if !self.term.hooks.is_empty() && !plan.actions.is_empty() {
            // The hooks are asked only behind a full fence check: a deposed leader's hook
            // is never consulted, and what it approves still passes the fence per call.
            match self.provider.check().await {
                Ok(()) => {}
                Err(Fenced::Unverified(e)) => return Ok(Pass::failed(GroupError::Store(e))),
                Err(f) => return Err(f),
            }
            review(&self.term.hooks, &spec, &members, &mut plan, false).await;
        }
        self.report_held(&plan.held);
        let now = Instant::now();
        self.publish(&members, &plan, number, generation, health_error);
        self.rollout(&spec, &hash, &plan, now);
        tracing::debug!(group = %self.id, plan = %plan, actions = plan.actions.len(), "planned");
        let observed: Vec<InstanceId> = members.iter().map(|m| m.id().clone()).collect();
        let held: HashSet<usize> = plan.held.iter().map(|h| h.index).collect();
        // A held action is looked at again when its deferral ends, or at the resync.
        let wake_after = plan
            .held
            .iter()
            .map(|h| match h.hold {
                Hold::Deferred => h.retry_after.unwrap_or(self.options.resync),
                Hold::Vetoed => self.options.resync,
            })
            .chain(plan.wake_after)
            .min();
        if plan.actions.len() == held.len() {
            return Ok(Pass {
                acted: false,
                converged: plan.converged() && !self.destroying,
                wake_after,
                observed: Some(observed),
                destroyed: HashSet::new(),
                error: None,
            });
        }
        self.converged_reported = false;
        let by_id: HashMap<&InstanceId, &Description> =
            members.iter().map(|m| (m.id(), &m.description)).collect();
        let sequences: Vec<u64> = plan
            .actions
            .iter()
            .map(|_| self.state.next_sequence())
            .collect();
        type Done = (Action, Result<Option<InstanceId>, GuardError>);
        let this = &*self;
        let steps: Vec<BoxFuture<'_, Done>> = plan
            .actions
            .iter()
            .cloned()
            .zip(sequences)
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .map(|(_, step)| step)
            .map(|(action, sequence)| -> BoxFuture<'_, Done> {
                let desc = match &action {
                    Action::Destroy { id, .. } | Action::Adopt { id } => {
                        by_id.get(id).map(|d| (*d).clone())
                    }
                    _ => None,
                };
                let spec = &spec;
                let hash = hash.as_str();
                Box::pin(async move {
                    let r = this.execute(spec, hash, &action, desc, sequence).await;
                    (action, r)
                })
            })
            .collect();
        let results: Vec<Done> = futures::stream::iter(steps)
            .buffer_unordered(self.options.parallelism.max(1))
            .collect()
            .await;
        let mut first_error = None;
        let mut destroyed = HashSet::new();
        for (action, result) in results {
            match (action, result) {
                (Action::Provision { logical_id, .. }, Ok(Some(id))) => {
                    self.state.provisioned(id, logical_id);
                }
                (Action::Destroy { id, .. }, Ok(_)) => {
                    destroyed.insert(id);
                }
                (_, Ok(_)) => {}
                (_, Err(GuardError::Fenced(Fenced::Unverified(e)))) => {
                    first_error.get_or_insert(GroupError::Store(e));
                }
                (_, Err(GuardError::Fenced(f))) => return Err(f),
                (_, Err(GuardError::Group(e))) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Ok(Pass {
            acted: true,
            converged: false,
            wake_after: None,
            observed: Some(observed),
            destroyed,
            error: first_error,
        })
    }

    /// Publishes what a pass observed and planned.
    fn publish(
        &self,
        members: &[Member],
        plan: &Plan,
        number: u64,
        generation: u64,
        health_error: Option<String>,
    ) {
        let (mut healthy, mut unhealthy, mut unknown, mut outdated) = (0u32, 0u32, 0u32, 0u32);
        let statuses: Vec<MemberStatus> = members
            .iter()
            .map(|m| {
                let up_to_date = plan.up_to_date(m);
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
        for (state, n) in [
            ("healthy", healthy),
            ("unhealthy", unhealthy),
            ("unknown", unknown),
            ("outdated", outdated),
        ] {
            metrics::gauge!("infrakit_group_members", "group" => g.clone(), "state" => state)
                .set(n);
        }
        self.status.send_replace(Status {
            description: GroupDescription {
                instances: members.iter().map(|m| m.description.clone()).collect(),
                converged: plan.converged() && !self.destroying,
                members: statuses,
                update: Some(plan.update.clone()),
                plan: Some(plan.explain()),
                // This pass observed the provider (failed health checks are the only error
                // so far); an error of its actions is set afterwards.
                last_error: health_error,
                held: plan.held.clone(),
                pass: number,
                passes_started: 0,
            },
            generation,
        });
    }

    /// Emits an event for each hold that was not there at the last review.
    fn report_held(&mut self, held: &[HeldAction]) {
        let same = |a: &HeldAction, b: &HeldAction| {
            a.action == b.action && a.hold == b.hold && a.reason == b.reason
        };
        for h in held {
            if self.held.iter().any(|old| same(old, h)) {
                continue;
            }
            tracing::info!(group = %self.id, action = %h.action, hold = %h.hold, reason = %h.reason, "plan hook held an action");
            self.emit(match h.hold {
                Hold::Vetoed => EngineEvent::ActionVetoed {
                    group: self.id.clone(),
                    action: h.action.clone(),
                    reason: h.reason.clone(),
                },
                Hold::Deferred => EngineEvent::ActionDeferred {
                    group: self.id.clone(),
                    action: h.action.clone(),
                    reason: h.reason.clone(),
                    retry_after: h.retry_after,
                },
            });
        }
        self.held = held.to_vec();
    }

    /// Records and reports the planner's step in the rolling update's life.
    fn rollout(&mut self, spec: &GroupSpec, hash: &str, plan: &Plan, now: Instant) {
        match plan.rollout {
            Some(RolloutStep::Started { outdated }) => {
                tracing::info!(group = %self.id, hash, outdated, "rolling update started");
                self.emit(EngineEvent::UpdateStarted {
                    group: self.id.clone(),
                    hash: hash.to_owned(),
                    outdated,
                });
            }
            Some(RolloutStep::Completed) => {
                tracing::info!(group = %self.id, hash, "rolling update completed");
                self.emit(EngineEvent::UpdateCompleted {
                    group: self.id.clone(),
                    hash: hash.to_owned(),
                });
            }
            Some(RolloutStep::Failed { outdated }) => {
                let reason = format!(
                    "deadline {:?} passed with {outdated} members outdated",
                    spec.update.deadline.unwrap_or_default()
                );
                tracing::error!(group = %self.id, %reason, "rolling update failed");
                self.emit(EngineEvent::UpdateFailed {
                    group: self.id.clone(),
                    reason,
                });
            }
            _ => {}
        }
        self.state.rollout.apply(hash, plan.rollout, now);
    }

    /// Executes one action. Returns the new instance's ID for a provision.
    async fn execute(
        &self,
        spec: &GroupSpec,
        hash: &str,
        action: &Action,
        desc: Option<Description>,
        sequence: u64,
    ) -> Result<Option<InstanceId>, GuardError> {
        match action {
            Action::Provision {
                logical_id,
                attachments,
                cause,
            } => {
                self.emit(EngineEvent::Provisioning {
                    group: self.id.clone(),
                    logical_id: logical_id.clone(),
                    cause: *cause,
                });
                match self
                    .provision(spec, hash, logical_id.as_ref(), attachments, sequence)
                    .await
                {
                    Ok(id) => {
                        tracing::info!(group = %self.id, %id, logical_id = ?logical_id, %cause, "provisioned");
                        self.emit(EngineEvent::Provisioned {
                            group: self.id.clone(),
                            id: id.clone(),
                            logical_id: logical_id.clone(),
                            cause: *cause,
                        });
                        Ok(Some(id))
                    }
                    Err(GuardError::Group(e)) => {
                        self.emit(EngineEvent::ProvisionFailed {
                            group: self.id.clone(),
                            logical_id: logical_id.clone(),
                            error: e.to_string(),
                        });
                        Err(GuardError::Group(e))
                    }
                    Err(fenced) => Err(fenced),
                }
            }
            Action::Destroy { context, cause, .. } => match desc {
                Some(desc) => self
                    .destroy_member(spec, &desc, *context, *cause)
                    .await
                    .map(|()| None),
                None => Ok(None),
            },
            Action::Adopt { id } => {
                let labels = Tags::new().with(CONFIG_HASH_TAG, hash);
                self.provider.label(id, &labels).await?;
                self.emit(EngineEvent::Adopted {
                    group: self.id.clone(),
                    id: id.clone(),
                });
                Ok(None)
            }
        }
    }

    async fn provision(
        &self,
        spec: &GroupSpec,
        hash: &str,
        logical_id: Option<&crate::id::LogicalId>,
        attachments: &[crate::instance::Attachment],
        sequence: u64,
    ) -> Result<InstanceId, GuardError> {
        let mut ours = Tags::new()
            .with(GROUP_TAG, self.id.as_str())
            .with(CONFIG_HASH_TAG, hash);
        if let Some(l) = logical_id {
            ours.insert(LOGICAL_ID_TAG, l.as_str());
        }
        let mut base = InstanceSpec::new(spec.instance.properties.clone());
        base.tags = ours.clone();
        base.logical_id = logical_id.cloned();
        base.attachments = attachments.to_vec();
        let index = Index {
            group: self.id.clone(),
            sequence,
        };
        let mut prepared = self
            .provider
            .prepare(&spec.flavor.properties, base, &spec.allocation, &index)
            .await?;
        // The controller's tags and identity are not the flavor's to change.
        prepared.tags.merge(&ours);
        prepared.logical_id = logical_id.cloned();
        self.provider.provision(prepared).await
    }

    /// The one destroy path: drain and destroy a member through the guard, and report it.
    async fn destroy_member(
        &self,
        spec: &GroupSpec,
        member: &Description,
        context: DestroyContext,
        cause: Cause,
    ) -> Result<(), GuardError> {
        match self
            .provider
            .drain_and_destroy(&spec.flavor.properties, member, context)
            .await
        {
            Ok(()) => {
                tracing::info!(group = %self.id, id = %member.id, %cause, "destroyed");
                self.emit(EngineEvent::Destroyed {
                    group: self.id.clone(),
                    id: member.id.clone(),
                    cause,
                });
                Ok(())
            }
            Err(GuardError::Group(e)) => {
                self.emit(EngineEvent::DestroyFailed {
                    group: self.id.clone(),
                    id: member.id.clone(),
                    error: e.to_string(),
                });
                Err(GuardError::Group(e))
            }
            Err(fenced) => Err(fenced),
        }
    }

    /// Destroys the given members now (they must all be members).
    async fn destroy_members(
        &mut self,
        ids: &[InstanceId],
    ) -> Result<MembersDestroyed, GroupError> {
        self.provider.holds().map_err(|_| stopped())?;
        let members = describe_retrying(&self.provider, &self.options).await?;
        let not_members: Vec<InstanceId> = ids
            .iter()
            .filter(|i| !members.iter().any(|m| &m.id == *i))
            .cloned()
            .collect();
        if !not_members.is_empty() {
            return Err(GroupError::NotMember {
                group: self.id.clone(),
                ids: not_members,
            });
        }
        let context = if self.spec.allocation.is_quorum() {
            // A quorum member is replaced under its logical ID: keep its attachments.
            DestroyContext::RollingUpdate
        } else {
            DestroyContext::ScaleDown
        };
        let spec = &self.spec;
        let this = &*self;
        let victims: Vec<Description> = members
            .into_iter()
            .filter(|m| ids.contains(&m.id))
            .collect();
        type Done = (InstanceId, Result<(), GuardError>);
        let steps: Vec<BoxFuture<'_, Done>> = victims
            .iter()
            .map(|d| -> BoxFuture<'_, Done> {
                Box::pin(async move {
                    let r = this
                        .destroy_member(spec, d, context, Cause::Requested)
                        .await;
                    (d.id.clone(), r)
                })
            })
            .collect();
        let results: Vec<Done> = futures::stream::iter(steps)
            .buffer_unordered(self.options.parallelism.max(1))
            .collect()
            .await;
        let mut outcome = MembersDestroyed {
            destroyed: Vec::new(),
            error: None,
        };
        for (id, r) in results {
            match r {
                Ok(()) => outcome.destroyed.push(id),
                Err(GuardError::Group(e)) => {
                    outcome.error.get_or_insert(e);
                }
                Err(GuardError::Fenced(Fenced::Unverified(e))) => {
                    outcome.error.get_or_insert(GroupError::Store(e));
                }
                Err(GuardError::Fenced(_)) => {
                    outcome.error.get_or_insert(stopped());
                }
            }
        }
        Ok(outcome)
    }
}

fn clamp(d: Duration, opts: &EngineOptions) -> Duration {
    d.clamp(
        Duration::from_millis(10),
        opts.resync.max(Duration::from_millis(10)),
    )
}

/// Describes, retrying transient errors a few times with backoff (for calls a user waits on).
async fn describe_retrying(
    provider: &Guarded,
    opts: &EngineOptions,
) -> Result<Vec<Description>, GroupError> {
    let mut backoff = Backoff::new(
        opts.backoff_base,
        opts.backoff_max.min(Duration::from_secs(2)),
    );
    loop {
        match provider.describe().await {
            Ok(d) => return Ok(d),
            Err(e) if e.is_transient() && backoff.failures() < 5 => {
                let d = backoff.next_delay(e.retry_after());
                tracing::debug!(error = %e, retry_in = ?d, "transient error: retrying");
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Observes the group (describe, then health) and plans `spec`: what passes and previews share.
///
/// `derived`: the spec's config hash and logical-ID index, when the caller keeps them with
/// the spec (a controller); without them they are computed here, once.
async fn observe_and_plan(
    provider: &Guarded,
    state: &mut GroupState,
    spec: &GroupSpec,
    derived: Option<(&str, &LogicalIdIndex)>,
    opts: &EngineOptions,
    destroying: bool,
) -> Result<Observed, GroupError> {
    let descriptions = provider
        .describe()
        .await
        .map_err(|e: InstanceError| GroupError::from(e))?;
    let checks = provider
        .health(&spec.flavor.properties, &descriptions, opts.parallelism)
        .await;
    let failed = checks.iter().filter(|c| c.is_err()).count();
    let health_error = checks.iter().find_map(|c| c.as_ref().err()).map(|e| {
        format!(
            "{failed} of {} health checks failed (their members count as unknown): flavor plugin: {e}",
            checks.len()
        )
    });
    let healths: Vec<Option<Health>> = checks.into_iter().map(Result::ok).collect();
    let now = Instant::now();
    let members = state.observe(descriptions, healths, now);
    let in_flight = state.in_flight(now, opts.describe_lag);
    let computed;
    let (hash, logical_ids) = match derived {
        Some((hash, index)) => (hash, Some(index)),
        None => {
            computed = spec.config_hash();
            (computed.as_str(), None)
        }
    };
    let clock = state.rollout.clock(hash, now);
    let plan = plan(PlanInput {
        spec,
        config_hash: hash,
        members: &members,
        in_flight: &in_flight,
        update: clock,
        destroying,
        logical_ids,
    });
    Ok(Observed {
        members,
        plan,
        health_error,
    })
}

/// What a pass or a preview observed and planned.
struct Observed {
    members: Vec<Member>,
    plan: Plan,
    /// Why some health checks failed (their members were planned as unknown), if any did.
    health_error: Option<String>,
}

/// Plans a group that has no controller here (a new group, or a follower's view), reading
/// only.
pub(crate) async fn preview_detached(
    spec: &GroupSpec,
    plugins: GroupPlugins,
    opts: &EngineOptions,
    hooks: &[Arc<dyn PlanHook>],
    destroying: bool,
) -> Result<Plan, GroupError> {
    let opts = opts.for_group(&plugins.options);
    let provider = Guarded::read_only(spec.id.clone(), plugins);
    let mut state = GroupState::default();
    let mut seen = observe_and_plan(&provider, &mut state, spec, None, &opts, destroying).await?;
    review(hooks, spec, &seen.members, &mut seen.plan, true).await;
    Ok(seen.plan)
}

/// Asks every hook about `plan` and records in it what they held.
async fn review(
    hooks: &[Arc<dyn PlanHook>],
    spec: &GroupSpec,
    members: &[Member],
    plan: &mut Plan,
    pretend: bool,
) {
    if hooks.is_empty() || plan.actions.is_empty() {
        return;
    }
    let held = {
        let mut r = Review::new(&spec.id, spec, plan, members, pretend);
        for hook in hooks {
            hook.review(&mut r).await;
        }
        r.held()
    };
    plan.held = held;
}
