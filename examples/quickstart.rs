//! The seed's story on the embedded simulator, in a few seconds.
//!
//! `cargo run --example quickstart`
//!
//! Two replicas of a manager share one spec store; only the leader acts. They run a swarm-like
//! cluster: a quorum group of three managers (fixed IPs 10.0.0.1-3 as logical IDs, each with its
//! own state volume) and a scaled group of workers. Then:
//! 1. a manager's machine dies; it comes back with the same IP and the same volume;
//! 2. the leading replica loses leadership; the other takes over, without duplicates;
//! 3. a new configuration rolls through both groups.
//!
//! Every step is checked; the exit code is 0 only if the story held.

use infrakit::reconcile::{Cause, EngineEvent};
use infrakit::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

fn groups(image: &str) -> Result<Vec<GroupSpec>, SpecError> {
    let text = json!([
      {
        "ID": "managers",
        "Properties": {
          "Allocation": {
            "LogicalIDs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "Attachments": {
              "10.0.0.1": [{"ID": "vol-1", "Type": "volume"}],
              "10.0.0.2": [{"ID": "vol-2", "Type": "volume"}],
              "10.0.0.3": [{"ID": "vol-3", "Type": "volume"}]
            }
          },
          "Instance": {"Plugin": "simulator", "Properties": {"Image": image, "Type": "m5.large"}},
          "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["docker swarm join --token $MANAGER_TOKEN 10.0.0.1:2377"], "Tags": {"role": "manager"}}},
          "Updating": {"MinHealthy": "200ms", "Deadline": "1m"}
        }
      },
      {
        "ID": "workers",
        "Properties": {
          "Allocation": {"Size": 3},
          "Instance": {"Plugin": "simulator", "Properties": {"Image": image, "Type": "m5.xlarge"}},
          "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["docker swarm join --token $WORKER_TOKEN 10.0.0.1:2377"], "Tags": {"role": "worker"}}},
          "Updating": {"MaxSurge": 1, "MaxUnavailable": 0, "MinHealthy": "200ms", "Deadline": "1m"}
        }
      }
    ])
    .to_string();
    let specs: Vec<GroupSpec> = SpecError::parse_json(&text)?;
    for s in &specs {
        s.validate()?;
    }
    Ok(specs)
}

struct Replica {
    name: &'static str,
    manager: Manager,
    leadership: ManualLeadership,
}

fn replica(name: &'static str, cloud: &Simulator, store: &MemoryStore) -> Replica {
    let leadership = ManualLeadership::new();
    let manager = Manager::builder(leadership.clone(), store.clone())
        .plugins(
            Plugins::new()
                .instance("simulator", cloud.with_caller(name))
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(
            EngineOptions::default()
                .resync(Duration::from_secs(2))
                .settle(Duration::from_millis(20)),
        )
        .build();
    manager.start();
    Replica {
        name,
        manager,
        leadership,
    }
}

/// Prints a replica's engine events as a timeline.
fn narrate(r: &Replica, start: Instant) {
    let mut events = r.manager.events();
    let name = r.name;
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let line = match e {
                EngineEvent::LeadershipGained { term } => format!("leads ({term})"),
                EngineEvent::LeadershipLost { term } => {
                    format!("stopped leading ({term} ended): controllers stopped")
                }
                EngineEvent::Provisioned {
                    group,
                    id,
                    logical_id,
                    cause,
                } => format!(
                    "{group}: provisioned {id}{} ({cause})",
                    logical_id.map(|l| format!(" as {l}")).unwrap_or_default()
                ),
                EngineEvent::Destroyed { group, id, cause } => {
                    format!("{group}: destroyed {id} ({cause})")
                }
                EngineEvent::Adopted { group, id } => format!("{group}: adopted {id}"),
                EngineEvent::UpdateStarted {
                    group, outdated, ..
                } => format!("{group}: rolling update of {outdated} started"),
                EngineEvent::UpdateCompleted { group, .. } => {
                    format!("{group}: rolling update completed")
                }
                EngineEvent::UpdateFailed { group, reason } => {
                    format!("{group}: rolling update FAILED: {reason}")
                }
                EngineEvent::Converged { group, size } => format!("{group}: converged ({size})"),
                EngineEvent::PassFailed {
                    group,
                    error,
                    retry_in,
                } => format!("{group}: pass failed ({error}), retry in {retry_in:?}"),
                _ => continue,
            };
            println!("[{:>6.2}s] {name}: {line}", start.elapsed().as_secs_f64());
        }
    });
}

fn say(start: Instant, text: &str) {
    println!("[{:>6.2}s] ---- {text}", start.elapsed().as_secs_f64());
}

fn check(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        println!("          ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

fn members(cloud: &Simulator, group: &str) -> Vec<simulator::SimInstance> {
    cloud
        .instances()
        .into_iter()
        .filter(|i| i.spec.tags.get(GROUP_TAG) == Some(group))
        .collect()
}

async fn converge_all(m: &Manager) -> Result<(), Error> {
    for g in ["managers", "workers"] {
        m.wait_converged(&g.into(), Duration::from_secs(10)).await?;
    }
    Ok(())
}

async fn run() -> Result<(), Error> {
    let start = Instant::now();
    // A cloud with real-ish latency and a few transient faults.
    let cloud = Simulator::builder()
        .seed(2016)
        .latency(Duration::from_millis(15))
        .throttle_rate(0.05)
        .build();
    let store = MemoryStore::new();
    let a = replica("replica-a", &cloud, &store);
    let b = replica("replica-b", &cloud, &store);
    narrate(&a, start);
    narrate(&b, start);

    say(
        start,
        "replica-a is elected; the spec is committed through it",
    );
    b.leadership.lose(Some("replica-a".into()));
    a.leadership.gain();
    a.manager.wait_leading(Duration::from_secs(30)).await?;
    for spec in groups("engine-v1")? {
        let plan = a.manager.commit(spec.clone(), false).await?;
        println!("          commit {}: {plan}", spec.id);
    }
    converge_all(&a.manager).await?;
    check(
        members(&cloud, "managers").len() == 3 && members(&cloud, "workers").len() == 3,
        "3 managers and 3 workers",
    )?;
    let refused = b
        .manager
        .commit(groups("engine-v1")?.remove(0), false)
        .await;
    check(
        matches!(&refused, Err(GroupError::NotLeader { leader: Some(l) }) if l == "replica-a"),
        "the follower refuses commits and names the leader",
    )?;

    say(start, "the machine of manager 10.0.0.2 dies");
    let victim = members(&cloud, "managers")
        .into_iter()
        .find(|i| i.spec.logical_id == Some("10.0.0.2".into()))
        .ok_or("no manager 10.0.0.2")?;
    let mut events = a.manager.events();
    let killed_at = Instant::now();
    cloud.kill(&victim.id);
    loop {
        if let EngineEvent::Provisioned {
            logical_id: Some(l),
            cause: Cause::Missing,
            ..
        } = events.recv().await?
            && l == "10.0.0.2"
        {
            break;
        }
    }
    println!(
        "          replacement issued {:.1} ms after the kill",
        killed_at.elapsed().as_secs_f64() * 1e3
    );
    converge_all(&a.manager).await?;
    let back = members(&cloud, "managers")
        .into_iter()
        .find(|i| i.spec.logical_id == Some("10.0.0.2".into()))
        .ok_or("10.0.0.2 did not come back")?;
    check(
        back.id != victim.id && back.spec.attachments == vec![Attachment::new("vol-2", "volume")],
        &format!("10.0.0.2 is back as {} with its volume vol-2", back.id),
    )?;

    say(start, "replica-a loses leadership; replica-b takes over");
    let mut a_events = a.manager.events();
    a.leadership.lose(Some("replica-b".into()));
    // Never two active leaders: replica-b is elected once replica-a has stopped.
    while !matches!(a_events.recv().await?, EngineEvent::LeadershipLost { .. }) {}
    let term_end = cloud.calls().len();
    b.leadership.gain();
    b.manager.wait_leading(Duration::from_secs(30)).await?;
    let before: HashSet<InstanceId> = cloud.instances().into_iter().map(|i| i.id).collect();
    converge_all(&b.manager).await?;
    let after: HashSet<InstanceId> = cloud.instances().into_iter().map(|i| i.id).collect();
    check(
        before == after && after.len() == 6,
        "the new leader adopted the fleet: no duplicates, nothing replaced",
    )?;

    say(
        start,
        "a new engine version rolls through both groups (committed on the new leader)",
    );
    for spec in groups("engine-v2")? {
        let plan = b.manager.commit(spec.clone(), true).await?;
        println!("          plan {}: {plan}", spec.id);
        b.manager.commit(spec, false).await?;
    }
    converge_all(&b.manager).await?;
    let all = cloud.instances();
    check(
        all.len() == 6
            && all
                .iter()
                .all(|i| i.spec.properties["Image"] == "engine-v2"),
        "every member runs engine-v2",
    )?;
    let managers = members(&cloud, "managers");
    let lids: HashSet<_> = managers
        .iter()
        .filter_map(|i| i.spec.logical_id.clone())
        .collect();
    check(
        lids.len() == 3 && managers.iter().all(|i| i.spec.attachments.len() == 1),
        "managers kept their IPs and volumes",
    )?;
    let stray = cloud.calls()[term_end..]
        .iter()
        .filter(|c| c.caller.as_deref() == Some("replica-a") && c.op.is_mutation())
        .count();
    check(stray == 0, "the old leader made no change after its term")?;

    for r in [&a, &b] {
        r.manager.shutdown().await;
    }
    let calls = cloud.calls();
    println!(
        "[{:>6.2}s] done: {} provider calls ({} throttled and retried)",
        start.elapsed().as_secs_f64(),
        calls.len(),
        calls.iter().filter(|c| c.outcome.is_err()).count()
    );
    Ok(())
}
