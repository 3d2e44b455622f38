//! # infrakit-core
//!
//! The model, the plugin traits, the reconcile engine and the embedded default provider of
//! **infrakit-rs**: declarative, self-healing infrastructure. Active agents keep comparing a
//! declared [`GroupSpec`] with what a provider really reports, and drive reality back to the
//! spec when machines die, drift or are updated.
//!
//! ## Start here: a controller of your own
//!
//! Write a provider (an [`Instance`]), pick or write a [`Flavor`], compose a [`Manager`] with a
//! [`Leadership`] source and a [`Store`], commit a spec: the engine converges the group and heals
//! it. `examples/custom_controller.rs` in the repository is the complete version (instances as
//! JSON files, [`FileLeadership`], [`FileStore`], healing a deleted file, and a unit test of its
//! flavor with the [`mocks`]); this is its core:
//!
//! ```
//! use async_trait::async_trait;
//! use infrakit_core::*;
//! use serde_json::{Value, json};
//! use std::sync::Mutex;
//! use std::time::Duration;
//!
//! /// Instances are entries in a list; a real plugin would call a cloud API.
//! #[derive(Default)]
//! struct Toy(Mutex<Vec<Description>>);
//!
//! #[async_trait]
//! impl Instance for Toy {
//!     async fn validate(&self, _: &Value) -> Result<(), InstanceError> { Ok(()) }
//!     async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
//!         let mut all = self.0.lock().unwrap();
//!         let id = InstanceId::new(format!("toy-{}", all.len()));
//!         let mut d = Description::new(id.clone(), spec.tags); // tags set at creation
//!         d.logical_id = spec.logical_id;
//!         all.push(d);
//!         Ok(id)
//!     }
//!     async fn label(&self, id: &InstanceId, tags: &Tags) -> Result<(), InstanceError> {
//!         let mut all = self.0.lock().unwrap();
//!         let d = all.iter_mut().find(|d| &d.id == id)
//!             .ok_or_else(|| InstanceError::NotFound { id: id.clone() })?;
//!         d.tags.merge(tags);
//!         Ok(())
//!     }
//!     async fn destroy(&self, id: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
//!         let mut all = self.0.lock().unwrap();
//!         let before = all.len();
//!         all.retain(|d| &d.id != id);
//!         if all.len() == before { return Err(InstanceError::NotFound { id: id.clone() }); }
//!         Ok(())
//!     }
//!     async fn describe(&self, tags: &Tags, _: bool) -> Result<Vec<Description>, InstanceError> {
//!         // The contract: a subset match; a missing tag never matches.
//!         Ok(self.0.lock().unwrap().iter().filter(|d| d.tags.contains_all(tags)).cloned().collect())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
//!     .plugins(Plugins::new().instance("toy", Toy::default()).flavor("vanilla", flavor::Vanilla))
//!     .options(EngineOptions { resync: Duration::from_millis(100), ..EngineOptions::default() })
//!     .build();
//! manager.start();
//! manager.wait_leading().await;
//!
//! let spec = GroupSpec::from_json(r#"{"ID": "web", "Properties": {
//!     "Allocation": {"Size": 2},
//!     "Instance": {"Plugin": "toy", "Properties": {}},
//!     "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["echo hello"]}}}}"#)?;
//! assert_eq!(manager.commit(spec, false).await?, "add 2 to reach 2");
//! let group = manager.wait_converged(&"web".into(), Duration::from_secs(5)).await?;
//! assert_eq!(group.instances.len(), 2);
//! manager.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## What is here
//!
//! - **The model**: [`InstanceSpec`], [`Description`], [`Tags`] (the only inventory),
//!   [`LogicalId`]s and [`Attachment`]s for pets, [`Allocation`] (size *xor* logical IDs),
//!   [`GroupSpec`] and its [`config hash`](GroupSpec::config_hash).
//! - **The traits**: [`Instance`] (a provider), [`Flavor`] (application knowledge), [`Group`]
//!   (the controller API), [`Leadership`], [`Store`], [`Metadata`]. All async, object-safe
//!   (`Arc<dyn Instance>`), with typed errors that [`Classify`] as transient or permanent.
//! - **The engine** ([`reconcile`], [`Manager`]): a pure planner, one controller per group
//!   (events, resync, backoff, rate limit, fencing by leadership term), rolling updates with
//!   surge / unavailability / health gating / deadlines, and a manager that acts only while its
//!   replica leads and implements [`Group`].
//! - **Built-ins**: the [`Simulator`] provider with fault injection; [`MemoryStore`] and
//!   [`FileStore`]; [`StaticLeadership`], [`ManualLeadership`] and [`FileLeadership`];
//!   [`MemoryMetadata`]; the [`flavor::Vanilla`] flavor.
//! - **Mocks** of every trait with the `mocks` feature: see `mocks`.

// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod flavor;
pub mod group;
mod id;
pub mod instance;
pub mod leadership;
pub mod manager;
pub mod metadata;
#[cfg(feature = "mocks")]
pub mod mocks;
pub mod plugins;
pub mod reconcile;
mod serde_util;
pub mod simulator;
mod spec_error;
pub mod store;
mod tags;

pub use error::{Classify, ErrorKind};
pub use flavor::{Flavor, FlavorError, Health, Index};
pub use group::{
    Allocation, Group, GroupDescription, GroupError, GroupSpec, HealingPolicy, MemberStatus,
    PluginSpec, UpdatePolicy, config_hash,
};
pub use id::{GroupId, InstanceId, LogicalId};
pub use instance::{
    Attachment, Description, DestroyContext, Instance, InstanceError, InstanceEvent,
    InstanceEvents, InstanceSpec,
};
pub use leadership::{
    FileLeadership, Leadership, LeadershipState, LeadershipStream, ManualLeadership,
    StaticLeadership, Term,
};
pub use manager::{Manager, ManagerBuilder};
pub use metadata::{MemoryMetadata, Metadata, MetadataError};
pub use plugins::{PluginResolver, Plugins};
pub use reconcile::{EngineEvent, EngineOptions};
pub use simulator::Simulator;
pub use spec_error::SpecError;
pub use store::{FileStore, GlobalSpec, MemoryStore, Store, StoreError, Version, Versioned};
pub use tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Tags};
