//! Leadership sources that poll: a probe says what it sees; the cell mints terms.

use super::{Leadership, LeadershipCell, LeadershipError, LeadershipState, LeadershipStream};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What a probe of a leadership source sees at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// This replica leads.
    Leader,
    /// Another replica leads (where, if known), or nobody does.
    Follower(Option<String>),
    /// The source could not tell: not leader.
    Unavailable(LeadershipError),
}

/// Asks a leadership source once (a file, an engine, a lock service).
#[async_trait]
pub trait LeadershipProbe: Send + Sync + 'static {
    /// What the source says now.
    async fn observe(&self) -> Observation;
}

/// A [`Leadership`] that polls a [`LeadershipProbe`]: `watch` starts one polling task (stopped
/// when the source is dropped), `current` asks the probe at once. A probe that does not answer
/// within four intervals (at least a second) is [`Observation::Unavailable`].
///
/// Probes overlap: one starts every interval even while earlier ones wait (at most
/// [`MAX_PROBES_IN_FLIGHT`] at once), and an answer to a probe older than the last answer
/// applied is dropped. A call that hangs (an engine proxying to a leader that just died) thus
/// never delays seeing a change by more than an interval, and a stale answer never overrides
/// a newer one.
///
/// ```
/// use async_trait::async_trait;
/// use infrakit_core::Leadership;
/// use infrakit_core::leadership::{LeadershipProbe, Observation, PolledLeadership};
/// use std::time::Duration;
///
/// struct AlwaysMe;
/// #[async_trait]
/// impl LeadershipProbe for AlwaysMe {
///     async fn observe(&self) -> Observation { Observation::Leader }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let l = PolledLeadership::new(AlwaysMe, Duration::from_millis(100));
/// assert!(l.current().await.is_leader());
/// # });
/// ```
pub struct PolledLeadership<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for PolledLeadership<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P> std::fmt::Debug for PolledLeadership<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledLeadership")
            .field("interval", &self.inner.interval)
            .field("state", &self.inner.cell.state())
            .finish()
    }
}

/// How many probes of one [`PolledLeadership`] may wait at once.
pub const MAX_PROBES_IN_FLIGHT: usize = 4;

struct Inner<P> {
    probe: P,
    interval: Duration,
    cell: LeadershipCell,
    polling: AtomicBool,
    /// The number of the last probe started.
    started: AtomicU64,
    /// The number of the probe whose answer the cell holds (a lock: answers apply in order).
    applied: Mutex<u64>,
    in_flight: AtomicUsize,
}

impl<P: LeadershipProbe> PolledLeadership<P> {
    /// Polls `probe` every `interval`.
    pub fn new(probe: P, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                probe,
                interval,
                cell: LeadershipCell::new(),
                polling: AtomicBool::new(false),
                started: AtomicU64::new(0),
                applied: Mutex::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// The probe.
    pub fn probe(&self) -> &P {
        &self.inner.probe
    }

    fn ensure_polling(&self) {
        if self.inner.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime: states are refreshed only by `current()`.
            self.inner.polling.store(false, Ordering::SeqCst);
            return;
        };
        let weak: Weak<Inner<P>> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        handle.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.in_flight.load(Ordering::SeqCst) < MAX_PROBES_IN_FLIGHT {
                    inner.in_flight.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        inner.refresh().await;
                        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                    });
                } else {
                    drop(inner);
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
}

impl<P: LeadershipProbe> Inner<P> {
    async fn refresh(&self) {
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let limit = (self.interval * 4).max(Duration::from_secs(1));
        let seen = tokio::time::timeout(limit, self.probe.observe())
            .await
            .unwrap_or_else(|_| {
                Observation::Unavailable(LeadershipError::Unreachable {
                    message: format!("the leadership source did not answer within {limit:?}"),
                })
            });
        // A poisoned lock means a panic while applying: the order still holds.
        let mut applied = self
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if number < *applied {
            tracing::trace!(
                number,
                applied = *applied,
                "stale leadership answer dropped"
            );
            return;
        }
        *applied = number;
        match seen {
            Observation::Leader => self.cell.set_leader(),
            Observation::Follower(leader) => self.cell.set_follower(leader),
            Observation::Unavailable(e) => self.cell.set_unavailable(e),
        }
    }
}

#[async_trait]
impl<P: LeadershipProbe> Leadership for PolledLeadership<P> {
    async fn current(&self) -> LeadershipState {
        self.inner.refresh().await;
        self.inner.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.ensure_polling();
        self.inner.cell.watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadership::Term;

    /// The first call hangs (an engine proxying to a dead leader); later ones say "leader".
    struct FirstHangs(AtomicU64);

    #[async_trait]
    impl LeadershipProbe for FirstHangs {
        async fn observe(&self) -> Observation {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return Observation::Follower(None);
            }
            Observation::Leader
        }
    }

    #[tokio::test]
    async fn a_hanging_probe_neither_delays_a_change_nor_overrides_a_newer_answer() {
        let l = PolledLeadership::new(FirstHangs(AtomicU64::new(0)), Duration::from_millis(50));
        let _watch = l.watch(); // starts polling
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            l.inner.cell.state().term(),
            Some(Term(1)),
            "the second probe answered while the first hung"
        );
        // The first probe times out (after a second) as unavailable: older than the answer
        // applied, it is dropped, and the term goes on.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(l.inner.cell.state().term(), Some(Term(1)));
        assert!(l.inner.in_flight.load(Ordering::SeqCst) <= MAX_PROBES_IN_FLIGHT);
    }
}
