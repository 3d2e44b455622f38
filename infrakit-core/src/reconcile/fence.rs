//! The fence of one leadership term: may this replica mutate a provider right now?
//!
//! Invariants: a mutation passes only if (1) the replica's leadership source still says it
//! leads in the term the fence was built for, (2) the new leader's wait is over (a new leader
//! waits [`fence_ttl`](super::EngineOptions::fence_ttl) after claiming its epoch when an
//! earlier leader existed), and (3) the store held no newer epoch at a check started less
//! than `fence_ttl` ago. (3) is what refuses a deposed leader that still believes it leads
//! (paused, partitioned): its trust in its last check expires before the new leader acts, and
//! its next check finds the newer epoch. The guarantee is about mutations *started*: one
//! already sent to a provider when the replica is deposed may still land (the provider has
//! no fence of its own).

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
    /// When the last successful check against the store started.
    checked: Mutex<Option<Instant>>,
}

impl Fence {
    /// A fence for `term`, with the epoch `store` was claimed with; `wait` is true when an
    /// earlier leader existed (the first mutation then waits `ttl`).
    pub(crate) fn new(
        state: watch::Receiver<LeadershipState>,
        term: Term,
        store: FencedStore,
        ttl: Duration,
        wait: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            state,
            term,
            store,
            ttl,
            not_before: if wait { now + ttl } else { now },
            // The claim itself was a check.
            checked: Mutex::new(Some(now)),
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
        let mut checked = self.checked.lock().await;
        if checked.is_none_or(|at| at.elapsed() >= self.ttl) {
            let started = Instant::now();
            match self.store.verify().await {
                Ok(()) => *checked = Some(started),
                Err(StoreError::Fenced { current, .. }) => {
                    *checked = None;
                    return Err(Fenced::Superseded { current });
                }
                Err(e) => return Err(Fenced::Unverified(e)),
            }
        }
        drop(checked);
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
        let fence = Fence::new(rx.clone(), Term(1), old, ttl, false);
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
        let fresh = Fence::new(rx, Term(1), new.store, ttl, new.previous.is_some());
        fresh.check().await.unwrap();
        assert!(start.elapsed() >= ttl);
        tx.send_replace(LeadershipState::Follower { leader: None });
        assert_eq!(fresh.check().await, Err(Fenced::TermEnded));
    }
}
