//! infrakit-rs benchmarks: run them with `cargo bench -p infrakit-benches --bench NAME`
//! (see the README). This library is empty; each bench is its own target.
