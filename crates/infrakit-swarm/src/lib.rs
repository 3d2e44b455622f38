//! # infrakit-swarm
//!
//! Docker Swarm mode for infrakit-rs, through bollard:
//!
//! - `SwarmLeadership`: leader iff the local engine's node is the Raft leader;
//! - `SwarmStore`: the user's spec kept in the swarm itself, compare-and-swap on its version;
//! - `SwarmFlavor`: managers and workers that join with tokens, health from node status,
//!   drain by demote / remove;
//! - `ContainerInstance`: Docker containers as instances (labels as tags, fixed IPs as
//!   logical IDs, named volumes as attachments).
//!
//! This crate is being built; today it exposes nothing but this description.
