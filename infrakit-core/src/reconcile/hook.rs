//! Plan hooks: business rules in the loop. A [`PlanHook`] sees every plan before anything is
//! done and may approve, veto or defer each action, with a reason.
//!
//! Invariants: a hook is asked only by a controller whose replica has just passed its fence
//! (a full epoch check), and every approved mutation still passes the fence right before it
//! is issued, so a deposed leader's hook cannot approve anything. A held action is not
//! executed; it shows in the plan's explanation (`commit(pretend)`), in
//! [`GroupDescription::held`](crate::GroupDescription::held) and, when the holds change, as
//! [`ActionVetoed`](crate::EngineEvent::ActionVetoed) /
//! [`ActionDeferred`](crate::EngineEvent::ActionDeferred) events. A deferred action is
//! reviewed again at the group's next pass, which comes no later than its `retry_after` (or
//! the resync, whichever is sooner); a vetoed one at the next resync, provider event or
//! request.

use super::plan::{Action, Member, Plan};
use crate::duration::serde as go_duration;
use crate::group::GroupSpec;
use crate::id::GroupId;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What a hook decides about one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (the default).
    Approve,
    /// Not this action; the planner will propose it again, and the hook will be asked again,
    /// at the group's next pass.
    Veto {
        /// Why, for people.
        reason: String,
    },
    /// Not now; ask again after `retry_after` (or at the resync, if sooner; `None`: at the
    /// resync).
    Defer {
        /// Why, for people.
        reason: String,
        /// When to ask again.
        retry_after: Option<Duration>,
    },
}

/// Whether a held action was vetoed or deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Vetoed.
    Vetoed,
    /// Deferred.
    Deferred,
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hold::Vetoed => "vetoed",
            Hold::Deferred => "deferred",
        })
    }
}

/// An action a hook held back, as a plan, a description and an event show it.
///
/// On the wire (in a group's description):
/// `{"Action":"destroy i-3 (scale down)","Hold":"vetoed","Reason":"change freeze"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAction {
    /// The action, in words (`provision (scale up)`, `destroy i-3 (rolling update)`).
    #[serde(rename = "Action")]
    pub action: String,
    /// Vetoed or deferred.
    #[serde(rename = "Hold")]
    pub hold: Hold,
    /// The hook's reason.
    #[serde(rename = "Reason")]
    pub reason: String,
    /// When a deferred action is reviewed again (`None`: at the next resync).
    #[serde(
        rename = "RetryAfter",
        default,
        with = "go_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
    /// The action's place in [`Plan::actions`].
    #[serde(skip)]
    pub index: usize,
}

impl fmt::Display for HeldAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.action, self.hold, self.reason)
    }
}

/// A plan under review: the group, its spec, what was observed and the actions, each with
/// a verdict (approved until a hook says otherwise).
pub struct Review<'a> {
    group: &'a GroupId,
    spec: &'a GroupSpec,
    plan: &'a Plan,
    members: &'a [Member],
    pretend: bool,
    verdicts: Vec<Verdict>,
}

impl<'a> Review<'a> {
    /// A review of `plan`, every action approved. The engine builds these; a hook's own
    /// tests can too.
    pub fn new(
        group: &'a GroupId,
        spec: &'a GroupSpec,
        plan: &'a Plan,
        members: &'a [Member],
        pretend: bool,
    ) -> Self {
        Self {
            group,
            spec,
            plan,
            members,
            pretend,
            verdicts: vec![Verdict::Approve; plan.actions.len()],
        }
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        self.group
    }

    /// The spec the plan was made for.
    pub fn spec(&self) -> &GroupSpec {
        self.spec
    }

    /// The whole plan.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// The actions, in the planner's order of priority.
    pub fn actions(&self) -> &[Action] {
        &self.plan.actions
    }

    /// The members as observed for this plan (descriptions, health).
    pub fn members(&self) -> &[Member] {
        self.members
    }

    /// True for a preview (`commit(pretend)`, a follower's describe): nothing approved
    /// will run, so a hook that counts (a budget) should not count it.
    pub fn pretend(&self) -> bool {
        self.pretend
    }

    /// The verdict on action `index` so far.
    pub fn verdict(&self, index: usize) -> Option<&Verdict> {
        self.verdicts.get(index)
    }

    /// Vetoes action `index`. A veto is never softened by a later defer.
    pub fn veto(&mut self, index: usize, reason: impl Into<String>) {
        if let Some(v) = self.verdicts.get_mut(index) {
            *v = Verdict::Veto {
                reason: reason.into(),
            };
        }
    }

    /// Defers action `index` for `retry_after` (`None`: until the next resync). A vetoed
    /// action stays vetoed.
    pub fn defer(
        &mut self,
        index: usize,
        reason: impl Into<String>,
        retry_after: Option<Duration>,
    ) {
        if let Some(v) = self.verdicts.get_mut(index)
            && !matches!(v, Verdict::Veto { .. })
        {
            *v = Verdict::Defer {
                reason: reason.into(),
                retry_after,
            };
        }
    }

    /// The held actions, in plan order.
    pub fn held(&self) -> Vec<HeldAction> {
        self.verdicts
            .iter()
            .enumerate()
            .filter_map(|(index, v)| {
                let (hold, reason, retry_after) = match v {
                    Verdict::Approve => return None,
                    Verdict::Veto { reason } => (Hold::Vetoed, reason.clone(), None),
                    Verdict::Defer {
                        reason,
                        retry_after,
                    } => (Hold::Deferred, reason.clone(), *retry_after),
                };
                Some(HeldAction {
                    action: self.plan.actions[index].to_string(),
                    hold,
                    reason,
                    retry_after,
                    index,
                })
            })
            .collect()
    }
}

/// Business rules in the reconcile loop: sees each plan before execution and may veto or
/// defer its actions.
///
/// A hook is asked only by a controller whose replica has just passed its fence (a full
/// epoch check), and every approved mutation still passes the fence right before it is
/// issued, so a deposed leader's hook cannot approve anything. A held action is not
/// executed; it shows in the plan's explanation (`commit(pretend)`), in
/// [`GroupDescription::held`](crate::GroupDescription::held) and, when the holds change, as
/// [`ActionVetoed`](crate::EngineEvent::ActionVetoed) /
/// [`ActionDeferred`](crate::EngineEvent::ActionDeferred) events. A deferred action is
/// reviewed again no later than its `retry_after` (or the resync, whichever is sooner); a
/// vetoed one at the next resync, provider event or trigger.
///
/// A maintenance window that defers rolling-update destroys outside it, and a change freeze
/// that vetoes every scale-in:
///
/// ```
/// use infrakit_core::reconcile::{Action, Cause, PlanHook, Review};
/// use infrakit_core::async_trait;
/// use std::time::Duration;
///
/// struct MaintenanceWindow { open: fn() -> bool }
///
/// #[async_trait]
/// impl PlanHook for MaintenanceWindow {
///     async fn review(&self, review: &mut Review<'_>) {
///         if (self.open)() {
///             return;
///         }
///         let rolling: Vec<usize> = review.actions().iter().enumerate()
///             .filter(|(_, a)| matches!(a, Action::Destroy { cause: Cause::RollingUpdate, .. }))
///             .map(|(i, _)| i)
///             .collect();
///         for i in rolling {
///             review.defer(i, "outside the maintenance window", Some(Duration::from_secs(300)));
///         }
///     }
/// }
///
/// struct ChangeFreeze;
///
/// #[async_trait]
/// impl PlanHook for ChangeFreeze {
///     async fn review(&self, review: &mut Review<'_>) {
///         for i in 0..review.actions().len() {
///             if matches!(review.actions()[i], Action::Destroy { cause: Cause::ScaleDown, .. }) {
///                 review.veto(i, "change freeze until Monday");
///             }
///         }
///     }
/// }
/// ```
///
/// A budget: at most `per_hour` provisions an hour (previews do not spend it):
///
/// ```
/// use infrakit_core::reconcile::{Action, PlanHook, Review};
/// use infrakit_core::async_trait;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// struct Budget { per_hour: usize, spent: Mutex<Vec<Instant>> }
///
/// #[async_trait]
/// impl PlanHook for Budget {
///     async fn review(&self, review: &mut Review<'_>) {
///         let mut spent = self.spent.lock().unwrap();
///         let hour = Duration::from_secs(3600);
///         spent.retain(|t| t.elapsed() < hour);
///         let mut left = self.per_hour.saturating_sub(spent.len());
///         let wait = spent.first().map(|t| hour - t.elapsed());
///         for i in 0..review.actions().len() {
///             if matches!(review.actions()[i], Action::Provision { .. }) {
///                 if left == 0 {
///                     review.defer(i, format!("budget of {} an hour spent", self.per_hour), wait);
///                 } else {
///                     left -= 1;
///                     if !review.pretend() {
///                         spent.push(Instant::now());
///                     }
///                 }
///             }
///         }
///     }
/// }
/// ```
///
/// Register hooks with [`ManagerBuilder::plan_hook`](crate::ManagerBuilder::plan_hook).
#[async_trait]
pub trait PlanHook: Send + Sync {
    /// Reviews a plan: call [`Review::veto`] or [`Review::defer`] on the actions to hold;
    /// the others run. Keep it quick: the group's pass waits for it (within the pass
    /// timeout).
    async fn review(&self, review: &mut Review<'_>);
}

/// A shared hook is a hook (keep a handle to change its rules while it is registered).
#[async_trait]
impl<T: PlanHook + ?Sized> PlanHook for std::sync::Arc<T> {
    async fn review(&self, review: &mut Review<'_>) {
        (**self).review(review).await;
    }
}

/// A boxed hook is a hook.
#[async_trait]
impl<T: PlanHook + ?Sized> PlanHook for Box<T> {
    async fn review(&self, review: &mut Review<'_>) {
        (**self).review(review).await;
    }
}
