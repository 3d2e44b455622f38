//! A store seen through one leader's epoch.
//!
//! Invariants: an epoch is claimed by compare-and-swap, one higher than the stored one, so no
//! two claims get the same epoch and every claim is higher than all before it; every write
//! through a [`FencedStore`] checks the stored epoch in the very record it replaces (the CAS
//! makes the check and the write one step), so once a newer leader has claimed, an older
//! one's writes are refused by the store's content, not by its own belief that it leads.

use super::{Epoch, GlobalSpec, Store, StoreError};
use crate::leadership::Term;
use std::sync::Arc;
use std::time::Duration;

/// How often a write retries after losing a compare-and-swap race.
const CONFLICT_RETRIES: usize = 8;

/// A [`Store`] written through one leader's [`Epoch`].
///
/// ```
/// use infrakit_core::{FencedStore, MemoryStore, Store, StoreError};
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// let old = FencedStore::claim(Arc::clone(&store)).await?.store;
/// let new = FencedStore::claim(Arc::clone(&store)).await?.store;
/// assert!(new.epoch() > old.epoch());
/// // The older leader may still believe it leads; the store refuses it.
/// let refused = old.update(|_| Ok::<_, StoreError>(())).await;
/// assert!(matches!(refused, Err(StoreError::Fenced { .. })));
/// new.update(|_| Ok::<_, StoreError>(())).await?;
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FencedStore {
    store: Arc<dyn Store>,
    epoch: Epoch,
}

/// The outcome of [`FencedStore::claim`].
pub struct Claim {
    /// The store, fenced by the new epoch.
    pub store: FencedStore,
    /// The epoch stored before the claim (`None`: no leader ever claimed one).
    pub previous: Option<Epoch>,
    /// The specs as stored when the claim was written.
    pub global: GlobalSpec,
    /// True when the epoch came from the leadership source ([`Store::leader_epoch`]): an
    /// earlier leader's trust in its checks ends with its leadership there, so this one
    /// need not wait before acting.
    pub from_leadership: bool,
}

impl std::fmt::Debug for FencedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedStore")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl FencedStore {
    /// Claims a new epoch, one higher than the stored one, by compare-and-swap.
    pub async fn claim(store: Arc<dyn Store>) -> Result<Claim, StoreError> {
        Self::claim_inner(store, None).await
    }

    /// Claims the epoch of a leader in `term`: the store's [`Store::leader_epoch`] when it
    /// takes epochs from the leadership source, else one higher than the stored one (as
    /// [`claim`](Self::claim)). Either way the record is written with it.
    pub async fn claim_in(store: Arc<dyn Store>, term: Term) -> Result<Claim, StoreError> {
        Self::claim_inner(store, Some(term)).await
    }

    async fn claim_inner(store: Arc<dyn Store>, term: Option<Term>) -> Result<Claim, StoreError> {
        let given = term.and_then(|t| store.leader_epoch(t));
        for _ in 0..CONFLICT_RETRIES {
            let (version, mut global) = match store.load().await? {
                Some(v) => (Some(v.version), v.value),
                None => (None, GlobalSpec::default()),
            };
            let previous = global.epoch;
            let epoch = given.unwrap_or_else(|| previous.map_or(Epoch(1), Epoch::next));
            if let (Some(given), Some(previous)) = (given, previous)
                && given < previous
            {
                // The source's epochs are the fence; a record written under another
                // numbering (a store once used without this source) is taken over.
                tracing::warn!(%given, %previous, "the stored epoch is from another numbering: taking it over");
            }
            global.epoch = Some(epoch);
            match store.save_as(&global, version, epoch).await {
                Ok(_) => {
                    tracing::info!(%epoch, "leader epoch claimed");
                    return Ok(Claim {
                        store: FencedStore { store, epoch },
                        previous,
                        global,
                        from_leadership: given.is_some(),
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(too_many_writers())
    }

    /// The epoch this store writes with.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The underlying store.
    pub fn inner_store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads the specs; [`StoreError::Fenced`] once a newer epoch is stored.
    pub async fn load(&self) -> Result<GlobalSpec, StoreError> {
        let global = self
            .store
            .load()
            .await?
            .map(|v| v.value)
            .unwrap_or_default();
        self.check(&global)?;
        Ok(global)
    }

    /// Checks that no newer epoch exists ([`Store::check_epoch`]); on success, how long the
    /// answer may be trusted (`None`: the engine's fence TTL).
    pub async fn verify(&self) -> Result<Option<Duration>, StoreError> {
        self.store.check_epoch(self.epoch).await
    }

    /// Applies `change` to the stored specs and writes them with this epoch, by
    /// compare-and-swap: a lost race reloads and applies `change` again; a newer epoch in
    /// the store refuses the write ([`StoreError::Fenced`]) and `change` is not applied.
    pub async fn update<T, E: From<StoreError>>(
        &self,
        mut change: impl FnMut(&mut GlobalSpec) -> Result<T, E>,
    ) -> Result<T, E> {
        for _ in 0..CONFLICT_RETRIES {
            let (version, mut global) = match self.store.load().await? {
                Some(v) => (Some(v.version), v.value),
                None => (None, GlobalSpec::default()),
            };
            self.check(&global)?;
            let out = change(&mut global)?;
            global.epoch = Some(self.epoch);
            match self.store.save_as(&global, version, self.epoch).await {
                Ok(_) => return Ok(out),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(too_many_writers().into())
    }

    fn check(&self, global: &GlobalSpec) -> Result<(), StoreError> {
        match global.epoch {
            Some(current) if current > self.epoch => Err(StoreError::Fenced {
                epoch: self.epoch,
                current,
            }),
            _ => Ok(()),
        }
    }
}

fn too_many_writers() -> StoreError {
    StoreError::Other {
        message: "too many concurrent writers".into(),
        transient: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn claims_are_strictly_increasing_and_fence_older_writers() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = FencedStore::claim(Arc::clone(&store)).await.unwrap();
        assert_eq!(a.previous, None);
        assert_eq!(a.store.epoch(), Epoch(1));
        a.store
            .update(|g| {
                g.destroying.insert("x".into());
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let b = FencedStore::claim(Arc::clone(&store)).await.unwrap();
        assert_eq!(b.previous, Some(Epoch(1)));
        assert_eq!(b.store.epoch(), Epoch(2));
        assert!(
            b.global.is_destroying(&"x".into()),
            "the claim keeps the record"
        );
        let refused = a
            .store
            .update(|g| {
                g.destroying.clear();
                Ok::<_, StoreError>(())
            })
            .await;
        assert_eq!(
            refused,
            Err(StoreError::Fenced {
                epoch: Epoch(1),
                current: Epoch(2)
            })
        );
        assert!(a.store.verify().await.is_err());
        assert!(b.store.verify().await.is_ok());
        let stored = store.load().await.unwrap().unwrap().value;
        assert!(stored.is_destroying(&"x".into()));
        assert_eq!(stored.epoch, Some(Epoch(2)));
    }
}
