//! [mockall](https://docs.rs/mockall) mocks of every plugin trait, for unit tests of your own
//! plugins and controllers (feature `mocks`).
//!
//! | trait | mock |
//! |---|---|
//! | [`Instance`](crate::Instance) | [`MockInstance`] |
//! | [`Flavor`](crate::Flavor) | [`MockFlavor`] |
//! | [`Group`](crate::Group) | [`MockGroup`] |
//! | [`Leadership`](crate::Leadership) | [`MockLeadership`] |
//! | [`Store`](crate::Store) | [`MockStore`] |
//! | [`Metadata`](crate::Metadata) | [`MockMetadata`] |
//!
//! The mocks are built with the `mockall` re-exported here as [`mocks::mockall`](mockall):
//! use it (`infrakit_core::mocks::mockall::Sequence`, `...::predicate`) rather than a
//! `mockall` of your own, whose version may differ from ours.
//!
//! **Default methods are mocked too.** [`Instance::events`](crate::Instance::events) has a
//! default (`None`: no event stream, poll), but a `MockInstance` panics on any call nobody
//! expected, and a manager calls `events()` once per controller and `call_limit()` once per
//! commit. Use [`MockInstance::without_events`] for a mock that answers `None` to both, or
//! expect them yourself: `mock.expect_events().returning(|| None);`. Likewise a manager asks
//! a flavor's [`healthy_batch`](crate::Flavor::healthy_batch) once per pass: use
//! [`MockFlavor::per_member`] for a mock that answers `None` (the engine then calls
//! `healthy` per member), or expect it yourself.
//!
//! # Unit-testing a custom flavor
//!
//! A flavor that joins workers to a swarm with a token it reads from [`Metadata`](crate::Metadata),
//! tested without any swarm:
//!
//! ```
//! use async_trait::async_trait;
//! use infrakit_core::mocks::MockMetadata;
//! use infrakit_core::*;
//! use serde_json::{Value, json};
//! use std::sync::Arc;
//!
//! struct Joiner {
//!     metadata: Arc<dyn Metadata>,
//! }
//!
//! #[async_trait]
//! impl Flavor for Joiner {
//!     async fn validate(&self, props: &Value, _: &Allocation) -> Result<(), FlavorError> {
//!         match props.get("Manager").and_then(Value::as_str) {
//!             Some(_) => Ok(()),
//!             None => Err(SpecError::new("Manager", "the address of a manager is required").into()),
//!         }
//!     }
//!     async fn prepare(&self, props: &Value, spec: InstanceSpec, _: &Allocation, _: &Index)
//!         -> Result<InstanceSpec, FlavorError>
//!     {
//!         let token = self
//!             .metadata
//!             .get("swarm/join_tokens/worker")
//!             .await
//!             .map_err(|e| FlavorError::Unavailable { message: e.to_string(), retry_after: None })?
//!             .and_then(|v| v.as_str().map(str::to_owned))
//!             .ok_or_else(|| FlavorError::Unavailable {
//!                 message: "no worker join token yet".into(),
//!                 retry_after: None,
//!             })?;
//!         let manager = props["Manager"].as_str().unwrap_or_default();
//!         Ok(spec
//!             .with_init(format!("docker swarm join --token {token} {manager}"))
//!             .with_tag("role", "worker"))
//!     }
//!     async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
//!         Ok(Health::Unknown)
//!     }
//!     async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // The token comes from the mock: exactly one lookup, of exactly this path.
//! let mut metadata = MockMetadata::new();
//! metadata
//!     .expect_get()
//!     .withf(|path| path == "swarm/join_tokens/worker")
//!     .times(1)
//!     .returning(|_| Ok(Some(json!("SWMTKN-1-abc"))));
//! let flavor = Joiner { metadata: Arc::new(metadata) };
//!
//! let props = json!({"Manager": "10.0.0.1:2377"});
//! let spec = flavor
//!     .prepare(&props, InstanceSpec::default(), &Allocation::size(3), &Index::default())
//!     .await
//!     .unwrap();
//! assert_eq!(spec.init, "docker swarm join --token SWMTKN-1-abc 10.0.0.1:2377");
//! assert_eq!(spec.tags.get("role"), Some("worker"));
//!
//! // Bad properties name the field.
//! let err = flavor.validate(&json!({}), &Allocation::size(1)).await.unwrap_err();
//! assert!(err.to_string().contains("Manager"));
//!
//! // A metadata outage is transient, so the engine will retry.
//! let mut down = MockMetadata::new();
//! down.expect_get()
//!     .returning(|_| Err(MetadataError::Unavailable { message: "timeout".into() }));
//! let flavor = Joiner { metadata: Arc::new(down) };
//! let err = flavor
//!     .prepare(&props, InstanceSpec::default(), &Allocation::size(3), &Index::default())
//!     .await
//!     .unwrap_err();
//! assert!(err.is_transient());
//! # });
//! ```
//!
//! # Mocking a provider
//!
//! ```
//! use infrakit_core::mocks::MockInstance;
//! use infrakit_core::{Instance, InstanceError, InstanceId, InstanceSpec, Classify};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut provider = MockInstance::new();
//! let mut seq = infrakit_core::mocks::mockall::Sequence::new();
//! provider.expect_provision().times(1).in_sequence(&mut seq).returning(|_| {
//!     Err(InstanceError::Throttled { message: "Rate exceeded".into(), retry_after: None })
//! });
//! provider
//!     .expect_provision()
//!     .times(1)
//!     .in_sequence(&mut seq)
//!     .returning(|_| Ok(InstanceId::from("i-1")));
//!
//! let first = provider.provision(InstanceSpec::default()).await;
//! assert!(first.unwrap_err().is_transient());
//! assert_eq!(provider.provision(InstanceSpec::default()).await.unwrap(), "i-1");
//! # });
//! ```

/// The mockall our mocks are built with: use its `Sequence`, `predicate` and friends.
pub use mockall;

pub use crate::flavor::MockFlavor;
pub use crate::group::MockGroup;
pub use crate::instance::MockInstance;
pub use crate::leadership::MockLeadership;
pub use crate::metadata::MockMetadata;
pub use crate::store::MockStore;

impl MockInstance {
    /// A mock provider with no event stream: `events()` answers `None` (as the trait's default
    /// does), any number of times. Every other call still needs an expectation.
    ///
    /// ```
    /// use infrakit_core::Instance;
    /// use infrakit_core::mocks::MockInstance;
    ///
    /// let provider = MockInstance::without_events();
    /// assert!(provider.events().is_none());
    /// ```
    pub fn without_events() -> Self {
        let mut mock = Self::new();
        mock.expect_events().returning(|| None);
        mock.expect_call_limit().returning(|| None);
        mock
    }
}

impl MockFlavor {
    /// A mock flavor that judges health per member, as a flavor does by default:
    /// [`healthy_batch`](crate::Flavor::healthy_batch) answers `None`, any number of times.
    ///
    /// ```
    /// use infrakit_core::Flavor;
    /// use infrakit_core::mocks::MockFlavor;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let flavor = MockFlavor::per_member();
    /// assert!(flavor.healthy_batch(&serde_json::Value::Null, &[]).await.is_none());
    /// # });
    /// ```
    pub fn per_member() -> Self {
        let mut mock = Self::new();
        mock.expect_healthy_batch().returning(|_, _| None);
        mock
    }
}
