//! # infrakit
//!
//! The facade of **infrakit-rs**, a Rust SDK for declarative, self-healing infrastructure.
//! Everything of [`infrakit_core`] is re-exported at the root; the other crates come behind
//! features:
//!
//! | feature | module | crate |
//! |---|---|---|
//! | (always) | root, [`core`] | `infrakit-core` |
//! | `template` (default) | `template` | `infrakit-template` |
//! | `swarm` | `swarm` | `infrakit-swarm` |
//! | `aws` | `aws` | `infrakit-aws` |
//! | `rpc` (default) | `rpc` | `infrakit-rpc` |
//! | `mocks` | `mocks` | mockall mocks of every trait |
//!
//! ```
//! use infrakit::{GroupSpec, PluginSpec, Allocation};
//! let spec = GroupSpec::new(
//!     "workers",
//!     PluginSpec::new("simulator", serde_json::json!({})),
//!     PluginSpec::new("vanilla", serde_json::json!({})),
//!     Allocation::size(3),
//! );
//! assert!(spec.validate().is_ok());
//! ```

pub use infrakit_core as core;
pub use infrakit_core::*;

#[cfg(feature = "aws")]
pub use infrakit_aws as aws;
#[cfg(feature = "rpc")]
pub use infrakit_rpc as rpc;
#[cfg(feature = "swarm")]
pub use infrakit_swarm as swarm;
#[cfg(feature = "template")]
pub use infrakit_template as template;
