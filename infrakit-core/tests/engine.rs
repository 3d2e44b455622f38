//! The reconcile engine end to end on the simulator: healing, scaling, quorum groups, rolling
//! updates, fencing across leadership changes, durable destroys, and the Group API's promises.
//!
//! Tests run on paused time (`start_paused`): timers fire as soon as every task waits, so the
//! waits on grace periods, deadlines and backoffs cost nothing and do not depend on the
//! machine's load. Two tests keep real time on purpose and say why.

use async_trait::async_trait;
use infrakit_core::reconcile::{Cause, UpdateProgress};
use infrakit_core::simulator::{Fault, Op};
use infrakit_core::*;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);

fn options() -> EngineOptions {
    EngineOptions::default()
        .resync(Duration::from_millis(300))
        .parallelism(8)
        .backoff_base(Duration::from_millis(5))
        .backoff_max(Duration::from_millis(100))
        .settle(Duration::from_millis(5))
        .describe_lag(Duration::from_secs(5))
        .fence_ttl(Duration::from_millis(50))
}

/// A flavor whose members' health and drain outcome the test controls.
#[derive(Clone, Default)]
struct TestFlavor {
    health: Arc<Mutex<HashMap<InstanceId, Health>>>,
    default_health: Arc<Mutex<Option<Health>>>,
    drain_fails: Arc<Mutex<HashSet<InstanceId>>>,
    drained: Arc<Mutex<Vec<InstanceId>>>,
    /// Health checks fail (the flavor cannot see its cluster).
    blind: Arc<Mutex<bool>>,
    /// How many members it prepared (each is followed by a provision, if allowed).
    prepared: Arc<Mutex<usize>>,
}

impl TestFlavor {
    fn set(&self, id: &InstanceId, h: Health) {
        self.health.lock().unwrap().insert(id.clone(), h);
    }
    fn set_default(&self, h: Health) {
        *self.default_health.lock().unwrap() = Some(h);
    }
}

#[async_trait]
impl Flavor for TestFlavor {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        spec: InstanceSpec,
        _: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        *self.prepared.lock().unwrap() += 1;
        Ok(spec.with_init(format!("boot {} #{}", index.group, index.sequence)))
    }
    async fn healthy(&self, _: &Value, d: &Description) -> Result<Health, FlavorError> {
        if *self.blind.lock().unwrap() {
            return Err(FlavorError::Unavailable {
                message: "the cluster does not answer".into(),
                retry_after: None,
            });
        }
        let default = self
            .default_health
            .lock()
            .unwrap()
            .unwrap_or(Health::Healthy);
        Ok(*self.health.lock().unwrap().get(&d.id).unwrap_or(&default))
    }
    async fn drain(&self, _: &Value, d: &Description) -> Result<(), FlavorError> {
        if self.drain_fails.lock().unwrap().contains(&d.id) {
            return Err(FlavorError::Refused {
                message: format!("{} refuses to drain", d.id),
            });
        }
        self.drained.lock().unwrap().push(d.id.clone());
        Ok(())
    }
}

struct Replica {
    manager: Manager,
    leadership: ManualLeadership,
}

fn replica(cloud: &Simulator, caller: &str, flavor: &TestFlavor, store: &MemoryStore) -> Replica {
    let leadership = ManualLeadership::new();
    let manager = Manager::builder(leadership.clone(), store.clone())
        .plugins(
            Plugins::new()
                .instance("simulator", cloud.with_caller(caller))
                .flavor("test", flavor.clone())
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(options())
        .build();
    manager.start();
    Replica {
        manager,
        leadership,
    }
}

/// Two replicas on one store: `a` leads, `b` follows and knows `a` leads.
async fn a_leads_b_follows(
    cloud: &Simulator,
    flavor: &TestFlavor,
    store: &MemoryStore,
) -> (Replica, Replica) {
    let a = replica(cloud, "a", flavor, store);
    let b = replica(cloud, "b", flavor, store);
    a.leadership.gain();
    b.leadership.lose(Some("a".into()));
    a.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    (a, b)
}

async fn leader(cloud: &Simulator, flavor: &TestFlavor) -> Replica {
    let r = replica(cloud, "a", flavor, &MemoryStore::new());
    r.leadership.gain();
    r.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    r
}

fn scaled(id: &str, n: u32) -> GroupSpec {
    GroupSpec::new(
        id,
        PluginSpec::new("simulator", json!({"image": "v1"})),
        PluginSpec::new("test", json!({})),
        Allocation::size(n),
    )
}

fn quorum(id: &str, ips: &[&str]) -> GroupSpec {
    let mut alloc = Allocation::logical_ids(ips.iter().copied());
    for ip in ips {
        alloc = alloc.with_attachment(*ip, Attachment::new(format!("vol-{ip}"), "volume"));
    }
    GroupSpec::new(
        id,
        PluginSpec::new("simulator", json!({"image": "v1"})),
        PluginSpec::new("test", json!({})),
        alloc,
    )
}

fn members(cloud: &Simulator, group: &str) -> Vec<simulator::SimInstance> {
    cloud
        .instances()
        .into_iter()
        .filter(|i| i.spec.tags.get(GROUP_TAG) == Some(group))
        .collect()
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

async fn converge(m: &Manager, id: &str) -> GroupDescription {
    m.wait_converged(&id.into(), WAIT).await.unwrap()
}

/// Converged as seen by a pass that started after this call.
async fn converged_after_now(m: &Manager, id: &str) -> GroupDescription {
    let before = m.trigger(&id.into()).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let d = m.describe(&id.into()).await.unwrap();
            if d.pass > before && d.converged {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("not converged")
}

#[tokio::test(start_paused = true)]
async fn a_scaled_group_converges_and_heals_a_killed_instance_from_events() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let plan = r.manager.commit(scaled("workers", 3), false).await.unwrap();
    assert_eq!(plan, "add 3 to reach 3");
    let d = converge(&r.manager, "workers").await;
    assert_eq!(d.instances.len(), 3);
    assert!(
        d.members
            .iter()
            .all(|m| m.up_to_date && m.health == Health::Healthy)
    );

    // Every member is tagged at creation with the group and config hash, and booted by the flavor.
    let hash = scaled("workers", 3).config_hash();
    for i in members(&cloud, "workers") {
        assert_eq!(i.spec.tags.get(CONFIG_HASH_TAG), Some(hash.as_str()));
        assert!(i.spec.init.starts_with("boot workers #"));
    }

    let mut events = r.manager.events();
    let victim = members(&cloud, "workers")[0].id.clone();
    cloud.kill(&victim);
    until(&mut events, |e| {
        matches!(
            e,
            EngineEvent::Provisioned {
                cause: Cause::ScaleUp,
                ..
            }
        )
    })
    .await;
    converge(&r.manager, "workers").await;
    assert_eq!(members(&cloud, "workers").len(), 3);
    assert!(cloud.get(&victim).is_none());
}

#[tokio::test(start_paused = true)]
async fn converges_through_failures_and_throttling_without_leaks_or_duplicates() {
    let cloud = Simulator::builder()
        .seed(11)
        .error_rate(0.2)
        .throttle_rate(0.1)
        .lost_response_rate(0.1)
        .latency(Duration::from_millis(1))
        .build();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    // Commit may itself meet a fault (validation calls the provider): retry like a client would.
    let mut committed = false;
    for _ in 0..20 {
        if r.manager.commit(scaled("workers", 12), false).await.is_ok() {
            committed = true;
            break;
        }
    }
    assert!(committed);
    r.manager
        .wait_converged(&"workers".into(), Duration::from_secs(30))
        .await
        .unwrap();
    // Let the cloud calm down and confirm the steady state: no duplicate survives, none leaked.
    cloud.set_error_rate(0.0);
    cloud.set_throttle_rate(0.0);
    cloud.set_lost_response_rate(0.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    converge(&r.manager, "workers").await;
    assert_eq!(
        members(&cloud, "workers").len(),
        12,
        "duplicates or missing members"
    );
    assert_eq!(cloud.len(), 12, "instances leaked outside the group");
    let failures = cloud.calls().iter().filter(|c| c.outcome.is_err()).count();
    assert!(failures > 5, "the faults did not happen ({failures})");
}

#[tokio::test(start_paused = true)]
async fn scaling_in_picks_unhealthy_then_newest_and_never_touches_strangers() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let stranger = cloud.insert(InstanceSpec::default().with_tag("owner", "someone-else"));
    let lookalike = cloud.insert(InstanceSpec::default().with_tag(GROUP_TAG, "other-group"));
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("workers", 4), false).await.unwrap();
    converge(&r.manager, "workers").await;
    let ids: Vec<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();
    flavor.set(&ids[1], Health::Unhealthy);
    tokio::time::sleep(Duration::from_millis(400)).await; // a resync observes the health

    r.manager.set_size(&"workers".into(), 2).await.unwrap();
    let d = converge(&r.manager, "workers").await;
    let left: HashSet<InstanceId> = d.instances.iter().map(|d| d.id.clone()).collect();
    // ids[1] (unhealthy) goes first, then the newest (ids[3]).
    assert_eq!(left, HashSet::from([ids[0].clone(), ids[2].clone()]));
    assert!(cloud.get(&stranger).is_some());
    assert!(cloud.get(&lookalike).is_some());
    assert_eq!(r.manager.size(&"workers".into()).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_members_are_replaced_after_the_grace_period_when_opted_in() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let mut spec = scaled("workers", 2);
    spec.healing.replace_unhealthy_after = Some(Duration::from_millis(300));
    r.manager.commit(spec, false).await.unwrap();
    converge(&r.manager, "workers").await;
    let sick = members(&cloud, "workers")[0].id.clone();
    let mut events = r.manager.events();
    flavor.set(&sick, Health::Unhealthy);
    let e = until(&mut events, |e| {
        matches!(
            e,
            EngineEvent::Destroyed {
                cause: Cause::Unhealthy,
                ..
            }
        )
    })
    .await;
    assert!(matches!(e, EngineEvent::Destroyed { id, .. } if id == sick));
    converge(&r.manager, "workers").await;
    assert_eq!(members(&cloud, "workers").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn members_of_unknown_health_are_replaced_after_the_deadline_but_not_for_a_blind_flavor() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let mut spec = scaled("workers", 2);
    spec.healing.replace_unknown_after = Some(Duration::from_millis(600));
    r.manager.commit(spec, false).await.unwrap();
    converge(&r.manager, "workers").await;
    let before: HashSet<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();

    // Checks that fail are not answers: no clock runs, nothing is replaced.
    let mut events = r.manager.events();
    *flavor.blind.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let now: HashSet<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(now, before, "a blind flavor caused a replacement");
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, EngineEvent::Destroyed { .. }),
            "destroyed while blind: {e:?}"
        );
    }

    // The flavor answers again, and says it does not know one member: replaced after 600 ms.
    let lost = before.iter().next().unwrap().clone();
    flavor.set(&lost, Health::Unknown);
    let started = tokio::time::Instant::now();
    *flavor.blind.lock().unwrap() = false;
    let e = until(&mut events, |e| matches!(e, EngineEvent::Destroyed { .. })).await;
    assert!(
        matches!(&e, EngineEvent::Destroyed { id, cause: Cause::HealthUnknown, .. } if *id == lost),
        "{e:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "replaced {:?} after the first answer",
        started.elapsed()
    );
    converge(&r.manager, "workers").await;
    let after: HashSet<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&lost));
}

#[tokio::test(start_paused = true)]
async fn a_quorum_member_comes_back_with_its_logical_id_and_attachments() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    r.manager
        .commit(quorum("managers", &ips), false)
        .await
        .unwrap();
    converge(&r.manager, "managers").await;

    let victim = members(&cloud, "managers")
        .into_iter()
        .find(|i| i.spec.logical_id == Some("10.0.0.2".into()))
        .unwrap();
    let mut events = r.manager.events();
    cloud.kill(&victim.id);
    let e = until(&mut events, |e| {
        matches!(e, EngineEvent::Provisioned { .. })
    })
    .await;
    assert!(
        matches!(e, EngineEvent::Provisioned { logical_id: Some(ref l), cause: Cause::Missing, .. } if l == "10.0.0.2")
    );
    converge(&r.manager, "managers").await;
    let back = members(&cloud, "managers")
        .into_iter()
        .find(|i| i.spec.logical_id == Some("10.0.0.2".into()))
        .unwrap();
    assert_ne!(back.id, victim.id);
    assert_eq!(
        back.spec.attachments,
        vec![Attachment::new("vol-10.0.0.2", "volume")]
    );
    assert_eq!(back.spec.tags.get(LOGICAL_ID_TAG), Some("10.0.0.2"));
}

#[tokio::test(start_paused = true)]
async fn quorum_groups_remove_unknown_logical_ids_and_duplicates() {
    // Logical IDs need not be exclusive here, to create a duplicate by hand.
    let cloud = Simulator::builder().exclusive(false).build();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let spec = quorum("managers", &["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    r.manager.commit(spec.clone(), false).await.unwrap();
    converge(&r.manager, "managers").await;
    let hash = spec.config_hash();
    let tagged = |lid: &str| {
        InstanceSpec::default()
            .with_tag(GROUP_TAG, "managers")
            .with_tag(CONFIG_HASH_TAG, hash.as_str())
            .with_logical_id(lid)
    };
    let unknown = cloud.insert(tagged("10.0.0.9"));
    let dup = cloud.insert(tagged("10.0.0.1"));
    let d = tokio::time::timeout(WAIT, async {
        loop {
            let d = converge(&r.manager, "managers").await;
            if d.instances.len() == 3 && cloud.get(&unknown).is_none() && cloud.get(&dup).is_none()
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let lids: HashSet<String> = d
        .instances
        .iter()
        .map(|i| i.logical_id.clone().unwrap().into_inner())
        .collect();
    assert_eq!(lids.len(), 3);
    // Drained before destroyed.
    assert!(flavor.drained.lock().unwrap().contains(&unknown));
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_with_surge_completes_and_gates_on_health() {
    let cloud = Simulator::builder()
        .latency(Duration::from_millis(2))
        .build();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("workers", 3), false).await.unwrap();
    converge(&r.manager, "workers").await;
    let old: HashSet<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();

    let mut v2 = scaled("workers", 3);
    v2.instance.properties = json!({"image": "v2"});
    v2.update.min_healthy = Duration::from_millis(50);
    let mut events = r.manager.events();
    let plan = r.manager.commit(v2.clone(), true).await.unwrap();
    assert_eq!(plan, "rolling update of 3 instances (surge 1)");
    assert_eq!(
        members(&cloud, "workers").len(),
        3,
        "pretend changed nothing"
    );
    r.manager.commit(v2.clone(), false).await.unwrap();
    until(&mut events, |e| {
        matches!(e, EngineEvent::UpdateCompleted { .. })
    })
    .await;
    let d = converge(&r.manager, "workers").await;
    assert_eq!(d.update, Some(UpdateProgress::UpToDate));
    let now: Vec<_> = members(&cloud, "workers");
    assert_eq!(now.len(), 3);
    assert!(
        now.iter()
            .all(|i| !old.contains(&i.id) && i.spec.properties["image"] == "v2")
    );
    // Never more than size + surge members at once.
    let mut alive: HashSet<InstanceId> = old.clone();
    let mut peak = 0;
    for c in cloud.calls().iter().filter(|c| c.outcome.is_ok()) {
        match c.op {
            Op::Provision => {
                alive.insert(c.instance.clone().unwrap());
            }
            Op::Destroy => {
                alive.remove(c.instance.as_ref().unwrap());
            }
            _ => {}
        }
        peak = peak.max(alive.len());
    }
    assert!(peak <= 4, "surge exceeded: {peak}");
    // The rolled members were destroyed for a rolling update (their volumes may be kept).
    assert!(
        cloud
            .calls()
            .iter()
            .any(|c| c.context == Some(DestroyContext::RollingUpdate))
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_update_fails_at_its_deadline_and_resumes_after_pause() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("workers", 2), false).await.unwrap();
    converge(&r.manager, "workers").await;

    // New members never become healthy: the update must fail, not hang.
    flavor.set_default(Health::Unknown);
    for i in members(&cloud, "workers") {
        flavor.set(&i.id, Health::Healthy);
    }
    let mut v2 = scaled("workers", 2);
    v2.instance.properties = json!({"image": "broken"});
    v2.update.deadline = Some(Duration::from_millis(400));
    let mut events = r.manager.events();
    r.manager.commit(v2.clone(), false).await.unwrap();
    let e = until(&mut events, |e| {
        matches!(e, EngineEvent::UpdateFailed { .. })
    })
    .await;
    assert!(matches!(e, EngineEvent::UpdateFailed { reason, .. } if reason.contains("deadline")));
    let d = r.manager.describe(&"workers".into()).await.unwrap();
    assert!(
        matches!(d.update, Some(UpdateProgress::Failed { .. })),
        "{:?}",
        d.update
    );
    assert!(!d.converged);
    assert_eq!(
        members(&cloud, "workers")
            .iter()
            .filter(|i| i.spec.properties["image"] == "v1")
            .count(),
        2,
        "old members kept"
    );

    // A paused update does nothing; resuming it (healthy members now) completes it.
    flavor.set_default(Health::Healthy);
    let mut v3 = scaled("workers", 2);
    v3.instance.properties = json!({"image": "v3"});
    v3.update.paused = true;
    r.manager.commit(v3.clone(), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = r.manager.describe(&"workers".into()).await.unwrap();
    assert!(
        matches!(d.update, Some(UpdateProgress::Paused { .. })),
        "{:?}",
        d.update
    );
    assert!(
        members(&cloud, "workers")
            .iter()
            .all(|i| i.spec.properties["image"] != "v3")
    );
    v3.update.paused = false;
    r.manager.commit(v3, false).await.unwrap();
    until(&mut events, |e| {
        matches!(e, EngineEvent::UpdateCompleted { .. })
    })
    .await;
    converge(&r.manager, "workers").await;
    let now = members(&cloud, "workers");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|i| i.spec.properties["image"] == "v3"));
}

#[tokio::test(start_paused = true)]
async fn a_quorum_rolls_one_member_at_a_time() {
    let cloud = Simulator::builder()
        .latency(Duration::from_millis(2))
        .build();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    r.manager
        .commit(quorum("managers", &ips), false)
        .await
        .unwrap();
    converge(&r.manager, "managers").await;
    let mut v2 = quorum("managers", &ips);
    v2.instance.properties = json!({"image": "v2"});
    let mut events = r.manager.events();
    r.manager.commit(v2, false).await.unwrap();
    until(&mut events, |e| {
        matches!(e, EngineEvent::UpdateCompleted { .. })
    })
    .await;
    converge(&r.manager, "managers").await;
    // Replay the call log: never fewer than two of the three alive.
    let mut alive: HashSet<InstanceId> = HashSet::new();
    let mut low = usize::MAX;
    let mut started = false;
    for c in cloud.calls().iter().filter(|c| c.outcome.is_ok()) {
        match c.op {
            Op::Provision => {
                alive.insert(c.instance.clone().unwrap());
            }
            Op::Destroy => {
                alive.remove(c.instance.as_ref().unwrap());
                started = true;
            }
            _ => {}
        }
        if started {
            low = low.min(alive.len());
        }
    }
    assert_eq!(
        low, 2,
        "a quorum member was replaced while another was missing"
    );
    let now = members(&cloud, "managers");
    assert_eq!(now.len(), 3);
    assert!(
        now.iter()
            .all(|i| i.spec.properties["image"] == "v2" && i.spec.attachments.len() == 1)
    );
}

#[tokio::test(start_paused = true)]
async fn leadership_lost_mid_update_fences_the_old_leader_and_the_new_one_finishes() {
    let cloud = Simulator::builder()
        .latency(Duration::from_millis(3))
        .build();
    let flavor = TestFlavor::default();
    let store = MemoryStore::new();
    let (a, b) = a_leads_b_follows(&cloud, &flavor, &store).await;

    let mut spec = scaled("workers", 6);
    spec.update.min_healthy = Duration::from_millis(30);
    a.manager.commit(spec.clone(), false).await.unwrap();
    converge(&a.manager, "workers").await;

    // A follower refuses to commit, and says who leads.
    let err = b.manager.commit(spec.clone(), false).await.unwrap_err();
    assert_eq!(
        err,
        GroupError::NotLeader {
            leader: Some("a".into())
        }
    );

    let mut v2 = spec.clone();
    v2.instance.properties = json!({"image": "v2"});
    let mut a_events = a.manager.events();
    a.manager.commit(v2.clone(), false).await.unwrap();
    until(&mut a_events, |e| {
        matches!(
            e,
            EngineEvent::Provisioned {
                cause: Cause::RollingUpdate,
                ..
            }
        )
    })
    .await;

    // Mid-update, leadership moves.
    a.leadership.lose(Some("b".into()));
    until(&mut a_events, |e| {
        matches!(e, EngineEvent::LeadershipLost { .. })
    })
    .await;
    let term_end = cloud.calls().len();
    let mut b_events = b.manager.events();
    b.leadership.gain();
    until(&mut b_events, |e| {
        matches!(e, EngineEvent::UpdateCompleted { .. })
    })
    .await;
    converge(&b.manager, "workers").await;

    let calls = cloud.calls();
    let late: Vec<_> = calls[term_end..]
        .iter()
        .filter(|c| c.caller.as_deref() == Some("a") && c.op.is_mutation())
        .collect();
    assert!(
        late.is_empty(),
        "the old leader acted after its term ended: {late:?}"
    );
    assert!(
        calls[term_end..]
            .iter()
            .any(|c| c.caller.as_deref() == Some("b") && c.op.is_mutation())
    );
    let now = members(&cloud, "workers");
    assert_eq!(now.len(), 6, "duplicates or losses across the handover");
    assert!(now.iter().all(|i| i.spec.properties["image"] == "v2"));
    // The old leader no longer accepts commits.
    assert!(
        matches!(a.manager.commit(v2, false).await, Err(GroupError::NotLeader { leader: Some(l) }) if l == "b")
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_loads_the_spec_from_the_store() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let store = MemoryStore::new();
    let a = replica(&cloud, "a", &flavor, &store);
    a.leadership.gain();
    a.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    a.manager.commit(scaled("workers", 2), false).await.unwrap();
    converge(&a.manager, "workers").await;
    // The spec was persisted before it was applied.
    assert!(
        store
            .load()
            .await
            .unwrap()
            .unwrap()
            .value
            .get(&"workers".into())
            .is_some()
    );
    a.leadership.lose(None);
    a.manager.shutdown().await;

    let b = replica(&cloud, "b", &flavor, &store);
    b.leadership.gain();
    b.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    converge(&b.manager, "workers").await;
    assert_eq!(b.manager.inspect().await.unwrap().len(), 1);
    assert_eq!(cloud.len(), 2, "the new leader adopted the fleet as it was");
    assert!(
        cloud
            .calls()
            .iter()
            .filter(|c| c.caller.as_deref() == Some("b"))
            .all(|c| !c.op.is_mutation())
    );
}

#[tokio::test(start_paused = true)]
async fn destroy_instances_only_takes_members_and_lowers_the_size_by_what_went() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let stranger = cloud.insert(InstanceSpec::default());
    r.manager.commit(scaled("workers", 3), false).await.unwrap();
    converge(&r.manager, "workers").await;
    let ids: Vec<InstanceId> = members(&cloud, "workers")
        .into_iter()
        .map(|i| i.id)
        .collect();
    let g: GroupId = "workers".into();

    let err = r
        .manager
        .destroy_instances(&g, &[ids[0].clone(), stranger.clone()])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GroupError::NotMember {
            group: g.clone(),
            ids: vec![stranger.clone()]
        }
    );
    assert_eq!(r.manager.size(&g).await.unwrap(), 3);
    assert_eq!(members(&cloud, "workers").len(), 3);
    assert!(cloud.get(&stranger).is_some());

    r.manager
        .destroy_instances(&g, &[ids[0].clone()])
        .await
        .unwrap();
    assert_eq!(r.manager.size(&g).await.unwrap(), 2);
    let d = converge(&r.manager, "workers").await;
    assert_eq!(d.instances.len(), 2);
    assert!(cloud.get(&ids[0]).is_none());

    // A destroy that fails keeps the instance managed, and the size falls only by what went.
    flavor.drain_fails.lock().unwrap().insert(ids[1].clone());
    let err = r
        .manager
        .destroy_instances(&g, &[ids[1].clone(), ids[2].clone()])
        .await
        .unwrap_err();
    match &err {
        GroupError::PartialDestroy {
            destroyed,
            remaining,
            cause,
            ..
        } => {
            assert_eq!(*destroyed, 1);
            assert_eq!(remaining, &vec![ids[1].clone()]);
            assert!(matches!(
                **cause,
                GroupError::Flavor(FlavorError::Refused { .. })
            ));
        }
        other => panic!("expected a partial destroy, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "group workers: 1 destroyed, 1 remain; the rest is retried"
    );
    assert_eq!(r.manager.size(&g).await.unwrap(), 1);
    let d = converge(&r.manager, "workers").await;
    assert_eq!(
        d.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );
}

#[tokio::test(start_paused = true)]
async fn free_leaves_instances_and_destroy_forgets_only_when_members_are_gone() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("pets", 2), false).await.unwrap();
    r.manager.commit(scaled("cattle", 2), false).await.unwrap();
    converge(&r.manager, "pets").await;
    converge(&r.manager, "cattle").await;

    r.manager.free(&"pets".into()).await.unwrap();
    assert_eq!(members(&cloud, "pets").len(), 2);
    assert!(matches!(
        r.manager.size(&"pets".into()).await,
        Err(GroupError::UnknownGroup { .. })
    ));

    // A failing destroy keeps the group, and says what went and what remains.
    let mut events = r.manager.events();
    let stubborn = members(&cloud, "cattle")[0].id.clone();
    flavor.drain_fails.lock().unwrap().insert(stubborn);
    let err = r.manager.destroy(&"cattle".into()).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::PartialDestroy { destroyed: 1, remaining, .. } if remaining.len() == 1),
        "{err:?}"
    );
    assert_eq!(
        r.manager.inspect().await.unwrap().len(),
        1,
        "the group was forgotten too early"
    );
    // The controller keeps destroying what is left (and provisions nothing), then the group
    // leaves the store without a second call.
    flavor.drain_fails.lock().unwrap().clear();
    until(
        &mut events,
        |e| matches!(e, EngineEvent::GroupDestroyed { group } if group.as_str() == "cattle"),
    )
    .await;
    assert!(r.manager.inspect().await.unwrap().is_empty());
    assert!(members(&cloud, "cattle").is_empty());
    assert!(matches!(
        r.manager.describe(&"cattle".into()).await,
        Err(GroupError::UnknownGroup { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_bootstrap_node_is_adopted_not_replaced() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let seed = cloud.insert(
        InstanceSpec::default()
            .with_tag(GROUP_TAG, "managers")
            .with_logical_id("10.0.0.1"),
    );
    let r = leader(&cloud, &flavor).await;
    r.manager
        .commit(
            quorum("managers", &["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            false,
        )
        .await
        .unwrap();
    let d = converge(&r.manager, "managers").await;
    assert!(d.instances.iter().any(|i| i.id == seed));
    assert!(
        cloud
            .get(&seed)
            .unwrap()
            .spec
            .tags
            .get(CONFIG_HASH_TAG)
            .is_some()
    );
    assert_eq!(members(&cloud, "managers").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn invalid_specs_are_refused_naming_the_field_and_change_nothing() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    let mut bad = scaled("workers", 1);
    bad.instance.plugin = "nosuch".into();
    let err = r.manager.commit(bad, false).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::InvalidSpec(e) if e.field == "Properties.Instance.Plugin"),
        "{err}"
    );
    let mut bad = scaled("workers", 1);
    bad.instance.properties = json!([1]);
    let err = r.manager.commit(bad, false).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::InvalidSpec(e) if e.field == "Properties.Instance.Properties"),
        "{err}"
    );
    let mut bad = scaled("workers", 1);
    bad.flavor = PluginSpec::new("vanilla", json!({"Init": 5}));
    let err = r.manager.commit(bad, false).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::InvalidSpec(e) if e.field.starts_with("Properties.Flavor.Properties")),
        "{err}"
    );
    let err = GroupSpec::from_json(
        r#"{"ID": "workers", "Properties": {"Allocation": {"Size": 1},
            "Instance": {"Plugin": "simulator", "RateLimit": {"PerSecond": 0}, "Properties": {}},
            "Flavor": {"Plugin": "test", "Properties": {}}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.field, "Properties.Instance.RateLimit.PerSecond",
        "{err}"
    );
    assert!(r.manager.inspect().await.unwrap().is_empty());
    assert!(cloud.is_empty());
}

/// Instance calls (describe, provision) a group of `n` needs to converge from nothing, at
/// least: one describe, `n` provisions, one describe that sees them.
fn calls_to_converge(n: u32) -> u32 {
    n + 2
}

#[tokio::test(start_paused = true)]
async fn call_limits_belong_to_the_plugin_and_a_spec_can_tighten_them() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    // Unlimited by default: converging takes no (paused) time at all beyond settling.
    let free = replica(&cloud, "free", &flavor, &MemoryStore::new());
    free.leadership.gain();
    free.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let start = tokio::time::Instant::now();
    free.manager
        .commit(scaled("quick", 4), false)
        .await
        .unwrap();
    converge(&free.manager, "quick").await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    free.manager.shutdown().await;

    // One budget of 2 calls per second for the plugin, shared by two groups.
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance_limited(
                    "simulator",
                    cloud.with_caller("limited"),
                    Some(CallLimit::per_second(2).burst(1)),
                )
                .flavor("test", flavor.clone()),
        )
        .options(options())
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let start = tokio::time::Instant::now();
    manager.commit(scaled("a", 3), false).await.unwrap();
    manager.commit(scaled("b", 3), false).await.unwrap();
    converge(&manager, "a").await;
    converge(&manager, "b").await;
    let calls = 2 * calls_to_converge(3) + 2; // and the previews' describes
    assert!(
        start.elapsed() >= Duration::from_millis(u64::from(calls - 1) * 500),
        "{calls} calls at 2/s took {:?}",
        start.elapsed()
    );

    // A group's spec tightens it further for that group alone.
    let tight = GroupSpec::from_json(
        r#"{"ID": "tight", "Properties": {"Allocation": {"Size": 2},
            "Instance": {"Plugin": "simulator", "RateLimit": {"PerSecond": 1}, "Properties": {}},
            "Flavor": {"Plugin": "test", "Properties": {}}}}"#,
    )
    .unwrap();
    assert_eq!(tight.instance.rate_limit, Some(CallLimit::per_second(1)));
    let start = tokio::time::Instant::now();
    manager.commit(tight, false).await.unwrap();
    converge(&manager, "tight").await;
    assert!(
        start.elapsed() >= Duration::from_secs(u64::from(calls_to_converge(2) - 1)),
        "{:?}",
        start.elapsed()
    );
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_backs_off_and_recovers() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("workers", 1), false).await.unwrap();
    converge(&r.manager, "workers").await;
    let mut events = r.manager.events();
    cloud.fail_next(6, Fault::Unavailable);
    cloud.kill(&members(&cloud, "workers")[0].id);
    let mut delays = Vec::new();
    while delays.len() < 3 {
        if let EngineEvent::PassFailed { retry_in, .. } =
            until(&mut events, |e| matches!(e, EngineEvent::PassFailed { .. })).await
        {
            delays.push(retry_in);
        }
    }
    assert!(
        delays[0] < delays[1] && delays[1] < delays[2],
        "no exponential backoff: {delays:?}"
    );
    let d = converge(&r.manager, "workers").await;
    assert!(d.last_error.is_none(), "{d:?}");
    assert_eq!(members(&cloud, "workers").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_leadership_source_stops_all_mutations() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let r = leader(&cloud, &flavor).await;
    r.manager.commit(scaled("workers", 2), false).await.unwrap();
    converge(&r.manager, "workers").await;
    let mut events = r.manager.events();
    r.leadership.fail("lost contact with the Raft quorum");
    until(&mut events, |e| {
        matches!(e, EngineEvent::LeadershipLost { .. })
    })
    .await;
    let term_end = cloud.calls().len();
    cloud.kill(&members(&cloud, "workers")[0].id);
    // Several resync periods pass; nobody may heal the group.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        cloud.calls()[term_end..]
            .iter()
            .all(|c| !c.op.is_mutation())
    );
    assert_eq!(members(&cloud, "workers").len(), 1);
    assert!(matches!(
        r.manager.set_size(&"workers".into(), 3).await,
        Err(GroupError::NotLeader { .. })
    ));
    // Leadership back: a new term heals it.
    r.leadership.gain();
    let term = r
        .manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    assert_eq!(term, leadership::Term(2));
    converge(&r.manager, "workers").await;
    assert_eq!(members(&cloud, "workers").len(), 2);
}

fn provisions_by(cloud: &Simulator, caller: &str) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|c| c.caller.as_deref() == Some(caller) && c.op == Op::Provision)
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_destroy_survives_a_leader_change_and_the_new_leader_provisions_nothing() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let store = MemoryStore::new();
    let (a, b) = a_leads_b_follows(&cloud, &flavor, &store).await;
    a.manager.commit(scaled("cattle", 3), false).await.unwrap();
    converge(&a.manager, "cattle").await;
    let stubborn = members(&cloud, "cattle")[0].id.clone();
    flavor.drain_fails.lock().unwrap().insert(stubborn.clone());

    let err = a.manager.destroy(&"cattle".into()).await.unwrap_err();
    assert!(
        matches!(&err, GroupError::PartialDestroy { destroyed: 2, remaining, .. } if remaining == &vec![stubborn.clone()]),
        "{err:?}"
    );
    // The intent is in the store before the leader changes.
    let stored = store.load().await.unwrap().unwrap().value;
    assert!(stored.is_destroying(&"cattle".into()));

    a.leadership.lose(Some("b".into()));
    let mut events = b.manager.events();
    b.leadership.gain();
    b.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    // The new leader resumes the destroy (the flavor still refuses), provisioning nothing.
    until(
        &mut events,
        |e| matches!(e, EngineEvent::DestroyFailed { id, .. } if *id == stubborn),
    )
    .await;
    flavor.drain_fails.lock().unwrap().clear();
    until(
        &mut events,
        |e| matches!(e, EngineEvent::GroupDestroyed { group } if group.as_str() == "cattle"),
    )
    .await;
    assert!(b.manager.inspect().await.unwrap().is_empty());
    let stored = store.load().await.unwrap().unwrap().value;
    assert!(stored.groups.is_empty() && stored.destroying.is_empty());
    assert!(members(&cloud, "cattle").is_empty());
    assert_eq!(
        provisions_by(&cloud, "b"),
        0,
        "the new leader provisioned for a group being destroyed"
    );
}

/// Real time on purpose: `FileStore` works in `spawn_blocking`, and paused time would jump
/// the test's timeouts forward while the runtime waits on that blocking I/O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_survives_a_restart_of_every_replica_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.json");
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let start = |caller: &str| {
        let m = Manager::builder(StaticLeadership::leader(), FileStore::new(&path))
            .plugins(
                Plugins::new()
                    .instance("simulator", cloud.with_caller(caller))
                    .flavor("test", flavor.clone()),
            )
            .options(options())
            .build();
        m.start();
        m
    };
    let a = start("a");
    a.wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    a.commit(scaled("cattle", 2), false).await.unwrap();
    converge(&a, "cattle").await;
    let stubborn = members(&cloud, "cattle")[0].id.clone();
    flavor.drain_fails.lock().unwrap().insert(stubborn.clone());
    assert!(matches!(
        a.destroy(&"cattle".into()).await,
        Err(GroupError::PartialDestroy { destroyed: 1, .. })
    ));
    // Every replica goes away with the destroy half done.
    a.shutdown().await;
    drop(a);
    flavor.drain_fails.lock().unwrap().clear();

    let c = start("c");
    let mut events = c.events();
    until(
        &mut events,
        |e| matches!(e, EngineEvent::GroupDestroyed { group } if group.as_str() == "cattle"),
    )
    .await;
    assert!(c.inspect().await.unwrap().is_empty());
    assert!(members(&cloud, "cattle").is_empty());
    assert_eq!(provisions_by(&cloud, "c"), 0);
    let on_disk = FileStore::new(&path).load().await.unwrap().unwrap().value;
    assert!(on_disk.groups.is_empty());
    assert_eq!(
        on_disk.epoch,
        Some(Epoch(2)),
        "each start claimed a new epoch"
    );
    c.shutdown().await;
}

/// A runtime on a thread of its own, which the test can freeze: a blocked runtime thread is
/// what a SIGSTOPped process looks like to its tasks (timers, leadership, controllers all
/// stop; the monotonic clock goes on).
struct Frozen {
    handle: tokio::runtime::Handle,
}

impl Frozen {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tx.send(rt.handle().clone()).unwrap();
            rt.block_on(std::future::pending::<()>());
        });
        Frozen {
            handle: rx.recv().unwrap(),
        }
    }

    /// Runs `f` on the frozen-able runtime and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle.spawn(f).await.unwrap()
    }

    /// Blocks the runtime's thread until the returned sender is dropped or sent to.
    async fn freeze(&self) -> std::sync::mpsc::Sender<()> {
        let (thaw, wait) = std::sync::mpsc::channel::<()>();
        let (frozen, is_frozen) = tokio::sync::oneshot::channel();
        self.handle.spawn(async move {
            let _ = frozen.send(());
            // Blocking on purpose: this is the pause.
            let _ = wait.recv();
        });
        is_frozen.await.unwrap();
        thaw
    }
}

/// Real time on purpose (most tests here run on paused time): replica A runs on a runtime the test freezes, and the fence's trust
/// in its last epoch check runs on the real monotonic clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_resumed_after_a_takeover_neither_writes_the_store_nor_mutates() {
    let cloud = Simulator::new();
    let flavor = TestFlavor::default();
    let store = MemoryStore::new();
    let a_rt = Frozen::start();
    let a_flavor = TestFlavor::default();
    let a = {
        let (cloud, flavor, store) = (cloud.clone(), a_flavor.clone(), store.clone());
        a_rt.run(async move { replica(&cloud, "a", &flavor, &store) })
            .await
    };
    let b = replica(&cloud, "b", &flavor, &store);
    b.leadership.lose(Some("a".into()));
    a.leadership.gain();
    let am = a.manager.clone();
    a_rt.run(async move {
        am.wait_leading(std::time::Duration::from_secs(30))
            .await
            .expect("this replica leads");
        am.commit(scaled("workers", 3), false).await.unwrap();
        converge(&am, "workers").await;
    })
    .await;
    let mut a_events = a.manager.events();

    // A is paused, still believing it leads; B takes over and heals a killed member.
    let thaw = a_rt.freeze().await;
    let frozen_at = cloud.calls().len();
    cloud.kill(&members(&cloud, "workers")[0].id);
    let mut b_events = b.manager.events();
    b.leadership.gain();
    b.manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    until(&mut b_events, |e| {
        matches!(e, EngineEvent::EpochClaimed { .. })
    })
    .await;
    converged_after_now(&b.manager, "workers").await;
    // B steps away (its epoch stays the newest), and a member dies as A wakes up: A sees
    // work to do and nobody else will do it.
    b.leadership.lose(None);
    until(&mut b_events, |e| {
        matches!(e, EngineEvent::LeadershipLost { .. })
    })
    .await;
    cloud.kill(&members(&cloud, "workers")[0].id);
    let prepared_before = *a_flavor.prepared.lock().unwrap();
    let _ = thaw.send(());

    // A's own attempts: its pass over the group with a member missing, and a commit.
    let am = a.manager.clone();
    let commit = a_rt
        .run(async move { am.commit(scaled("workers", 5), false).await })
        .await;
    assert!(
        matches!(
            commit,
            Err(GroupError::Store(StoreError::Fenced { .. }) | GroupError::NotLeader { .. })
        ),
        "{commit:?}"
    );
    // Refused by the store's epoch, A steps down on its own.
    until(&mut a_events, |e| {
        matches!(e, EngineEvent::LeadershipLost { .. })
    })
    .await;
    // Its source catches up (as a poll of the real source would).
    a.leadership.lose(Some("b".into()));
    let attempted = *a_flavor.prepared.lock().unwrap() > prepared_before;
    assert!(
        attempted || matches!(commit, Err(GroupError::Store(StoreError::Fenced { .. }))),
        "A neither tried to provision nor to write the store: the fence was not exercised"
    );

    let late: Vec<_> = cloud.calls()[frozen_at..]
        .iter()
        .filter(|c| c.caller.as_deref() == Some("a") && c.op.is_mutation())
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "the paused leader mutated after resuming: {late:?}"
    );
    let stored = store.load().await.unwrap().unwrap().value;
    assert_eq!(stored.epoch, Some(Epoch(2)));
    assert_eq!(
        stored.groups[&GroupId::from("workers")].allocation,
        Allocation::size(3)
    );
    assert_eq!(
        members(&cloud, "workers").len(),
        2,
        "A healed while deposed"
    );
    assert!(provisions_by(&cloud, "b") >= 1);
}
