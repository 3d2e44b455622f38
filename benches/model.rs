//! Benchmarks of the model: the config hash and describe-by-tags on the simulator.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use infrakit::*;
use serde_json::json;

fn hash(c: &mut Criterion) {
    let spec = GroupSpec::new(
        "workers",
        PluginSpec::new(
            "aws/ec2",
            json!({"ImageId": "ami-123", "InstanceType": "m5.large",
            "SubnetId": "subnet-1", "SecurityGroupIds": ["sg-1", "sg-2"], "Tags": {"team": "infra"}}),
        ),
        PluginSpec::new("swarm/worker", json!({"InitScript": "x".repeat(2048)})),
        Allocation::size(100),
    );
    c.bench_function("config_hash", |b| b.iter(|| spec.config_hash()));
}

fn describe(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("simulator_describe");
    for n in [1_000usize, 10_000] {
        let sim = Simulator::builder().log_calls(false).build();
        for i in 0..n {
            let g = if i % 2 == 0 { "a" } else { "b" };
            sim.insert(
                InstanceSpec::default()
                    .with_tag(GROUP_TAG, g)
                    .with_tag("n", i.to_string()),
            );
        }
        let query = Tags::new().with(GROUP_TAG, "a");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| rt.block_on(sim.describe(&query, false)).expect("describe"))
        });
    }
    group.finish();
}

criterion_group!(benches, hash, describe);
criterion_main!(benches);
