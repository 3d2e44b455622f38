//! The pure planner: (spec, observed members, health, in-flight work) → a typed [`Plan`].
//!
//! No I/O, no clock: everything time-related comes in as durations, so a plan can be printed
//! (that is `commit(pretend = true)`), tested with plain data and benchmarked at 100,000
//! members.

use super::logical_ids::LogicalIdIndex;
use crate::flavor::Health;
use crate::group::{Allocation, GroupSpec};
use crate::id::{InstanceId, LogicalId};
use crate::instance::{Attachment, Description, DestroyContext};
use crate::tags::{CONFIG_HASH_TAG, LOGICAL_ID_TAG};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// One observed member of a group, with what the controller knows about its health.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// What the provider reported.
    pub description: Description,
    /// What the flavor said.
    pub health: Health,
    /// How long the member has had this health, as observed by this controller.
    pub health_age: Duration,
    /// Order in which this controller first saw the member: lower is older.
    pub first_seen: u64,
}

impl Member {
    /// A member as seen for the first time.
    pub fn new(description: Description, health: Health) -> Self {
        Self {
            description,
            health,
            health_age: Duration::ZERO,
            first_seen: 0,
        }
    }

    /// The member's ID.
    pub fn id(&self) -> &InstanceId {
        &self.description.id
    }

    fn config_hash(&self) -> Option<&str> {
        self.description.tags.get(CONFIG_HASH_TAG)
    }
}

/// Work that was issued but is not visible in the provider's answer yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlight {
    /// Provisions of a scaled group not yet visible.
    pub provisions: usize,
    /// Logical IDs whose provision is not yet visible.
    pub logical_ids: BTreeSet<LogicalId>,
    /// Members being destroyed.
    pub destroying: HashSet<InstanceId>,
}

impl InFlight {
    fn is_idle(&self) -> bool {
        self.provisions == 0 && self.logical_ids.is_empty() && self.destroying.is_empty()
    }
}

/// Where a rolling update stands, as tracked by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateClock {
    /// No update under way.
    #[default]
    Idle,
    /// An update has been running for this long.
    Running(Duration),
    /// The update missed its deadline and is marked failed.
    Failed,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The group's spec.
    pub spec: &'a GroupSpec,
    /// `spec.config_hash()`, computed once by the caller.
    pub config_hash: &'a str,
    /// The members the provider reported (carrying the group's tag).
    pub members: &'a [Member],
    /// Work not yet visible.
    pub in_flight: &'a InFlight,
    /// The rolling update's clock.
    pub update: UpdateClock,
    /// True while the group is being destroyed: every member goes.
    pub destroying: bool,
    /// The quorum allocation's index, built once per spec ([`LogicalIdIndex::new`]) and kept
    /// with it. `None`, or one that does not fit the allocation: the planner builds its own.
    pub logical_ids: Option<&'a LogicalIdIndex>,
}

/// Why an action is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Cause {
    /// A scaled group has fewer members than its size.
    ScaleUp,
    /// A scaled group has more members than its size.
    ScaleDown,
    /// A logical ID of a quorum group has no member.
    Missing,
    /// Two members claim one logical ID.
    Duplicate,
    /// A member's logical ID is not in the allocation.
    UnknownLogicalId,
    /// The member has an outdated configuration.
    RollingUpdate,
    /// The member stayed unhealthy past the healing grace period.
    Unhealthy,
    /// The flavor answered `Unknown` for the member past the healing deadline.
    HealthUnknown,
    /// The group is being destroyed.
    GroupDestroyed,
    /// Someone asked for these members to go (`destroy_instances`, `infrakit group
    /// destroy-instances`).
    Requested,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::ScaleUp => "scale up",
            Cause::ScaleDown => "scale down",
            Cause::Missing => "missing",
            Cause::Duplicate => "duplicate logical ID",
            Cause::UnknownLogicalId => "unknown logical ID",
            Cause::RollingUpdate => "rolling update",
            Cause::Unhealthy => "unhealthy",
            Cause::HealthUnknown => "health unknown",
            Cause::GroupDestroyed => "group destroyed",
            Cause::Requested => "requested",
        })
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Create a member (with the group's current configuration).
    Provision {
        /// Its logical ID (quorum groups).
        logical_id: Option<LogicalId>,
        /// The attachments bound to that logical ID.
        attachments: Vec<Attachment>,
        /// Why.
        cause: Cause,
    },
    /// Drain a member through the flavor, then destroy it.
    Destroy {
        /// The member.
        id: InstanceId,
        /// What the instance plugin is told.
        context: DestroyContext,
        /// Why.
        cause: Cause,
    },
    /// Label a member created outside the controller (it has the group tag but no
    /// configuration hash) with the current hash, adopting it as up to date.
    Adopt {
        /// The member.
        id: InstanceId,
    },
}

impl fmt::Display for Action {
    /// `provision (scale up)`, `provision 10.0.0.3 (missing)`, `destroy i-3 (rolling
    /// update)`, `adopt i-4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Provision {
                logical_id: Some(l),
                cause,
                ..
            } => write!(f, "provision {l} ({cause})"),
            Action::Provision { cause, .. } => write!(f, "provision ({cause})"),
            Action::Destroy { id, cause, .. } => write!(f, "destroy {id} ({cause})"),
            Action::Adopt { id } => write!(f, "adopt {id}"),
        }
    }
}

/// The state of a rolling update in a plan.
///
/// On the wire: `{"State":"rolling","Outdated":2}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "State", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpdateProgress {
    /// Every member has the current configuration.
    UpToDate,
    /// Members are being replaced.
    Rolling {
        /// Members still on an older configuration.
        #[serde(rename = "Outdated")]
        outdated: usize,
    },
    /// Outdated members remain, but the spec says `Paused`.
    Paused {
        /// Members still on an older configuration.
        #[serde(rename = "Outdated")]
        outdated: usize,
    },
    /// The deadline passed with outdated members left.
    Failed {
        /// Members still on an older configuration.
        #[serde(rename = "Outdated")]
        outdated: usize,
    },
}

/// What the planner decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The actions of this step, in order of priority.
    pub actions: Vec<Action>,
    /// Desired number of members.
    pub target: usize,
    /// Members counted now (live, not being destroyed, plus provisions in flight).
    pub counted: usize,
    /// Rolling update state.
    pub update: UpdateProgress,
    /// What holds progress back, if anything (e.g. waiting for a new member to be healthy).
    pub waiting: Option<String>,
    /// Surge used by a scaled rolling update.
    pub surge: u32,
    /// How long until the passing of time alone changes this plan (a member's health
    /// reaching its healing limit, a new member passing its minimum healthy time); `None`
    /// when only a change in the provider or the spec will.
    pub wake_after: Option<Duration>,
    /// The step this plan makes in the rolling update's life, if any.
    pub rollout: Option<RolloutStep>,
    /// The actions a [`PlanHook`](super::PlanHook) vetoed or deferred (they stay in
    /// [`actions`](Self::actions) and are not executed); empty until a review.
    pub held: Vec<super::HeldAction>,
    config_hash: String,
    quorum: bool,
}

/// A change in a rolling update's life, decided by the planner from the update's clock and
/// this plan: the controller records it and reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RolloutStep {
    /// Members are outdated and no update was under way: one starts now.
    Started {
        /// Members to replace.
        outdated: usize,
    },
    /// The update was running (or had failed) and every member is now current and the
    /// group whole.
    Completed,
    /// The update's deadline passed with members still outdated.
    Failed {
        /// Members still outdated.
        outdated: usize,
    },
}

impl Plan {
    /// Whether a member has the configuration this plan was made for (a member without a
    /// configuration hash is adopted as current).
    pub fn up_to_date(&self, member: &Member) -> bool {
        member.config_hash().is_none_or(|h| h == self.config_hash)
    }

    /// True when nothing is to be done and the members match the spec.
    pub fn converged(&self) -> bool {
        self.actions.is_empty()
            && self.counted == self.target
            && self.update == UpdateProgress::UpToDate
            && self.waiting.is_none()
    }

    /// Counts the actions with this cause.
    pub fn count(&self, cause: Cause) -> usize {
        self.actions
            .iter()
            .filter(|a| match a {
                Action::Provision { cause: c, .. } | Action::Destroy { cause: c, .. } => {
                    *c == cause
                }
                Action::Adopt { .. } => false,
            })
            .count()
    }

    /// The plan in one human line, e.g.
    /// `rolling update of 2 instances (surge 1), then add 1 to reach 3`.
    pub fn explain(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let adopt = self
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Adopt { .. }))
            .count();
        if adopt > 0 {
            parts.push(format!("adopt {adopt} {}", instances(adopt)));
        }
        for (cause, verb) in [
            (Cause::UnknownLogicalId, "remove"),
            (Cause::Duplicate, "remove"),
            (Cause::Unhealthy, "replace"),
            (Cause::HealthUnknown, "replace"),
            (Cause::GroupDestroyed, "destroy"),
        ] {
            let n = self.count(cause);
            if n > 0 {
                let what = match cause {
                    Cause::UnknownLogicalId => " with unknown logical IDs",
                    Cause::Duplicate => " duplicating a logical ID",
                    Cause::Unhealthy => " unhealthy",
                    _ => "",
                };
                parts.push(if cause == Cause::HealthUnknown {
                    format!("{verb} {n} {} of unknown health", instances(n))
                } else {
                    format!("{verb} {n}{what} {}", instances(n))
                });
            }
        }
        let missing: Vec<String> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Provision {
                    logical_id: Some(l),
                    cause: Cause::Missing,
                    ..
                } => Some(l.to_string()),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            parts.push(format!("provision missing {}", missing.join(", ")));
        }
        match &self.update {
            UpdateProgress::Rolling { outdated } => parts.push(if self.quorum {
                format!(
                    "rolling update of {outdated} {} (one at a time)",
                    instances(*outdated)
                )
            } else {
                format!(
                    "rolling update of {outdated} {} (surge {})",
                    instances(*outdated),
                    self.surge
                )
            }),
            UpdateProgress::Paused { outdated } => parts.push(format!(
                "rolling update of {outdated} {} paused",
                instances(*outdated)
            )),
            UpdateProgress::Failed { outdated } => parts.push(format!(
                "rolling update failed (deadline passed) with {outdated} {} outdated",
                instances(*outdated)
            )),
            UpdateProgress::UpToDate => {}
        }
        let up = self.count(Cause::ScaleUp);
        let down = self.count(Cause::ScaleDown);
        if up > 0 || self.counted < self.target && !self.quorum && missing.is_empty() {
            let n = self.target.saturating_sub(self.counted).max(up);
            parts.push(format!("add {n} to reach {}", self.target));
        } else if down > 0 || self.counted > self.target + self.surge as usize && !self.quorum {
            let n = self.counted.saturating_sub(self.target).max(down);
            parts.push(format!("remove {n} to reach {}", self.target));
        }
        if parts.is_empty() {
            return match &self.waiting {
                Some(w) => format!("waiting: {w}"),
                None => format!("converged: {} of {}", self.counted, self.target),
            };
        }
        let mut line = parts.join(", then ");
        if let Some(w) = &self.waiting {
            line.push_str(&format!(" (waiting: {w})"));
        }
        if !self.held.is_empty() {
            let held: Vec<String> = self.held.iter().map(ToString::to_string).collect();
            line.push_str(&format!("; held: {}", held.join("; ")));
        }
        line
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

fn provisions(n: usize) -> &'static str {
    if n == 1 { "provision" } else { "provisions" }
}

fn instances(n: usize) -> &'static str {
    if n == 1 { "instance" } else { "instances" }
}

/// Plans the next step for one group.
///
/// ```
/// use infrakit_core::reconcile::{plan, InFlight, PlanInput, UpdateClock};
/// use infrakit_core::{Allocation, GroupSpec, PluginSpec};
/// let spec = GroupSpec::new("workers", PluginSpec::new("sim", serde_json::json!({})),
///     PluginSpec::new("vanilla", serde_json::json!({})), Allocation::size(3));
/// let hash = spec.config_hash();
/// let p = plan(PlanInput {
///     spec: &spec, config_hash: &hash, members: &[], in_flight: &InFlight::default(),
///     update: UpdateClock::Idle, destroying: false, logical_ids: None,
/// });
/// assert_eq!(p.actions.len(), 3);
/// assert_eq!(p.explain(), "add 3 to reach 3");
/// ```
pub fn plan(input: PlanInput<'_>) -> Plan {
    if input.destroying {
        return plan_destroy(input);
    }
    let mut p = match &input.spec.allocation {
        Allocation::Size(n) => plan_scaled(input, *n as usize),
        Allocation::LogicalIds { .. } => plan_quorum(input),
    };
    p.wake_after = wake_after(&input, &p);
    p.rollout = rollout(input.update, &p);
    p
}

/// The soonest moment the passing of time changes the plan: a member reaching its healing
/// limit, or, while an update rolls, a new member passing its minimum healthy time. (A member
/// this plan already acts on may add an early wake-up: one pass too many, never one missed.)
fn wake_after(input: &PlanInput<'_>, p: &Plan) -> Option<Duration> {
    let healing = &input.spec.healing;
    let heals =
        healing.replace_unhealthy_after.is_some() || healing.replace_unknown_after.is_some();
    let rolling = matches!(p.update, UpdateProgress::Rolling { .. });
    if !heals && !rolling {
        return None;
    }
    let min_healthy = input.spec.update.min_healthy;
    let destroying = &input.in_flight.destroying;
    input
        .members
        .iter()
        .filter_map(|m| {
            let limit = match m.health {
                Health::Healthy if rolling && m.health_age < min_healthy && p.up_to_date(m) => {
                    Some(min_healthy)
                }
                Health::Healthy => None,
                Health::Unhealthy => healing.replace_unhealthy_after,
                Health::Unknown => healing.replace_unknown_after,
            }?;
            (m.health_age < limit && (destroying.is_empty() || !destroying.contains(m.id())))
                .then(|| limit - m.health_age)
        })
        .min()
}

/// What this plan means for the rolling update's life.
fn rollout(clock: UpdateClock, p: &Plan) -> Option<RolloutStep> {
    match (clock, &p.update) {
        (
            UpdateClock::Idle,
            UpdateProgress::Rolling { outdated }
            | UpdateProgress::Paused { outdated }
            | UpdateProgress::Failed { outdated },
        ) => Some(RolloutStep::Started {
            outdated: *outdated,
        }),
        (UpdateClock::Running(_), UpdateProgress::Failed { outdated }) => {
            Some(RolloutStep::Failed {
                outdated: *outdated,
            })
        }
        (UpdateClock::Running(_) | UpdateClock::Failed, UpdateProgress::UpToDate)
            if p.converged() =>
        {
            Some(RolloutStep::Completed)
        }
        _ => None,
    }
}

fn plan_destroy(input: PlanInput<'_>) -> Plan {
    let actions: Vec<Action> = input
        .members
        .iter()
        .filter(|m| !input.in_flight.destroying.contains(m.id()))
        .map(|m| Action::Destroy {
            id: m.id().clone(),
            context: DestroyContext::Terminate,
            cause: Cause::GroupDestroyed,
        })
        .collect();
    let remaining = input.members.len();
    Plan {
        waiting: (remaining > 0 && actions.is_empty())
            .then(|| format!("{remaining} {} being destroyed", instances(remaining))),
        actions,
        target: 0,
        counted: remaining,
        update: UpdateProgress::UpToDate,
        surge: 0,
        wake_after: None,
        rollout: None,
        held: Vec::new(),
        config_hash: input.config_hash.to_owned(),
        quorum: input.spec.allocation.is_quorum(),
    }
}

/// A member's standing for the planner.
struct View<'a> {
    m: &'a Member,
    outdated: bool,
}

fn classify<'a>(input: &PlanInput<'a>, actions: &mut Vec<Action>) -> Vec<View<'a>> {
    input
        .members
        .iter()
        .filter(|m| !input.in_flight.destroying.contains(m.id()))
        .map(|m| {
            let outdated = match m.config_hash() {
                Some(h) => h != input.config_hash,
                None => {
                    actions.push(Action::Adopt { id: m.id().clone() });
                    false
                }
            };
            View { m, outdated }
        })
        .collect()
}

fn update_progress(input: &PlanInput<'_>, outdated: usize) -> UpdateProgress {
    if outdated == 0 {
        UpdateProgress::UpToDate
    } else if input.update == UpdateClock::Failed
        || matches!((input.update, input.spec.update.deadline), (UpdateClock::Running(t), Some(d)) if t >= d)
    {
        UpdateProgress::Failed { outdated }
    } else if input.spec.update.paused {
        UpdateProgress::Paused { outdated }
    } else {
        UpdateProgress::Rolling { outdated }
    }
}

/// Whether the healing policy replaces `m`, and why: unhealthy past its grace period, or
/// of unknown health past its deadline.
fn overdue(input: &PlanInput<'_>, m: &Member) -> Option<Cause> {
    let healing = &input.spec.healing;
    let (limit, cause) = match m.health {
        Health::Healthy => return None,
        Health::Unhealthy => (healing.replace_unhealthy_after, Cause::Unhealthy),
        Health::Unknown => (healing.replace_unknown_after, Cause::HealthUnknown),
    };
    limit
        .is_some_and(|limit| m.health_age >= limit)
        .then_some(cause)
}

fn ready(input: &PlanInput<'_>, m: &Member) -> bool {
    m.health == Health::Healthy && m.health_age >= input.spec.update.min_healthy
}

fn plan_scaled(input: PlanInput<'_>, target: usize) -> Plan {
    let mut actions = Vec::new();
    let views = classify(&input, &mut actions);
    let policy = &input.spec.update;
    let pending = input.in_flight.provisions;

    // Healing: members unhealthy past the grace period, or of unknown health past the
    // deadline, go (at most max(1, MaxUnavailable) at once); the scale-up below replaces them.
    let heal_budget = (policy.max_unavailable as usize).max(1);
    let mut removed: HashSet<&InstanceId> = HashSet::new();
    for (v, cause) in views
        .iter()
        .filter_map(|v| overdue(&input, v.m).map(|c| (v, c)))
        .take(heal_budget)
    {
        removed.insert(v.m.id());
        actions.push(destroy(v.m, DestroyContext::Terminate, cause));
    }
    let live: Vec<&View<'_>> = views
        .iter()
        .filter(|v| !removed.contains(v.m.id()))
        .collect();
    let outdated_count = live.iter().filter(|v| v.outdated).count();
    let update = update_progress(&input, outdated_count);
    let rolling = matches!(update, UpdateProgress::Rolling { .. });
    let surge = if rolling { policy.max_surge } else { 0 };
    let held = if outdated_count > 0 {
        policy.max_surge
    } else {
        0
    };
    let counted = live.len() + pending;
    let mut waiting = None;

    let mut scaled_now = false;
    if counted < target {
        scaled_now = true;
        for _ in 0..target - counted {
            actions.push(Action::Provision {
                logical_id: None,
                attachments: Vec::new(),
                cause: Cause::ScaleUp,
            });
        }
    } else if counted > target && !(outdated_count > 0 && counted <= target + held as usize) {
        let excess = counted - target;
        let ranked = scale_in_victims(&live, excess);
        let outdated_victims = ranked.iter().filter(|v| v.outdated).count();
        // While outdated members remain, up to MaxSurge extra members are the update's own
        // doing (also when it is paused or failed: they are kept, not churned).
        let n = if outdated_victims < outdated_count {
            excess.saturating_sub(held as usize)
        } else {
            excess
        };
        if n > 0 {
            scaled_now = true;
            if pending > 0 {
                waiting = Some(format!(
                    "{pending} provisions in flight before scaling down"
                ));
            } else {
                for v in ranked.into_iter().take(n) {
                    actions.push(destroy(v.m, DestroyContext::ScaleDown, Cause::ScaleDown));
                }
            }
        }
    }
    if pending > 0 && waiting.is_none() {
        waiting = Some(format!("{pending} {} in flight", provisions(pending)));
    }

    if rolling && !scaled_now && counted <= target + surge as usize {
        let old: Vec<&View<'_>> = live.iter().copied().filter(|v| v.outdated).collect();
        let new_not_ready = live
            .iter()
            .filter(|v| !v.outdated && !ready(&input, v.m))
            .count();
        let ready_new = live
            .iter()
            .filter(|v| !v.outdated && ready(&input, v.m))
            .count();
        // Surge: new members in place of old ones, within target + max_surge.
        let in_progress = new_not_ready + pending;
        let room = (target + surge as usize).saturating_sub(counted);
        let want = old.len().saturating_sub(in_progress);
        for _ in 0..room.min(want) {
            actions.push(Action::Provision {
                logical_id: None,
                attachments: Vec::new(),
                cause: Cause::RollingUpdate,
            });
        }
        // Retire old members while enough stay available.
        let available = ready_new
            + old
                .iter()
                .filter(|v| v.m.health != Health::Unhealthy)
                .count();
        let min_available = target.saturating_sub(policy.max_unavailable as usize);
        let retire = available.saturating_sub(min_available).min(old.len());
        let mut victims: Vec<&View<'_>> = old.clone();
        // Unhealthy old members first, then the oldest; select, then sort only the victims.
        let key = |v: &&View<'_>| (v.m.health != Health::Unhealthy, v.m.first_seen);
        if retire > 0 && retire < victims.len() {
            victims.select_nth_unstable_by_key(retire - 1, key);
        }
        victims.truncate(retire);
        victims.sort_by_key(key);
        for v in victims.into_iter() {
            actions.push(destroy(
                v.m,
                DestroyContext::RollingUpdate,
                Cause::RollingUpdate,
            ));
        }
        if retire == 0 && new_not_ready > 0 {
            waiting = Some(format!(
                "{new_not_ready} new {} to be healthy for {:?}",
                instances(new_not_ready),
                policy.min_healthy
            ));
        }
    }

    Plan {
        actions,
        target,
        counted,
        update,
        waiting,
        surge,
        wake_after: None,
        rollout: None,
        held: Vec::new(),
        config_hash: input.config_hash.to_owned(),
        quorum: false,
    }
}

/// Scale-in order: unhealthy first, then outdated, then newest. Selects in O(n), sorts only
/// the victims.
fn scale_in_victims<'v, 'a>(live: &[&'v View<'a>], n: usize) -> Vec<&'v View<'a>> {
    let mut ranked: Vec<&'v View<'a>> = live.to_vec();
    let key = |v: &View<'_>| {
        (
            v.m.health != Health::Unhealthy,
            !v.outdated,
            std::cmp::Reverse(v.m.first_seen),
        )
    };
    if n < ranked.len() {
        ranked.select_nth_unstable_by_key(n, |v| key(v));
        ranked.truncate(n);
    }
    ranked.sort_by_key(|v| key(v));
    ranked
}

fn destroy(m: &Member, context: DestroyContext, cause: Cause) -> Action {
    Action::Destroy {
        id: m.id().clone(),
        context,
        cause,
    }
}

/// A quorum member's standing, read from the member in the planner's one pass over them:
/// the rest of the plan reads the seat, not the member (a group of 100,000 members is
/// megabytes of memory; one pass over it is the cost of a converged plan).
struct Seat<'a> {
    m: &'a Member,
    outdated: bool,
    healthy: bool,
    overdue: Option<Cause>,
}

/// Where each logical ID's members sit, by index into the seats. While the provider lists
/// one member per logical ID in the allocation's order (the common case), nothing is built:
/// seat `i` is logical ID `i`'s.
struct Places {
    /// Seats seen so far are exactly logical IDs `0..seats`, in order.
    in_order: bool,
    /// Otherwise the first seat of each logical ID (`u32::MAX` for none)...
    first: Vec<u32>,
    /// ...and every seat of a logical ID that has more than one.
    more: HashMap<usize, Vec<u32>>,
}

impl Places {
    const NONE: u32 = u32::MAX;

    fn new() -> Self {
        Self {
            in_order: true,
            first: Vec::new(),
            more: HashMap::new(),
        }
    }

    /// Seat `seat` is a member of logical ID `position`.
    fn place(&mut self, ids: usize, seat: usize, position: usize) {
        if self.in_order && position == seat {
            return;
        }
        if self.in_order {
            // Leave the fast path: the seats so far were logical IDs 0..seat.
            self.in_order = false;
            self.first = vec![Self::NONE; ids];
            for (i, slot) in self.first.iter_mut().enumerate().take(seat) {
                *slot = i as u32;
            }
        }
        let seat = seat as u32;
        match self.first[position] {
            Self::NONE => self.first[position] = seat,
            f => self
                .more
                .entry(position)
                .or_insert_with(|| vec![f])
                .push(seat),
        }
    }

    /// The seats of logical ID `i`, given how many seats there are.
    fn of(&self, i: usize, seats: usize) -> Taken<'_> {
        if self.in_order {
            return if i < seats {
                Taken::One(i as u32)
            } else {
                Taken::None
            };
        }
        if let Some(all) = self.more.get(&i) {
            return Taken::Many(all);
        }
        match self.first[i] {
            Self::NONE => Taken::None,
            f => Taken::One(f),
        }
    }
}

/// Who sits for one logical ID: nobody, one member, or several (duplicates).
enum Taken<'a> {
    None,
    One(u32),
    Many(&'a [u32]),
}

impl Taken<'_> {
    fn any(&self, mut f: impl FnMut(u32) -> bool) -> bool {
        match self {
            Taken::None => false,
            Taken::One(s) => f(*s),
            Taken::Many(all) => all.iter().any(|&s| f(s)),
        }
    }
}

fn plan_quorum(input: PlanInput<'_>) -> Plan {
    let mut actions = Vec::new();
    let allocation = &input.spec.allocation;
    let ids = allocation.ids();
    // One pass over the members: standing, health and the position of their logical ID in
    // the allocation (one lookup per member in the index kept with the spec). An index that
    // does not answer for this allocation (a position naming another logical ID, or none for
    // a member) is checked against one built here, so a wrong index can never make a member
    // unknown.
    let mut built: Option<LogicalIdIndex> = None;
    if input.logical_ids.is_none_or(|i| !i.fits(allocation)) {
        built = Some(LogicalIdIndex::new(allocation));
    }
    let mut seats: Vec<Seat<'_>> = Vec::with_capacity(input.members.len());
    let mut places = Places::new();
    let mut next = 0;
    for m in input.members {
        if !input.in_flight.destroying.is_empty() && input.in_flight.destroying.contains(m.id()) {
            continue;
        }
        let d = &m.description;
        let lid = d
            .logical_id
            .as_ref()
            .map(LogicalId::as_str)
            .or_else(|| d.tags.get(LOGICAL_ID_TAG));
        let position = lid.and_then(|l| {
            // Providers mostly list members in the allocation's order: the place after the
            // last member's is tried first (a compare of the ID, no hash, no random access).
            if ids.get(next).is_some_and(|id| id.as_str() == l) {
                return Some(next);
            }
            let index = match (&built, input.logical_ids) {
                (Some(own), _) => own,
                (None, Some(given)) => given,
                (None, None) => return None,
            };
            match index.position(allocation, l) {
                Some(i) => Some(i),
                None if built.is_none() => built
                    .insert(LogicalIdIndex::new(allocation))
                    .position(allocation, l),
                None => None,
            }
        });
        let outdated = match m.config_hash() {
            Some(h) => h != input.config_hash,
            None => {
                actions.push(Action::Adopt { id: m.id().clone() });
                false
            }
        };
        let Some(i) = position else {
            actions.push(destroy(
                m,
                DestroyContext::Terminate,
                Cause::UnknownLogicalId,
            ));
            continue;
        };
        next = i + 1;
        places.place(ids.len(), seats.len(), i);
        seats.push(Seat {
            m,
            outdated,
            healthy: m.health == Health::Healthy,
            overdue: overdue(&input, m),
        });
    }

    let mut settled = true; // every logical ID has exactly one member and nothing is in flight
    let mut kept: Vec<&Seat<'_>> = Vec::with_capacity(seats.len());
    // A member of unknown health goes only while every other logical ID has one healthy
    // member, and one at a time: a flavor that cannot see the cluster must not break a quorum.
    let healthy_lids = match input.spec.healing.replace_unknown_after {
        None => 0,
        Some(_) => (0..ids.len())
            .filter(|&i| places.of(i, seats.len()).any(|s| seats[s as usize].healthy))
            .count(),
    };
    let mut unknown_replaced = false;
    for (i, lid) in ids.iter().enumerate() {
        if !input.in_flight.logical_ids.is_empty() && input.in_flight.logical_ids.contains(lid) {
            settled = false;
            continue;
        }
        match places.of(i, seats.len()) {
            Taken::None => {
                settled = false;
                actions.push(Action::Provision {
                    logical_id: Some(lid.clone()),
                    attachments: input.spec.allocation.attachments_for(lid).to_vec(),
                    cause: Cause::Missing,
                });
            }
            Taken::One(s) => {
                let seat = &seats[s as usize];
                match seat.overdue {
                    Some(Cause::HealthUnknown)
                        if unknown_replaced || healthy_lids + 1 < ids.len() =>
                    {
                        kept.push(seat)
                    }
                    Some(cause) => {
                        settled = false;
                        unknown_replaced |= cause == Cause::HealthUnknown;
                        actions.push(destroy(seat.m, DestroyContext::RollingUpdate, cause));
                    }
                    None => kept.push(seat),
                }
            }
            Taken::Many(many) => {
                settled = false;
                // Keep the best: up to date, then healthy, then oldest.
                let best = many.iter().copied().min_by_key(|&s| {
                    let seat = &seats[s as usize];
                    (seat.outdated, !seat.healthy, seat.m.first_seen)
                });
                for &s in many {
                    let seat = &seats[s as usize];
                    if best == Some(s) {
                        kept.push(seat);
                    } else {
                        actions.push(destroy(
                            seat.m,
                            DestroyContext::RollingUpdate,
                            Cause::Duplicate,
                        ));
                    }
                }
            }
        }
    }
    if !input.in_flight.destroying.is_empty() {
        settled = false;
    }

    let outdated_count = kept.iter().filter(|v| v.outdated).count();
    let update = update_progress(&input, outdated_count);
    let mut waiting = None;
    if matches!(update, UpdateProgress::Rolling { .. }) && actions.is_empty() && settled {
        // One at a time, and only while every other member is healthy: for three or more
        // members the quorum is never lost.
        let not_ready: Vec<&&Seat<'_>> = kept
            .iter()
            .filter(|v| !v.outdated && !ready(&input, v.m))
            .collect();
        if !not_ready.is_empty() {
            waiting = Some(format!(
                "{} to be healthy for {:?}",
                not_ready
                    .iter()
                    .map(|v| v
                        .m
                        .description
                        .effective_logical_id()
                        .map_or_else(|| v.m.id().to_string(), |l| l.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
                input.spec.update.min_healthy
            ));
        } else if let Some(v) = kept
            .iter()
            .filter(|v| v.outdated)
            // An unhealthy outdated member is replaced first: it is not serving anyway.
            .min_by_key(|v| (v.healthy, v.m.first_seen))
        {
            let others_healthy = kept
                .iter()
                .filter(|o| !std::ptr::eq(**o, *v))
                .all(|o| o.healthy);
            if others_healthy {
                actions.push(destroy(
                    v.m,
                    DestroyContext::RollingUpdate,
                    Cause::RollingUpdate,
                ));
            } else {
                waiting = Some("every other member to be healthy before replacing one".into());
            }
        }
    } else if !input.in_flight.is_idle() && actions.is_empty() {
        waiting = Some("work in flight".into());
    }

    let counted = kept.len() + input.in_flight.logical_ids.len();
    Plan {
        actions,
        target: ids.len(),
        counted,
        update,
        waiting,
        surge: 0,
        wake_after: None,
        rollout: None,
        held: Vec::new(),
        config_hash: input.config_hash.to_owned(),
        quorum: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{HealingPolicy, PluginSpec, UpdatePolicy};
    use crate::tags::{GROUP_TAG, Tags};
    use serde_json::json;

    const OLD: &str = "old-hash";

    fn scaled(n: u32) -> GroupSpec {
        GroupSpec::new(
            "g",
            PluginSpec::new("sim", json!({"v": 2})),
            PluginSpec::new("vanilla", json!({})),
            Allocation::size(n),
        )
    }

    fn quorum(ids: &[&str]) -> GroupSpec {
        let mut alloc = Allocation::logical_ids(ids.iter().copied());
        for id in ids {
            alloc = alloc.with_attachment(*id, Attachment::new(format!("vol-{id}"), "volume"));
        }
        GroupSpec::new(
            "q",
            PluginSpec::new("sim", json!({"v": 2})),
            PluginSpec::new("vanilla", json!({})),
            alloc,
        )
    }

    fn member(id: &str, hash: &str, lid: Option<&str>, health: Health, seen: u64) -> Member {
        let mut d = Description::new(
            id,
            Tags::new().with(GROUP_TAG, "g").with(CONFIG_HASH_TAG, hash),
        );
        d.logical_id = lid.map(LogicalId::from);
        Member {
            description: d,
            health,
            health_age: Duration::from_secs(60),
            first_seen: seen,
        }
    }

    struct Case {
        spec: GroupSpec,
        members: Vec<Member>,
        in_flight: InFlight,
        update: UpdateClock,
    }

    impl Case {
        fn new(spec: GroupSpec) -> Self {
            Self {
                spec,
                members: Vec::new(),
                in_flight: InFlight::default(),
                update: UpdateClock::Idle,
            }
        }
        fn current(&self) -> String {
            self.spec.config_hash()
        }
        fn with(mut self, id: &str, outdated: bool, lid: Option<&str>, health: Health) -> Self {
            let hash = if outdated {
                OLD.to_string()
            } else {
                self.current()
            };
            let seen = self.members.len() as u64;
            self.members.push(member(id, &hash, lid, health, seen));
            self
        }
        fn plan(&self) -> Plan {
            self.plan_indexed(None)
        }
        fn plan_indexed(&self, logical_ids: Option<&LogicalIdIndex>) -> Plan {
            let hash = self.current();
            plan(PlanInput {
                spec: &self.spec,
                config_hash: &hash,
                members: &self.members,
                in_flight: &self.in_flight,
                update: self.update,
                destroying: false,
                logical_ids,
            })
        }
    }

    fn destroyed(p: &Plan) -> Vec<(String, Cause)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Destroy { id, cause, .. } => Some((id.to_string(), *cause)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scales_up_and_is_converged_at_size() {
        let c = Case::new(scaled(3)).with("a", false, None, Health::Healthy);
        let p = c.plan();
        assert_eq!(p.count(Cause::ScaleUp), 2);
        assert_eq!(p.explain(), "add 2 to reach 3");
        let c = c
            .with("b", false, None, Health::Healthy)
            .with("c", false, None, Health::Healthy);
        let p = c.plan();
        assert!(p.converged(), "{p}");
        assert_eq!(p.explain(), "converged: 3 of 3");
    }

    #[test]
    fn in_flight_provisions_are_not_issued_twice() {
        let mut c = Case::new(scaled(3)).with("a", false, None, Health::Healthy);
        c.in_flight.provisions = 2;
        assert!(c.plan().actions.is_empty());
        assert!(!c.plan().converged());
    }

    #[test]
    fn scale_in_takes_unhealthy_then_outdated_then_newest() {
        let c = Case::new(scaled(2))
            .with("old-healthy", true, None, Health::Healthy)
            .with("new-1", false, None, Health::Healthy)
            .with("sick", false, None, Health::Unhealthy)
            .with("new-2", false, None, Health::Healthy)
            .with("new-3", false, None, Health::Healthy);
        let p = c.plan();
        assert_eq!(
            destroyed(&p),
            [
                ("sick".into(), Cause::ScaleDown),
                ("old-healthy".into(), Cause::ScaleDown),
                ("new-3".into(), Cause::ScaleDown)
            ]
        );
        assert!(p.explain().contains("remove 3 to reach 2"), "{p}");
    }

    #[test]
    fn no_scale_in_while_provisions_are_in_flight() {
        let mut c = Case::new(scaled(1))
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Healthy);
        c.in_flight.provisions = 1;
        let p = c.plan();
        assert!(p.actions.is_empty());
        assert!(p.waiting.is_some());
    }

    #[test]
    fn members_being_destroyed_are_not_counted_nor_destroyed_again() {
        let mut c = Case::new(scaled(2))
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Healthy);
        c.in_flight.destroying.insert("b".into());
        let p = c.plan();
        assert_eq!(p.count(Cause::ScaleUp), 1);
        assert!(destroyed(&p).is_empty());
    }

    #[test]
    fn adopts_members_without_a_hash() {
        let mut c = Case::new(scaled(1));
        c.members.push(Member::new(
            Description::new("seed", Tags::new().with(GROUP_TAG, "g")),
            Health::Healthy,
        ));
        let p = c.plan();
        assert_eq!(p.actions, [Action::Adopt { id: "seed".into() }]);
        assert!(p.explain().starts_with("adopt 1 instance"), "{p}");
    }

    #[test]
    fn rolling_update_with_surge_provisions_first_then_retires_when_ready() {
        let c = Case::new(scaled(3))
            .with("o1", true, None, Health::Healthy)
            .with("o2", true, None, Health::Healthy)
            .with("o3", true, None, Health::Healthy);
        let p = c.plan();
        assert_eq!(p.count(Cause::RollingUpdate), 1);
        assert!(
            destroyed(&p).is_empty(),
            "max_unavailable 0: nothing goes before a new one is ready"
        );
        assert_eq!(p.explain(), "rolling update of 3 instances (surge 1)");

        // New member up but not healthy yet: wait.
        let c = c.with("n1", false, None, Health::Unknown);
        let p = c.plan();
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(p.waiting.is_some());

        // New member healthy: one old goes (the oldest).
        let mut c = c;
        c.members[3].health = Health::Healthy;
        let p = c.plan();
        assert_eq!(destroyed(&p), [("o1".into(), Cause::RollingUpdate)]);
        assert!(matches!(
            p.actions[0],
            Action::Destroy {
                context: DestroyContext::RollingUpdate,
                ..
            }
        ));
    }

    #[test]
    fn rolling_update_respects_min_healthy_time() {
        let mut spec = scaled(1);
        spec.update.min_healthy = Duration::from_secs(120);
        let mut c = Case::new(spec)
            .with("o1", true, None, Health::Healthy)
            .with("n1", false, None, Health::Healthy);
        c.members[1].health_age = Duration::from_secs(30);
        assert!(c.plan().actions.is_empty());
        c.members[1].health_age = Duration::from_secs(121);
        assert_eq!(destroyed(&c.plan()), [("o1".into(), Cause::RollingUpdate)]);
    }

    #[test]
    fn the_plan_says_when_time_alone_changes_it() {
        // Converged and no healing: only events or resyncs matter.
        let c = Case::new(scaled(2))
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Healthy);
        assert_eq!(c.plan().wake_after, None);
        // An unhealthy member 20 s into a 60 s grace period: look again in 40 s.
        let mut spec = scaled(2);
        spec.healing.replace_unhealthy_after = Some(Duration::from_secs(60));
        let mut c = Case::new(spec)
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Unhealthy);
        c.members[1].health_age = Duration::from_secs(20);
        assert_eq!(c.plan().wake_after, Some(Duration::from_secs(40)));
        // Past it, the member is acted on now: no wake-up for it.
        c.members[1].health_age = Duration::from_secs(61);
        let p = c.plan();
        assert_eq!(destroyed(&p), [("b".into(), Cause::Unhealthy)]);
        assert_eq!(p.wake_after, None);
        // A rolling update gated on a new member's minimum healthy time.
        let mut spec = scaled(1);
        spec.update.min_healthy = Duration::from_secs(120);
        let mut c = Case::new(spec)
            .with("o1", true, None, Health::Healthy)
            .with("n1", false, None, Health::Healthy);
        c.members[1].health_age = Duration::from_secs(30);
        assert_eq!(c.plan().wake_after, Some(Duration::from_secs(90)));
    }

    #[test]
    fn the_plan_decides_the_rolling_updates_life() {
        let c = Case::new(scaled(2))
            .with("o1", true, None, Health::Healthy)
            .with("o2", true, None, Health::Healthy);
        assert_eq!(c.plan().rollout, Some(RolloutStep::Started { outdated: 2 }));
        let mut c = c;
        c.update = UpdateClock::Running(Duration::from_secs(1));
        assert_eq!(c.plan().rollout, None, "started once");
        c.spec.update.deadline = Some(Duration::from_secs(1));
        assert_eq!(c.plan().rollout, Some(RolloutStep::Failed { outdated: 2 }));
        c.update = UpdateClock::Failed;
        assert_eq!(c.plan().rollout, None, "failed once");
        // Every member current and the group whole: completed (after failing, too).
        let mut done = Case::new(scaled(2))
            .with("n1", false, None, Health::Healthy)
            .with("n2", false, None, Health::Healthy);
        done.update = UpdateClock::Failed;
        assert_eq!(done.plan().rollout, Some(RolloutStep::Completed));
        done.update = UpdateClock::Idle;
        assert_eq!(done.plan().rollout, None);
        // Current but not whole yet: still rolling.
        let mut short = Case::new(scaled(3)).with("n1", false, None, Health::Healthy);
        short.update = UpdateClock::Running(Duration::from_secs(1));
        assert_eq!(short.plan().rollout, None);
    }

    #[test]
    fn up_to_date_is_the_planners_word() {
        let c = Case::new(scaled(2))
            .with("o1", true, None, Health::Healthy)
            .with("n1", false, None, Health::Healthy);
        let p = c.plan();
        assert!(!p.up_to_date(&c.members[0]));
        assert!(p.up_to_date(&c.members[1]));
        let mut unhashed = c.members[1].clone();
        unhashed.description.tags = Tags::new().with(GROUP_TAG, "g");
        assert!(p.up_to_date(&unhashed), "adopted as current");
    }

    #[test]
    fn rolling_update_without_surge_removes_first() {
        let mut spec = scaled(3);
        spec.update = UpdatePolicy {
            max_surge: 0,
            max_unavailable: 1,
            ..UpdatePolicy::default()
        };
        let c = Case::new(spec)
            .with("o1", true, None, Health::Healthy)
            .with("o2", true, None, Health::Healthy)
            .with("o3", true, None, Health::Healthy);
        let p = c.plan();
        assert_eq!(destroyed(&p).len(), 1);
        assert_eq!(p.count(Cause::RollingUpdate), 1);
    }

    #[test]
    fn rolling_update_then_scale_up_explains_itself() {
        let c = Case::new(scaled(3))
            .with("o1", true, None, Health::Healthy)
            .with("o2", true, None, Health::Healthy);
        assert_eq!(
            c.plan().explain(),
            "rolling update of 2 instances (surge 1), then add 1 to reach 3"
        );
    }

    #[test]
    fn a_paused_or_failed_update_does_not_roll() {
        let mut spec = scaled(1);
        spec.update.paused = true;
        let c = Case::new(spec).with("o1", true, None, Health::Healthy);
        let p = c.plan();
        assert!(p.actions.is_empty());
        assert_eq!(p.update, UpdateProgress::Paused { outdated: 1 });

        let mut c = Case::new(scaled(1)).with("o1", true, None, Health::Healthy);
        c.update = UpdateClock::Running(Duration::from_secs(601));
        let p = c.plan();
        assert!(p.actions.is_empty());
        assert_eq!(p.update, UpdateProgress::Failed { outdated: 1 });
        assert!(p.explain().contains("failed"), "{p}");
        assert!(!p.converged());
    }

    #[test]
    fn healing_replaces_members_unhealthy_past_grace() {
        let mut spec = scaled(2);
        spec.healing = HealingPolicy {
            replace_unhealthy_after: Some(Duration::from_secs(30)),
            replace_unknown_after: None,
        };
        let mut c = Case::new(spec)
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Unhealthy);
        c.members[1].health_age = Duration::from_secs(10);
        assert!(
            c.plan().converged(),
            "within the grace period nothing happens"
        );
        c.members[1].health_age = Duration::from_secs(31);
        let p = c.plan();
        assert_eq!(destroyed(&p), [("b".into(), Cause::Unhealthy)]);
        assert_eq!(p.count(Cause::ScaleUp), 1);
        // Without the policy an unhealthy member stays.
        let mut c2 = Case::new(scaled(2))
            .with("a", false, None, Health::Healthy)
            .with("b", false, None, Health::Unhealthy);
        c2.members[1].health_age = Duration::from_secs(3600);
        assert!(c2.plan().actions.is_empty());
    }

    fn unknown_after(spec: &mut GroupSpec, secs: u64) {
        spec.healing = HealingPolicy {
            replace_unhealthy_after: None,
            replace_unknown_after: Some(Duration::from_secs(secs)),
        };
    }

    #[test]
    fn healing_replaces_members_of_unknown_health_past_the_deadline() {
        let mut spec = scaled(3);
        unknown_after(&mut spec, 60);
        let mut c = Case::new(spec)
            .with("a", false, None, Health::Healthy)
            .with("never-joined", false, None, Health::Unknown)
            .with("also", false, None, Health::Unknown);
        c.members[1].health_age = Duration::from_secs(59);
        c.members[2].health_age = Duration::from_secs(10);
        assert!(c.plan().actions.is_empty(), "before the deadline: wait");
        c.members[1].health_age = Duration::from_secs(60);
        let p = c.plan();
        assert_eq!(
            destroyed(&p),
            [("never-joined".into(), Cause::HealthUnknown)]
        );
        assert_eq!(p.count(Cause::ScaleUp), 1);
        assert_eq!(
            p.explain(),
            "replace 1 instance of unknown health, then add 1 to reach 3"
        );
        // One at a time (MaxUnavailable 0 allows one), whatever else is overdue.
        c.members[2].health_age = Duration::from_secs(600);
        assert_eq!(destroyed(&c.plan()).len(), 1);
        // The unhealthy limit does not cover unknown health, nor the reverse.
        let mut spec = scaled(1);
        spec.healing.replace_unhealthy_after = Some(Duration::from_secs(1));
        let c = Case::new(spec).with("u", false, None, Health::Unknown);
        assert!(c.plan().actions.is_empty());
        let mut spec = scaled(1);
        unknown_after(&mut spec, 1);
        let c = Case::new(spec).with("s", false, None, Health::Unhealthy);
        assert!(c.plan().actions.is_empty());
    }

    #[test]
    fn quorum_replaces_a_member_of_unknown_health_only_beside_healthy_peers() {
        let ids = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
        let mut spec = quorum(&ids);
        unknown_after(&mut spec, 30);
        let c = Case::new(spec.clone())
            .with("a", false, Some(ids[0]), Health::Healthy)
            .with("b", false, Some(ids[1]), Health::Unknown)
            .with("c", false, Some(ids[2]), Health::Healthy);
        let p = c.plan();
        assert_eq!(destroyed(&p), [("b".into(), Cause::HealthUnknown)]);
        assert!(matches!(
            p.actions[0],
            Action::Destroy {
                context: DestroyContext::RollingUpdate,
                ..
            }
        ));

        // Two unknown: the flavor may be blind, the quorum is at stake: nothing goes.
        let c = Case::new(spec.clone())
            .with("a", false, Some(ids[0]), Health::Healthy)
            .with("b", false, Some(ids[1]), Health::Unknown)
            .with("c", false, Some(ids[2]), Health::Unknown);
        assert!(destroyed(&c.plan()).is_empty());

        // A peer unhealthy or missing: nothing goes either.
        let c = Case::new(spec.clone())
            .with("a", false, Some(ids[0]), Health::Unhealthy)
            .with("b", false, Some(ids[1]), Health::Unknown)
            .with("c", false, Some(ids[2]), Health::Healthy);
        assert!(destroyed(&c.plan()).is_empty());
        let c = Case::new(spec)
            .with("b", false, Some(ids[1]), Health::Unknown)
            .with("c", false, Some(ids[2]), Health::Healthy);
        let p = c.plan();
        assert!(destroyed(&p).is_empty());
        assert_eq!(p.count(Cause::Missing), 1);
    }

    #[test]
    fn quorum_provisions_missing_logical_ids_with_their_attachments() {
        let c = Case::new(quorum(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]))
            .with("a", false, Some("10.0.0.1"), Health::Healthy)
            .with("c", false, Some("10.0.0.3"), Health::Healthy);
        let p = c.plan();
        assert_eq!(
            p.actions,
            [Action::Provision {
                logical_id: Some("10.0.0.2".into()),
                attachments: vec![Attachment::new("vol-10.0.0.2", "volume")],
                cause: Cause::Missing,
            }]
        );
        assert_eq!(p.explain(), "provision missing 10.0.0.2");
    }

    #[test]
    fn quorum_in_flight_logical_ids_are_not_provisioned_twice() {
        let mut c = Case::new(quorum(&["10.0.0.1"]));
        c.in_flight.logical_ids.insert("10.0.0.1".into());
        assert!(c.plan().actions.is_empty());
    }

    #[test]
    fn quorum_removes_unknown_logical_ids_and_duplicates() {
        let c = Case::new(quorum(&["10.0.0.1", "10.0.0.2"]))
            .with("a", false, Some("10.0.0.1"), Health::Healthy)
            .with("a-dup", false, Some("10.0.0.1"), Health::Healthy)
            .with("b", false, Some("10.0.0.2"), Health::Healthy)
            .with("stranger", false, Some("10.0.0.9"), Health::Healthy)
            .with("no-lid", false, None, Health::Healthy);
        let p = c.plan();
        let mut d = destroyed(&p);
        d.sort();
        assert_eq!(
            d,
            [
                ("a-dup".into(), Cause::Duplicate),
                ("no-lid".into(), Cause::UnknownLogicalId),
                ("stranger".into(), Cause::UnknownLogicalId)
            ]
        );
        // Unknown logical IDs are terminated; a duplicate's logical ID lives on.
        for a in &p.actions {
            if let Action::Destroy { id, context, .. } = a {
                let expected = if id == "a-dup" {
                    DestroyContext::RollingUpdate
                } else {
                    DestroyContext::Terminate
                };
                assert_eq!(*context, expected);
            }
        }
    }

    #[test]
    fn quorum_plans_the_same_with_its_index_without_it_or_with_a_wrong_one() {
        let c = Case::new(quorum(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]))
            .with("a", false, Some("10.0.0.1"), Health::Healthy)
            .with("a-dup", true, Some("10.0.0.1"), Health::Healthy)
            .with("b", false, Some("10.0.0.2"), Health::Healthy)
            .with("stranger", false, Some("10.0.0.9"), Health::Healthy);
        let own = LogicalIdIndex::new(&c.spec.allocation);
        // Built for another spec: one of the same size in another order, and one of
        // another size. Neither may make a member unknown or misplace it.
        let reordered = LogicalIdIndex::new(&Allocation::logical_ids([
            "10.0.0.3", "10.0.0.1", "10.0.0.2",
        ]));
        let other = LogicalIdIndex::new(&Allocation::logical_ids(["10.0.0.7", "10.0.0.8"]));
        let same_size_other = LogicalIdIndex::new(&Allocation::logical_ids(["x", "y", "z"]));
        let expected = c.plan();
        assert_eq!(expected.count(Cause::Missing), 1);
        for index in [&own, &reordered, &other, &same_size_other] {
            assert_eq!(c.plan_indexed(Some(index)), expected);
        }
    }

    /// Members listed in the allocation's order, in another order, or leaving it part way
    /// (a duplicate, a stranger, a gap) are planned alike.
    #[test]
    fn quorum_plans_members_in_any_order_alike() {
        let ids = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"];
        let listed = [
            ("a", false, Some("10.0.0.1"), Health::Healthy),
            ("b", false, Some("10.0.0.2"), Health::Unhealthy),
            ("b-dup", false, Some("10.0.0.2"), Health::Healthy),
            ("stranger", false, Some("10.0.0.9"), Health::Healthy),
            ("d", true, Some("10.0.0.4"), Health::Healthy),
            ("a-dup", true, Some("10.0.0.1"), Health::Healthy),
        ];
        let mut orders: Vec<Vec<usize>> = vec![
            vec![0, 1, 2, 3, 4, 5],
            vec![5, 4, 3, 2, 1, 0],
            vec![0, 4, 1, 3, 5, 2],
            vec![3, 0, 1, 2, 4, 5],
        ];
        // In order, then one member out of order at the very end.
        orders.push(vec![0, 1, 4, 2, 3, 5]);
        let plan_of = |order: &[usize]| {
            let mut c = Case::new(quorum(&ids));
            for &k in order {
                let (id, outdated, lid, health) = listed[k];
                c = c.with(id, outdated, lid, health);
                // The same first-seen order whatever the listing order.
                if let Some(m) = c.members.last_mut() {
                    m.first_seen = k as u64;
                }
            }
            let p = c.plan();
            let mut d = destroyed(&p);
            d.sort();
            (d, p.count(Cause::Missing), p.counted, p.update)
        };
        let expected = plan_of(&orders[0]);
        assert_eq!(
            expected.0,
            [
                ("a-dup".into(), Cause::Duplicate),
                ("b".into(), Cause::Duplicate),
                ("stranger".into(), Cause::UnknownLogicalId)
            ]
        );
        assert_eq!(expected.1, 1, "10.0.0.3 is provisioned");
        for order in &orders[1..] {
            assert_eq!(plan_of(order), expected, "order {order:?}");
        }
        // Every logical ID once, in order: nothing to do.
        let mut c = Case::new(quorum(&ids));
        for (k, id) in ids.iter().enumerate() {
            c = c.with(&format!("m{k}"), false, Some(id), Health::Healthy);
        }
        assert!(c.plan().converged());
    }

    #[test]
    fn quorum_duplicates_keep_the_up_to_date_healthy_one() {
        let c = Case::new(quorum(&["10.0.0.1"]))
            .with("old", true, Some("10.0.0.1"), Health::Healthy)
            .with("new", false, Some("10.0.0.1"), Health::Healthy);
        assert_eq!(destroyed(&c.plan()), [("old".into(), Cause::Duplicate)]);
    }

    #[test]
    fn quorum_rolls_one_at_a_time_only_when_all_others_are_healthy() {
        let ids = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
        let c = Case::new(quorum(&ids))
            .with("a", true, Some(ids[0]), Health::Healthy)
            .with("b", true, Some(ids[1]), Health::Healthy)
            .with("c", true, Some(ids[2]), Health::Healthy);
        let p = c.plan();
        assert_eq!(destroyed(&p), [("a".into(), Cause::RollingUpdate)]);
        assert_eq!(p.explain(), "rolling update of 3 instances (one at a time)");

        // A member that is not healthy is replaced first: two of three stay healthy.
        let mut c2 = c;
        c2.members[1].health = Health::Unknown;
        assert_eq!(destroyed(&c2.plan()), [("b".into(), Cause::RollingUpdate)]);
        // Two members down: no roll (it would leave one of three).
        c2.members[2].health = Health::Unhealthy;
        let p = c2.plan();
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(p.waiting.is_some());

        // A replacement in flight: wait for it.
        let mut c3 = Case::new(quorum(&ids))
            .with("b", true, Some(ids[1]), Health::Healthy)
            .with("c", true, Some(ids[2]), Health::Healthy);
        c3.in_flight.logical_ids.insert(ids[0].into());
        assert!(c3.plan().actions.is_empty());

        // The replacement is up but not ready yet: wait.
        let c4 = Case::new(quorum(&ids))
            .with("a2", false, Some(ids[0]), Health::Unknown)
            .with("b", true, Some(ids[1]), Health::Healthy)
            .with("c", true, Some(ids[2]), Health::Healthy);
        assert!(c4.plan().actions.is_empty());
    }

    #[test]
    fn destroying_a_group_destroys_every_member() {
        let c = Case::new(scaled(2))
            .with("a", false, None, Health::Healthy)
            .with("b", true, None, Health::Healthy);
        let hash = c.current();
        let p = plan(PlanInput {
            spec: &c.spec,
            config_hash: &hash,
            members: &c.members,
            in_flight: &c.in_flight,
            update: UpdateClock::Idle,
            destroying: true,
            logical_ids: None,
        });
        assert_eq!(p.count(Cause::GroupDestroyed), 2);
        assert!(p.actions.iter().all(|a| matches!(
            a,
            Action::Destroy {
                context: DestroyContext::Terminate,
                ..
            }
        )));
    }
}
