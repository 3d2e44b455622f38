//! What a group's controller remembers between passes: health records, provisions not yet
//! visible, the rolling update's state, the sequence of new members.
//!
//! Invariants: owned by the group's controller task alone (no lock, no sharing); only the
//! flavor's answers age a health (a failed check restarts its clock); a provision counts as
//! in flight until `describe` shows it or `describe_lag` passes.

use super::plan::{InFlight, Member, RolloutStep, UpdateClock};
use crate::flavor::Health;
use crate::id::{InstanceId, LogicalId};
use crate::instance::Description;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct HealthRecord {
    /// The last answer; `None` after a failed check.
    health: Option<Health>,
    since: Instant,
    first_seen: u64,
}

/// A rolling update's life, for one configuration hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Rollout {
    /// No update under way.
    #[default]
    Idle,
    /// Replacing members outdated by `hash` since `started`.
    Rolling {
        /// The configuration being rolled out.
        hash: String,
        /// When the update started.
        started: Instant,
    },
    /// The update to `hash` missed its deadline; it stays failed until a new spec.
    Failed {
        /// The configuration that failed to roll out.
        hash: String,
        /// When the update started.
        started: Instant,
    },
}

impl Rollout {
    /// The planner's view of the update to `hash` (another hash: none under way).
    pub(crate) fn clock(&self, hash: &str, now: Instant) -> UpdateClock {
        match self {
            Rollout::Rolling { hash: h, started } if h == hash => {
                UpdateClock::Running(now.saturating_duration_since(*started))
            }
            Rollout::Failed { hash: h, .. } if h == hash => UpdateClock::Failed,
            _ => UpdateClock::Idle,
        }
    }

    /// Records the planner's step for `hash`.
    pub(crate) fn apply(&mut self, hash: &str, step: Option<RolloutStep>, now: Instant) {
        *self = match (step, std::mem::take(self)) {
            (Some(RolloutStep::Started { .. }), _) => Rollout::Rolling {
                hash: hash.to_owned(),
                started: now,
            },
            (Some(RolloutStep::Failed { .. }), Rollout::Rolling { started, .. }) => {
                Rollout::Failed {
                    hash: hash.to_owned(),
                    started,
                }
            }
            (Some(RolloutStep::Completed), _) => Rollout::Idle,
            (_, current) => current,
        };
    }
}

/// A controller's memory of its group.
#[derive(Debug, Default)]
pub(crate) struct GroupState {
    health: HashMap<InstanceId, HealthRecord>,
    seen: u64,
    /// Provisioned, not yet seen in a describe: (logical ID, when).
    recent: HashMap<InstanceId, (Option<LogicalId>, Instant)>,
    /// The rolling update.
    pub(crate) rollout: Rollout,
    sequence: u64,
}

impl GroupState {
    /// The sequence number of the next new member (for the flavor's [`Index`](crate::Index)).
    pub(crate) fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Records a provision the provider accepted.
    pub(crate) fn provisioned(&mut self, id: InstanceId, logical_id: Option<LogicalId>) {
        self.recent.insert(id, (logical_id, Instant::now()));
    }

    /// Turns descriptions and health answers into members, tracking how long each has had
    /// its health.
    pub(crate) fn observe(
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

    /// Provisions issued and not yet visible (forgotten after `lag`).
    pub(crate) fn in_flight(&mut self, now: Instant, lag: Duration) -> InFlight {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_rollout_starts_fails_and_completes_as_the_planner_says() {
        let mut r = Rollout::default();
        let t0 = Instant::now();
        assert_eq!(r.clock("h2", t0), UpdateClock::Idle);
        r.apply("h2", Some(RolloutStep::Started { outdated: 3 }), t0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(
            r.clock("h2", now),
            UpdateClock::Running(Duration::from_secs(5))
        );
        assert_eq!(
            r.clock("h3", now),
            UpdateClock::Idle,
            "another hash: none under way"
        );
        r.apply("h2", None, now);
        r.apply("h2", Some(RolloutStep::Failed { outdated: 1 }), now);
        assert_eq!(r.clock("h2", now), UpdateClock::Failed);
        r.apply("h2", Some(RolloutStep::Completed), now);
        assert_eq!(r, Rollout::Idle);
    }
}
