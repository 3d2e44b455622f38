//! # infrakit-swarm
//!
//! Docker for infrakit-rs, through bollard (the engine's API version is always negotiated).
//!
//! - [`ContainerInstance`]: an [`Instance`](infrakit_core::Instance) whose instances are Docker
//!   containers. Tags are labels, a logical ID is a fixed IP on a user-defined network,
//!   attachments are named volumes, and the engine's event stream reports a killed container at
//!   once, so a controller replaces it without waiting for a poll.
//! - [`connect`]: a negotiated client from a `unix://` address.
//!
//! Still to come here (see the project's issues): `SwarmLeadership` (leader iff the local
//! engine is the Raft leader), `SwarmStore` (the spec kept in the swarm) and `SwarmFlavor`
//! (managers and workers joining with tokens).

mod container;
mod docker;

pub use container::{ContainerInstance, ContainerProperties};
pub use docker::{DockerError, connect};
