//! Engine benchmarks: planning at scale, and heal latency on the simulator (events vs polling).
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use infrakit::reconcile::{
    EngineEvent, InFlight, LogicalIdIndex, Member, PlanInput, UpdateClock, plan,
};
use infrakit::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn spec(n: u32) -> GroupSpec {
    GroupSpec::new(
        "workers",
        PluginSpec::new("simulator", json!({"image": "v2"})),
        PluginSpec::new("vanilla", json!({})),
        Allocation::size(n),
    )
}

fn members(n: usize, hash: &str) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            description: Description::new(
                format!("i-{i:08}").as_str(),
                Tags::new()
                    .with(GROUP_TAG, "workers")
                    .with(CONFIG_HASH_TAG, hash),
            ),
            health: Health::Healthy,
            health_age: Duration::from_secs(60),
            first_seen: i as u64,
        })
        .collect()
}

fn planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    for n in [1_000usize, 10_000, 100_000] {
        let s = spec(n as u32);
        let hash = s.config_hash();
        let in_flight = InFlight::default();
        let steady = members(n, &hash);
        group.bench_with_input(BenchmarkId::new("converged", n), &n, |b, _| {
            b.iter(|| {
                plan(PlanInput {
                    spec: &s,
                    config_hash: &hash,
                    members: &steady,
                    in_flight: &in_flight,
                    update: UpdateClock::Idle,
                    destroying: false,
                    logical_ids: None,
                })
            })
        });
        // Every member outdated and 10% too many: the most work a plan does.
        let outdated = members(n + n / 10, "old");
        group.bench_with_input(BenchmarkId::new("outdated_and_oversized", n), &n, |b, _| {
            b.iter(|| {
                plan(PlanInput {
                    spec: &s,
                    config_hash: &hash,
                    members: &outdated,
                    in_flight: &in_flight,
                    update: UpdateClock::Running(Duration::from_secs(1)),
                    destroying: false,
                    logical_ids: None,
                })
            })
        });
        // Healing on, 1% of the members of unknown health past the deadline.
        let mut healing = s.clone();
        healing.healing.replace_unknown_after = Some(Duration::from_secs(30));
        let mut some_unknown = members(n, &hash);
        for m in some_unknown.iter_mut().step_by(100) {
            m.health = Health::Unknown;
        }
        group.bench_with_input(BenchmarkId::new("healing_unknown", n), &n, |b, _| {
            b.iter(|| {
                plan(PlanInput {
                    spec: &healing,
                    config_hash: &hash,
                    members: &some_unknown,
                    in_flight: &in_flight,
                    update: UpdateClock::Idle,
                    destroying: false,
                    logical_ids: None,
                })
            })
        });
        // A quorum group of n logical IDs with healing on, one member of unknown health.
        let ids: Vec<String> = (0..n).map(|i| format!("node-{i:08}")).collect();
        let mut q = GroupSpec::new(
            "quorum",
            PluginSpec::new("simulator", json!({"image": "v2"})),
            PluginSpec::new("vanilla", json!({})),
            Allocation::logical_ids(ids.iter().map(String::as_str)),
        );
        let q_hash = q.config_hash();
        // Kept with the spec, as the controller keeps it.
        let q_index = LogicalIdIndex::new(&q.allocation);
        let q_plain = q.clone();
        q.healing.replace_unknown_after = Some(Duration::from_secs(30));
        let mut q_members = members(n, &q_hash);
        for (m, id) in q_members.iter_mut().zip(&ids) {
            m.description.logical_id = Some(id.as_str().into());
        }
        group.bench_with_input(BenchmarkId::new("quorum_converged", n), &n, |b, _| {
            b.iter(|| {
                plan(PlanInput {
                    spec: &q_plain,
                    config_hash: &q_hash,
                    members: &q_members,
                    in_flight: &in_flight,
                    update: UpdateClock::Idle,
                    destroying: false,
                    logical_ids: Some(&q_index),
                })
            })
        });
        // The same members listed in no particular order (a provider that does not list by
        // logical ID): every member is a lookup in the index.
        let mut shuffled = q_members.clone();
        let len = shuffled.len();
        for i in 0..len {
            shuffled.swap(i, (i * 7_919 + 13) % len);
        }
        group.bench_with_input(
            BenchmarkId::new("quorum_converged_shuffled", n),
            &n,
            |b, _| {
                b.iter(|| {
                    plan(PlanInput {
                        spec: &q_plain,
                        config_hash: &q_hash,
                        members: &shuffled,
                        in_flight: &in_flight,
                        update: UpdateClock::Idle,
                        destroying: false,
                        logical_ids: Some(&q_index),
                    })
                })
            },
        );
        // The same with no index: the planner builds one per call (what a pass cost before).
        group.bench_with_input(
            BenchmarkId::new("quorum_converged_unindexed", n),
            &n,
            |b, _| {
                b.iter(|| {
                    plan(PlanInput {
                        spec: &q_plain,
                        config_hash: &q_hash,
                        members: &q_members,
                        in_flight: &in_flight,
                        update: UpdateClock::Idle,
                        destroying: false,
                        logical_ids: None,
                    })
                })
            },
        );
        q_members[n / 2].health = Health::Unknown;
        group.bench_with_input(BenchmarkId::new("quorum_healing_unknown", n), &n, |b, _| {
            b.iter(|| {
                plan(PlanInput {
                    spec: &q,
                    config_hash: &q_hash,
                    members: &q_members,
                    in_flight: &in_flight,
                    update: UpdateClock::Idle,
                    destroying: false,
                    logical_ids: Some(&q_index),
                })
            })
        });
    }
    group.finish();
}

/// The simulator without its event stream: the engine must poll.
struct PollOnly(Simulator);

#[async_trait]
impl Instance for PollOnly {
    async fn validate(&self, p: &Value) -> Result<(), InstanceError> {
        self.0.validate(p).await
    }
    async fn provision(&self, s: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.0.provision(s).await
    }
    async fn label(&self, id: &InstanceId, t: &Tags) -> Result<(), InstanceError> {
        self.0.label(id, t).await
    }
    async fn destroy(&self, id: &InstanceId, c: DestroyContext) -> Result<(), InstanceError> {
        self.0.destroy(id, c).await
    }
    async fn describe(&self, t: &Tags, p: bool) -> Result<Vec<Description>, InstanceError> {
        self.0.describe(t, p).await
    }
}

fn heal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("heal_latency");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for (name, events, resync) in [
        ("events", true, Duration::from_secs(10)),
        ("polling_100ms", false, Duration::from_millis(100)),
    ] {
        let cloud = Simulator::builder().log_calls(false).build();
        let plugins = if events {
            Plugins::new().instance("simulator", cloud.clone())
        } else {
            Plugins::new().instance("simulator", PollOnly(cloud.clone()))
        }
        .flavor("vanilla", flavor::Vanilla);
        let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
            .plugins(plugins)
            .options(
                EngineOptions::default()
                    .resync(resync)
                    .settle(Duration::from_millis(1)),
            )
            .build();
        let mut events_rx = rt.block_on(async {
            manager.start();
            manager
                .wait_leading(std::time::Duration::from_secs(30))
                .await
                .expect("this replica leads");
            manager.commit(spec(3), false).await.expect("commit");
            manager
                .wait_converged(&"workers".into(), Duration::from_secs(10))
                .await
                .expect("converge");
            manager.events()
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        manager
                            .wait_converged(&"workers".into(), Duration::from_secs(10))
                            .await
                            .expect("converge");
                        while events_rx.try_recv().is_ok() {}
                        let victim = cloud.instances()[0].id.clone();
                        let start = Instant::now();
                        cloud.kill(&victim);
                        // Until the replacement's provision is issued.
                        loop {
                            if let Ok(EngineEvent::Provisioning { .. }) = events_rx.recv().await {
                                break;
                            }
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        rt.block_on(manager.shutdown());
    }
    group.finish();
}

/// A scaled group converging from nothing on the simulator with the default options, and
/// its floor in the same run: the same number of provisions made straight to the simulator,
/// one after another.
fn converge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("converge_from_zero");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for n in [1_000u32, 10_000] {
        group.bench_with_input(BenchmarkId::new("manager", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let cloud = Simulator::builder().log_calls(false).build();
                        let manager =
                            Manager::builder(StaticLeadership::leader(), MemoryStore::new())
                                .plugins(
                                    Plugins::new()
                                        .instance("simulator", cloud.clone())
                                        .flavor("vanilla", flavor::Vanilla),
                                )
                                .build();
                        manager.start();
                        manager
                            .wait_leading(Duration::from_secs(30))
                            .await
                            .expect("this replica leads");
                        let start = Instant::now();
                        manager.commit(spec(n), false).await.expect("commit");
                        manager
                            .wait_converged(&"workers".into(), Duration::from_secs(600))
                            .await
                            .expect("converge");
                        total += start.elapsed();
                        assert_eq!(cloud.len(), n as usize);
                        manager.shutdown().await;
                    }
                    total
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("floor_provisions", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let cloud = Simulator::builder().log_calls(false).build();
                        let start = Instant::now();
                        for _ in 0..n {
                            cloud
                                .provision(InstanceSpec::default().with_tag(GROUP_TAG, "workers"))
                                .await
                                .expect("provision");
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, planning, heal, converge);
criterion_main!(benches);
