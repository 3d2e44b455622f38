//! # infrakit-template
//!
//! Templates for boot scripts and configuration files, in the spirit of InfraKit's template
//! engine: handlebars templates (never HTML-escaped) with InfraKit-style globals
//! (`--global /cluster/name=x`), includes and sources by URL (`file://`, `http(s)://`,
//! relative to the including template), and lookups in a
//! [`Metadata`](infrakit_core::Metadata) namespace.
//!
//! This crate is being built; today it exposes nothing but this description.
