//! Leadership sources that poll: a probe says what it sees; the cell mints terms.

use super::{Leadership, LeadershipCell, LeadershipError, LeadershipState, LeadershipStream};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
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

struct Inner<P> {
    probe: P,
    interval: Duration,
    cell: LeadershipCell,
    polling: AtomicBool,
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
                inner.refresh().await;
                drop(inner);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

impl<P: LeadershipProbe> Inner<P> {
    async fn refresh(&self) {
        let limit = (self.interval * 4).max(Duration::from_secs(1));
        let seen = tokio::time::timeout(limit, self.probe.observe())
            .await
            .unwrap_or_else(|_| {
                Observation::Unavailable(LeadershipError::Unreachable {
                    message: format!("the leadership source did not answer within {limit:?}"),
                })
            });
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
