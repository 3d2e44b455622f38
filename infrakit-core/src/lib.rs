//! # infrakit-core
//!
//! The model, the plugin traits, the reconcile engine and the embedded default provider of
//! **infrakit-rs**: declarative, self-healing infrastructure. Active agents keep comparing a
//! declared [`GroupSpec`] with what a provider really reports, and drive reality back to the
//! spec when machines die, drift or are updated.
//!
//! What your `Cargo.toml` needs for everything on this page:
//!
//! ```toml
//! [dependencies]
//! infrakit-core = "0.1"
//! serde_json = "1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "time"] }
//!
//! [dev-dependencies]
//! infrakit-core = { version = "0.1", features = ["mocks", "testkit"] }
//! ```
//!
//! (`#[async_trait]` is re-exported as [`infrakit_core::async_trait`](macro@async_trait), and mockall
//! as `infrakit_core::mocks::mockall`: you do not need either crate of your own.)
//!
//! ## 1. Implement `Instance`: your provider
//!
//! An [`Instance`] plugin creates, labels, destroys and finds instances. Tags are the only
//! inventory: set them **at creation**, and make `describe` a subset match (see the trait's
//! contract). `examples/custom_controller.rs` in the repository is a complete one (instances as
//! JSON files); this is the shape:
//!
//! ```
//! use infrakit_core::*;
//! use serde_json::Value;
//! use std::sync::Mutex;
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
//! # let _toy = Toy::default();
//! ```
//!
//! A [`Flavor`] (application knowledge: the boot script, health, drain) is written the same
//! way; [`flavor::Vanilla`] is the plain one. Flavors see descriptions **without** provider
//! properties: the engine describes with `with_properties = false`, so a flavor's `healthy`
//! must decide from the tags and logical ID.
//!
//! ## 2. Compose a manager
//!
//! A [`Manager`] runs one controller per group while its replica leads ([`Leadership`]) and
//! keeps the specs in a [`Store`]. Commit a spec (InfraKit's JSON) and the engine converges the
//! group and heals it:
//!
//! ```
//! # use infrakit_core::*;
//! # use serde_json::Value;
//! # #[derive(Default)] struct Toy(std::sync::Mutex<Vec<Description>>);
//! # #[async_trait]
//! # impl Instance for Toy {
//! #     async fn validate(&self, _: &Value) -> Result<(), InstanceError> { Ok(()) }
//! #     async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
//! #         let mut all = self.0.lock().unwrap();
//! #         let id = InstanceId::new(format!("toy-{}", all.len()));
//! #         all.push(Description::new(id.clone(), spec.tags));
//! #         Ok(id)
//! #     }
//! #     async fn label(&self, _: &InstanceId, _: &Tags) -> Result<(), InstanceError> { Ok(()) }
//! #     async fn destroy(&self, id: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
//! #         self.0.lock().unwrap().retain(|d| &d.id != id);
//! #         Ok(())
//! #     }
//! #     async fn describe(&self, tags: &Tags, _: bool) -> Result<Vec<Description>, InstanceError> {
//! #         Ok(self.0.lock().unwrap().iter().filter(|d| d.tags.contains_all(tags)).cloned().collect())
//! #     }
//! # }
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
//!     .plugins(Plugins::new().instance("toy", Toy::default()).flavor("vanilla", flavor::Vanilla))
//!     .options(EngineOptions::default().resync(Duration::from_millis(100)))
//!     .build();
//! manager.start();
//! manager.wait_leading(Duration::from_secs(30)).await?;
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
//! **Durations in specs** (`Updating.MinHealthy`, `Updating.Deadline`, `Healing.*`) are Go's
//! text: `"500ms"`, `"10s"`, `"5m"`, `"1h30m"`; **a bare number means seconds**. The parser is
//! public for your own properties: [`duration`].
//!
//! **Engine defaults** ([`EngineOptions`]): a resync pass every 10 s (provider events trigger
//! passes sooner), 16 provider and flavor calls in flight per group, retries after a failed pass
//! from 200 ms doubling to 30 s (reset on success).
//!
//! **Provider call limits belong to the plugin**: an instance plugin says what it can take
//! ([`Instance::call_limit`]: none for the simulator and local plugins, 50 calls per second
//! for EC2), shared by every group that uses it; the builder overrides it
//! ([`Plugins::instance_limited`]) and a group's spec can tighten it for that group
//! (`"Instance": {"Plugin": "aws", "RateLimit": {"PerSecond": 5}}`).
//!
//! **Metrics**, through the [`metrics`](https://docs.rs/metrics) facade (install any
//! recorder, e.g. a Prometheus exporter, to see them): `infrakit_reconcile_passes_total` and
//! `infrakit_reconcile_errors_total` (counters, label `group`), `infrakit_provider_call_seconds`
//! (histogram, label `op`: `describe`, `provision`, `destroy`, …), `infrakit_group_members`
//! (gauge, labels `group` and `state`: `healthy`, `unhealthy`, `unknown`, `outdated`). Every
//! action is also a typed [`EngineEvent`] on [`Manager::events`].
//!
//! ## 3. Compose your own controller
//!
//! The parts a downstream orchestrator adjusts, each small and separate:
//!
//! - **Layers** ([`layer`]): wrap any plugin, yours or ours, one concern per wrapper —
//!   [`Timeout`](layer::Timeout), [`Retry`](layer::Retry) (transient errors, with backoff;
//!   never a `provision` that may have acted), [`RateLimit`](layer::RateLimit),
//!   [`Metrics`](layer::Metrics), [`Logged`](layer::Logged). `Arc<T>` and `Box<T>` of a plugin
//!   are plugins too.
//! - **Deadlines**: every plugin call the engine makes has one ([`timeouts::CallTimeouts`]:
//!   per operation, set per plugin with [`Plugins::timeouts`], per group in its spec), and so
//!   has every pass ([`EngineOptions::pass_timeout`]): a plugin that never answers fails its
//!   call, shows in `describe` (`last_error`) and as an event, and the next pass runs.
//! - **Plan hooks** ([`reconcile::PlanHook`]): business rules (a maintenance window, a
//!   budget, a change freeze) approve, veto or defer each action of every plan, with reasons
//!   that show in `describe`, events and `commit(pretend)`.
//! - **Per-group options** ([`reconcile::GroupOptions`], `"Options"` in a spec or
//!   [`ManagerBuilder::group_options`]): resync, parallelism, settle, deadlines, events, a
//!   call limit.
//! - **Triggers**: [`Group::trigger`] runs a pass now; [`Manager::reconcile_on`] feeds a
//!   stream of group IDs (a queue, a webhook) into the controllers.
//!
//! ```
//! use infrakit_core::layer::{PluginExt, RetryPolicy};
//! use infrakit_core::reconcile::{Action, Cause, GroupOptions, PlanHook, Review};
//! use infrakit_core::timeouts::{CallTimeouts, PluginCall};
//! use infrakit_core::*;
//! use std::time::Duration;
//!
//! /// No scale-in today.
//! struct Freeze;
//!
//! #[async_trait]
//! impl PlanHook for Freeze {
//!     async fn review(&self, review: &mut Review<'_>) {
//!         for i in 0..review.actions().len() {
//!             if matches!(review.actions()[i], Action::Destroy { cause: Cause::ScaleDown, .. }) {
//!                 review.veto(i, "change freeze");
//!             }
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! // A provider with retries on transient errors, each attempt bounded.
//! let provider = Simulator::new()
//!     .with_timeouts(CallTimeouts::new().set(PluginCall::Provision, Duration::from_secs(30)))
//!     .with_retry(RetryPolicy::default());
//! let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
//!     .plugins(Plugins::new().instance("sim", provider).flavor("vanilla", flavor::Vanilla))
//!     .group_options("web", GroupOptions::new().parallelism(4))
//!     .plan_hook(Freeze)
//!     .build();
//! manager.start();
//! manager.wait_leading(Duration::from_secs(5)).await?;
//! let spec = GroupSpec::from_json(r#"{"ID": "web", "Properties": {
//!     "Allocation": {"Size": 2},
//!     "Instance": {"Plugin": "sim", "Properties": {}},
//!     "Flavor": {"Plugin": "vanilla", "Properties": {}},
//!     "Options": {"Resync": "30s", "Timeouts": {"Healthy": "2s"}}}}"#)?;
//! manager.commit(spec.clone(), false).await?;
//! manager.wait_converged(&"web".into(), Duration::from_secs(5)).await?;
//! let mut smaller = spec;
//! smaller.allocation = Allocation::size(1);
//! let plan = manager.commit(smaller, true).await?;
//! assert!(plan.contains("vetoed: change freeze"), "{plan}");
//! manager.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## 4. Unit-test with mocks (feature `mocks`)
//!
//! `infrakit_core::mocks` has a mockall mock of every trait (`MockInstance`, `MockFlavor`,
//! `MockGroup`, `MockLeadership`, `MockStore`, `MockMetadata`), with compiled examples: a
//! custom flavor tested against a `MockMetadata`, and a provider's throttling in a
//! `mockall::Sequence`. A `MockInstance` in a manager needs `events()` expected (or
//! `MockInstance::without_events()`), since mockall mocks default methods too.
//!
//! ## 5. Check your plugin with the conformance kit (feature `testkit`)
//!
//! `infrakit_core::testkit::check_instance` and `check_flavor` run the contract the engine
//! relies on against your implementation (subset tag match, a missing tag never matches, tags
//! set at creation, exclusive logical IDs, `NotFound` on an unknown ID, gone after destroy, …)
//! and report each broken rule by name with what was expected and seen. Call them in your own
//! `#[tokio::test]`; the module's docs show how.
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
//!
//! ## Features
#![doc = document_features::document_features!()]
// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod duration;
pub mod error;
pub mod flavor;
pub mod group;
mod id;
pub mod instance;
pub mod layer;
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
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timeouts;

/// The attribute every plugin trait implementation needs (`#[async_trait]`), re-exported so a
/// plugin crate does not have to name `async-trait` itself.
pub use async_trait::async_trait;
pub use error::{Classify, ErrorKind};
pub use flavor::{Flavor, FlavorError, Health, Index};
pub use group::{
    Allocation, Group, GroupDescription, GroupError, GroupSpec, HealingPolicy, MemberStatus,
    PluginSpec, UpdatePolicy, config_hash,
};
pub use id::{GroupId, InstanceId, LogicalId};
pub use instance::{
    Attachment, CallLimit, Description, DestroyContext, Instance, InstanceError, InstanceEvent,
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
pub use store::{
    Epoch, FencedStore, FileStore, GlobalSpec, MemoryStore, Store, StoreError, Version, Versioned,
};
pub use tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG, Tags};
