//! The plugin layers end to end: stacked on the simulator, they keep the plugin contract
//! (the conformance kit says so rule by rule), and a manager driving a layered plugin
//! converges through faults the layers absorb.

use infrakit_core::layer::{
    Layer as _, LogLayer, MetricsLayer, PluginExt, RateLimitLayer, RetryLayer, RetryPolicy, Stack,
    TimeoutLayer,
};
use infrakit_core::simulator::{Fault, Op};
use infrakit_core::testkit::{FlavorFixture, InstanceFixture, check_flavor, check_instance};
use infrakit_core::timeouts::{CallTimeouts, PluginCall};
use infrakit_core::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .attempts(5)
        .base(Duration::from_millis(10))
        .max(Duration::from_millis(100))
}

/// The recommended stack, from the inside out, on any instance plugin.
fn stacked<P: Instance + 'static>(plugin: P) -> impl Instance + 'static {
    plugin
        .with_rate_limit(CallLimit::per_second(1000).burst(100))
        .with_timeouts(CallTimeouts::all(Duration::from_secs(5)))
        .with_retry(retry())
        .with_metrics("sim")
        .logged("sim")
}

fn group(id: &str, size: u32) -> GroupSpec {
    GroupSpec::new(
        id,
        PluginSpec::new("sim", json!({})),
        PluginSpec::new("vanilla", json!({})),
        Allocation::size(size),
    )
}

fn provisions(cloud: &Simulator) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|c| c.op == Op::Provision)
        .count()
}

#[tokio::test]
async fn a_full_stack_on_the_simulator_keeps_every_instance_rule() {
    let cloud = Arc::new(Simulator::builder().exclusive(true).build());
    let plugin = stacked(Arc::clone(&cloud));
    let fixture = InstanceFixture::new(json!({"Image": "busybox"}))
        .logical_ids("10.0.0.250", "10.0.0.251")
        .settle(Duration::from_secs(1));
    let report = check_instance(&plugin, &fixture).await;
    assert!(report.passed(), "{report}");
}

#[tokio::test]
async fn a_full_stack_on_vanilla_keeps_every_flavor_rule() {
    let flavor = flavor::Vanilla
        .with_timeouts(CallTimeouts::all(Duration::from_secs(5)))
        .with_retry(retry())
        .with_metrics("vanilla")
        .logged("vanilla");
    let fixture = FlavorFixture::new(json!({"Init": ["echo hello"], "Tags": {"role": "worker"}}));
    let report = check_flavor(&flavor, &fixture).await;
    assert!(report.passed(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_layered_simulator_converges_a_group_through_throttling_without_a_failed_pass() {
    let cloud = Simulator::new();
    // The first three calls are throttled: the retry layer absorbs them inside the pass.
    cloud.fail_next(3, Fault::Throttled);
    let leadership = ManualLeadership::new();
    let manager = Manager::builder(leadership.clone(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("sim", stacked(cloud.clone()))
                .flavor("vanilla", flavor::Vanilla),
        )
        .build();
    let mut events = manager.events();
    manager.start();
    leadership.gain();
    manager
        .wait_leading(WAIT)
        .await
        .expect("this replica leads");
    manager.commit(group("web", 5), false).await.unwrap();
    let converged = manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    assert_eq!(converged.instances.len(), 5);
    assert_eq!(converged.last_error, None);
    assert_eq!(cloud.len(), 5);
    assert_eq!(provisions(&cloud) - failed(&cloud, Op::Provision), 5);
    let refused: usize = cloud.calls().iter().filter(|c| c.outcome.is_err()).count();
    assert_eq!(
        refused, 3,
        "the three throttled calls were made and retried"
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, EngineEvent::PassFailed { .. }),
            "a pass failed: {event}"
        );
    }
    manager.shutdown().await;
}

/// How many of the simulator's calls of one kind failed.
fn failed(cloud: &Simulator, op: Op) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|c| c.op == op && c.outcome.is_err())
        .count()
}

#[tokio::test(start_paused = true)]
async fn one_stack_of_layers_applies_to_many_plugins_and_shares_one_budget() {
    let layers = Stack::new(
        Stack::new(
            Stack::new(
                RateLimitLayer::new(CallLimit::per_second(10).burst(1)),
                TimeoutLayer::new(CallTimeouts::all(Duration::from_secs(5))),
            ),
            RetryLayer::new(retry()),
        ),
        Stack::new(MetricsLayer::new("shared"), LogLayer::new("shared")),
    );
    let east = Simulator::new();
    let west = Simulator::new();
    let a = layers.layer(east.clone());
    let b = layers.layer(west.clone());
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        a.describe(&Tags::new(), false).await.unwrap();
        b.describe(&Tags::new(), false).await.unwrap();
    }
    // Ten calls on one budget of 10/s, burst 1: nine waits of 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(east.calls().len(), 5);
    assert_eq!(west.calls().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn an_arc_and_a_box_of_a_plugin_are_plugins_the_engine_drives() {
    let cloud = Arc::new(Simulator::new());
    let boxed: Box<dyn Instance> = Box::new(cloud.with_caller("boxed"));
    let leadership = ManualLeadership::new();
    let manager = Manager::builder(leadership.clone(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("sim", Arc::clone(&cloud))
                .instance("boxed", boxed)
                .flavor("vanilla", Box::new(flavor::Vanilla) as Box<dyn Flavor>),
        )
        .build();
    manager.start();
    leadership.gain();
    manager
        .wait_leading(WAIT)
        .await
        .expect("this replica leads");
    manager.commit(group("a", 2), false).await.unwrap();
    let mut b = group("b", 1);
    b.instance = PluginSpec::new("boxed", json!({}));
    manager.commit(b, false).await.unwrap();
    manager.wait_converged(&"a".into(), WAIT).await.unwrap();
    manager.wait_converged(&"b".into(), WAIT).await.unwrap();
    // Both plugins act on the one simulator the test still holds.
    assert_eq!(cloud.len(), 3);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_layer_inside_a_retry_turns_a_slow_read_into_a_second_attempt() {
    let cloud = Simulator::new();
    cloud.set_latency(Duration::from_secs(3));
    let plugin = cloud
        .clone()
        .with_timeouts(CallTimeouts::new().set(PluginCall::Describe, Duration::from_secs(2)))
        .with_retry(retry().attempts(2));
    let start = tokio::time::Instant::now();
    let slow = plugin.describe(&Tags::new(), false).await;
    assert_eq!(
        slow,
        Err(InstanceError::TimedOut {
            operation: PluginCall::Describe,
            after: Duration::from_secs(2)
        })
    );
    // Two attempts, each cut at its deadline, 10 ms of backoff between them.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_millis(4100),
        "{elapsed:?}"
    );
    cloud.set_latency(Duration::ZERO);
    assert_eq!(plugin.describe(&Tags::new(), false).await, Ok(vec![]));
}
