//! # infrakit-aws
//!
//! EC2 for infrakit-rs (aws-sdk-ec2):
//!
//! - [`Ec2Instance`], an [`Instance`](infrakit_core::Instance) plugin: tags (set at launch)
//!   are the only inventory, a namespace tag keeps clusters apart, a logical ID is a fixed
//!   primary private IP, `ebs` attachments are volumes re-attached to whatever takes the
//!   logical ID next, launches are idempotent with client tokens, throttling is retried
//!   adaptively and every error is classified ([`Ec2Error`]).
//! - [`Ec2Metadata`], a [`Metadata`](infrakit_core::Metadata) of the instance's own facts from
//!   the instance metadata service (IMDSv2).
//! - [`client`] and [`client_from_env`]: EC2 clients configured for a controller.
//!
//! A quorum of three managers with fixed IPs, each with its state volume:
//!
//! ```no_run
//! use infrakit_aws::{Ec2Instance, client_from_env};
//! use infrakit_core::{Allocation, Attachment, Group, GroupSpec, Manager, MemoryStore, Plugins,
//!     StaticLeadership, flavor::Vanilla, group::PluginSpec};
//! use serde_json::json;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ec2 = Ec2Instance::new(client_from_env(), "prod-swarm")?;
//! let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
//!     .plugins(Plugins::new().instance("ec2", ec2).flavor("vanilla", Vanilla))
//!     .build();
//! manager.start();
//! let ips = ["10.0.1.10", "10.0.1.11", "10.0.1.12"];
//! let mut allocation = Allocation::logical_ids(ips);
//! for ip in ips {
//!     // The volume tagged infrakit.attachment=state-<ip> (and infrakit.scope=prod-swarm).
//!     allocation = allocation.with_attachment(ip, Attachment::new(format!("state-{ip}"), "ebs"));
//! }
//! let spec = GroupSpec::new(
//!     "managers",
//!     PluginSpec::new("ec2", json!({"ImageId": "ami-0abcdef1234567890",
//!         "InstanceType": "t3.small", "SubnetId": "subnet-0123456789abcdef0"})),
//!     PluginSpec::new("vanilla", json!({})),
//!     allocation,
//! );
//! manager.commit(spec, false).await?;
//! # Ok(()) }
//! ```

// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod client;
pub mod error;
mod instance;
mod metadata;
mod properties;
mod token;

pub use client::{ENDPOINT_ENV, client, client_from_env, config, retry_config, timeout_config};
pub use error::{Ec2Error, Ec2ErrorKind};
pub use instance::{
    ATTACHED_VOLUMES_TAG, ATTACHMENT_TAG, Ec2Instance, Ec2Options, MAX_USER_DATA, SCOPE_TAG,
};
pub use metadata::{DEFAULT_IMDS_ENDPOINT, Ec2Metadata, IMDS_ENDPOINT_ENV};
pub use properties::{BlockDevice, DEFAULT_ATTACH_DEVICE, Ec2Properties};

/// The SDK this crate is built on, for building clients and reading errors.
pub use aws_sdk_ec2;
