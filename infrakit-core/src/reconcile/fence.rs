//! The fence of one leadership term: may this replica mutate a provider right now?
//!
//! Invariants: a mutation passes only if (1) the replica's leadership source still says it
//! leads in the term the fence was built for, (2) the new leader's wait is over (a new leader
//! waits [`fence_ttl`](super::EngineOptions::fence_ttl) after claiming its epoch when an
//! earlier leader existed), and (3) the store held no newer epoch at a check started less
//! than `fence_ttl` ago. (3) is what refuses a deposed leader that still believes it leads
//! (paused, partitioned): its trust in its last check expires before the new leader acts, and
//! its next check finds the newer epoch. A store whose epochs come from the leadership source
//! (etcd) bounds that trust by the source's own lease instead, and its new leaders do not
//! wait: the old leader's trust has ended before the source names another. The guarantee is
//! about mutations *started*: one already past its check, or already sent to a provider,
//! when the replica is deposed may still land (the provider has no fence of its own).

use crate::leadership::{LeadershipState, Term};
use crate::store::{Epoch, FencedStore, StoreError};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

/// Why a mutation may not go ahead.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fenced {
    /// The leadership source no longer says this replica leads in this term.
    TermEnded,
    /// The store holds a newer epoch: another replica leads.
    Superseded {
        /// The epoch stored.
        current: Epoch,
    },
    /// The epoch could not be checked (the store failed); nothing was done.
    Unverified(StoreError),
}

/// The fence of one term. Shared by the controllers of that term.
pub(crate) struct Fence {
    state: watch::Receiver<LeadershipState>,
    term: Term,
    store: FencedStore,
    ttl: Duration,
    not_before: Instant,
    /// Until when the last successful check against the store may be trusted.
    trusted_until: Mutex<Option<Instant>>,
}

impl Fence {
    /// A fence for `term`, with the epoch `store` was claimed with; `wait` is true when an
    /// earlier leader existed (the first mutation then waits `ttl`). `from_leadership`: the
    /// epoch came from the leadership source, whose checks bound their own trust, so the
    /// claim is not trusted as one (the first mutation checks).
    pub(crate) fn new(
        state: watch::Receiver<LeadershipState>,
        term: Term,
        store: FencedStore,
        ttl: Duration,
        wait: bool,
        from_leadership: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            state,
            term,
            store,
            ttl,
            not_before: if wait { now + ttl } else { now },
            // The claim itself was a check, as good as the record's epoch.
            trusted_until: Mutex::new((!from_leadership).then_some(now + ttl)),
        }
    }

    /// The store, written with this term's epoch.
    pub(crate) fn store(&self) -> &FencedStore {
        &self.store
    }

    /// This replica's own belief: the source still says it leads in this term.
    pub(crate) fn holds(&self) -> Result<(), Fenced> {
        match &*self.state.borrow() {
            LeadershipState::Leader { term } if *term == self.term => Ok(()),
            _ => Err(Fenced::TermEnded),
        }
    }

    /// Checks, right before a provider mutation, that it may go ahead.
    pub(crate) async fn check(&self) -> Result<(), Fenced> {
        self.holds()?;
        if Instant::now() < self.not_before {
            tracing::debug!(term = %self.term, "new leader: waiting out the fence before acting");
            tokio::time::sleep_until(self.not_before).await;
            self.holds()?;
        }
        let mut trusted_until = self.trusted_until.lock().await;
        if trusted_until.is_none_or(|until| Instant::now() >= until) {
            let started = Instant::now();
            match self.store.verify().await {
                Ok(valid_for) => {
                    let trust = valid_for.map_or(self.ttl, |v| v.min(self.ttl));
                    *trusted_until = Some(started + trust);
                }
                Err(StoreError::Fenced { current, .. }) => {
                    *trusted_until = None;
                    return Err(Fenced::Superseded { current });
                }
                Err(e) => return Err(Fenced::Unverified(e)),
            }
        }
        drop(trusted_until);
        self.holds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_superseded_leader_is_refused_once_its_check_expires() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = watch::channel(LeadershipState::Leader { term: Term(1) });
        let old = FencedStore::claim(Arc::clone(&store)).await.unwrap().store;
        let ttl = Duration::from_secs(1);
        let fence = Fence::new(rx.clone(), Term(1), old, ttl, false, false);
        fence.check().await.unwrap();
        // Another replica claims; the old one still believes it leads.
        let new = FencedStore::claim(Arc::clone(&store)).await.unwrap();
        tokio::time::sleep(ttl).await;
        assert_eq!(
            fence.check().await,
            Err(Fenced::Superseded { current: Epoch(2) })
        );
        // The new leader waits out the old one's trust before its first mutation.
        let start = Instant::now();
        let fresh = Fence::new(rx, Term(1), new.store, ttl, new.previous.is_some(), false);
        fresh.check().await.unwrap();
        assert!(start.elapsed() >= ttl);
        tx.send_replace(LeadershipState::Follower { leader: None });
        assert_eq!(fresh.check().await, Err(Fenced::TermEnded));
    }

    /// A store whose epochs come from the leadership source: each check is trusted only as
    /// long as the store says (its lease), and it counts its checks.
    struct LeaseStore {
        records: MemoryStore,
        valid_for: Duration,
        checks: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for LeaseStore {
        async fn load(&self) -> Result<Option<crate::Versioned<crate::GlobalSpec>>, StoreError> {
            self.records.load().await
        }
        async fn save(
            &self,
            spec: &crate::GlobalSpec,
            expected: Option<crate::Version>,
        ) -> Result<crate::Version, StoreError> {
            self.records.save(spec, expected).await
        }
        fn leader_epoch(&self, term: Term) -> Option<Epoch> {
            Some(Epoch(term.0 * 100))
        }
        async fn check_epoch(&self, _: Epoch) -> Result<Option<Duration>, StoreError> {
            self.checks
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Some(self.valid_for))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_epoch_from_the_leadership_source_is_trusted_no_longer_than_the_store_says() {
        let store = Arc::new(LeaseStore {
            records: MemoryStore::new(),
            valid_for: Duration::from_millis(200),
            checks: Default::default(),
        });
        let dyn_store: Arc<dyn Store> = store.clone();
        let claim = FencedStore::claim_in(dyn_store, Term(7)).await.unwrap();
        assert!(claim.from_leadership);
        assert_eq!(
            claim.store.epoch(),
            Epoch(700),
            "the source's epoch, not a count"
        );
        let (_tx, rx) = watch::channel(LeadershipState::Leader { term: Term(7) });
        let ttl = Duration::from_secs(1);
        // No earlier leader's trust to wait out: the source ended it.
        let start = Instant::now();
        let fence = Fence::new(rx, Term(7), claim.store, ttl, false, true);
        let checks = || store.checks.load(std::sync::atomic::Ordering::SeqCst);
        // The claim is not trusted as a check: the first mutation asks the source, and each
        // answer is trusted for the store's 200 ms only, less than the fence TTL.
        fence.check().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(checks(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        fence.check().await.unwrap();
        assert_eq!(checks(), 1, "still trusted");
        tokio::time::sleep(Duration::from_millis(100)).await;
        fence.check().await.unwrap();
        assert_eq!(
            checks(),
            2,
            "the lease's trust ran out before the fence TTL"
        );
    }
}
