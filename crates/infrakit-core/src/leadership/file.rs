//! Leadership from a file on shared storage that names the leader.

use super::{Leadership, LeadershipCell, LeadershipError, LeadershipState, LeadershipStream};
use async_trait::async_trait;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Leadership decided by a file: its first line is the ID of the replica that leads.
///
/// A replica leads iff the file names it. The file is polled (every 250 ms by default, so a
/// change is noticed within a second). A missing or unreadable file, or an empty one, means
/// **not leader**. Followers report the named replica as the leader's location, so use
/// replica IDs that say where to reach them (an address, a socket path).
///
/// ```
/// use infrakit_core::{FileLeadership, Leadership};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("leader");
/// let a = FileLeadership::new(&path, "replica-a");
/// let b = FileLeadership::new(&path, "replica-b");
/// assert!(!a.current().await.is_leader()); // no file: nobody leads
///
/// FileLeadership::write_leader(&path, "replica-a").unwrap();
/// assert!(a.current().await.is_leader());
/// assert_eq!(b.current().await.leader_location(), Some("replica-a"));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileLeadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    me: String,
    interval: Duration,
    cell: LeadershipCell,
    polling: AtomicBool,
}

impl FileLeadership {
    /// This replica is `me`; the leader's ID is read from `path`.
    pub fn new(path: impl Into<PathBuf>, me: impl Into<String>) -> Self {
        Self::with_interval(path, me, Duration::from_millis(250))
    }

    /// Like [`new`](Self::new), polling at `interval`.
    pub fn with_interval(
        path: impl Into<PathBuf>,
        me: impl Into<String>,
        interval: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: path.into(),
                me: me.into(),
                interval,
                cell: LeadershipCell::new(),
                polling: AtomicBool::new(false),
            }),
        }
    }

    /// This replica's ID.
    pub fn id(&self) -> &str {
        &self.inner.me
    }

    /// Names `leader` in the file at `path`, atomically (temporary file, fsync, rename).
    pub fn write_leader(path: &Path, leader: &str) -> io::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(leader.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&temp, path)
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
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
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

impl Inner {
    async fn refresh(&self) {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => {
                let leader = text.lines().next().unwrap_or("").trim();
                if leader.is_empty() {
                    self.cell.set_follower(None);
                } else if leader == self.me {
                    self.cell.set_leader();
                } else {
                    self.cell.set_follower(Some(leader.to_owned()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.cell.set_follower(None),
            Err(e) => self.cell.set_unavailable(LeadershipError::Unreachable {
                message: format!("{}: {e}", self.path.display()),
            }),
        }
    }
}

#[async_trait]
impl Leadership for FileLeadership {
    async fn current(&self) -> LeadershipState {
        self.inner.refresh().await;
        self.inner.cell.state()
    }

    fn watch(&self) -> LeadershipStream {
        self.ensure_polling();
        self.inner.cell.watch()
    }
}
