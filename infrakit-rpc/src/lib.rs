//! # infrakit-rpc
//!
//! InfraKit's plugin protocol — JSON-RPC 2.0 over HTTP/1.1 on a Unix socket, one socket per
//! plugin — so plugins can live in other processes and other languages, wire-compatible with
//! the Go plugins of both generations (`Handshake.Hello`, latest; `Handshake.Implements`,
//! v0.4/v0.5).
//!
//! - [`PluginServer`] serves any `Arc<dyn Instance>`, `Arc<dyn Flavor>`, `Arc<dyn Group>` and
//!   `Arc<dyn Metadata>` on a socket, under subtypes, resolves Go master's `Name` selectors
//!   like Go's keyed lookup, and can serve the Go `Manager` interface (`Manager/0.1.0` for
//!   v0.4.1 CLIs, `Stack/0.1.1` for master's) over a [`ManagerStatus`].
//! - [`RemoteInstance`], [`RemoteFlavor`], [`RemoteGroup`], [`RemoteMetadata`] implement the
//!   core traits by calling a socket, so the engine drives a remote plugin exactly like a local
//!   one; [`RemoteGroup`] and [`RemoteMetadata`] speak whichever generation the handshake
//!   announces (Group/0.1.0 or 0.1.1, Metadata/0.1.0 or 0.1.1).
//! - [`PluginDir`] finds plugins by name in `$INFRAKIT_PLUGINS_DIR` and resolves a group spec's
//!   `"Plugin": "name/subtype"` for a manager ([`infrakit_core::PluginResolver`]).
//!
//! ```
//! use infrakit_core::{Instance, InstanceSpec, Simulator, Tags};
//! use infrakit_rpc::{PluginDir, PluginServer};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let plugins = PluginDir::new(dir.path());
//! let server = PluginServer::new()
//!     .instance("", Arc::new(Simulator::new()))
//!     .serve(plugins.socket("simulator"))
//!     .await
//!     .unwrap();
//!
//! let remote = plugins.instance("simulator");
//! let id = remote.provision(InstanceSpec::default().with_tag("team", "infra")).await.unwrap();
//! let found = remote.describe(&Tags::new().with("team", "infra"), false).await.unwrap();
//! assert_eq!(found[0].id, id);
//! server.stop().await;
//! # });
//! ```
//!
//! A plugin can be tried by hand with curl:
//!
//! ```sh
//! curl --unix-socket ~/.infrakit/plugins/simulator -H 'Content-Type: application/json' \
//!   -d '{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{}},"id":1}' \
//!   http://unix/
//! ```

// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod discovery;
mod error;
mod server;
pub mod wire;

pub use client::{Client, Implements, RemoteFlavor, RemoteGroup, RemoteInstance, RemoteMetadata};
pub use discovery::{PLUGINS_DIR_ENV, PluginDir};
pub use error::RpcError;
pub use server::{DEFAULT_MAX_BODY, ManagerStatus, PluginServer, ServerHandle};
