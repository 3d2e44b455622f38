//! Memory per managed instance: heap held by a manager (controller state and published status)
//! for a converged group, measured with a counting allocator.
#![allow(missing_docs)]

use infrakit::*;
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for n in [10_000u32, 100_000] {
        let spec = GroupSpec::new(
            "workers",
            PluginSpec::new("simulator", json!({"image": "v1"})),
            PluginSpec::new("vanilla", json!({})),
            Allocation::size(n),
        );
        let cloud = Simulator::builder().log_calls(false).build();
        for _ in 0..n {
            cloud.insert(
                InstanceSpec::default()
                    .with_tag(GROUP_TAG, "workers")
                    .with_tag(CONFIG_HASH_TAG, spec.config_hash()),
            );
        }
        let region = Region::new(GLOBAL);
        let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
            .plugins(
                Plugins::new()
                    .instance("simulator", cloud.clone())
                    .flavor("vanilla", flavor::Vanilla),
            )
            .options(EngineOptions::default().resync(Duration::from_secs(3600)))
            .build();
        let took = rt.block_on(async {
            manager.start();
            manager
                .wait_leading(std::time::Duration::from_secs(30))
                .await
                .expect("this replica leads");
            let start = std::time::Instant::now();
            manager.commit(spec.clone(), false).await?;
            manager
                .wait_converged(&"workers".into(), Duration::from_secs(120))
                .await?;
            Ok::<_, GroupError>(start.elapsed())
        })?;
        let bytes = live(&region);
        println!(
            "memory/{n}: {} bytes held by the manager, {:.0} bytes per managed instance \
             (commit to converged, observing only: {:.0} ms)",
            bytes,
            bytes as f64 / f64::from(n),
            took.as_secs_f64() * 1e3
        );
        rt.block_on(manager.shutdown());
    }
    Ok(())
}
