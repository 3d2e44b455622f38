//! An in-memory store: for tests, demos and replicas that share one process.

use super::{GlobalSpec, Store, StoreError, Version, Versioned};
use async_trait::async_trait;
use std::sync::{Arc, Mutex, MutexGuard};

/// A [`Store`] in memory. Clones share the same data, so several replicas in one process
/// can share one store.
///
/// ```
/// use infrakit_core::{MemoryStore, Store, GlobalSpec};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let a = MemoryStore::new();
/// let b = a.clone();
/// a.save(&GlobalSpec::default(), None).await.unwrap();
/// assert!(b.load().await.unwrap().is_some());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Option<Versioned<GlobalSpec>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Versioned<GlobalSpec>>> {
        // A panic while holding this lock cannot leave the data half-written (every write
        // is one assignment), so a poisoned lock is safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError> {
        Ok(self.lock().clone())
    }

    async fn save(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let mut guard = self.lock();
        let actual = guard.as_ref().map(|v| v.version);
        if actual != expected {
            return Err(StoreError::Conflict { expected, actual });
        }
        let version = actual.map_or(Version(1), Version::next);
        *guard = Some(Versioned {
            version,
            value: spec.clone(),
        });
        Ok(version)
    }
}
