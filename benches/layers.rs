//! What a layer costs per call: a `describe` of one instance on the bare simulator (the
//! floor, measured in the same run) against the same call through each layer alone and
//! through the recommended stack.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use infrakit::layer::{PluginExt, RetryPolicy};
use infrakit::timeouts::CallTimeouts;
use infrakit::*;
use std::time::Duration;

fn bench<P: Instance>(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, plugin: P) {
    let tags = Tags::new();
    c.bench_function(&format!("layers/describe_1/{name}"), |b| {
        b.iter(|| {
            let found = rt.block_on(plugin.describe(&tags, false));
            assert!(matches!(found.as_deref(), Ok([_])));
        })
    });
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cloud = Simulator::new();
    cloud.insert(InstanceSpec::default().with_tag(GROUP_TAG, "web"));
    // A budget never exhausted here: the bench measures the limiter's bookkeeping, not waits.
    let limit = CallLimit::per_second(1_000_000_000).burst(1_000_000_000);
    let timeouts = CallTimeouts::all(Duration::from_secs(10));

    bench(c, &rt, "bare", cloud.clone());
    bench(c, &rt, "timeout", cloud.clone().with_timeouts(timeouts));
    bench(
        c,
        &rt,
        "retry",
        cloud.clone().with_retry(RetryPolicy::default()),
    );
    bench(c, &rt, "rate_limit", cloud.clone().with_rate_limit(limit));
    bench(c, &rt, "metrics", cloud.clone().with_metrics("sim"));
    bench(c, &rt, "logged", cloud.clone().logged("sim"));
    let stack = cloud
        .clone()
        .with_rate_limit(limit)
        .with_timeouts(timeouts)
        .with_retry(RetryPolicy::default())
        .with_metrics("sim")
        .logged("sim");
    bench(c, &rt, "full_stack", stack);
}

criterion_group!(benches, layers);
criterion_main!(benches);
