//! A store in one JSON file, safe against crashes and against concurrent writers.

use super::{GlobalSpec, Store, StoreError, Version, Versioned};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A [`Store`] kept in one JSON file, e.g. on storage shared by the replicas.
///
/// - **Atomic**: a save writes a temporary file in the same directory, fsyncs it, renames it
///   over the target and fsyncs the directory. A crash at any point leaves the old spec or the
///   new one, never a torn or empty file.
/// - **Compare-and-swap across processes**: a save takes an exclusive lock on a sibling
///   `<file>.lock` file (an OS advisory lock, released if the process dies), then compares
///   versions.
/// - Temporary files left by a writer that crashed are removed by the next save.
///
/// The file reads `{"Version": 3, "Spec": {"Groups": {..}}}`.
///
/// ```
/// use infrakit_core::{FileStore, Store, GlobalSpec};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = FileStore::new(dir.path().join("specs.json"));
/// let v1 = store.save(&GlobalSpec::default(), None).await.unwrap();
/// let loaded = store.load().await.unwrap().unwrap();
/// assert_eq!(loaded.version, v1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    #[serde(rename = "Version")]
    version: Version,
    #[serde(rename = "Spec")]
    spec: GlobalSpec,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// A store at `path`. The directory must exist; the file is created on the first save.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_name(&self) -> Result<String, StoreError> {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Other {
                message: format!("{} does not name a file", self.path.display()),
                transient: false,
            })
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn read(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&self.path, "read", e)),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            message: format!("{}: {e}", self.path.display()),
        })?;
        Ok(Some(Versioned {
            version: disk.version,
            value: disk.spec,
        }))
    }

    fn save_blocking(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let name = self.file_name()?;
        let dir = self.dir();
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, "open lock file", e))?;
        lock.lock().map_err(|e| io_error(&lock_path, "lock", e))?;

        // Holding the lock, no other writer is between "write temp" and "rename": any temp
        // file now present was left by a crash.
        let temp_prefix = format!(".{name}.tmp-");
        remove_stale_temps(&dir, &temp_prefix);

        let actual = self.read()?.map(|v| v.version);
        if actual != expected {
            return Err(StoreError::Conflict { expected, actual });
        }
        let version = actual.map_or(Version(1), Version::next);
        let body = serde_json::to_vec_pretty(&OnDisk {
            version,
            spec: spec.clone(),
        })
        .map_err(|e| StoreError::Other {
            message: format!("cannot encode spec: {e}"),
            transient: false,
        })?;

        let temp = dir.join(format!(
            "{temp_prefix}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_synced(&temp, &body)
            .and_then(|()| fs::rename(&temp, &self.path))
            .map_err(|e| io_error(&self.path, "write", e));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        drop(lock);
        tracing::debug!(path = %self.path.display(), %version, "spec saved");
        Ok(version)
    }
}

fn write_synced(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(prefix))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn io_error(path: &Path, what: &str, e: io::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what} {}: {e}", path.display()),
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other {
        message: format!("store task failed: {e}"),
        transient: true,
    }
}

#[async_trait]
impl Store for FileStore {
    async fn load(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read())
            .await
            .map_err(join_error)?
    }

    async fn save(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let this = self.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || this.save_blocking(&spec, expected))
            .await
            .map_err(join_error)?
    }
}
