//! Tags: the only inventory. A group's members are the instances that carry its tags.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Tag written on every member: the group's ID.
pub const GROUP_TAG: &str = "infrakit.group";
/// Tag written on every member: the hash of the group's instance and flavor sections
/// (see [`GroupSpec::config_hash`](crate::group::GroupSpec::config_hash)).
pub const CONFIG_HASH_TAG: &str = "infrakit.config.hash";
/// Tag holding the logical ID, for providers that cannot store one natively.
pub const LOGICAL_ID_TAG: &str = "infrakit.logical_id";

/// An ordered map of tag names to values.
///
/// Ordered so that serialisation, hashing and display are stable.
///
/// ```
/// use infrakit_core::Tags;
/// let member = Tags::from_iter([("infrakit.group", "workers"), ("zone", "a")]);
/// let query = Tags::from_iter([("infrakit.group", "workers")]);
/// assert!(member.contains_all(&query));
/// // A missing tag never matches.
/// assert!(!query.contains_all(&member));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self(BTreeMap::new())
    }

    /// The value of one tag.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets one tag, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes one tag, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Builder form of [`insert`](Self::insert).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (overwriting) every tag of `other`.
    pub fn merge(&mut self, other: &Tags) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
    }

    /// True if every tag of `query` is present here with the same value.
    ///
    /// This is the matching rule of every `describe`: an instance matches a query if its tags
    /// are a superset of the query. An instance **missing** a queried tag does not match, and
    /// the empty query matches everything.
    pub fn contains_all(&self, query: &Tags) -> bool {
        query.0.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(m: BTreeMap<String, String>) -> Self {
        Self(m)
    }
}

impl IntoIterator for Tags {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_match() {
        let inst = Tags::from_iter([("a", "1"), ("b", "2")]);
        assert!(inst.contains_all(&Tags::new()));
        assert!(inst.contains_all(&Tags::from_iter([("a", "1")])));
        assert!(inst.contains_all(&Tags::from_iter([("a", "1"), ("b", "2")])));
        assert!(!inst.contains_all(&Tags::from_iter([("a", "2")])));
        // missing tag never matches
        assert!(!inst.contains_all(&Tags::from_iter([("c", "")])));
        assert!(!Tags::new().contains_all(&Tags::from_iter([("a", "1")])));
    }

    #[test]
    fn display_is_sorted() {
        let t = Tags::from_iter([("z", "1"), ("a", "2")]);
        assert_eq!(t.to_string(), "a=2,z=1");
    }
}
