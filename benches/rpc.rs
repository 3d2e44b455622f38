//! Plugin calls over a Unix socket: a DescribeInstances returning 1,000 instances, and a small
//! Provision, each a full JSON-RPC round trip on a keep-alive connection.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infrakit::rpc::{PluginDir, PluginServer};
use infrakit::*;
use std::sync::Arc;

fn rpc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("infrakit-rpc-bench-{}", std::process::id()));
    let plugins = PluginDir::new(&dir);
    let cloud = Simulator::builder().log_calls(false).build();
    for i in 0..1000 {
        cloud.insert(
            InstanceSpec::default()
                .with_tag(GROUP_TAG, "workers")
                .with_tag("n", i.to_string())
                .with_logical_id(format!("10.0.{}.{}", i / 250, i % 250).as_str()),
        );
    }
    let server = rt
        .block_on(
            PluginServer::new()
                .instance("", Arc::new(cloud.clone()))
                .serve(plugins.socket("simulator")),
        )
        .expect("serve");
    let remote = Arc::new(plugins.instance("simulator"));
    let query = Tags::new().with(GROUP_TAG, "workers");
    assert_eq!(
        rt.block_on(remote.describe(&query, false))
            .expect("describe")
            .len(),
        1000
    );

    let mut group = c.benchmark_group("rpc");
    group.throughput(Throughput::Elements(1));
    // The calls run on a runtime worker, as an engine's controller makes them.
    let query = Arc::new(query);
    group.bench_function("describe_1000", |b| {
        b.iter_custom(|iters| {
            let (remote, query) = (Arc::clone(&remote), Arc::clone(&query));
            rt.block_on(rt.spawn(async move {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    remote.describe(&query, false).await.expect("describe");
                }
                start.elapsed()
            }))
            .expect("bench task")
        })
    });
    group.bench_function("provision_small", |b| {
        b.iter_custom(|iters| {
            let remote = Arc::clone(&remote);
            rt.block_on(rt.spawn(async move {
                let spec = InstanceSpec::default().with_tag("bench", "provision");
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    remote.provision(spec.clone()).await.expect("provision");
                }
                start.elapsed()
            }))
            .expect("bench task")
        })
    });
    group.finish();
    rt.block_on(server.stop());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, rpc);
criterion_main!(benches);
