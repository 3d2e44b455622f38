//! A test and demo harness (feature `local-swarm`): the seed's self-healing swarm on one
//! machine. Engine nodes in network namespaces are the machines ([`EngineNodes`]); a replica
//! of our manager runs beside every swarm manager, each talking to its own node's engine
//! ([`SwarmLeadership`], [`SwarmStore`], the [`SwarmFlavor`]); the swarm grows from one seed
//! node. Beside every replica runs a [`QuorumRecovery`], so the swarm comes back by itself
//! from the loss of a majority of its managers. Every provider mutation is recorded with the
//! replica and term that issued it, so a test can check that one replica acts at a time, and
//! every forced new cluster is recorded too ([`LocalSwarm::recoveries`]).
//!
//! It needs root, `docker.io`, `iproute2` and `iptables` (the repository's
//! `scripts/test --prepare-only` installs them), and it is for tests and demos only: the
//! `swarm_self_heal` example and the swarm chaos test use it.

use crate::{
    DATA_ROOT_ATTACHMENT, EngineNodes, QuorumRecovery, REMOVE_DOWN_AFTER, RecoveryCheck, Role,
    SwarmFlavor, SwarmLeadership, SwarmStore, connect,
};
use infrakit_core::reconcile::EngineEvent;
use infrakit_core::*;
use infrakit_template::Engine as Templates;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The harness's error: any failure of the engines, the template or the manager, as text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One mutation of the provider, by the replica that issued it.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// The replica (its node's IP).
    pub replica: String,
    /// Its leadership term when it issued the call.
    pub term: Option<u64>,
    /// `provision <logical id>` or `destroy <id>`.
    pub what: String,
    /// When.
    pub at: Instant,
}

/// A new cluster forced by a replica's [`QuorumRecovery`].
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The replica's node (its IP), the survivor that forced it.
    pub node: String,
    /// The Raft members before, by logical ID.
    pub members: Vec<String>,
    /// Those whose instances existed.
    pub live: Vec<String>,
    /// When.
    pub at: Instant,
}

/// The engine nodes, as one replica sees them: every mutation is recorded.
struct Recorded {
    nodes: EngineNodes,
    replica: String,
    term: Arc<Mutex<Option<u64>>>,
    log: Arc<Mutex<Vec<Mutation>>>,
}

impl Recorded {
    fn record(&self, what: String) {
        let term = self.term.lock().map(|t| *t).unwrap_or_default();
        if let Ok(mut log) = self.log.lock() {
            log.push(Mutation {
                replica: self.replica.clone(),
                term,
                what,
                at: Instant::now(),
            });
        }
    }
}

#[async_trait::async_trait]
impl Instance for Recorded {
    async fn validate(&self, p: &Value) -> Result<(), InstanceError> {
        self.nodes.validate(p).await
    }
    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.record(format!(
            "provision {}",
            spec.logical_id
                .as_ref()
                .map(|l| l.as_str().to_owned())
                .unwrap_or_else(|| "-".into())
        ));
        self.nodes.provision(spec).await
    }
    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.nodes.label(id, labels).await
    }
    async fn destroy(&self, id: &InstanceId, c: DestroyContext) -> Result<(), InstanceError> {
        self.record(format!("destroy {id}"));
        self.nodes.destroy(id, c).await
    }
    async fn describe(&self, t: &Tags, p: bool) -> Result<Vec<Description>, InstanceError> {
        self.nodes.describe(t, p).await
    }
}

/// A replica of our manager beside one swarm manager.
struct Replica {
    ip: String,
    manager: Manager,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The cluster.
pub struct LocalSwarm {
    /// The machines: every node of the swarm, managers and workers.
    pub nodes: EngineNodes,
    net: String,
    /// How many managers the cluster has when whole.
    pub managers: usize,
    /// How many workers the cluster has when whole.
    pub workers: usize,
    replicas: Mutex<BTreeMap<InstanceId, Replica>>,
    /// Every mutation by every replica.
    pub mutations: Arc<Mutex<Vec<Mutation>>>,
    /// Every new cluster forced by a replica's quorum recovery.
    pub recoveries: Arc<Mutex<Vec<Recovery>>>,
    recover_after: Duration,
    remove_down_after: Option<Duration>,
    /// Every replica's events: (replica IP, when, event).
    pub events: broadcast::Sender<(String, Instant, EngineEvent)>,
}

/// What the swarm looks like from a live manager.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// The Raft leader's IP.
    pub leader: Option<String>,
    /// IPs of reachable managers.
    pub reachable: Vec<String>,
    /// IPs of ready workers.
    pub workers: Vec<String>,
}

/// What one manager's engine says of itself ([`LocalSwarm::self_reports`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfReport {
    /// The node's IP.
    pub ip: String,
    /// The ID of the swarm it is a manager of (none: not a manager, or no answer).
    pub cluster: Option<String>,
    /// Whether it reports itself the Raft leader.
    pub leader: bool,
}

/// The managers' group ID.
pub const MANAGERS: &str = "managers";
/// The workers' group ID.
pub const WORKERS: &str = "workers";

/// The local swarm's groups (`templates/local-swarm.json` in this crate): managers with fixed
/// IPs and a data root each, workers for the rest of the cluster; globals `/cluster/size` and
/// `/cluster/managers` (comma-separated IPs).
pub const GROUPS_TEMPLATE: &str = include_str!("../templates/local-swarm.json");

impl LocalSwarm {
    /// Cleans up whatever an earlier run left and creates the node network `<net>.0/24`.
    pub fn new(
        prefix: &str,
        root: &str,
        net: &str,
        managers: usize,
        workers: usize,
    ) -> Result<Self, Error> {
        for tool in ["dockerd", "docker", "ip", "nsenter", "iptables"] {
            if !on_path(tool) {
                return Err(format!(
                    "`{tool}` is missing: run `scripts/test --prepare-only` as root (installs \
                     docker.io, iproute2, iptables)"
                )
                .into());
            }
        }
        let nodes = EngineNodes::new(prefix, root, &format!("{net}.0/24"))?;
        nodes.remove_all(true);
        nodes.ensure_network()?;
        Ok(Self {
            nodes,
            net: net.to_owned(),
            managers,
            workers,
            replicas: Mutex::new(BTreeMap::new()),
            mutations: Arc::default(),
            recoveries: Arc::default(),
            recover_after: Duration::from_secs(10),
            remove_down_after: Some(REMOVE_DOWN_AFTER),
            events: broadcast::channel(4096).0,
        })
    }

    /// How long a replica's [`QuorumRecovery`] waits without a Raft leader before it looks at
    /// the provider (default 10 s).
    #[must_use]
    pub fn with_recover_after(mut self, after: Duration) -> Self {
        self.recover_after = after;
        self
    }

    /// How long the flavors leave a dead node `Down` in the swarm before they remove it
    /// (default [`REMOVE_DOWN_AFTER`]).
    #[must_use]
    pub fn with_remove_down_after(mut self, after: Option<Duration>) -> Self {
        self.remove_down_after = after;
        self
    }

    /// The managers' fixed IPs.
    pub fn manager_ips(&self) -> Vec<String> {
        (0..self.managers)
            .map(|i| format!("{}.{}", self.net, 10 + i))
            .collect()
    }

    /// The seed node, started by hand as in the seed: it initialises the swarm. Its data
    /// root is the first manager's, so that the engine adopts it as that manager.
    pub async fn bootstrap(&self) -> Result<InstanceId, Error> {
        let ip = &self.manager_ips()[0];
        let seed = self
            .nodes
            .provision(
                InstanceSpec::default()
                    .with_tag(GROUP_TAG, MANAGERS)
                    .with_logical_id(ip.as_str())
                    .with_attachment(Attachment::new(
                        format!("manager-{ip}"),
                        DATA_ROOT_ATTACHMENT,
                    ))
                    .with_init(format!("docker swarm init --advertise-addr {ip}")),
            )
            .await?;
        match self
            .nodes
            .wait_boot(&seed, Duration::from_secs(120))
            .await?
        {
            Some(0) => Ok(seed),
            code => Err(format!("`docker swarm init` on the seed failed ({code:?})").into()),
        }
    }

    /// The groups, from the template [`GROUPS_TEMPLATE`] rendered with the cluster's globals.
    pub fn groups(&self) -> Result<Vec<GroupSpec>, Error> {
        let templates = Templates::new().with_globals(
            infrakit_template::Globals::new()
                .with("/cluster/size", json!(self.managers + self.workers))
                .with("/cluster/managers", json!(self.manager_ips().join(","))),
        );
        let text = templates.render_str(GROUPS_TEMPLATE, &Value::Null)?;
        let groups: Vec<GroupSpec> = SpecError::parse_json(&text)?;
        Ok(groups)
    }

    /// Keeps a replica beside every live manager node, and none beside a dead one. Runs until
    /// the task is aborted.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            if let Err(e) = self.reconcile_replicas().await {
                tracing::warn!(error = %e, "local swarm supervisor");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn reconcile_replicas(&self) -> Result<(), Error> {
        let live = self
            .nodes
            .describe(&Tags::new().with(GROUP_TAG, MANAGERS), true)
            .await?;
        let gone: Vec<Replica> = {
            let mut replicas = self.replicas.lock().map_err(|_| "poisoned")?;
            let dead: Vec<InstanceId> = replicas
                .keys()
                .filter(|id| !live.iter().any(|d| &d.id == *id))
                .cloned()
                .collect();
            dead.iter().filter_map(|id| replicas.remove(id)).collect()
        };
        for r in gone {
            // The replica died with its machine.
            for t in &r.tasks {
                t.abort();
            }
            r.manager.shutdown().await;
        }
        for d in live {
            let known = self
                .replicas
                .lock()
                .map_err(|_| "poisoned")?
                .contains_key(&d.id);
            if known {
                continue;
            }
            let props = d.properties.clone().unwrap_or_default();
            let ip = props["IP"].as_str().unwrap_or_default().to_owned();
            let Ok(engine) = connect(&self.nodes.socket(&d.id)).await else {
                continue;
            };
            let replica = self.replica(engine, ip, d.id.to_string());
            self.replicas
                .lock()
                .map_err(|_| "poisoned")?
                .insert(d.id.clone(), replica);
        }
        Ok(())
    }

    fn replica(&self, engine: bollard::Docker, ip: String, node: String) -> Replica {
        let term = Arc::new(Mutex::new(None));
        let recorded = Recorded {
            nodes: self.nodes.clone(),
            replica: node,
            term: term.clone(),
            log: self.mutations.clone(),
        };
        let mut recovery = QuorumRecovery::new(
            engine.clone(),
            Arc::new(self.nodes.clone()),
            Tags::new().with(GROUP_TAG, MANAGERS),
        )
        .after(self.recover_after);
        let (recoveries, survivor) = (self.recoveries.clone(), ip.clone());
        let recover = tokio::spawn(async move {
            loop {
                match recovery.check().await {
                    Ok(RecoveryCheck::Recovered { members, live }) => {
                        if let Ok(mut log) = recoveries.lock() {
                            log.push(Recovery {
                                node: survivor.clone(),
                                members,
                                live,
                                at: Instant::now(),
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "quorum recovery"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let manager = Manager::builder(
            SwarmLeadership::new(engine.clone()),
            SwarmStore::new(engine.clone()),
        )
        .plugins(
            Plugins::new()
                .instance("nodes", recorded)
                .flavor(
                    "swarm/manager",
                    SwarmFlavor::new(engine.clone(), Role::Manager)
                        .remove_down_after(self.remove_down_after),
                )
                .flavor(
                    "swarm/worker",
                    SwarmFlavor::new(engine, Role::Worker)
                        .remove_down_after(self.remove_down_after),
                ),
        )
        .options(
            EngineOptions::default()
                .resync(Duration::from_millis(1000))
                .settle(Duration::from_millis(100))
                .backoff_max(Duration::from_secs(3)),
        )
        .build();
        let mut events = manager.events();
        let tx = self.events.clone();
        let from = ip.clone();
        let forward = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if let EngineEvent::LeadershipGained { term: t, .. } = &e
                            && let Ok(mut slot) = term.lock()
                        {
                            *slot = Some(t.0);
                        }
                        if let EngineEvent::LeadershipLost { .. } = &e
                            && let Ok(mut slot) = term.lock()
                        {
                            *slot = None;
                        }
                        let _ = tx.send((from.clone(), Instant::now(), e));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        manager.start();
        Replica {
            ip,
            manager,
            tasks: vec![forward, recover],
        }
    }

    /// The replica beside node `ip`, if any.
    pub fn replica_manager(&self, ip: &str) -> Option<Manager> {
        let replicas = self.replicas.lock().ok()?;
        replicas
            .values()
            .find(|r| r.ip == ip)
            .map(|r| r.manager.clone())
    }

    /// Commits the groups on the seed's replica once it leads; returns each commit's plan.
    pub async fn commit_groups(&self, timeout: Duration) -> Result<Vec<String>, Error> {
        let seed_ip = self.manager_ips()[0].clone();
        let deadline = Instant::now() + timeout;
        let manager = loop {
            if let Some(m) = self.replica_manager(&seed_ip) {
                break m;
            }
            if Instant::now() > deadline {
                return Err("no replica beside the seed node".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        manager
            .wait_leading(timeout)
            .await
            .map_err(|_| "the seed's replica never led (is the swarm initialised?)")?;
        let mut plans = Vec::new();
        for g in self.groups()? {
            plans.push(manager.commit(g, false).await?);
        }
        Ok(plans)
    }

    /// The swarm as the live managers' engines see it: all are asked at once (each with a
    /// 2 s limit, since an engine without a Raft leader may not answer), and the first answer
    /// that knows a leader wins.
    pub async fn health(&self) -> Health {
        let live = self
            .nodes
            .describe(&Tags::new().with(GROUP_TAG, MANAGERS), false)
            .await
            .unwrap_or_default();
        let asks = live.into_iter().map(|d| {
            let socket = self.nodes.socket(&d.id);
            async move {
                let ask = async {
                    let engine = connect(&socket).await.ok()?;
                    engine.list_nodes(None).await.ok()
                };
                tokio::time::timeout(Duration::from_secs(2), ask)
                    .await
                    .ok()
                    .flatten()
                    .map(health_of)
                    .filter(|h| h.leader.is_some())
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default()
    }

    /// What every live manager's engine says of itself, all asked at once (2 s limit each):
    /// the swarm it is in and whether it is that swarm's Raft leader. Two reports of
    /// leading, or two cluster IDs, would be two swarms.
    pub async fn self_reports(&self) -> Vec<SelfReport> {
        let live = self
            .nodes
            .describe(&Tags::new().with(GROUP_TAG, MANAGERS), false)
            .await
            .unwrap_or_default();
        let asks = live.into_iter().map(|d| {
            let socket = self.nodes.socket(&d.id);
            let ip = d
                .logical_id
                .map(|l| l.as_str().to_owned())
                .unwrap_or_default();
            async move {
                let ask = async {
                    let engine = connect(&socket).await.ok()?;
                    let swarm = engine.info().await.ok()?.swarm?;
                    // A node joining (or left out) reports an empty cluster ID.
                    let cluster = swarm.cluster.and_then(|c| c.id).filter(|c| !c.is_empty());
                    let me = swarm.node_id.filter(|n| !n.is_empty())?;
                    let leader = match engine.list_nodes(None).await {
                        Ok(nodes) => nodes.iter().any(|n| {
                            n.id.as_deref() == Some(me.as_str())
                                && n.manager_status.as_ref().and_then(|m| m.leader) == Some(true)
                        }),
                        Err(_) => false,
                    };
                    Some((cluster, leader))
                };
                let (cluster, leader) = tokio::time::timeout(Duration::from_secs(2), ask)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or((None, false));
                SelfReport {
                    ip,
                    cluster,
                    leader,
                }
            }
        });
        futures::future::join_all(asks).await
    }

    /// The swarm's nodes that are `Down`, by node ID, as the first live manager that answers
    /// sees them (empty if none answers).
    pub async fn down_nodes(&self) -> Vec<String> {
        let live = self
            .nodes
            .describe(&Tags::new().with(GROUP_TAG, MANAGERS), false)
            .await
            .unwrap_or_default();
        for d in live {
            let ask = async {
                let engine = connect(&self.nodes.socket(&d.id)).await.ok()?;
                engine.list_nodes(None).await.ok()
            };
            if let Ok(Some(nodes)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
                return nodes
                    .into_iter()
                    .filter(|n| {
                        n.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::NodeState::DOWN)
                    })
                    .filter_map(|n| n.id)
                    .collect();
            }
        }
        Vec::new()
    }

    /// Whether every manager is reachable under a leader and every worker ready.
    pub fn whole(&self, h: &Health) -> bool {
        h.leader.is_some() && h.reachable.len() == self.managers && h.workers.len() >= self.workers
    }

    /// Waits until the swarm is whole.
    pub async fn wait_whole(&self, timeout: Duration) -> Result<Health, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.health().await;
            if self.whole(&h) {
                return Ok(h);
            }
            if Instant::now() > deadline {
                return Err(format!("the swarm is not whole after {timeout:?}: {h:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The live node with `ip`.
    pub async fn node_of(&self, ip: &str) -> Option<InstanceId> {
        self.nodes
            .describe(&Tags::new(), true)
            .await
            .ok()?
            .into_iter()
            .find(|d| d.properties.as_ref().and_then(|p| p["IP"].as_str()) == Some(ip))
            .map(|d| d.id)
    }

    /// Stops every replica and removes everything.
    pub async fn shutdown(&self) {
        let replicas: Vec<Replica> = match self.replicas.lock() {
            Ok(mut r) => std::mem::take(&mut *r).into_values().collect(),
            Err(_) => Vec::new(),
        };
        for r in replicas {
            for t in &r.tasks {
                t.abort();
            }
            r.manager.shutdown().await;
        }
        self.nodes.remove_all(true);
    }

    /// The chaos test's check over the recorded mutations: every one was issued under a
    /// leadership term, and the (replica, term) blocks never interleave — once another
    /// replica's term has mutated, an earlier term never mutates again: at most one replica
    /// issues mutations at any time. Returns how many mutations there were.
    pub fn check_mutations(&self) -> Result<usize, Error> {
        let log = self.mutations.lock().map_err(|_| "poisoned")?.clone();
        let mut blocks: Vec<(String, u64)> = Vec::new();
        for m in &log {
            let Some(term) = m.term else {
                return Err(format!("a mutation without a term: {m:?}").into());
            };
            let key = (m.replica.clone(), term);
            if blocks.last() != Some(&key) {
                if blocks.contains(&key) {
                    return Err(format!(
                        "replica {} (term {term}) mutated again after another term had: {:?}",
                        m.replica,
                        log.iter()
                            .map(|m| (&m.replica, m.term, &m.what))
                            .collect::<Vec<_>>()
                    )
                    .into());
                }
                blocks.push(key);
            }
        }
        Ok(log.len())
    }
}

/// A node's address: a manager's from its Raft status (its `Status.Addr` may read 0.0.0.0).
fn addr_of(n: &bollard::models::Node) -> String {
    n.manager_status
        .as_ref()
        .and_then(|m| m.addr.as_deref())
        .and_then(|a| a.rsplit_once(':').map(|(host, _)| host.to_owned()))
        .or_else(|| n.status.as_ref().and_then(|s| s.addr.clone()))
        .unwrap_or_default()
}

fn health_of(list: Vec<bollard::models::Node>) -> Health {
    let mut h = Health::default();
    for n in list {
        let addr = addr_of(&n);
        let ready =
            n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY);
        match &n.manager_status {
            Some(m) if m.reachability == Some(bollard::models::Reachability::REACHABLE) => {
                if m.leader == Some(true) {
                    h.leader = Some(addr.clone());
                }
                h.reachable.push(addr);
            }
            Some(_) => {}
            None if ready => h.workers.push(addr),
            None => {}
        }
    }
    h.reachable.sort();
    h.reachable.dedup();
    h.workers.sort();
    h
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-25T04:10:20.123456789Z`).
fn unix_of(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

impl LocalSwarm {
    /// When the swarm last elected a Raft leader after `after` (seconds since the epoch),
    /// read from the engines' own logs ("became leader at term").
    pub fn election_after(&self, after: f64) -> Option<f64> {
        let dir = std::fs::read_dir(self.nodes.root().join("nodes")).ok()?;
        dir.filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("dockerd.log")).ok())
            .flat_map(|log| {
                log.lines()
                    .filter(|l| l.contains("became leader at term"))
                    .filter_map(|l| {
                        let ts = l.split("time=\"").nth(1)?.split('"').next()?;
                        unix_of(ts)
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|t| *t > after)
            .reduce(f64::min)
    }

    /// The recorded mutations, one line each.
    pub fn mutation_lines(&self, t0: Instant) -> Vec<String> {
        self.mutations
            .lock()
            .map(|log| {
                log.iter()
                    .map(|m| {
                        format!(
                            "{:7.1}s  {:<22} term {:<3} {}",
                            m.at.saturating_duration_since(t0).as_secs_f64(),
                            m.replica,
                            m.term.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                            m.what
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl LocalSwarm {
    /// Every node's record and the tails of its boot script and engine logs.
    pub async fn diagnose(&self) -> String {
        let nodes = self.nodes.root().join("nodes");
        tokio::task::spawn_blocking(move || diagnose_nodes(&nodes))
            .await
            .unwrap_or_default()
    }
}

/// Whether `tool` is an executable file in a directory of `$PATH`.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// The report of [`LocalSwarm::diagnose`], read from the nodes' directory (blocking).
fn diagnose_nodes(nodes: &std::path::Path) -> String {
    let mut out = String::new();
    let Ok(dir) = std::fs::read_dir(nodes) else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        let p = e.path();
        let tail = |f: &str, n: usize| {
            let text = std::fs::read_to_string(p.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(n).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        };
        let record = std::fs::read_to_string(p.join("node.json")).unwrap_or_default();
        let ip = serde_json::from_str::<Value>(&record)
            .ok()
            .and_then(|v| v["IP"].as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "node {} ({ip})\n  init.log:\n    {}\n  dockerd.log:\n    {}\n",
            e.file_name().to_string_lossy(),
            tail("init.log", 6),
            tail("dockerd.log", 4)
        ));
    }
    out
}
