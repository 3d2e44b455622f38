//! Benchmarks of the model: hashing a group's configuration and describing by tags.
#![allow(missing_docs)]
fn main() {}
