//! infrakit-rs examples: run one with `cargo run --example NAME` (see the README). This
//! library is empty; each example is its own target.
