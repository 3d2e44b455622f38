//! Renders the example boot script (a source, a conditional include, globals).
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infrakit::template::{Engine, Globals};
use serde_json::json;

fn boot_sh(c: &mut Criterion) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/templates/boot.sh");
    let url = url_of(&path);
    let engine = Engine::new().with_globals(
        Globals::parse([
            "/cluster/name=mystack",
            "/cluster/swarm/size=5",
            "/local/role=manager",
            "/local/ip=10.0.0.2",
            "/cluster/swarm/join/token=SWMTKN-1-xyz",
        ])
        .expect("globals"),
    );
    let context = json!({});
    // The first render fetches and parses; later ones use the cache.
    engine.render_url(&url, &context).expect("render");
    let mut group = c.benchmark_group("template");
    group.throughput(Throughput::Elements(1));
    group.bench_function("boot.sh", |b| {
        b.iter(|| engine.render_url(&url, &context).expect("render"))
    });
    group.finish();
}

fn url_of(p: &std::path::Path) -> String {
    format!("file://{}", p.display())
}

criterion_group!(benches, boot_sh);
criterion_main!(benches);
