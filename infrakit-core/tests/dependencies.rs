//! Embedding infrakit-core must not compile a cloud SDK, a Docker client, an HTTP stack or a
//! template engine: those live in their own crates.

use std::process::Command;

#[test]
fn core_pulls_in_no_heavy_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "infrakit-core",
            "-e",
            "normal",
            "--all-features",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("serde"),
        "unexpected cargo tree output: {tree}"
    );
    let forbidden = ["aws-", "bollard", "hyper", "axum", "handlebars", "reqwest"];
    let offenders: Vec<&str> = tree
        .lines()
        .filter(|line| forbidden.iter().any(|f| line.starts_with(f)))
        .collect();
    assert!(
        offenders.is_empty(),
        "infrakit-core depends on {offenders:?}"
    );
}
