//! The spec store in one etcd key.
//!
//! Invariants: a [`Version`] is the key's mod revision, and every save is one transaction
//! comparing it (create revision 0 for "nothing stored"). Once bound to an
//! [`EtcdLeadership`] with [`EtcdStore::fenced_by`], a save as the leader of an epoch also
//! compares, in the same transaction, the create revision of the leader's campaign key with
//! that epoch: when the lease has expired the key is gone and etcd refuses the write, whatever
//! the writer believes. Epoch checks are answered from the campaign key too, trusted no longer
//! than the lease is known to last.

use crate::error::{describe, is_too_large, store_error};
use crate::leadership::{EtcdLeadership, LeaderKey};
use crate::retry::unsent_retried;
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use infrakit_core::leadership::Term;
use infrakit_core::store::{Epoch, Version, Versioned, check_in_record};
use infrakit_core::{GlobalSpec, Store, StoreError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const ETCD_MAX_REQUEST_BYTES: usize = 1_572_864;

/// Room left in a request for the key, the transaction's compares and gRPC framing.
const REQUEST_OVERHEAD: usize = 4096;

/// The [`GlobalSpec`] in one etcd key, written by compare-and-swap on its mod revision.
///
/// ```no_run
/// use infrakit_core::{GlobalSpec, Store};
/// use infrakit_etcd::{EtcdConfig, EtcdStore};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = EtcdConfig::new(["http://127.0.0.1:2379"]).connect().await?;
/// let store = EtcdStore::new(client, "/infrakit/spec");
/// let v1 = store.save(&GlobalSpec::default(), None).await?;
/// assert_eq!(store.load().await?.map(|s| s.version), Some(v1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    key: Vec<u8>,
    leader: Option<LeaderFence>,
    max_request_bytes: usize,
}

/// What a store bound to a leadership source compares.
#[derive(Clone)]
struct LeaderFence {
    held: watch::Receiver<Option<LeaderKey>>,
    election: Vec<u8>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("fenced", &self.leader.is_some())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// The spec under `key`; saves are plain compare-and-swap until
    /// [`fenced_by`](Self::fenced_by).
    pub fn new(client: Client, key: impl Into<String>) -> Self {
        Self {
            client,
            key: key.into().into_bytes(),
            leader: None,
            max_request_bytes: ETCD_MAX_REQUEST_BYTES,
        }
    }

    /// Takes epochs from `leadership` (the leader key's revision) and fences every save as a
    /// leader in the same transaction as the write.
    pub fn fenced_by(mut self, leadership: &EtcdLeadership) -> Self {
        self.leader = Some(LeaderFence {
            held: leadership.held(),
            election: leadership.election_prefix().to_vec(),
        });
        self
    }

    /// The cluster's `--max-request-bytes`, when it is not etcd's default: larger specs get
    /// [`StoreError::TooLarge`] before anything is sent.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    async fn get(
        &self,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, etcd_client::Error> {
        unsent_retried(|| {
            let mut kv = self.client.kv_client();
            let (key, options) = (key.clone(), options.clone());
            async move { kv.get(key, options).await }
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, etcd_client::Error> {
        unsent_retried(|| {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    fn encode(&self, spec: &GlobalSpec) -> Result<Vec<u8>, StoreError> {
        let bytes = serde_json::to_vec(spec).map_err(|e| StoreError::Other {
            message: format!("encode the spec: {e}"),
            transient: false,
        })?;
        let limit = self
            .max_request_bytes
            .saturating_sub(self.key.len() + REQUEST_OVERHEAD);
        if bytes.len() > limit {
            return Err(StoreError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    fn expect(&self, expected: Option<Version>) -> Compare {
        match expected {
            None => Compare::create_revision(self.key.clone(), CompareOp::Equal, 0),
            Some(v) => Compare::mod_revision(
                self.key.clone(),
                CompareOp::Equal,
                i64::try_from(v.0).unwrap_or(i64::MAX),
            ),
        }
    }

    /// The transaction: the version compare (and the leader's), the put, and on failure the
    /// reads that say why.
    async fn write(
        &self,
        bytes: Vec<u8>,
        expected: Option<Version>,
        leader: Option<(&LeaderFence, &LeaderKey)>,
    ) -> Result<Version, StoreError> {
        let size = bytes.len();
        let mut compares = vec![self.expect(expected)];
        let mut otherwise = vec![TxnOp::get(self.key.clone(), None)];
        if let Some((fence, held)) = leader {
            compares.push(Compare::create_revision(
                held.key.clone(),
                CompareOp::Equal,
                held.revision,
            ));
            otherwise.push(TxnOp::get(held.key.clone(), None));
            otherwise.push(TxnOp::get(fence.election.clone(), Some(first_candidate())));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(self.key.clone(), bytes, None)])
            .or_else(otherwise);
        let response = self.txn(txn).await.map_err(|e| {
            if is_too_large(&e) {
                StoreError::TooLarge {
                    size,
                    limit: self.max_request_bytes,
                }
            } else {
                store_error(&e)
            }
        })?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(Version(u64::try_from(revision).unwrap_or(0)));
        }
        let reads: Vec<_> = response
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        if let Some((_, held)) = leader {
            let still_held = reads
                .get(1)
                .and_then(|g| g.kvs().first())
                .is_some_and(|kv| kv.create_revision() == held.revision);
            if !still_held {
                let current = reads
                    .get(2)
                    .and_then(|g| g.kvs().first())
                    .map(|kv| kv.create_revision())
                    .or_else(|| response.header().map(|h| h.revision()));
                return Err(fenced(held.revision, current));
            }
        }
        let actual = reads
            .first()
            .and_then(|g| g.kvs().first())
            .map(|kv| Version(u64::try_from(kv.mod_revision()).unwrap_or(0)));
        Err(StoreError::Conflict { expected, actual })
    }

    /// The leader key for `epoch`, if this replica still holds it and its lease may still
    /// be alive.
    fn held_for(&self, fence: &LeaderFence, epoch: Epoch) -> Option<LeaderKey> {
        fence
            .held
            .borrow()
            .as_ref()
            .filter(|h| u64::try_from(h.revision).ok() == Some(epoch.0))
            .filter(|h| Instant::now() < h.expires)
            .cloned()
    }

    /// Refuses `epoch`, naming the epoch that leads now (or, with no leader, the cluster's
    /// revision: any next leader's epoch is higher).
    async fn refuse(&self, fence: &LeaderFence, epoch: Epoch) -> StoreError {
        let current = match self
            .get(fence.election.clone(), Some(first_candidate()))
            .await
        {
            Ok(r) => r
                .kvs()
                .first()
                .map(|kv| kv.create_revision())
                .or_else(|| r.header().map(|h| h.revision())),
            Err(e) => {
                tracing::debug!(error = %describe(&e), "cannot read the current leader");
                None
            }
        };
        fenced(i64::try_from(epoch.0).unwrap_or(i64::MAX), current)
    }
}

/// The lowest-revision key of the election prefix: the leader's.
fn first_candidate() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

fn fenced(epoch: i64, current: Option<i64>) -> StoreError {
    let epoch = Epoch(u64::try_from(epoch).unwrap_or(0));
    let current = current
        .and_then(|c| u64::try_from(c).ok())
        .map(Epoch)
        .filter(|c| *c > epoch)
        .unwrap_or_else(|| epoch.next());
    StoreError::Fenced { epoch, current }
}

#[async_trait]
impl Store for EtcdStore {
    async fn load(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError> {
        let response = self
            .get(self.key.clone(), None)
            .await
            .map_err(|e| store_error(&e))?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let value = serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt {
            message: format!("{}: {e}", String::from_utf8_lossy(&self.key)),
        })?;
        Ok(Some(Versioned {
            version: Version(u64::try_from(kv.mod_revision()).unwrap_or(0)),
            value,
        }))
    }

    async fn save(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let bytes = self.encode(spec)?;
        self.write(bytes, expected, None).await
    }

    fn leader_epoch(&self, term: Term) -> Option<Epoch> {
        self.leader.as_ref().map(|_| Epoch(term.0))
    }

    async fn save_as(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
        epoch: Epoch,
    ) -> Result<Version, StoreError> {
        let Some(fence) = &self.leader else {
            return self.save(spec, expected).await;
        };
        let bytes = self.encode(spec)?;
        let Some(held) = self.held_for(fence, epoch) else {
            return Err(self.refuse(fence, epoch).await);
        };
        self.write(bytes, expected, Some((fence, &held))).await
    }

    async fn check_epoch(&self, epoch: Epoch) -> Result<Option<Duration>, StoreError> {
        let Some(fence) = &self.leader else {
            return check_in_record(self, epoch).await;
        };
        let Some(held) = self.held_for(fence, epoch) else {
            return Err(self.refuse(fence, epoch).await);
        };
        let response = self
            .get(held.key.clone(), None)
            .await
            .map_err(|e| store_error(&e))?;
        let alive = response
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == held.revision);
        if !alive {
            return Err(self.refuse(fence, epoch).await);
        }
        // Trusted until the lease may expire, as known now (keep-alives only push it later).
        let expires = fence
            .held
            .borrow()
            .as_ref()
            .filter(|h| h.revision == held.revision)
            .map_or(held.expires, |h| h.expires);
        Ok(Some(expires.saturating_duration_since(Instant::now())))
    }
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::*;
    use crate::EtcdConfig;
    use crate::cluster::EtcdCluster;
    use etcd_client::PutOptions;

    /// A writer whose own view still names a leader key the cluster has dropped (a paused
    /// replica whose lease expired): the transaction itself refuses it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_transaction_refuses_a_leader_key_the_cluster_no_longer_has() {
        let cluster = EtcdCluster::start(1).await.unwrap();
        let mut client = EtcdConfig::new(cluster.endpoints())
            .connect()
            .await
            .unwrap();
        let lease = client.lease_grant(30, None).await.unwrap().id();
        let put = client
            .put(
                "/t/leader/a",
                "a",
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .unwrap();
        let revision = put.header().unwrap().revision();
        let (_tx, held) = watch::channel(Some(LeaderKey {
            key: b"/t/leader/a".to_vec(),
            revision,
            expires: Instant::now() + Duration::from_secs(60),
        }));
        let store = EtcdStore {
            client: client.clone(),
            key: b"/t/spec".to_vec(),
            leader: Some(LeaderFence {
                held,
                election: b"/t/leader/".to_vec(),
            }),
            max_request_bytes: ETCD_MAX_REQUEST_BYTES,
        };
        let epoch = Epoch(u64::try_from(revision).unwrap());
        let v1 = store
            .save_as(&GlobalSpec::default(), None, epoch)
            .await
            .unwrap();
        assert!(store.check_epoch(epoch).await.unwrap().is_some());

        client.lease_revoke(lease).await.unwrap();
        let refused = store.save_as(&GlobalSpec::default(), Some(v1), epoch).await;
        assert!(
            matches!(refused, Err(StoreError::Fenced { epoch: e, current }) if e == epoch && current > epoch),
            "{refused:?}"
        );
        assert!(matches!(
            store.check_epoch(epoch).await,
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(store.load().await.unwrap().unwrap().version, v1);
        // A plain version conflict is still a conflict, not a fence.
        let other = EtcdStore::new(client, "/t/spec");
        let err = other.save(&GlobalSpec::default(), None).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                expected: None,
                actual: Some(v1)
            }
        );
    }
}
