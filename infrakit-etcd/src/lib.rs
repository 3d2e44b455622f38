//! # infrakit-etcd
//!
//! Leadership and the spec store of [`infrakit-core`](infrakit_core) on an etcd cluster,
//! the engine orchestrators outside Docker already run for exactly this.
//!
//! - [`EtcdLeadership`]: a campaign with a lease on a key prefix. The leadership stream is
//!   driven by etcd's watch, the term is the revision of the leader's key (cluster-wide and
//!   strictly increasing), followers read the leader's published location, and an error, a
//!   refused keep-alive or a lease that may have expired is *not leader* at once. A clean
//!   stop revokes the lease, so the next replica leads within a watch event.
//! - [`EtcdStore`]: the [`GlobalSpec`](infrakit_core::GlobalSpec) in one key, versions are
//!   mod revisions, saves are transactions. [`fenced_by`](EtcdStore::fenced_by) an
//!   `EtcdLeadership`, every write of the leader also compares the leader key's revision
//!   with the writer's epoch *in the same transaction*: a replica whose lease expired
//!   (paused, partitioned, slow) cannot overwrite the new leader's spec even while it still
//!   believes it leads.
//!
//! ## Provider mutations
//!
//! The manager fences every provider mutation with the same epoch (its guarded path checks
//! the fence before each call). With this store the check asks etcd whether the leader key
//! still exists at the epoch, and a positive answer is trusted only until the lease may have
//! expired as the replica knows it (counted from when the last acknowledged keep-alive was
//! sent, which is before etcd counts it). So a new leader, which etcd names only after the
//! old lease expired at the server, acts at once, and a deposed one, resumed after a pause,
//! refuses before asking anyone.
//!
//! What it does **not** guarantee: a mutation that passed its check and was already on its
//! way to the provider when the lease was lost (the process paused between the check and
//! the call, or the call itself was slow) may still land, because the provider has no
//! fence of its own. The window is at most the time between one check and its call; the
//! engine's group state then reconciles the result like any out-of-band change.
//!
//! ## Choosing a leadership source
//!
//! | Source | Use when | Failover | Fencing |
//! |---|---|---|---|
//! | etcd (this crate) | you run etcd (or Kubernetes' etcd, Patroni's) | lease TTL (default 3 s) | in the cluster: every write compares the leader key |
//! | Swarm (`infrakit-swarm`) | the managers are Docker Swarm managers | Raft election (10-20 s) | the store's epoch in the swarm's config |
//! | File (`infrakit-core`) | one machine, or shared storage | as fast as the file is rewritten | the store's epoch in the record |
//!
//! ## Feature flags
#![doc = document_features::document_features!()]

mod config;
mod error;
mod leadership;
mod retry;
mod store;

#[cfg(feature = "cluster")]
pub mod cluster;

pub use config::EtcdConfig;
pub use error::EtcdError;
pub use leadership::{EtcdLeadership, EtcdLeadershipBuilder};
pub use store::{ETCD_MAX_REQUEST_BYTES, EtcdStore};

/// The etcd client this crate is built on, for embedders who connect themselves.
pub use etcd_client;
