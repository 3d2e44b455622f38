//! Client tokens that make launches idempotent across retries.
//!
//! A token is minted for a launch and kept while its outcome is unknown: the next launch of
//! the same spec takes it back, so that EC2 answers with the instance the first attempt may
//! have started. Two launches of one spec at once (a scaled group growing by two) get two
//! tokens. A launch that succeeded or surely failed frees its token.

use infrakit_core::{InstanceSpec, Tags};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pending tokens per spec fingerprint.
#[derive(Debug, Default)]
pub(crate) struct TokenPool {
    pending: Mutex<HashMap<[u8; 32], Vec<String>>>,
    minted: AtomicU64,
}

impl TokenPool {
    /// What identifies "the same launch": the spec and the namespace.
    pub(crate) fn fingerprint(spec: &InstanceSpec, namespace: &Tags) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(spec).unwrap_or_default());
        h.update(serde_json::to_vec(namespace).unwrap_or_default());
        h.finalize().into()
    }

    /// A pending token of this spec, or a new one.
    pub(crate) fn take(&self, fingerprint: &[u8; 32]) -> String {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(list) = pending.get_mut(fingerprint)
            && let Some(token) = list.pop()
        {
            if list.is_empty() {
                pending.remove(fingerprint);
            }
            return token;
        }
        let n = self.minted.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(fingerprint);
        h.update(n.to_le_bytes());
        h.update(nanos.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let digest = h.finalize();
        // EC2 accepts up to 64 ASCII characters.
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("ik-{hex}")
    }

    /// The launch's outcome is unknown: keep the token for the next launch of the spec.
    pub(crate) fn give_back(&self, fingerprint: &[u8; 32], token: String) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry(*fingerprint).or_default().push(token);
        }
    }

    /// The launch's outcome is known: the token is spent.
    pub(crate) fn done(&self, fingerprint: &[u8; 32], token: &str) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(list) = pending.get_mut(fingerprint)
        {
            list.retain(|t| t != token);
            if list.is_empty() {
                pending.remove(fingerprint);
            }
        }
    }

    /// Tokens waiting for a retry (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
            .lock()
            .map(|p| p.values().map(Vec::len).sum())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_keeps_the_token_for_the_same_spec_only() {
        let pool = TokenPool::default();
        let ns = Tags::new().with("infrakit.scope", "a");
        let a = TokenPool::fingerprint(&InstanceSpec::default().with_logical_id("10.0.0.1"), &ns);
        let b = TokenPool::fingerprint(&InstanceSpec::default().with_logical_id("10.0.0.2"), &ns);
        let t1 = pool.take(&a);
        pool.give_back(&a, t1.clone());
        assert_ne!(pool.take(&b), t1, "another spec never gets it");
        assert_eq!(pool.take(&a), t1, "the retry of the same spec reuses it");
        pool.done(&a, &t1);
        assert_eq!(pool.pending(), 0);
        assert_ne!(
            pool.take(&a),
            t1,
            "after success a new launch gets a new token"
        );
        assert!(t1.len() <= 64);
    }

    #[test]
    fn concurrent_launches_of_one_spec_get_distinct_tokens() {
        let pool = TokenPool::default();
        let f = TokenPool::fingerprint(&InstanceSpec::default(), &Tags::new());
        let t1 = pool.take(&f);
        let t2 = pool.take(&f);
        assert_ne!(t1, t2);
        pool.give_back(&f, t1.clone());
        pool.give_back(&f, t2.clone());
        let mut again = [pool.take(&f), pool.take(&f)];
        again.sort();
        let mut both = [t1, t2];
        both.sort();
        assert_eq!(again, both);
    }
}
