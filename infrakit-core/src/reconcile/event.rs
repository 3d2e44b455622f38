//! What drives a controller ([`Trigger`]) and what it reports ([`EngineEvent`]).

use super::plan::Cause;
use crate::id::{GroupId, InstanceId, LogicalId};
use crate::leadership::Term;
use crate::store::Epoch;
use std::time::Duration;

/// Why a reconcile pass runs: one closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// The periodic resync, which catches whatever events missed.
    Resync,
    /// The provider reported a change to a member (or that events were lost).
    ProviderEvent,
    /// The group's spec was committed or resized.
    SpecChanged,
    /// This replica became the leader.
    LeadershipChanged,
    /// A retry after a failed pass (with backoff), or a requeue while waiting for progress.
    Retry,
    /// A program or operator asked for a pass ([`Group::trigger`](crate::Group::trigger)).
    Requested,
}

/// Everything the engine does, as typed events on a broadcast channel (for logs, metrics,
/// progress bars and tests). See [`Manager::events`](crate::manager::Manager::events).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// This replica leads, in this term; controllers start.
    LeadershipGained {
        /// The term.
        term: Term,
    },
    /// This replica stopped leading; every controller of the term has stopped.
    LeadershipLost {
        /// The term that ended.
        term: Term,
    },
    /// The leader claimed its epoch in the store (after `LeadershipGained`): from now on its
    /// writes carry it, and an older leader's are refused.
    EpochClaimed {
        /// The term.
        term: Term,
        /// The epoch, higher than every earlier leader's.
        epoch: Epoch,
    },
    /// A group controller started.
    GroupStarted {
        /// The group.
        group: GroupId,
    },
    /// A member is being provisioned.
    Provisioning {
        /// The group.
        group: GroupId,
        /// Its logical ID, for quorum groups.
        logical_id: Option<LogicalId>,
        /// Why.
        cause: Cause,
    },
    /// A member was provisioned.
    Provisioned {
        /// The group.
        group: GroupId,
        /// The new instance.
        id: InstanceId,
        /// Its logical ID, for quorum groups.
        logical_id: Option<LogicalId>,
        /// Why.
        cause: Cause,
    },
    /// A provision failed.
    ProvisionFailed {
        /// The group.
        group: GroupId,
        /// Its logical ID, for quorum groups.
        logical_id: Option<LogicalId>,
        /// The error.
        error: String,
    },
    /// A member was drained and destroyed.
    Destroyed {
        /// The group.
        group: GroupId,
        /// The instance.
        id: InstanceId,
        /// Why.
        cause: Cause,
    },
    /// A drain or destroy failed; the member stays managed.
    DestroyFailed {
        /// The group.
        group: GroupId,
        /// The instance.
        id: InstanceId,
        /// The error.
        error: String,
    },
    /// A plan hook vetoed an action (emitted when a group's holds change).
    ActionVetoed {
        /// The group.
        group: GroupId,
        /// The action, in words.
        action: String,
        /// The hook's reason.
        reason: String,
    },
    /// A plan hook deferred an action (emitted when a group's holds change).
    ActionDeferred {
        /// The group.
        group: GroupId,
        /// The action, in words.
        action: String,
        /// The hook's reason.
        reason: String,
        /// When it is reviewed again (`None`: at the next resync).
        retry_after: Option<Duration>,
    },
    /// A member created outside the controller was adopted.
    Adopted {
        /// The group.
        group: GroupId,
        /// The instance.
        id: InstanceId,
    },
    /// A rolling update began.
    UpdateStarted {
        /// The group.
        group: GroupId,
        /// The new configuration hash.
        hash: String,
        /// Members to replace.
        outdated: usize,
    },
    /// Every member has the new configuration.
    UpdateCompleted {
        /// The group.
        group: GroupId,
        /// The configuration hash.
        hash: String,
    },
    /// The update missed its deadline; it stays failed until a new spec is committed.
    UpdateFailed {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// The group matches its spec.
    Converged {
        /// The group.
        group: GroupId,
        /// Its size.
        size: usize,
    },
    /// A pass failed; it is retried after a backoff.
    PassFailed {
        /// The group.
        group: GroupId,
        /// The error.
        error: String,
        /// When it is retried.
        retry_in: Duration,
    },
    /// A group was destroyed and forgotten.
    GroupDestroyed {
        /// The group.
        group: GroupId,
    },
    /// A group was freed: no longer managed, instances left running.
    GroupFreed {
        /// The group.
        group: GroupId,
    },
}

impl EngineEvent {
    /// The group concerned, if any.
    pub fn group(&self) -> Option<&GroupId> {
        use EngineEvent::*;
        match self {
            LeadershipGained { .. } | LeadershipLost { .. } | EpochClaimed { .. } => None,
            GroupStarted { group }
            | Provisioning { group, .. }
            | Provisioned { group, .. }
            | ProvisionFailed { group, .. }
            | Destroyed { group, .. }
            | DestroyFailed { group, .. }
            | Adopted { group, .. }
            | ActionVetoed { group, .. }
            | ActionDeferred { group, .. }
            | UpdateStarted { group, .. }
            | UpdateCompleted { group, .. }
            | UpdateFailed { group, .. }
            | Converged { group, .. }
            | PassFailed { group, .. }
            | GroupDestroyed { group }
            | GroupFreed { group } => Some(group),
        }
    }
}

/// One line for people (logs, status pages, progress output), e.g.
/// `workers: provisioned sim-000004 as 10.0.0.5 (missing)`.
///
/// ```
/// use infrakit_core::reconcile::{Cause, EngineEvent};
/// let e = EngineEvent::Destroyed { group: "web".into(), id: "i-1".into(), cause: Cause::ScaleDown };
/// assert_eq!(e.to_string(), "web: destroyed i-1 (scale down)");
/// ```
impl std::fmt::Display for EngineEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use EngineEvent::*;
        let lid =
            |l: &Option<LogicalId>| l.as_ref().map(|l| format!(" as {l}")).unwrap_or_default();
        match self {
            LeadershipGained { term } => write!(f, "leads ({term})"),
            LeadershipLost { term } => write!(f, "stopped leading ({term} ended)"),
            EpochClaimed { term, epoch } => write!(f, "claimed {epoch} ({term})"),
            GroupStarted { group } => write!(f, "{group}: controller started"),
            Provisioning {
                group,
                logical_id,
                cause,
            } => write!(f, "{group}: provisioning{} ({cause})", lid(logical_id)),
            Provisioned {
                group,
                id,
                logical_id,
                cause,
            } => write!(f, "{group}: provisioned {id}{} ({cause})", lid(logical_id)),
            ProvisionFailed {
                group,
                logical_id,
                error,
            } => write!(f, "{group}: provision{} failed: {error}", lid(logical_id)),
            Destroyed { group, id, cause } => write!(f, "{group}: destroyed {id} ({cause})"),
            DestroyFailed { group, id, error } => {
                write!(f, "{group}: destroy of {id} failed: {error}")
            }
            Adopted { group, id } => write!(f, "{group}: adopted {id}"),
            ActionVetoed {
                group,
                action,
                reason,
            } => write!(f, "{group}: {action} vetoed: {reason}"),
            ActionDeferred {
                group,
                action,
                reason,
                retry_after,
            } => match retry_after {
                Some(d) => write!(
                    f,
                    "{group}: {action} deferred for {}: {reason}",
                    crate::duration::format_duration(*d)
                ),
                None => write!(f, "{group}: {action} deferred: {reason}"),
            },
            UpdateStarted {
                group, outdated, ..
            } => write!(f, "{group}: rolling update of {outdated} started"),
            UpdateCompleted { group, .. } => write!(f, "{group}: rolling update completed"),
            UpdateFailed { group, reason } => write!(f, "{group}: rolling update failed: {reason}"),
            Converged { group, size } => write!(f, "{group}: converged ({size})"),
            PassFailed {
                group,
                error,
                retry_in,
            } => write!(f, "{group}: pass failed ({error}), retry in {retry_in:?}"),
            GroupDestroyed { group } => write!(f, "{group}: destroyed"),
            GroupFreed { group } => write!(f, "{group}: freed"),
        }
    }
}
