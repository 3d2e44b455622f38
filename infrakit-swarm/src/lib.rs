//! # infrakit-swarm
//!
//! Docker for infrakit-rs, through bollard (the engine's API version is always negotiated).
//!
//! - [`ContainerInstance`]: an [`Instance`](infrakit_core::Instance) whose instances are Docker
//!   containers. Tags are labels, a logical ID is a fixed IP on a user-defined network,
//!   attachments are named volumes, and the engine's event stream reports a killed container at
//!   once, so a controller replaces it without waiting for a poll.
//! - [`EngineNodes`]: an [`Instance`](infrakit_core::Instance) whose instances are Docker
//!   engines on this machine (Linux, root), each `dockerd` in its own network namespace with
//!   the logical ID as its IP and a `dataroot` attachment as its data root: the seed's machines
//!   and EBS volumes, made local, for a real self-healing swarm on one host.
//! - [`SwarmLeadership`]: leader iff the local engine's node is the swarm's Raft leader.
//! - [`SwarmStore`]: the user's spec kept in the swarm's cluster spec, compare-and-swap.
//! - [`SwarmFlavor`]: managers and workers joining with the swarm's tokens (join scripts from
//!   templates), health from node status, drain by demote (managers) or remove (workers).
//! - [`QuorumRecovery`]: a manager's way back from the loss of a majority of managers, decided
//!   from the provider's view (the lowest surviving logical ID forces a new cluster; a cut
//!   link never does).
//! - [`connect`]: a negotiated client from a `unix://` address.
//! - `local_swarm` (feature `local-swarm`): a test and demo harness, the seed's self-healing
//!   swarm on one machine (root and `docker.io` needed).
//!
//! ## Features
#![doc = document_features::document_features!()]
// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod container;
mod docker;
mod flavor;
mod leadership;
#[cfg(feature = "local-swarm")]
pub mod local_swarm;
mod node;
mod recovery;
mod store;

pub use container::{ContainerInstance, ContainerProperties, SCOPE_LABEL};
pub use docker::{DockerError, connect};
pub use flavor::{DEFAULT_TEMPLATE, LINK_LABEL, REMOVE_DOWN_AFTER, Role, SwarmFlavor, health_of};
pub use leadership::SwarmLeadership;
pub use node::{Boot, DATA_ROOT_ATTACHMENT, EngineNodes};
pub use recovery::{QuorumRecovery, RECOVER_AFTER, RecoveryCheck, RecoveryError};
pub use store::{MAX_ENCODED_BYTES, SPEC_LABEL, SwarmStore};
