//! Leadership from a file on shared storage that names the leader.

use super::polled::{LeadershipProbe, Observation, PolledLeadership};
use super::{Leadership, LeadershipError, LeadershipState, LeadershipStream};
use async_trait::async_trait;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Leadership decided by a file: its first line is the ID of the replica that leads.
///
/// A replica leads iff the file names it. The file is polled (every 250 ms by default, so a
/// change is noticed within a second). A missing or empty file means nobody leads; an
/// unreadable one means **not leader**. Followers report the named replica as the leader's
/// location, so use replica IDs that say where to reach them (an address, a socket path).
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
    polled: PolledLeadership<FileProbe>,
}

/// Reads the leader file.
#[derive(Debug)]
pub struct FileProbe {
    path: PathBuf,
    me: String,
}

#[async_trait]
impl LeadershipProbe for FileProbe {
    async fn observe(&self) -> Observation {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => {
                let leader = text.lines().next().unwrap_or("").trim();
                if leader.is_empty() {
                    Observation::Follower(None)
                } else if leader == self.me {
                    Observation::Leader
                } else {
                    Observation::Follower(Some(leader.to_owned()))
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Observation::Follower(None),
            Err(e) => Observation::Unavailable(LeadershipError::Unreachable {
                message: format!("{}: {e}", self.path.display()),
            }),
        }
    }
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
            polled: PolledLeadership::new(
                FileProbe {
                    path: path.into(),
                    me: me.into(),
                },
                interval,
            ),
        }
    }

    /// This replica's ID.
    pub fn id(&self) -> &str {
        &self.polled.probe().me
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
}

#[async_trait]
impl Leadership for FileLeadership {
    async fn current(&self) -> LeadershipState {
        self.polled.current().await
    }

    fn watch(&self) -> LeadershipStream {
        self.polled.watch()
    }
}
