//! # infrakit-aws
//!
//! An EC2 instance plugin for infrakit-rs (aws-sdk-ec2): tags as the only inventory, a fixed
//! private IP as the logical ID, EBS volumes re-attached to replacements, launches made
//! idempotent with client tokens, throttling handled with adaptive retries.
//!
//! This crate is being built; today it exposes nothing but this description.

// Library code never unwraps a fallible value; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
