//! A group controller driving plugins that run in another process (start
//! `cargo run --example plugin_server` first).
//!
//! `cargo run --example remote_group`
//!
//! The manager registers no plugin of its own: the spec's `"simulator"` and `"vanilla/worker"`
//! resolve to sockets in the plugin directory. It converges a group of three, watches an
//! instance destroyed behind its back come back, then destroys the group.

use infrakit::rpc::PluginDir;
use infrakit::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = PluginDir::from_env();
    let found = dir.list().unwrap_or_default();
    if !found.iter().any(|n| n == "simulator") || !found.iter().any(|n| n == "vanilla") {
        return Err(format!(
            "no simulator/vanilla plugin sockets in {} (found {found:?}): start `cargo run --example plugin_server` first",
            dir.dir().display()
        )
        .into());
    }
    let client = dir.client("simulator");
    let interfaces = client.implements().await?;
    println!(
        "simulator plugin implements {:?}",
        interfaces.interfaces.keys().collect::<Vec<_>>()
    );

    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(Plugins::new().fallback(Arc::new(dir.clone())))
        .options(
            EngineOptions::default()
                // Remote plugins send no events: the resync finds changes.
                .resync(Duration::from_millis(500))
                .settle(Duration::from_millis(20)),
        )
        .build();
    manager.start();
    manager.wait_leading(Duration::from_secs(30)).await?;

    let spec = GroupSpec::from_json(
        r#"{"ID": "remote-workers", "Properties": {
              "Allocation": {"Size": 3},
              "Instance": {"Plugin": "simulator", "Properties": {"Image": "busybox"}},
              "Flavor": {"Plugin": "vanilla/worker", "Properties": {"Init": ["echo joined"]}}}}"#,
    )?;
    let id = spec.id.clone();
    println!("commit: {}", manager.commit(spec, false).await?);
    let d = manager.wait_converged(&id, Duration::from_secs(20)).await?;
    println!(
        "converged: {:?}",
        d.instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
    );

    // An outage outside the manager: destroy one instance directly through the plugin.
    let victim = d.instances[0].id.clone();
    dir.instance("simulator")
        .destroy(&victim, DestroyContext::Terminate)
        .await?;
    let start = Instant::now();
    println!("destroyed {victim} behind the manager's back");
    let healed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let d = manager.describe(&id).await?;
            if d.converged && d.instances.iter().all(|i| i.id != victim) {
                return Ok::<_, GroupError>(d);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await??;
    println!(
        "healed in {:.0} ms: {:?}",
        start.elapsed().as_secs_f64() * 1e3,
        healed
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
    );
    manager.destroy(&id).await?;
    println!("group destroyed");
    manager.shutdown().await;
    Ok(())
}
