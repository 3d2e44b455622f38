//! Leadership: whether this replica may act.
//!
//! Several replicas run; only the leader's controllers act. Leadership is observed as a
//! stream of [`LeadershipState`]s. Every leader state carries a [`Term`] that grows with each
//! new term, so work started in one term can be fenced off when that term ends. A source that
//! fails means **not leader**.

use async_trait::async_trait;
use futures::stream::BoxStream;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

mod file;
mod polled;

pub use file::{FileLeadership, FileProbe};
pub use polled::{LeadershipProbe, MAX_PROBES_IN_FLIGHT, Observation, PolledLeadership};

/// A leadership term. Terms observed from one source only grow: each gain of leadership
/// starts a term higher than every earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "term {}", self.0)
    }
}

/// Why a leadership source could not tell; the replica is then not the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeadershipError {
    /// The source (a file, an engine, a cluster) could not be read.
    #[error("leadership source unreachable: {message}")]
    Unreachable {
        /// What happened.
        message: String,
    },
    /// The source answered something that makes no sense.
    #[error("leadership source invalid: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

/// What a replica knows about leadership at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadershipState {
    /// This replica leads, in this term.
    Leader {
        /// The term.
        term: Term,
    },
    /// Another replica leads (or nobody does).
    Follower {
        /// Where the leader is, when known (an address or replica name).
        leader: Option<String>,
    },
    /// The source failed; treated as not leader.
    Unavailable {
        /// Why.
        error: LeadershipError,
    },
}

impl LeadershipState {
    /// True only for [`Leader`](Self::Leader).
    pub fn is_leader(&self) -> bool {
        matches!(self, LeadershipState::Leader { .. })
    }

    /// The term, for a leader.
    pub fn term(&self) -> Option<Term> {
        match self {
            LeadershipState::Leader { term } => Some(*term),
            _ => None,
        }
    }

    /// The leader's location, for a follower that knows it.
    pub fn leader_location(&self) -> Option<&str> {
        match self {
            LeadershipState::Follower { leader } => leader.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for LeadershipState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeadershipState::Leader { term } => write!(f, "leader ({term})"),
            LeadershipState::Follower { leader: Some(l) } => write!(f, "follower (leader: {l})"),
            LeadershipState::Follower { leader: None } => f.write_str("follower (no known leader)"),
            LeadershipState::Unavailable { error } => write!(f, "not leader ({error})"),
        }
    }
}

/// A stream of leadership states: the current one first, then each change.
pub type LeadershipStream = BoxStream<'static, LeadershipState>;

/// A leadership source.
///
/// # Contract
/// - `watch` yields the current state at once, then every change; consecutive items differ.
/// - Each time leadership is gained, the [`Term`] is higher than every term seen before.
/// - Any failure of the source is reported as [`LeadershipState::Unavailable`], which is
///   *not* leadership.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Leadership: Send + Sync {
    /// The state now (refreshing from the source where that is cheap).
    async fn current(&self) -> LeadershipState;

    /// The current state, then every change.
    fn watch(&self) -> LeadershipStream;

    /// Gives leadership up on a clean shutdown, so another replica leads at once instead of
    /// after a timeout (etcd: revokes the lease). The manager calls it from
    /// [`Manager::shutdown`](crate::Manager::shutdown), after its controllers have stopped.
    /// The default does nothing: a source without a handover waits out its own timeout.
    async fn resign(&self) {}
}

/// The building block of leadership sources: tracks the state, publishes changes to every
/// watcher, and numbers terms. A source only says what it sees (`leader`, `follower`,
/// `unavailable`); the cell starts a new term each time leadership is gained.
///
/// ```
/// use infrakit_core::leadership::{LeadershipCell, Term};
/// let cell = LeadershipCell::new();
/// cell.set_leader();
/// assert_eq!(cell.state().term(), Some(Term(1)));
/// cell.set_leader(); // still the same term
/// assert_eq!(cell.state().term(), Some(Term(1)));
/// cell.set_follower(Some("replica-b".into()));
/// cell.set_leader();
/// assert_eq!(cell.state().term(), Some(Term(2)));
/// ```
#[derive(Debug, Clone)]
pub struct LeadershipCell {
    tx: Arc<watch::Sender<LeadershipState>>,
    terms: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for LeadershipCell {
    fn default() -> Self {
        Self::new()
    }
}

impl LeadershipCell {
    /// Starts as a follower with no known leader.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(LeadershipState::Follower { leader: None });
        Self {
            tx: Arc::new(tx),
            terms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The state now.
    pub fn state(&self) -> LeadershipState {
        self.tx.borrow().clone()
    }

    /// This replica leads. Starts a new term unless it already led.
    pub fn set_leader(&self) {
        self.tx.send_if_modified(|state| {
            if state.is_leader() {
                return false;
            }
            let term = self.terms.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            *state = LeadershipState::Leader { term: Term(term) };
            tracing::info!(term, "leadership gained");
            true
        });
    }

    /// This replica leads in `term`, a term the source numbers itself (etcd: the revision of
    /// the leader key, so terms compare across replicas). Unless it already leads in `term`,
    /// a term no higher than one seen before is refused (the state becomes
    /// [`Unavailable`](LeadershipState::Unavailable)): terms only grow.
    ///
    /// ```
    /// use infrakit_core::leadership::{LeadershipCell, Term};
    /// let cell = LeadershipCell::new();
    /// cell.set_leader_in(Term(41));
    /// assert_eq!(cell.state().term(), Some(Term(41)));
    /// cell.set_follower(None);
    /// cell.set_leader_in(Term(7)); // older than 41: not a new term
    /// assert!(!cell.state().is_leader());
    /// ```
    pub fn set_leader_in(&self, term: Term) {
        let seen = self.terms.load(std::sync::atomic::Ordering::SeqCst);
        if self.state().term() == Some(term) {
            return;
        }
        if term.0 <= seen {
            self.set_unavailable(LeadershipError::Invalid {
                message: format!("{term} is not newer than term {seen}, seen before"),
            });
            return;
        }
        self.terms
            .store(term.0, std::sync::atomic::Ordering::SeqCst);
        self.tx.send_modify(|state| {
            if state.is_leader() {
                tracing::warn!(now = %term, "leadership moved to a new term");
            } else {
                tracing::info!(term = term.0, "leadership gained");
            }
            *state = LeadershipState::Leader { term };
        });
    }

    /// Another replica leads (or none).
    pub fn set_follower(&self, leader: Option<String>) {
        self.replace(LeadershipState::Follower { leader });
    }

    /// The source failed.
    pub fn set_unavailable(&self, error: LeadershipError) {
        self.replace(LeadershipState::Unavailable { error });
    }

    fn replace(&self, new: LeadershipState) {
        self.tx.send_if_modified(|state| {
            if *state == new {
                return false;
            }
            if state.is_leader() {
                tracing::warn!(now = %new, "leadership lost");
            }
            *state = new;
            true
        });
    }

    /// A stream of the current state, then every change.
    pub fn watch(&self) -> LeadershipStream {
        Box::pin(WatchStream::new(self.tx.subscribe()))
    }
}

/// Leadership that never changes: for a single replica, or a follower that must never act.
///
/// ```
/// use infrakit_core::{Leadership, StaticLeadership};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert!(StaticLeadership::leader().current().await.is_leader());
/// assert!(!StaticLeadership::follower(None).current().await.is_leader());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct StaticLeadership {
    cell: LeadershipCell,
}

impl StaticLeadership {
    /// Always the leader, in term 1.
    pub fn leader() -> Self {
        let cell = LeadershipCell::new();
        cell.set_leader();
        Self { cell }
    }

    /// Never the leader; `leader` says where the leader is, if known.
    pub fn follower(leader: Option<String>) -> Self {
        let cell = LeadershipCell::new();
        cell.set_follower(leader);
        Self { cell }
    }
}

#[async_trait]
impl Leadership for StaticLeadership {
    async fn current(&self) -> LeadershipState {
        self.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.cell.watch()
    }
}

/// Leadership switched from code: for demos and tests. Clones share the state.
///
/// ```
/// use futures::StreamExt;
/// use infrakit_core::{Leadership, ManualLeadership, leadership::Term};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let l = ManualLeadership::new();
/// let mut states = l.watch();
/// assert!(!states.next().await.unwrap().is_leader());
/// l.gain();
/// assert_eq!(states.next().await.unwrap().term(), Some(Term(1)));
/// l.lose(Some("other".into()));
/// assert_eq!(states.next().await.unwrap().leader_location(), Some("other"));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualLeadership {
    cell: LeadershipCell,
}

impl ManualLeadership {
    /// Starts as a follower with no known leader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Become the leader (a new term, unless already leading).
    pub fn gain(&self) {
        self.cell.set_leader();
    }

    /// Stop leading; `leader` is where the new leader is, if known.
    pub fn lose(&self, leader: Option<String>) {
        self.cell.set_follower(leader);
    }

    /// Simulate a failing source (not leader).
    pub fn fail(&self, message: impl Into<String>) {
        self.cell.set_unavailable(LeadershipError::Unreachable {
            message: message.into(),
        });
    }
}

#[async_trait]
impl Leadership for ManualLeadership {
    async fn current(&self) -> LeadershipState {
        self.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.cell.watch()
    }
}
