//! # infrakit
//!
//! The facade of **infrakit-rs**, a Rust SDK for declarative, self-healing infrastructure.
//! Everything of [`infrakit_core`] is re-exported at the root (so `use infrakit::*` brings the
//! model, the traits, the engine and the built-ins); the other crates come behind features:
//!
//! | feature | module | crate |
//! |---|---|---|
//! | (always) | root | `infrakit-core` |
//! | `template` (default) | `template` | `infrakit-template` |
//! | `rpc` (default) | `rpc` | `infrakit-rpc` |
//! | `swarm` | `swarm` | `infrakit-swarm` |
//! | `aws` | `aws` | `infrakit-aws` |
//! | `etcd` | `etcd` | `infrakit-etcd` |
//! | `mocks` | `mocks` | mockall mocks of every trait |
//! | `testkit` | `testkit` | the conformance kit for your own plugins |
//!
//! `use infrakit::*` does not shadow the `core` crate: `infrakit-core` is reachable as
//! `infrakit::infrakit_core` (its items are at the root anyway).
//!
//! ```
//! use infrakit::*;
//! let spec = GroupSpec::new(
//!     "workers",
//!     PluginSpec::new("simulator", serde_json::json!({})),
//!     PluginSpec::new("vanilla", serde_json::json!({})),
//!     Allocation::size(3),
//! );
//! assert!(spec.validate().is_ok());
//! // `core` is still the language's core crate.
//! assert_eq!(core::cmp::max(1, 2), 2);
//! ```
//!
//! ## Features
#![doc = document_features::document_features!()]

#[doc(no_inline)]
pub use infrakit_core;
pub use infrakit_core::*;

#[cfg(feature = "aws")]
pub use infrakit_aws as aws;
#[cfg(feature = "etcd")]
pub use infrakit_etcd as etcd;
#[cfg(feature = "rpc")]
pub use infrakit_rpc as rpc;
#[cfg(feature = "swarm")]
pub use infrakit_swarm as swarm;
#[cfg(feature = "template")]
pub use infrakit_template as template;
