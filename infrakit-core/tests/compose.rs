//! Composing a controller: deadlines on plugin calls and passes, plan hooks, per-group
//! options, external triggers and the causes of destroys, end to end on the simulator.
//!
//! Paused time throughout: a deadline of minutes costs nothing and cannot flake.

use async_trait::async_trait;
use infrakit_core::reconcile::{Action, Cause, GroupOptions, Hold, PlanHook, Review};
use infrakit_core::simulator::Op;
use infrakit_core::timeouts::{CallTimeouts, PluginCall};
use infrakit_core::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(600);

fn options() -> EngineOptions {
    EngineOptions::default()
        .resync(Duration::from_secs(10))
        .backoff_base(Duration::from_millis(500))
        .backoff_max(Duration::from_secs(2))
        .settle(Duration::from_millis(5))
        .fence_ttl(Duration::from_millis(50))
}

/// The simulator, with calls that can be made to hang, or to answer late.
#[derive(Clone)]
struct Stuck {
    cloud: Simulator,
    /// The next N provisions create their instance, then never return (a lost answer).
    provisions_lost: Arc<AtomicUsize>,
    /// Every describe hangs.
    describe_hangs: Arc<AtomicBool>,
    /// Provisions in flight now, and the most at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    /// Each provision takes this long.
    provision_time: Arc<Mutex<Duration>>,
}

impl Stuck {
    fn new(cloud: &Simulator) -> Self {
        Self {
            cloud: cloud.clone(),
            provisions_lost: Arc::default(),
            describe_hangs: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
            provision_time: Arc::default(),
        }
    }
}

#[async_trait]
impl Instance for Stuck {
    async fn validate(&self, p: &Value) -> Result<(), InstanceError> {
        self.cloud.validate(p).await
    }
    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let wait = *self.provision_time.lock().unwrap();
        tokio::time::sleep(wait).await;
        let r = self.cloud.provision(spec).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let lost = self
            .provisions_lost
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            std::future::pending::<()>().await;
        }
        r
    }
    async fn label(&self, id: &InstanceId, t: &Tags) -> Result<(), InstanceError> {
        self.cloud.label(id, t).await
    }
    async fn destroy(&self, id: &InstanceId, c: DestroyContext) -> Result<(), InstanceError> {
        self.cloud.destroy(id, c).await
    }
    async fn describe(&self, t: &Tags, p: bool) -> Result<Vec<Description>, InstanceError> {
        if self.describe_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.cloud.describe(t, p).await
    }
}

/// A flavor whose health checks can hang.
#[derive(Clone, Default)]
struct Blocking {
    health_hangs: Arc<AtomicBool>,
}

#[async_trait]
impl Flavor for Blocking {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        spec: InstanceSpec,
        _: &Allocation,
        _: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
        if self.health_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
}

struct Setup {
    manager: Manager,
    leadership: ManualLeadership,
    cloud: Simulator,
    stuck: Stuck,
    flavor: Blocking,
}

async fn setup(configure: impl FnOnce(ManagerBuilder) -> ManagerBuilder) -> Setup {
    let cloud = Simulator::new();
    let stuck = Stuck::new(&cloud);
    let flavor = Blocking::default();
    let leadership = ManualLeadership::new();
    let builder = Manager::builder(leadership.clone(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("sim", stuck.clone())
                .flavor("blocking", flavor.clone())
                .timeouts(
                    "blocking",
                    CallTimeouts::new().set(PluginCall::Healthy, Duration::from_secs(3)),
                ),
        )
        .options(options());
    let manager = configure(builder).build();
    manager.start();
    leadership.gain();
    manager.wait_leading(WAIT).await.unwrap();
    Setup {
        manager,
        leadership,
        cloud,
        stuck,
        flavor,
    }
}

fn spec(id: &str, size: u32) -> GroupSpec {
    GroupSpec::new(
        id,
        PluginSpec::new("sim", json!({})),
        PluginSpec::new("blocking", json!({})),
        Allocation::size(size),
    )
}

fn with_options(mut s: GroupSpec, options: GroupOptions) -> GroupSpec {
    s.options = options;
    s
}

async fn until<F: FnMut(&EngineEvent) -> bool>(
    events: &mut broadcast::Receiver<EngineEvent>,
    mut f: F,
) -> EngineEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) if f(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("expected event did not come")
}

async fn describe(s: &Setup, id: &str) -> GroupDescription {
    s.manager.describe(&id.into()).await.unwrap()
}

fn provisions(cloud: &Simulator) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|c| c.op == Op::Provision)
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_never_returns_is_a_failed_check_at_its_deadline() {
    let s = setup(|b| b).await;
    s.manager.commit(spec("web", 2), false).await.unwrap();
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    s.flavor.health_hangs.store(true, Ordering::SeqCst);
    let before = describe(&s, "web").await.passes_started;
    let asked = Instant::now();
    s.manager.trigger(&"web".into()).await.unwrap();
    let d = loop {
        let d = describe(&s, "web").await;
        if d.pass > before {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The plugin's deadline (3 s, from `Plugins::timeouts`), not the 10 s default.
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let error = d
        .last_error
        .clone()
        .expect("describe shows the failed checks");
    assert!(
        error.contains("2 of 2 health checks failed")
            && error.contains("healthy timed out after 3s"),
        "{error}"
    );
    // Unknown, never unhealthy: nobody is replaced, and the next pass runs.
    assert!(
        d.members.iter().all(|m| m.health == Health::Unknown),
        "{d:?}"
    );
    let seen = d.pass;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(describe(&s, "web").await.pass > seen + 1);
    assert_eq!(s.cloud.len(), 2);
    assert_eq!(provisions(&s.cloud), 2);
}

#[tokio::test(start_paused = true)]
async fn a_provision_that_never_returns_fails_at_its_deadline_and_is_not_repeated() {
    let s = setup(|b| b).await;
    let mut events = s.manager.events();
    s.stuck.provisions_lost.store(1, Ordering::SeqCst);
    let spec = with_options(
        spec("web", 1),
        GroupOptions::new()
            .timeouts(CallTimeouts::new().set(PluginCall::Provision, Duration::from_secs(20))),
    );
    let start = Instant::now();
    s.manager.commit(spec, false).await.unwrap();
    let failed = until(&mut events, |e| {
        matches!(e, EngineEvent::ProvisionFailed { .. })
    })
    .await;
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert!(
        failed.to_string().contains("provision timed out after 20s"),
        "{failed}"
    );
    let d = describe(&s, "web").await;
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("instance plugin: provision timed out after 20s")),
        "{d:?}"
    );
    // The instance was created before the answer was lost: the next pass sees it by its
    // tags and provisions nothing more.
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.cloud.len(), 1);
    assert_eq!(provisions(&s.cloud), 1);
    assert!(describe(&s, "web").await.last_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stuck_pass_fails_at_the_pass_deadline_and_the_next_one_runs() {
    let s = setup(|b| b).await;
    // A describe that outlives its own generous deadline is cut by the pass's.
    let slow = with_options(
        spec("web", 1),
        GroupOptions::new()
            .pass_timeout(Duration::from_secs(5))
            .timeouts(CallTimeouts::new().set(PluginCall::Describe, Duration::from_secs(3600))),
    );
    s.manager.commit(slow, false).await.unwrap();
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    let mut events = s.manager.events();
    s.stuck.describe_hangs.store(true, Ordering::SeqCst);
    s.cloud.kill(&s.cloud.instances()[0].id);
    s.manager.trigger(&"web".into()).await.unwrap();
    let failed = until(&mut events, |e| matches!(e, EngineEvent::PassFailed { .. })).await;
    assert!(
        failed
            .to_string()
            .contains("reconcile pass timed out after 5s"),
        "{failed}"
    );
    let d = describe(&s, "web").await;
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("reconcile pass timed out after 5s")),
        "{d:?}"
    );
    s.stuck.describe_hangs.store(false, Ordering::SeqCst);
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    assert_eq!(s.cloud.len(), 1);
    assert_eq!(provisions(&s.cloud), 2);
}

/// Vetoes scale-in while frozen; defers provisions while a budget is spent.
#[derive(Default)]
struct Rules {
    freeze: AtomicBool,
    budget_spent: AtomicBool,
    reviews: AtomicUsize,
}

#[async_trait]
impl PlanHook for Rules {
    async fn review(&self, review: &mut Review<'_>) {
        if !review.pretend() {
            self.reviews.fetch_add(1, Ordering::SeqCst);
        }
        for i in 0..review.actions().len() {
            match &review.actions()[i] {
                Action::Destroy {
                    cause: Cause::ScaleDown,
                    ..
                } if self.freeze.load(Ordering::SeqCst) => {
                    review.veto(i, "change freeze");
                }
                Action::Provision { .. } if self.budget_spent.load(Ordering::SeqCst) => {
                    review.defer(i, "budget spent", Some(Duration::from_secs(60)));
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_vetoed_scale_in_keeps_its_members_and_says_so() {
    let rules = Arc::new(Rules::default());
    let hook = Arc::clone(&rules);
    let s = setup(move |b| b.plan_hook(hook)).await;
    s.manager.commit(spec("web", 3), false).await.unwrap();
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    rules.freeze.store(true, Ordering::SeqCst);
    let mut events = s.manager.events();

    let explained = s.manager.commit(spec("web", 1), true).await.unwrap();
    assert!(
        explained.starts_with("remove 2 to reach 1; held: destroy ")
            && explained.contains("(scale down) vetoed: change freeze"),
        "{explained}"
    );
    s.manager.set_size(&"web".into(), 1).await.unwrap();
    let vetoed = until(&mut events, |e| {
        matches!(e, EngineEvent::ActionVetoed { .. })
    })
    .await;
    assert!(
        vetoed.to_string().ends_with("vetoed: change freeze"),
        "{vetoed}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = describe(&s, "web").await;
    assert_eq!(s.cloud.len(), 3, "a vetoed destroy ran");
    assert!(!d.converged);
    assert_eq!(d.held.len(), 2, "{d:?}");
    assert!(
        d.held
            .iter()
            .all(|h| h.hold == Hold::Vetoed && h.reason == "change freeze")
    );
    assert!(
        d.plan.as_deref().is_some_and(|p| p.contains("held:")),
        "{d:?}"
    );
    // The veto was reported once, not at every pass.
    let mut more = 0;
    while let Ok(e) = events.try_recv() {
        more += usize::from(matches!(e, EngineEvent::ActionVetoed { .. }));
    }
    assert_eq!(more, 1, "the second member's veto, and no repeats");

    rules.freeze.store(false, Ordering::SeqCst);
    s.manager.trigger(&"web".into()).await.unwrap();
    let d = s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    assert!(d.held.is_empty());
    assert_eq!(s.cloud.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deferred_provision_runs_when_the_hook_approves() {
    let rules = Arc::new(Rules::default());
    rules.budget_spent.store(true, Ordering::SeqCst);
    let hook = Arc::clone(&rules);
    // A resync longer than the deferral, so the deferral's end is what wakes the group.
    let s = setup(move |b| {
        b.plan_hook(hook)
            .options(options().resync(Duration::from_secs(3600)))
    })
    .await;
    let mut events = s.manager.events();
    let start = Instant::now();
    s.manager.commit(spec("web", 2), false).await.unwrap();
    let deferred = until(&mut events, |e| {
        matches!(e, EngineEvent::ActionDeferred { .. })
    })
    .await;
    assert!(
        deferred
            .to_string()
            .contains("provision (scale up) deferred for 1m: budget spent"),
        "{deferred}"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let d = describe(&s, "web").await;
    assert_eq!(s.cloud.len(), 0);
    assert_eq!(d.held.len(), 2);
    assert!(
        d.held
            .iter()
            .all(|h| h.hold == Hold::Deferred && h.retry_after == Some(Duration::from_secs(60)))
    );
    // Approved from now on: the group wakes at the deferral's end without being asked.
    rules.budget_spent.store(false, Ordering::SeqCst);
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(62),
        "{took:?}"
    );
    assert_eq!(s.cloud.len(), 2);
}

/// Holds every review until released.
struct Slow {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

#[async_trait]
impl PlanHook for Slow {
    async fn review(&self, review: &mut Review<'_>) {
        if review.pretend() {
            return;
        }
        self.entered.notify_one();
        self.release.notified().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_deposed_leaders_hook_approves_nothing() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let hook = Slow {
        entered: Arc::clone(&entered),
        release: Arc::clone(&release),
    };
    let s = setup(move |b| b.plan_hook(hook)).await;
    s.manager.commit(spec("web", 2), false).await.unwrap();
    entered.notified().await;
    // Deposed while its hook deliberates; the hook then approves everything.
    s.leadership.lose(Some("elsewhere".into()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    release.notify_waiters();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(provisions(&s.cloud), 0, "{:?}", s.cloud.calls());
    assert!(!s.manager.leadership().is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_groups_own_resync_is_honoured() {
    let s = setup(|b| b.options(options().wake_on_events(false))).await;
    let fast = with_options(
        spec("fast", 1),
        GroupOptions::new().resync(Duration::from_secs(1)),
    );
    s.manager.commit(fast, false).await.unwrap();
    s.manager.commit(spec("slow", 1), false).await.unwrap();
    for g in ["fast", "slow"] {
        s.manager.wait_converged(&g.into(), WAIT).await.unwrap();
    }
    let (f0, s0) = (
        describe(&s, "fast").await.passes_started,
        describe(&s, "slow").await.passes_started,
    );
    tokio::time::sleep(Duration::from_millis(30_500)).await;
    let (f1, s1) = (
        describe(&s, "fast").await.passes_started,
        describe(&s, "slow").await.passes_started,
    );
    assert_eq!(f1 - f0, 30, "one pass a second");
    assert_eq!(s1 - s0, 3, "one pass every 10 s, the engine's resync");
}

#[tokio::test(start_paused = true)]
async fn a_groups_own_parallelism_is_honoured() {
    // The builder's per-group options, under the spec's.
    let s = setup(|b| b.group_options("careful", GroupOptions::new().parallelism(2))).await;
    *s.stuck.provision_time.lock().unwrap() = Duration::from_millis(100);
    s.manager.commit(spec("careful", 6), false).await.unwrap();
    s.manager
        .wait_converged(&"careful".into(), WAIT)
        .await
        .unwrap();
    assert_eq!(s.stuck.most_in_flight.load(Ordering::SeqCst), 2);
    s.stuck.most_in_flight.store(0, Ordering::SeqCst);
    s.manager.commit(spec("eager", 6), false).await.unwrap();
    s.manager
        .wait_converged(&"eager".into(), WAIT)
        .await
        .unwrap();
    assert_eq!(s.stuck.most_in_flight.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn an_external_stream_triggers_a_pass_at_once() {
    let s = setup(|b| b.options(options().resync(Duration::from_secs(3600)))).await;
    s.manager.commit(spec("web", 1), false).await.unwrap();
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<GroupId>();
    s.manager
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    let (all_tx, all_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    s.manager
        .reconcile_all_on(tokio_stream::wrappers::UnboundedReceiverStream::new(all_rx));
    for send in [
        Box::new(|| tx.send("web".into()).unwrap()) as Box<dyn Fn()>,
        Box::new(|| all_tx.send(()).unwrap()),
    ] {
        let before = describe(&s, "web").await.pass;
        let asked = Instant::now();
        send();
        while describe(&s, "web").await.pass <= before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            asked.elapsed() < Duration::from_millis(50),
            "{:?}",
            asked.elapsed()
        );
    }
    // Unknown groups are dropped, and the feed goes on.
    tx.send("nope".into()).unwrap();
    let before = describe(&s, "web").await.pass;
    tx.send("web".into()).unwrap();
    while describe(&s, "web").await.pass <= before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn destroys_carry_their_cause() {
    let s = setup(|b| b).await;
    s.manager.commit(spec("web", 3), false).await.unwrap();
    s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    let mut events = s.manager.events();
    let victim = s.cloud.instances()[0].id.clone();
    s.manager
        .destroy_instances(&"web".into(), std::slice::from_ref(&victim))
        .await
        .unwrap();
    let e = until(&mut events, |e| matches!(e, EngineEvent::Destroyed { .. })).await;
    assert_eq!(
        e,
        EngineEvent::Destroyed {
            group: "web".into(),
            id: victim,
            cause: Cause::Requested
        }
    );
    s.manager.destroy(&"web".into()).await.unwrap();
    let mut causes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EngineEvent::Destroyed { cause, .. } = e {
            causes.push(cause);
        }
    }
    assert_eq!(causes, vec![Cause::GroupDestroyed; 2]);
    assert!(s.cloud.is_empty());
}

#[tokio::test(start_paused = true)]
async fn invalid_group_options_are_refused_by_field() {
    let s = setup(|b| b).await;
    let bad = with_options(
        spec("web", 1),
        GroupOptions::new().timeouts(CallTimeouts::new().set(PluginCall::Healthy, Duration::ZERO)),
    );
    let err = s.manager.commit(bad, false).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::InvalidSpec(e) if e.field == "Properties.Options.Timeouts.Healthy"),
        "{err}"
    );
    assert!(s.manager.inspect().await.unwrap().is_empty());
}

/// A flavor that judges a whole group at once, counting how it is asked.
#[derive(Clone, Default)]
struct Batching {
    batches: Arc<AtomicUsize>,
    largest: Arc<AtomicUsize>,
    singles: Arc<AtomicUsize>,
    batch_hangs: Arc<AtomicBool>,
}

#[async_trait]
impl Flavor for Batching {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        spec: InstanceSpec,
        _: &Allocation,
        _: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn healthy_batch(
        &self,
        _: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(descriptions.len(), Ordering::SeqCst);
        if self.batch_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Some(Ok(vec![Health::Healthy; descriptions.len()]))
    }
}

#[tokio::test(start_paused = true)]
async fn a_batching_flavor_is_asked_once_per_pass_and_a_hung_batch_fails_every_check() {
    let flavor = Batching::default();
    let s = setup(|b| {
        b.plugins(
            Plugins::new()
                .instance("sim", Simulator::new())
                .flavor("batching", flavor.clone())
                .timeouts(
                    "batching",
                    CallTimeouts::new().set(PluginCall::Healthy, Duration::from_secs(3)),
                ),
        )
    })
    .await;
    let mut g = spec("web", 50);
    g.flavor = PluginSpec::new("batching", json!({}));
    s.manager.commit(g, false).await.unwrap();
    let d = s.manager.wait_converged(&"web".into(), WAIT).await.unwrap();
    assert_eq!(d.instances.len(), 50);
    assert_eq!(flavor.largest.load(Ordering::SeqCst), 50);
    // One pass more: one batch more, and never a check per member.
    let batches = flavor.batches.load(Ordering::SeqCst);
    let before = d.passes_started;
    s.manager.trigger(&"web".into()).await.unwrap();
    while describe(&s, "web").await.pass <= before {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flavor.batches.load(Ordering::SeqCst), batches + 1);
    assert_eq!(
        flavor.singles.load(Ordering::SeqCst),
        0,
        "never asked per member"
    );

    flavor.batch_hangs.store(true, Ordering::SeqCst);
    let before = describe(&s, "web").await.passes_started;
    let asked = Instant::now();
    s.manager.trigger(&"web".into()).await.unwrap();
    let d = loop {
        let d = describe(&s, "web").await;
        if d.pass > before {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let e = d.last_error.expect("the failed checks are reported");
    assert!(e.contains("50 of 50 health checks failed"), "{e}");
    assert!(e.contains("healthy timed out after 3s"), "{e}");
    // Failed checks are unknown, never unhealthy: nobody is replaced.
    assert_eq!(d.instances.len(), 50);
    assert!(d.members.iter().all(|m| m.health == Health::Unknown));
}
