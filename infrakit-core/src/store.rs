//! The spec store: the durable user spec (every group), so a new leader picks up where the
//! old one stopped.
//!
//! Writes are compare-and-swap on a [`Version`]: a deposed leader holding a stale version
//! cannot overwrite what the new leader committed.

use crate::error::{Classify, ErrorKind};
use crate::group::GroupSpec;
use crate::id::GroupId;
use crate::leadership::Term;
use crate::serde_util::nullable_default;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

mod fenced;
mod file;
mod memory;

pub use fenced::{Claim, FencedStore};
pub use file::FileStore;
pub use memory::MemoryStore;

/// A leader's epoch: cluster-wide and strictly increasing. Each replica that gains
/// leadership claims one from the store ([`FencedStore::claim`]), higher than every earlier
/// leader's; every write it makes carries it, and a write carrying an older epoch than the
/// stored one is refused ([`StoreError::Fenced`]). Unlike a [`Term`], which
/// only grows within one replica's leadership source, epochs compare across replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// The version of a stored spec. Each successful save increments it; the first save
/// produces version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Everything a manager persists: the spec of every group it manages, the groups being
/// destroyed (the intent survives a failover), and the epoch of the leader that wrote it.
///
/// On disk and on the wire: `{"Groups":{"workers":{"ID":"workers","Properties":{..}}},
/// "Destroying":["old"],"Epoch":7}` (the last two left out when empty, so InfraKit's
/// shape reads and writes unchanged).
///
/// ```
/// use infrakit_core::{GlobalSpec, GroupSpec, PluginSpec, Allocation};
/// let mut global = GlobalSpec::default();
/// global.put(GroupSpec::new(
///     "workers",
///     PluginSpec::new("simulator", serde_json::json!({})),
///     PluginSpec::new("vanilla", serde_json::json!({})),
///     Allocation::size(2),
/// ));
/// assert!(global.get(&"workers".into()).is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GlobalSpec {
    /// The groups, by ID.
    #[serde(
        rename = "Groups",
        default,
        deserialize_with = "nullable_default::deserialize"
    )]
    pub groups: BTreeMap<GroupId, GroupSpec>,
    /// Groups being destroyed: each is still in [`groups`](Self::groups) until its last
    /// member is gone. A leader resumes their destroy and never provisions for them.
    #[serde(
        rename = "Destroying",
        default,
        skip_serializing_if = "BTreeSet::is_empty",
        deserialize_with = "nullable_default::deserialize"
    )]
    pub destroying: BTreeSet<GroupId>,
    /// The epoch of the leader that wrote this record last (see [`Epoch`]).
    #[serde(rename = "Epoch", default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

impl GlobalSpec {
    /// Adds or replaces a group's spec (a group being destroyed is managed again).
    pub fn put(&mut self, spec: GroupSpec) -> Option<GroupSpec> {
        self.destroying.remove(&spec.id);
        self.groups.insert(spec.id.clone(), spec)
    }

    /// True while the group is being destroyed.
    pub fn is_destroying(&self, id: &GroupId) -> bool {
        self.destroying.contains(id)
    }

    /// A group's spec.
    pub fn get(&self, id: &GroupId) -> Option<&GroupSpec> {
        self.groups.get(id)
    }

    /// Removes a group's spec (and its destroy mark).
    pub fn remove(&mut self, id: &GroupId) -> Option<GroupSpec> {
        self.destroying.remove(id);
        self.groups.remove(id)
    }
}

/// A value together with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The version; pass it back to [`Store::save`] to update.
    pub version: Version,
    /// The value.
    pub value: T,
}

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored version is not the one the write expected: someone else wrote first.
    /// Reload and decide again.
    #[error("version conflict: expected {}, found {}", fmt_version(*expected), fmt_version(*actual))]
    Conflict {
        /// What the writer expected (`None`: that nothing was stored yet).
        expected: Option<Version>,
        /// What is stored (`None`: nothing).
        actual: Option<Version>,
    },
    /// The stored data cannot be decoded.
    #[error("stored spec is corrupt: {message}")]
    Corrupt {
        /// What is wrong.
        message: String,
    },
    /// The spec is larger than the store can hold.
    #[error("spec too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The store's limit.
        limit: usize,
    },
    /// An I/O error (disk, network); transient.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// The write carries an older leader's epoch than the stored record: a newer leader
    /// exists, and this writer must stop acting.
    #[error("write refused: the store holds {current}, newer than this writer's {epoch}")]
    Fenced {
        /// The writer's epoch.
        epoch: Epoch,
        /// The epoch stored.
        current: Epoch,
    },
    /// Any other backend error, message preserved.
    #[error("store error: {message}")]
    Other {
        /// The message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

fn fmt_version(v: Option<Version>) -> String {
    v.map_or_else(|| "nothing stored".to_owned(), |v| v.to_string())
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable { .. }
            | StoreError::Other {
                transient: true, ..
            } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }
}

/// Durable storage for the [`GlobalSpec`].
///
/// # Contract
/// - `load` returns `None` when nothing was ever saved.
/// - `save(spec, expected)` succeeds only if the stored version equals `expected` (`None`:
///   nothing is stored yet), and returns the new version; otherwise it fails with
///   [`StoreError::Conflict`] and changes nothing.
/// - A save is atomic: a crash leaves the old spec or the new one, never a torn one.
///
/// ```
/// use infrakit_core::{GlobalSpec, MemoryStore, Store, StoreError};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// assert!(store.load().await?.is_none());
/// let v1 = store.save(&GlobalSpec::default(), None).await?;
/// // A writer still holding "nothing stored" loses.
/// assert!(matches!(
///     store.save(&GlobalSpec::default(), None).await,
///     Err(StoreError::Conflict { .. })
/// ));
/// let v2 = store.save(&GlobalSpec::default(), Some(v1)).await?;
/// assert!(v2 > v1);
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync {
    /// The stored spec and its version, or `None` if nothing was saved yet.
    async fn load(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError>;

    /// Saves `spec` if the stored version is `expected`; returns the new version.
    async fn save(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError>;

    /// The epoch a leader of `term` writes with, when the store takes epochs from the
    /// leadership source it is bound to (etcd: the revision of the leader key, which is the
    /// term). `None`, the default: the store numbers epochs itself, one past the stored
    /// record's ([`FencedStore::claim`]).
    ///
    /// A store that answers `Some` promises that a deposed leader's
    /// [`check_epoch`](Self::check_epoch) answers are never trusted past the end of its
    /// leadership at the source (etcd: the lease), so a new leader may act at once.
    fn leader_epoch(&self, term: Term) -> Option<Epoch> {
        let _ = term;
        None
    }

    /// Saves `spec` as the leader of `epoch`: like [`save`](Self::save), and refused with
    /// [`StoreError::Fenced`] once `epoch` is no longer the newest.
    ///
    /// The default is `save`: the fence is the epoch in the record, which
    /// [`FencedStore::update`] checks in the very version the compare-and-swap replaces. A
    /// store that can check leadership in the write itself overrides it (etcd compares the
    /// leader key's revision in the same transaction).
    async fn save_as(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
        epoch: Epoch,
    ) -> Result<Version, StoreError> {
        let _ = epoch;
        self.save(spec, expected).await
    }

    /// Checks that `epoch` is still the newest: [`StoreError::Fenced`] once a newer one
    /// exists. On success, says how long the answer may be trusted from when the check
    /// started (`None`: as long as the engine's
    /// [`fence_ttl`](crate::reconcile::EngineOptions::fence_ttl)).
    ///
    /// The default loads the record and compares its epoch. A store bound to a leadership
    /// source checks there (etcd: that the leader key still exists at `epoch`, trusted no
    /// longer than its lease is known to last).
    async fn check_epoch(&self, epoch: Epoch) -> Result<Option<Duration>, StoreError> {
        check_in_record(self, epoch).await
    }
}

/// The default [`Store::check_epoch`]: loads the record and refuses `epoch` when the stored
/// one is newer (`Ok(None)`: trusted for the engine's fence TTL). For stores that check
/// elsewhere when bound to a leadership source, and here when not.
pub async fn check_in_record<S: Store + ?Sized>(
    store: &S,
    epoch: Epoch,
) -> Result<Option<Duration>, StoreError> {
    match store.load().await?.and_then(|v| v.value.epoch) {
        Some(current) if current > epoch => Err(StoreError::Fenced { epoch, current }),
        _ => Ok(None),
    }
}
