//! # infrakit-core
//!
//! The model, the plugin traits and the embedded default provider of **infrakit-rs**:
//! declarative, self-healing infrastructure. Active agents keep comparing a declared
//! [`GroupSpec`] with what a provider really reports, and drive reality back to the spec when
//! machines die, drift or are updated.
//!
//! - **The model**: [`InstanceSpec`], [`Description`], [`Tags`] (the only inventory),
//!   [`LogicalId`]s and [`Attachment`]s for pets, [`Allocation`] (size *xor* logical IDs),
//!   [`GroupSpec`] and its [`config hash`](GroupSpec::config_hash).
//! - **The traits**: [`Instance`] (a provider), [`Flavor`] (application knowledge), [`Group`]
//!   (the controller API), [`Leadership`], [`Store`], [`Metadata`]. All async, object-safe
//!   (`Arc<dyn Instance>`), with typed errors that [`Classify`] as transient or permanent.
//! - **Built-ins**: the [`Simulator`] provider with fault injection; [`MemoryStore`] and
//!   [`FileStore`]; [`StaticLeadership`], [`ManualLeadership`] and [`FileLeadership`];
//!   [`MemoryMetadata`].
//! - **Mocks** of every trait with the `mocks` feature: see [`mocks`].
//!
//! ## A provider of your own
//!
//! ```
//! use async_trait::async_trait;
//! use infrakit_core::*;
//! use serde_json::Value;
//! use std::sync::{Arc, Mutex};
//!
//! /// Instances are entries in a map; a real plugin would call a cloud API.
//! #[derive(Default)]
//! struct Toy(Mutex<Vec<Description>>);
//!
//! #[async_trait]
//! impl Instance for Toy {
//!     async fn validate(&self, _: &Value) -> Result<(), InstanceError> { Ok(()) }
//!     async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
//!         let mut all = self.0.lock().unwrap();
//!         let id = InstanceId::new(format!("toy-{}", all.len()));
//!         let mut d = Description::new(id.clone(), spec.tags);
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
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let plugin: Arc<dyn Instance> = Arc::new(Toy::default());
//! plugin.provision(InstanceSpec::default().with_tag(GROUP_TAG, "workers")).await.unwrap();
//! let members = plugin.describe(&Tags::new().with(GROUP_TAG, "workers"), false).await.unwrap();
//! assert_eq!(members.len(), 1);
//! # });
//! ```

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
pub use plugins::Plugins;
pub use reconcile::{EngineEvent, EngineOptions};
pub use simulator::Simulator;
pub use spec_error::SpecError;
pub use store::{FileStore, GlobalSpec, MemoryStore, Store, StoreError, Version, Versioned};
pub use tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Tags};
