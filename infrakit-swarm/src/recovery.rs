//! Recovery from the loss of a majority of the swarm's managers.
//!
//! See [`QuorumRecovery`] for the rules.
//!
//! Nothing here logs a join token (the engine's answer is a node ID only).

use bollard::Docker;
use bollard::models::{LocalNodeState, SwarmInitRequest};
use infrakit_core::{Instance, InstanceError, Tags};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a manager sees no Raft leader before a recovery is considered, by default.
pub const RECOVER_AFTER: Duration = Duration::from_secs(30);

/// How long a forced new cluster may take before the call is abandoned (the engine goes on).
const FORCE_TIMEOUT: Duration = Duration::from_secs(90);

/// What one [`QuorumRecovery::check`] found, and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryCheck {
    /// The local engine is not an active manager (a worker, joining, or no swarm): a worker
    /// never recovers a swarm.
    NotAManager,
    /// The swarm has a Raft leader.
    Led,
    /// No leader, for less than the configured time so far.
    Leaderless {
        /// Since when, as time waited.
        since: Duration,
    },
    /// No leader, but the instances of a majority of the members exist: a partition or an
    /// election. Never grounds for recovery.
    QuorumExists {
        /// The members' logical IDs.
        members: Vec<String>,
        /// Those whose instances the provider lists.
        live: Vec<String>,
    },
    /// A majority is gone, and another survivor is the one to recover.
    OtherSurvivor {
        /// The survivor that recovers (the lowest live logical ID).
        survivor: String,
    },
    /// The provider does not list this node's own instance among the managers: it cannot be
    /// chosen, so it waits.
    NotListed,
    /// This node forced a new cluster from its state.
    Recovered {
        /// The members before, by logical ID.
        members: Vec<String>,
        /// Those whose instances existed.
        live: Vec<String>,
    },
}

/// Why a [`QuorumRecovery::check`] could not decide. None of these forces anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The local engine did not answer.
    #[error("the local engine did not answer")]
    Engine(#[source] bollard::errors::Error),
    /// The local engine did not answer in time.
    #[error("the local engine did not answer within {0:?}")]
    Timeout(Duration),
    /// The instance plugin could not list the managers' instances.
    #[error("the instance plugin could not list the managers' instances")]
    Provider(#[source] InstanceError),
    /// The engine refused to force a new cluster.
    #[error("forcing a new cluster failed")]
    Force(#[source] bollard::errors::Error),
}

/// What the provider's view decides, given the members and the live instances.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Wait,
    NotListed,
    Other(String),
    Recover,
}

/// Orders logical IDs as addresses when they are (10.0.0.9 before 10.0.0.10), else as text.
fn order_key(id: &str) -> (Option<IpAddr>, &str) {
    (id.parse().ok(), id)
}

/// The decision for `me` when the Raft `members` have no leader and the provider lists the
/// managers' instances `live` (by logical ID).
fn decide(members: &BTreeSet<String>, live: &BTreeSet<String>, me: &str) -> Decision {
    let quorum = members.len() / 2 + 1;
    let alive: Vec<&String> = members.iter().filter(|m| live.contains(*m)).collect();
    if alive.len() >= quorum {
        return Decision::Wait;
    }
    if !live.contains(me) {
        return Decision::NotListed;
    }
    match alive
        .into_iter()
        .min_by(|a, b| order_key(a).cmp(&order_key(b)))
    {
        Some(s) if s == me => Decision::Recover,
        Some(s) => Decision::Other(s.clone()),
        None => Decision::NotListed,
    }
}

/// Watches a manager's engine and forces a new cluster from it when the swarm lost a majority
/// of its managers.
///
/// A swarm that loses a majority of its managers at once has no Raft quorum: no leader can be
/// elected, so no replica leads and nothing heals, until someone runs
/// `docker swarm init --force-new-cluster` on a survivor. `QuorumRecovery` is that someone,
/// and it decides from the **provider's** view, never from reachability alone:
///
/// - It acts only after the local engine, a manager, has seen no Raft leader for the
///   configured time ([`after`](QuorumRecovery::after), default [`RECOVER_AFTER`]).
/// - The Raft members are the managers the local engine knows (`RemoteManagers`); a member's
///   logical ID is its address, as in the seed (a manager's instance has its IP as its logical
///   ID). The instance plugin lists the managers' instances that exist.
/// - If the instances of a majority of the members still exist, nothing happens, however long
///   the swarm has no leader: the others are cut off or electing, not dead, and forcing a new
///   cluster would split the swarm.
/// - Otherwise exactly one survivor acts: the one with the lowest logical ID among the members
///   whose instances exist. Every survivor computes the same choice from the same provider
///   view, so the others wait.
/// - The chosen survivor forces a new cluster on its own engine, keeping the swarm's state
///   (services, nodes, the cluster spec and the spec store in its labels). Its replica then
///   leads and re-provisions the missing managers, with their logical IDs and data roots.
/// - The time without a leader counts from the engine's first silence (a manager without a
///   leader can take many seconds to answer even `info`), and the membership is the one it
///   last reported, which cannot change without a leader.
///
/// ```
/// # async fn f(docker: bollard::Docker, nodes: std::sync::Arc<dyn infrakit_core::Instance>) {
/// use infrakit_core::{GROUP_TAG, Tags};
/// use infrakit_swarm::QuorumRecovery;
/// let recovery = QuorumRecovery::new(docker, nodes, Tags::new().with(GROUP_TAG, "managers"))
///     .after(std::time::Duration::from_secs(20));
/// tokio::spawn(recovery.run());
/// # }
/// ```
pub struct QuorumRecovery {
    docker: Docker,
    instances: Arc<dyn Instance>,
    managers: Tags,
    after: Duration,
    interval: Duration,
    call_timeout: Duration,
    leaderless_since: Option<Instant>,
    /// Whether the last answer of the engine said it is an active manager.
    manager: bool,
    /// This node's address and the Raft members, as the engine last reported them.
    view: Option<(String, BTreeSet<String>)>,
}

impl std::fmt::Debug for QuorumRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumRecovery")
            .field("managers", &self.managers)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl QuorumRecovery {
    /// Recovery for the manager behind `docker`; `instances` is the provider and `managers`
    /// selects the managers' instances in it (e.g. the managers group's tag).
    pub fn new(docker: Docker, instances: Arc<dyn Instance>, managers: Tags) -> Self {
        Self {
            docker,
            instances,
            managers,
            after: RECOVER_AFTER,
            interval: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            leaderless_since: None,
            manager: false,
            view: None,
        }
    }

    /// How long the swarm must have had no leader before a recovery is considered.
    #[must_use]
    pub fn after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }

    /// How often [`run`](Self::run) checks (default 1 s).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, RecoveryError> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .map_err(|_| RecoveryError::Timeout(self.call_timeout))?
            .map_err(RecoveryError::Engine)
    }

    /// One look at the engine and, if the swarm has been leaderless long enough, at the
    /// provider; forces a new cluster if this node is the one to.
    pub async fn check(&mut self) -> Result<RecoveryCheck, RecoveryError> {
        let (me, members) = match self.timed(self.docker.info()).await {
            Ok(info) => {
                let swarm = info.swarm.unwrap_or_default();
                self.manager = swarm.local_node_state == Some(LocalNodeState::ACTIVE)
                    && swarm.control_available == Some(true);
                if !self.manager {
                    self.leaderless_since = None;
                    self.view = None;
                    return Ok(RecoveryCheck::NotAManager);
                }
                let me = swarm.node_addr.unwrap_or_default();
                let mut members: BTreeSet<String> = swarm
                    .remote_managers
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| m.addr)
                    .map(|a| a.rsplit_once(':').map_or(a.clone(), |(h, _)| h.to_owned()))
                    .collect();
                members.insert(me.clone());
                self.view = Some((me.clone(), members.clone()));
                let led = match self.timed(self.docker.list_nodes(None)).await {
                    Ok(nodes) => nodes
                        .iter()
                        .any(|n| n.manager_status.as_ref().and_then(|m| m.leader) == Some(true)),
                    // "The swarm does not have a leader", or no answer in time.
                    Err(_) => false,
                };
                if led {
                    self.leaderless_since = None;
                    return Ok(RecoveryCheck::Led);
                }
                (me, members)
            }
            // A manager's engine without a Raft leader can take many seconds to answer even
            // `info`: the time without a leader counts from its first silence, and the
            // membership is the one it last reported (it cannot change without a leader).
            Err(e) => match (&self.view, self.manager) {
                (Some(view), true) => view.clone(),
                _ => return Err(e),
            },
        };
        let now = Instant::now();
        let since = now.duration_since(*self.leaderless_since.get_or_insert(now));
        if since < self.after {
            return Ok(RecoveryCheck::Leaderless { since });
        }
        let live: BTreeSet<String> = self
            .instances
            .describe(&self.managers, false)
            .await
            .map_err(RecoveryError::Provider)?
            .into_iter()
            .filter_map(|d| d.logical_id.map(|l| l.as_str().to_owned()))
            .collect();
        let vec = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        let alive: BTreeSet<String> = members.intersection(&live).cloned().collect();
        match decide(&members, &live, &me) {
            Decision::Wait => Ok(RecoveryCheck::QuorumExists {
                members: vec(&members),
                live: vec(&alive),
            }),
            Decision::NotListed => Ok(RecoveryCheck::NotListed),
            Decision::Other(survivor) => Ok(RecoveryCheck::OtherSurvivor { survivor }),
            Decision::Recover => {
                tracing::warn!(
                    node = %me,
                    members = ?members,
                    live = ?alive,
                    "a majority of the managers is gone: forcing a new cluster from this node's state"
                );
                let request = SwarmInitRequest {
                    listen_addr: Some("0.0.0.0:2377".into()),
                    advertise_addr: Some(me.clone()),
                    force_new_cluster: Some(true),
                    ..Default::default()
                };
                // A forced init takes its time (8 to 26 s measured on a loaded machine).
                let limit = FORCE_TIMEOUT.max(self.call_timeout);
                tokio::time::timeout(limit, self.docker.init_swarm(request))
                    .await
                    .map_err(|_| RecoveryError::Timeout(limit))?
                    .map_err(RecoveryError::Force)?;
                // Give the new cluster the same time before anything is considered again.
                self.leaderless_since = None;
                tracing::warn!(node = %me, "new cluster forced: this node leads it");
                Ok(RecoveryCheck::Recovered {
                    members: vec(&members),
                    live: vec(&alive),
                })
            }
        }
    }

    /// Checks every [`interval`](Self::interval) until the task is dropped; logs what it
    /// decides when that changes.
    pub async fn run(mut self) {
        let mut last: Option<std::mem::Discriminant<RecoveryCheck>> = None;
        loop {
            match self.check().await {
                Ok(c) => {
                    let d = std::mem::discriminant(&c);
                    if last != Some(d) {
                        match &c {
                            RecoveryCheck::QuorumExists { .. }
                            | RecoveryCheck::OtherSurvivor { .. } => {
                                tracing::info!(check = ?c, "no Raft leader: waiting")
                            }
                            _ => tracing::debug!(check = ?c, "quorum recovery"),
                        }
                    }
                    last = Some(d);
                }
                Err(e) => tracing::debug!(error = %e, "quorum recovery could not check"),
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_majority_of_existing_instances_is_never_grounds_for_recovery() {
        let members = set(&["10.0.0.10", "10.0.0.11", "10.0.0.12"]);
        // Two links cut: everyone is still listed.
        let all = members.clone();
        for me in &members {
            assert_eq!(decide(&members, &all, me), Decision::Wait);
        }
        // One gone: two of three exist.
        let two = set(&["10.0.0.10", "10.0.0.12"]);
        assert_eq!(decide(&members, &two, "10.0.0.12"), Decision::Wait);
    }

    #[test]
    fn the_lowest_live_member_recovers_and_only_it() {
        let members = set(&[
            "10.0.0.9",
            "10.0.0.10",
            "10.0.0.11",
            "10.0.0.12",
            "10.0.0.13",
        ]);
        let live = set(&["10.0.0.10", "10.0.0.9", "10.0.0.200"]);
        // 10.0.0.9 sorts before 10.0.0.10 as an address, not as text.
        assert_eq!(decide(&members, &live, "10.0.0.9"), Decision::Recover);
        assert_eq!(
            decide(&members, &live, "10.0.0.10"),
            Decision::Other("10.0.0.9".into())
        );
        // A lone survivor of three.
        let members = set(&["10.0.0.10", "10.0.0.11", "10.0.0.12"]);
        let live = set(&["10.0.0.12", "10.0.0.100"]);
        assert_eq!(decide(&members, &live, "10.0.0.12"), Decision::Recover);
    }

    #[test]
    fn a_node_the_provider_does_not_list_never_recovers() {
        let members = set(&["10.0.0.10", "10.0.0.11", "10.0.0.12"]);
        assert_eq!(
            decide(&members, &set(&["10.0.0.10"]), "10.0.0.12"),
            Decision::NotListed
        );
        assert_eq!(
            decide(&members, &set(&[]), "10.0.0.12"),
            Decision::NotListed
        );
    }
}
