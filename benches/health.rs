//! Health checks per pass as groups grow: the swarm flavor's batch logic on a recorded node
//! listing (no engine), and a flavor behind RPC asked per member (one round trip each). Both
//! must grow linearly: compare the time per member across sizes in the same run.
#![allow(missing_docs)]

use bollard::models::Node;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use infrakit::rpc::{PluginDir, PluginServer};
use infrakit::swarm::{LINK_LABEL, Role, health_of};
use infrakit::*;
use serde_json::{Value, json};
use std::sync::Arc;

/// A listing of `n` workers as the engine returns it, and the group's members.
fn recorded(n: usize) -> (Vec<Node>, Vec<Description>) {
    let nodes = (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "ID": format!("node-{i}"),
                "Description": {"Hostname": format!("w{i}"), "Engine": {
                    "EngineVersion": "20.10.24", "Labels": {LINK_LABEL: format!("l-{i}")}}},
                "Status": {"State": "ready", "Addr": format!("10.1.{}.{}", i / 250, i % 250)},
                "Spec": {"Role": "worker", "Availability": "active"},
            }))
            .expect("a node")
        })
        .collect();
    let members = (0..n)
        .map(|i| {
            Description::new(
                format!("i-{i:06}").as_str(),
                Tags::new()
                    .with(GROUP_TAG, "workers")
                    .with(LINK_LABEL, format!("l-{i}")),
            )
        })
        .collect();
    (nodes, members)
}

fn swarm_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("health_pass/swarm_batch");
    for n in [100usize, 1_000, 10_000] {
        let (nodes, members) = recorded(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let healths = health_of(&nodes, Role::Worker, &members);
                assert_eq!(healths.len(), members.len());
            })
        });
    }
    group.finish();
}

fn rpc_per_member(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("infrakit-health-bench-{}", std::process::id()));
    let plugins = PluginDir::new(&dir);
    let server = rt
        .block_on(
            PluginServer::new()
                .flavor("", Arc::new(flavor::Vanilla))
                .serve(plugins.socket("vanilla")),
        )
        .expect("serve");
    let remote = Arc::new(plugins.flavor("vanilla"));
    let mut group = c.benchmark_group("health_pass/rpc_per_member");
    for n in [100usize, 1_000] {
        let (_, members) = recorded(n);
        let members = Arc::new(members);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let (remote, members) = (Arc::clone(&remote), Arc::clone(&members));
                rt.block_on(rt.spawn(async move {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        // As the engine asks a per-member flavor: 16 checks in flight.
                        let healths: Vec<_> = futures::stream::iter(0..members.len())
                            .map(|i| {
                                let (remote, members) = (Arc::clone(&remote), Arc::clone(&members));
                                async move { remote.healthy(&Value::Null, &members[i]).await }
                            })
                            .buffered(16)
                            .collect()
                            .await;
                        assert!(healths.iter().all(Result::is_ok));
                    }
                    start.elapsed()
                }))
                .expect("bench task")
            })
        });
    }
    group.finish();
    rt.block_on(server.stop());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, swarm_batch, rpc_per_member);
criterion_main!(benches);
