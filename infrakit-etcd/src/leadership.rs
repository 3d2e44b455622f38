//! Leadership by campaign on an etcd key prefix.
//!
//! Invariants: each campaign holds one lease and one key under the election prefix, created
//! with that lease; the replica whose key has the lowest create revision leads, and its term
//! is that revision (cluster-wide, strictly increasing from one leader to the next: a key
//! lower than the leader's can never be created later). The state is driven by etcd's watch
//! of the prefix and by the lease's keep-alives, never by polling. Any error, a watch that
//! ends, a keep-alive refused, or no keep-alive acknowledged before the lease's locally known
//! expiry ends the campaign at once (not leader), and a new one starts with a new lease: a
//! term is never resumed. The local expiry is a lower bound of the server's (it counts from
//! when the acknowledged keep-alive was *sent*), so a replica stops believing it leads before
//! etcd can name another leader.

use crate::error::{describe, leadership_error};
use crate::retry::unsent_retried;
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use infrakit_core::leadership::{LeadershipCell, LeadershipError, Term};
use infrakit_core::reconcile::Backoff;
use infrakit_core::{Leadership, LeadershipState, LeadershipStream};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The key this replica leads with, while it leads: what the store's fence compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderKey {
    /// The key under the election prefix.
    pub(crate) key: Vec<u8>,
    /// Its create revision: the term, and the epoch every fenced write carries.
    pub(crate) revision: i64,
    /// No later than this, the lease may have expired at the server.
    pub(crate) expires: Instant,
}

/// Leadership on an etcd cluster: a campaign with a lease, watched, fenced by revision.
///
/// The term is the revision of this replica's key under the election prefix, so it compares
/// across replicas, and [`EtcdStore::fenced_by`](crate::EtcdStore::fenced_by) makes every
/// write of the leader conditional on that key in the same transaction.
///
/// ```no_run
/// use infrakit_etcd::{EtcdConfig, EtcdLeadership, EtcdStore};
/// use infrakit_core::{Leadership, Manager};
/// use std::time::Duration;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = EtcdConfig::new(["http://127.0.0.1:2379"]).connect().await?;
/// let leadership = EtcdLeadership::builder(client.clone())
///     .prefix("/infrakit")
///     .ttl(Duration::from_secs(3))
///     .location("/run/infrakit/plugins/group")
///     .start();
/// let store = EtcdStore::new(client, "/infrakit/spec").fenced_by(&leadership);
/// let manager = Manager::builder(leadership, store).build();
/// manager.start();
/// # Ok(()) }
/// ```
pub struct EtcdLeadership {
    cell: LeadershipCell,
    held: watch::Receiver<Option<LeaderKey>>,
    resign: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    election: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for EtcdLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeadership")
            .field("election", &String::from_utf8_lossy(&self.election))
            .field("ttl", &self.ttl)
            .field("state", &self.cell.state())
            .finish()
    }
}

/// Options of an [`EtcdLeadership`], started with [`start`](Self::start).
#[derive(Clone)]
pub struct EtcdLeadershipBuilder {
    client: Client,
    prefix: String,
    ttl: Duration,
    keep_alive: Option<Duration>,
    location: String,
}

impl std::fmt::Debug for EtcdLeadershipBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeadershipBuilder")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("keep_alive", &self.keep_alive)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl EtcdLeadershipBuilder {
    /// The key prefix replicas of one manager share (default `/infrakit`); the campaign keys
    /// live under `PREFIX/leader/`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The lease TTL (default 3 s; whole seconds, at least 1 s; etcd raises a TTL below its
    /// minimum, 1.5 election timeouts). A dead leader is replaced this long after its last
    /// keep-alive.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often the lease is kept alive (default: a third of the TTL).
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = Some(every);
        self
    }

    /// What this replica publishes for followers to find it (a socket path, an address).
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Starts campaigning (a task on the current tokio runtime).
    pub fn start(self) -> EtcdLeadership {
        let ttl = Duration::from_secs(self.ttl.as_secs().max(1));
        let keep_alive = self
            .keep_alive
            .unwrap_or(ttl / 3)
            .clamp(Duration::from_millis(50), ttl);
        let election = format!("{}/leader/", self.prefix.trim_end_matches('/')).into_bytes();
        let cell = LeadershipCell::new();
        let (held_tx, held) = watch::channel(None);
        let (resign, resign_rx) = watch::channel(false);
        let campaign = Campaign {
            client: self.client,
            election: election.clone(),
            ttl,
            keep_alive,
            location: self.location,
            cell: cell.clone(),
            held: held_tx,
            resign: resign_rx,
        };
        let task = tokio::spawn(campaign.run());
        EtcdLeadership {
            cell,
            held,
            resign,
            task: Mutex::new(Some(task)),
            election,
            ttl,
        }
    }
}

impl EtcdLeadership {
    /// Options: prefix `/infrakit`, TTL 3 s, keep-alive every second, no location.
    pub fn builder(client: Client) -> EtcdLeadershipBuilder {
        EtcdLeadershipBuilder {
            client,
            prefix: "/infrakit".into(),
            ttl: Duration::from_secs(3),
            keep_alive: None,
            location: String::new(),
        }
    }

    /// The lease TTL in use.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn held(&self) -> watch::Receiver<Option<LeaderKey>> {
        self.held.clone()
    }

    pub(crate) fn election_prefix(&self) -> &[u8] {
        &self.election
    }

    /// Revokes the lease (the key goes with it, so the next replica leads at once) and stops
    /// campaigning. Waits at most two seconds for etcd to confirm.
    pub async fn resign_now(&self) {
        let _ = self.resign.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            tracing::warn!("etcd did not confirm the resignation in time: the lease will expire");
            task.abort();
        }
        self.cell.set_follower(None);
    }
}

impl Drop for EtcdLeadership {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

#[async_trait]
impl Leadership for EtcdLeadership {
    async fn current(&self) -> LeadershipState {
        self.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.cell.watch()
    }

    async fn resign(&self) {
        self.resign_now().await;
    }
}

/// The campaign task's state.
struct Campaign {
    client: Client,
    election: Vec<u8>,
    ttl: Duration,
    keep_alive: Duration,
    location: String,
    cell: LeadershipCell,
    held: watch::Sender<Option<LeaderKey>>,
    resign: watch::Receiver<bool>,
}

/// How one campaign ended.
enum Ended {
    Resigned,
    Failed {
        error: LeadershipError,
        lease: Option<i64>,
    },
}

fn failed(lease: Option<i64>) -> impl Fn(etcd_client::Error) -> Ended {
    move |e| Ended::Failed {
        error: leadership_error(&e),
        lease,
    }
}

fn lost(lease: i64, message: impl Into<String>) -> Ended {
    Ended::Failed {
        error: LeadershipError::Unreachable {
            message: message.into(),
        },
        lease: Some(lease),
    }
}

impl Campaign {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            if *self.resign.borrow() {
                return;
            }
            let started = Instant::now();
            match self.campaign().await {
                Ended::Resigned => {
                    self.held.send_replace(None);
                    self.cell.set_follower(None);
                    return;
                }
                Ended::Failed { error, lease } => {
                    self.held.send_replace(None);
                    tracing::warn!(%error, "etcd campaign ended: not leader");
                    self.cell.set_unavailable(error);
                    if let Some(lease) = lease {
                        self.revoke_later(lease);
                    }
                }
            }
            if started.elapsed() > self.ttl * 2 {
                backoff.reset();
            }
            let delay = backoff.next_delay(None);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.resign.changed() => return,
            }
        }
    }

    /// Revokes an abandoned lease in the background, so the next replica need not wait for
    /// it to expire (when etcd is unreachable it expires anyway).
    fn revoke_later(&self, lease: i64) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let revoke = unsent_retried(|| {
                let mut c = client.clone();
                async move { c.lease_revoke(lease).await }
            });
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), revoke).await {
                tracing::debug!(error = %describe(&e), "abandoned lease not revoked: it expires");
            }
        });
    }

    async fn campaign(&mut self) -> Ended {
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let client = self.client.clone();
        let grant = match unsent_retried(|| {
            let mut c = client.clone();
            async move { c.lease_grant(ttl_secs, None).await }
        })
        .await
        {
            Ok(g) => g,
            Err(e) => return failed(None)(e),
        };
        let lease = grant.id();
        let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        let mut expires = sent + granted;
        let mut key = self.election.clone();
        key.extend_from_slice(format!("{lease:016x}").as_bytes());

        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.location.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let created = match unsent_retried(|| {
            let (mut c, txn) = (client.clone(), txn.clone());
            async move { c.txn(txn).await }
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return failed(Some(lease))(e),
        };
        if !created.succeeded() {
            return lost(lease, "the campaign key already exists");
        }
        let revision = created.header().map_or(0, |h| h.revision());
        let (mut keeper, mut acks) = match unsent_retried(|| {
            let mut c = client.clone();
            async move { c.lease_keep_alive(lease).await }
        })
        .await
        {
            Ok(k) => k,
            Err(e) => return failed(Some(lease))(e),
        };
        let election = self.election.clone();
        let snapshot = match unsent_retried(|| {
            let (mut c, key) = (client.clone(), election.clone());
            async move { c.get(key, Some(GetOptions::new().with_prefix())).await }
        })
        .await
        {
            Ok(s) => s,
            Err(e) => return failed(Some(lease))(e),
        };
        let seen = snapshot.header().map_or(revision, |h| h.revision());
        let mut candidates: BTreeMap<Vec<u8>, (i64, String)> = snapshot
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    (
                        kv.create_revision(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    ),
                )
            })
            .collect();
        let mut changes = match unsent_retried(|| {
            let (mut c, key) = (client.clone(), election.clone());
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(seen + 1);
            async move { c.watch(key, Some(options)).await }
        })
        .await
        {
            Ok(w) => w,
            Err(e) => return failed(Some(lease))(e),
        };
        tracing::debug!(lease, revision, "campaigning in etcd");
        if let Err(end) = self.evaluate(&candidates, &key, revision, expires, lease) {
            return end;
        }

        let mut tick = tokio::time::interval(self.keep_alive);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight: VecDeque<Instant> = VecDeque::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    in_flight.push_back(Instant::now());
                    if let Err(e) = keeper.keep_alive().await {
                        return failed(Some(lease))(e);
                    }
                }
                ack = acks.message() => match ack {
                    Ok(Some(ack)) if ack.ttl() > 0 => {
                        let sent = in_flight.pop_front().unwrap_or(sent);
                        expires = sent + Duration::from_secs(u64::try_from(ack.ttl()).unwrap_or(0));
                        self.held.send_if_modified(|h| match h {
                            Some(h) if h.expires < expires => { h.expires = expires; true }
                            _ => false,
                        });
                    }
                    Ok(Some(_)) => return lost(lease, "the lease expired"),
                    Ok(None) => return lost(lease, "the keep-alive stream ended"),
                    Err(e) => return failed(Some(lease))(e),
                },
                () = tokio::time::sleep_until(expires) => {
                    return lost(lease, "no keep-alive acknowledged within the lease TTL: the lease may have expired");
                }
                change = changes.message() => match change {
                    Ok(Some(change)) => {
                        if change.canceled() {
                            return lost(lease, format!("the watch was cancelled: {}", change.cancel_reason()));
                        }
                        for event in change.events() {
                            let Some(kv) = event.kv() else { continue };
                            match event.event_type() {
                                EventType::Put => {
                                    candidates.insert(
                                        kv.key().to_vec(),
                                        (kv.create_revision(), String::from_utf8_lossy(kv.value()).into_owned()),
                                    );
                                }
                                EventType::Delete => {
                                    candidates.remove(kv.key());
                                }
                            }
                        }
                        if let Err(end) = self.evaluate(&candidates, &key, revision, expires, lease) {
                            return end;
                        }
                    }
                    Ok(None) => return lost(lease, "the watch ended"),
                    Err(e) => return failed(Some(lease))(e),
                },
                _ = self.resign.changed() => {
                    self.held.send_replace(None);
                    self.cell.set_follower(None);
                    let revoked = unsent_retried(|| {
                        let mut c = client.clone();
                        async move { c.lease_revoke(lease).await }
                    })
                    .await;
                    if let Err(e) = revoked {
                        tracing::warn!(error = %describe(&e), "resign: the lease was not revoked; it expires");
                    } else {
                        tracing::info!("resigned: lease revoked");
                    }
                    return Ended::Resigned;
                }
            }
        }
    }

    /// Who leads now: the candidate with the lowest create revision.
    fn evaluate(
        &self,
        candidates: &BTreeMap<Vec<u8>, (i64, String)>,
        key: &[u8],
        revision: i64,
        expires: Instant,
        lease: i64,
    ) -> Result<(), Ended> {
        if !candidates.contains_key(key) {
            return Err(lost(lease, "the campaign key is gone (the lease expired)"));
        }
        let leader = candidates
            .iter()
            .min_by_key(|(_, (created, _))| *created)
            .map(|(k, (_, location))| (k, location));
        match leader {
            Some((k, _)) if k.as_slice() == key => {
                self.held.send_replace(Some(LeaderKey {
                    key: key.to_vec(),
                    revision,
                    expires,
                }));
                self.cell
                    .set_leader_in(Term(u64::try_from(revision).unwrap_or(0)));
            }
            other => {
                self.held.send_replace(None);
                let location = other.map(|(_, l)| l.clone()).filter(|l| !l.is_empty());
                self.cell.set_follower(location);
            }
        }
        Ok(())
    }
}
