//! Metadata: a read-only namespace of paths (`aws/instance/private_ip`,
//! `swarm/join_tokens/manager`) that templates and plugins read, like a cluster-wide sysfs.

use crate::error::{Classify, ErrorKind};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// A metadata lookup failed (a missing path is not an error: it is `None`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The backend could not be reached; transient.
    #[error("metadata unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// The path is malformed.
    #[error("invalid metadata path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Classify for MetadataError {
    fn kind(&self) -> ErrorKind {
        match self {
            MetadataError::Unavailable { .. } => ErrorKind::Transient,
            MetadataError::InvalidPath { .. } => ErrorKind::Permanent,
        }
    }
}

/// A read-only tree of values addressed by `/`-separated paths.
///
/// # Contract
/// - Paths are `/`-separated; leading and trailing `/` are ignored; `""` is the root.
/// - `get` of a path that does not exist is `Ok(None)`.
/// - `list` returns the names of a path's children, sorted; a leaf or a missing path has none.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Metadata: Send + Sync {
    /// The value at `path`.
    async fn get(&self, path: &str) -> Result<Option<Value>, MetadataError>;

    /// The names of the children of `path`.
    async fn list(&self, path: &str) -> Result<Vec<String>, MetadataError>;
}

/// Metadata in memory, from a JSON tree: objects are directories, everything else a leaf.
/// Clones share the tree.
///
/// ```
/// use infrakit_core::{Metadata, MemoryMetadata};
/// use serde_json::json;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let md = MemoryMetadata::new(json!({"aws": {"instance": {"private_ip": "10.0.0.5"}}}));
/// assert_eq!(md.get("aws/instance/private_ip").await.unwrap(), Some(json!("10.0.0.5")));
/// assert_eq!(md.list("/aws").await.unwrap(), vec!["instance".to_string()]);
/// md.set("swarm/join_tokens/manager", json!("SWMTKN-1-..."));
/// assert!(md.get("swarm/join_tokens/manager").await.unwrap().is_some());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryMetadata {
    tree: Arc<RwLock<Value>>,
}

/// Splits a metadata path into its segments.
pub fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl MemoryMetadata {
    /// Metadata serving `tree`.
    pub fn new(tree: Value) -> Self {
        Self {
            tree: Arc::new(RwLock::new(tree)),
        }
    }

    /// Sets the value at `path`, creating directories on the way (a leaf in the way is
    /// replaced by a directory).
    pub fn set(&self, path: &str, value: Value) {
        let mut guard = self.tree.write().unwrap_or_else(|p| p.into_inner());
        let mut node: &mut Value = &mut guard;
        for seg in path_segments(path) {
            if !node.is_object() {
                *node = Value::Object(serde_json::Map::new());
            }
            let Value::Object(map) = node else {
                return;
            };
            node = map.entry(seg.to_owned()).or_insert(Value::Null);
        }
        *node = value;
    }

    fn lookup(&self, path: &str) -> Option<Value> {
        let guard = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let mut node: &Value = &guard;
        for seg in path_segments(path) {
            node = node.as_object()?.get(seg)?;
        }
        Some(node.clone())
    }
}

#[async_trait]
impl Metadata for MemoryMetadata {
    async fn get(&self, path: &str) -> Result<Option<Value>, MetadataError> {
        Ok(self.lookup(path))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        Ok(match self.lookup(path) {
            Some(Value::Object(map)) => {
                let mut keys: Vec<String> = map.keys().cloned().collect();
                keys.sort();
                keys
            }
            _ => Vec::new(),
        })
    }
}
