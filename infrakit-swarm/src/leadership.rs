//! Leadership from the swarm's Raft quorum.

use async_trait::async_trait;
use bollard::Docker;
use infrakit_core::Leadership;
use infrakit_core::leadership::{
    LeadershipError, LeadershipProbe, LeadershipState, LeadershipStream, Observation,
    PolledLeadership,
};
use std::time::Duration;

/// Leader iff the local engine's node is the swarm's Raft leader.
///
/// Polls the engine (every 250 ms by default, so a change is noticed within a second). Any
/// engine error, a timeout, a node that is not a manager, or no swarm at all means **not
/// leader**. Followers report the leader's address (`10.0.0.1:2377`) when the engine knows it.
/// Each gain starts a new, higher [`Term`](infrakit_core::Term).
#[derive(Debug, Clone)]
pub struct SwarmLeadership {
    polled: PolledLeadership<SwarmProbe>,
}

/// Asks one engine whether its node leads the swarm.
pub struct SwarmProbe {
    docker: Docker,
}

impl std::fmt::Debug for SwarmProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmProbe").finish_non_exhaustive()
    }
}

impl SwarmLeadership {
    /// Leadership of the node behind `docker`.
    pub fn new(docker: Docker) -> Self {
        Self::with_interval(docker, Duration::from_millis(250))
    }

    /// Like [`new`](Self::new), polling at `interval`.
    pub fn with_interval(docker: Docker, interval: Duration) -> Self {
        Self {
            polled: PolledLeadership::new(SwarmProbe { docker }, interval),
        }
    }
}

impl SwarmProbe {
    /// `Ok(None)`: this node leads; `Ok(Some(addr))`: another does (address if known).
    async fn leader(&self) -> Result<Option<Option<String>>, LeadershipError> {
        let unreachable = |e: bollard::errors::Error| LeadershipError::Unreachable {
            message: e.to_string(),
        };
        let info = self.docker.info().await.map_err(unreachable)?;
        let swarm = info.swarm.unwrap_or_default();
        let Some(node_id) = swarm.node_id.filter(|n| !n.is_empty()) else {
            return Err(LeadershipError::Invalid {
                message: "the engine is not part of a swarm".into(),
            });
        };
        if swarm.control_available != Some(true) {
            // A worker never leads; the managers it knows are where to look.
            let leader = swarm
                .remote_managers
                .unwrap_or_default()
                .into_iter()
                .find_map(|m| m.addr);
            return Ok(Some(leader));
        }
        let node = self
            .docker
            .inspect_node(&node_id)
            .await
            .map_err(unreachable)?;
        if node.manager_status.as_ref().and_then(|m| m.leader) == Some(true) {
            return Ok(None);
        }
        let nodes = self.docker.list_nodes(None).await.map_err(unreachable)?;
        let leader = nodes
            .into_iter()
            .filter_map(|n| n.manager_status)
            .find(|m| m.leader == Some(true))
            .and_then(|m| m.addr);
        Ok(Some(leader))
    }
}

#[async_trait]
impl LeadershipProbe for SwarmProbe {
    async fn observe(&self) -> Observation {
        match self.leader().await {
            Ok(None) => Observation::Leader,
            Ok(Some(leader)) => Observation::Follower(leader),
            Err(e) => Observation::Unavailable(e),
        }
    }
}

#[async_trait]
impl Leadership for SwarmLeadership {
    async fn current(&self) -> LeadershipState {
        self.polled.current().await
    }

    fn watch(&self) -> LeadershipStream {
        self.polled.watch()
    }
}
