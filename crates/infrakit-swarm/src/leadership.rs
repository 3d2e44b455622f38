//! Leadership from the swarm's Raft quorum.

use async_trait::async_trait;
use bollard::Docker;
use infrakit_core::Leadership;
use infrakit_core::leadership::{
    LeadershipCell, LeadershipError, LeadershipState, LeadershipStream,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Leader iff the local engine's node is the swarm's Raft leader.
///
/// Polls the engine (every 250 ms by default, so a change is noticed within a second). Any
/// engine error, a timeout, a node that is not a manager, or no swarm at all means **not
/// leader**. Followers report the leader's address (`10.0.0.1:2377`) when the engine knows it.
/// Each gain starts a new, higher [`Term`](infrakit_core::Term).
#[derive(Clone)]
pub struct SwarmLeadership {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    interval: Duration,
    cell: LeadershipCell,
    polling: AtomicBool,
}

impl std::fmt::Debug for SwarmLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmLeadership")
            .field("interval", &self.inner.interval)
            .field("state", &self.inner.cell.state())
            .finish()
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
            inner: Arc::new(Inner {
                docker,
                interval,
                cell: LeadershipCell::new(),
                polling: AtomicBool::new(false),
            }),
        }
    }

    fn ensure_polling(&self) {
        if self.inner.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh().await;
                drop(inner);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

impl Inner {
    async fn refresh(&self) {
        let limit = (self.interval * 4).max(Duration::from_secs(1));
        match tokio::time::timeout(limit, self.observe()).await {
            Ok(Ok(Some(leader))) => self.cell.set_follower(leader),
            Ok(Ok(None)) => self.cell.set_leader(),
            Ok(Err(e)) => self.cell.set_unavailable(e),
            Err(_) => self.cell.set_unavailable(LeadershipError::Unreachable {
                message: format!("the engine did not answer within {limit:?}"),
            }),
        }
    }

    /// `Ok(None)`: this node leads; `Ok(Some(addr))`: another does (address if known).
    async fn observe(&self) -> Result<Option<Option<String>>, LeadershipError> {
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
impl Leadership for SwarmLeadership {
    async fn current(&self) -> LeadershipState {
        self.inner.refresh().await;
        self.inner.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.ensure_polling();
        self.inner.cell.watch()
    }
}
