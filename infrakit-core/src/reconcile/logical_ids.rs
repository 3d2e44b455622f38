//! The logical-ID index of a quorum allocation: where each logical ID stands in it.
//!
//! Invariant: an index answers for the allocation it was built from, and only for it. The
//! controller builds one when it takes a spec and keeps it with the spec, so a pass over a
//! quorum group does one hash lookup per member and builds nothing; the planner builds its
//! own when it is given none or one of the wrong size.

use crate::group::Allocation;
use crate::id::LogicalId;
use foldhash::fast::FixedState;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

/// Where each logical ID of a quorum allocation stands in it (its position in
/// [`Allocation::ids`]), built once per spec and handed to the planner in
/// [`PlanInput::logical_ids`](crate::reconcile::PlanInput::logical_ids).
///
/// It keeps a 32-bit hash of each logical ID, not the ID itself (8 bytes an entry: the table
/// of 100,000 stays in cache, and no pointer is chased per lookup), and every answer is
/// checked against the allocation it is asked about: an index never names a position whose
/// logical ID is not the one asked for. The rare logical ID whose hash another already had is
/// kept by value.
///
/// ```
/// use infrakit_core::Allocation;
/// use infrakit_core::reconcile::LogicalIdIndex;
///
/// let quorum = Allocation::logical_ids(["10.0.0.1", "10.0.0.2"]);
/// let index = LogicalIdIndex::new(&quorum);
/// assert_eq!(index.position(&quorum, "10.0.0.2"), Some(1));
/// assert_eq!(index.position(&quorum, "10.0.0.9"), None);
/// // Asked about another allocation, it answers only what holds there.
/// let other = Allocation::logical_ids(["10.0.0.2", "10.0.0.1"]);
/// assert_eq!(index.position(&other, "10.0.0.2"), None);
/// assert_eq!(index.len(), 2);
/// assert!(LogicalIdIndex::new(&Allocation::size(3)).is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogicalIdIndex {
    /// Position by the hash of a logical ID (of a logical ID listed twice, the last place).
    positions: HashMap<u32, u32, FixedState>,
    /// Logical IDs whose hash another one already had (practically never): by value.
    collided: HashMap<LogicalId, usize, FixedState>,
    /// How many logical IDs the allocation lists.
    len: usize,
}

/// The hash of a logical ID: fixed, so an index means the same in every process.
fn hash(logical_id: &str) -> u32 {
    let h = FixedState::default().hash_one(logical_id);
    // Both halves, so no bit of the hash is wasted.
    (h ^ (h >> 32)) as u32
}

impl LogicalIdIndex {
    /// The index of an allocation's logical IDs (empty for a scaled group).
    pub fn new(allocation: &Allocation) -> Self {
        let ids = allocation.ids();
        let mut positions = HashMap::with_capacity_and_hasher(ids.len(), FixedState::default());
        let mut collided = HashMap::with_hasher(FixedState::default());
        for (i, id) in ids.iter().enumerate() {
            let Ok(at) = u32::try_from(i) else {
                collided.insert(id.clone(), i);
                continue;
            };
            match positions.entry(hash(id.as_str())) {
                Entry::Vacant(e) => {
                    e.insert(at);
                }
                // The same logical ID again: the last place, as for a map by value.
                Entry::Occupied(mut e) if ids[*e.get() as usize] == *id => {
                    e.insert(at);
                }
                Entry::Occupied(_) => {
                    collided.insert(id.clone(), i);
                }
            }
        }
        Self {
            positions,
            collided,
            len: ids.len(),
        }
    }

    /// Where `logical_id` stands in `allocation`, if this index knows it there: `Some(i)`
    /// only when `allocation.ids()[i]` is `logical_id`.
    pub fn position(&self, allocation: &Allocation, logical_id: &str) -> Option<usize> {
        let ids = allocation.ids();
        let found = match self.positions.get(&hash(logical_id)) {
            Some(&i)
                if ids
                    .get(i as usize)
                    .is_some_and(|id| id.as_str() == logical_id) =>
            {
                Some(i as usize)
            }
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(logical_id).copied(),
        };
        found.filter(|&i| ids.get(i).is_some_and(|id| id.as_str() == logical_id))
    }

    /// How many logical IDs the allocation lists.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a scaled group's (empty) allocation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this index can answer for `allocation`: built from one of the same size (the
    /// planner's guard against an index handed over with the wrong spec).
    pub(crate) fn fits(&self, allocation: &Allocation) -> bool {
        self.len == allocation.ids().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_allocation_order() {
        let ids: Vec<String> = (0..1000).map(|i| format!("node-{i:04}")).collect();
        let index = LogicalIdIndex::new(&Allocation::logical_ids(ids.iter().map(String::as_str)));
        let allocation = Allocation::logical_ids(ids.iter().map(String::as_str));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.position(&allocation, id), Some(i));
        }
        assert_eq!(index.position(&allocation, "node-1000"), None);
        assert!(index.fits(&allocation));
        assert!(!index.fits(&Allocation::logical_ids(["a"])));
    }

    #[test]
    fn a_logical_id_listed_twice_stands_at_its_last_place() {
        let allocation = Allocation::logical_ids(["a", "b", "a"]);
        let index = LogicalIdIndex::new(&allocation);
        assert_eq!(index.position(&allocation, "a"), Some(2));
        assert_eq!(index.position(&allocation, "b"), Some(1));
    }
}
