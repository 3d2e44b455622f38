//! The seed's cluster, declared and provisioned on the embedded simulator.
//!
//! Run with `cargo run --example quickstart`. It declares the seed's two groups (a quorum of
//! three swarm managers with fixed IPs and state volumes, and a scaled group of workers),
//! validates them, provisions members the way the group controller does (tags at creation,
//! logical IDs and attachments for the managers), then kills a manager behind everyone's back
//! and shows what a controller sees: the event, and a describe that is one member short.

use futures::StreamExt;
use infrakit::simulator::Fault;
use infrakit::*;
use std::time::{Duration, Instant};

const GROUPS: &str = r#"[
  {
    "ID": "managers",
    "Properties": {
      "Allocation": {
        "LogicalIDs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "Attachments": {
          "10.0.0.1": [{"ID": "vol-manager-1", "Type": "volume"}],
          "10.0.0.2": [{"ID": "vol-manager-2", "Type": "volume"}],
          "10.0.0.3": [{"ID": "vol-manager-3", "Type": "volume"}]
        }
      },
      "Instance": {"Plugin": "simulator", "Properties": {"Image": "docker-engine", "Size": "m5.large"}},
      "Flavor": {"Plugin": "swarm/manager", "Properties": {"InitScript": "docker swarm join ..."}},
      "Updating": {"MaxSurge": 0, "MaxUnavailable": 1, "Deadline": "5m"}
    }
  },
  {
    "ID": "workers",
    "Properties": {
      "Allocation": {"Size": 2},
      "Instance": {"Plugin": "simulator", "Properties": {"Image": "docker-engine", "Size": "m5.xlarge"}},
      "Flavor": {"Plugin": "swarm/worker", "Properties": {"InitScript": "docker swarm join ..."}}
    }
  }
]"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let t = || format!("[{:>7.3}s]", start.elapsed().as_secs_f64());

    // 1. Declare and validate.
    let specs: Vec<GroupSpec> = SpecError::parse_json(GROUPS)?;
    for spec in &specs {
        spec.validate()?;
        println!(
            "{} group {:<9} {:<40} config hash {}",
            t(),
            spec.id,
            spec.allocation.to_string(),
            spec.config_hash()
        );
    }
    let bad = r#"{"ID":"oops","Properties":{"Allocation":{"Size":3,"LogicalIDs":["10.0.0.9"]},
        "Instance":{"Plugin":"simulator"},"Flavor":{"Plugin":"swarm/worker"}}}"#;
    if let Err(e) = GroupSpec::from_json(bad) {
        println!("{} a bad spec is refused, naming the field: {e}", t());
    }

    // 2. Provision members as the group controller does: tags at creation.
    let cloud = Simulator::builder()
        .seed(1)
        .latency(Duration::from_millis(5))
        .build();
    let mut events = cloud.events().ok_or("the simulator has events")?;
    for spec in &specs {
        let base = Tags::new()
            .with(GROUP_TAG, spec.id.as_str())
            .with(CONFIG_HASH_TAG, spec.config_hash());
        let members: Vec<Option<LogicalId>> = match &spec.allocation {
            Allocation::Size(n) => vec![None; *n as usize],
            Allocation::LogicalIds { ids, .. } => ids.iter().cloned().map(Some).collect(),
        };
        for logical_id in members {
            let mut member = InstanceSpec::new(spec.instance.properties.clone());
            member.tags = base.clone();
            if let Some(lid) = logical_id {
                member.attachments = spec.allocation.attachments_for(&lid).to_vec();
                member.logical_id = Some(lid);
            }
            // A flaky provider: the first try of each provision is throttled, and retried.
            cloud.fail_next(1, Fault::Throttled);
            let id = loop {
                match cloud.provision(member.clone()).await {
                    Ok(id) => break id,
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_millis(10)))
                            .await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            println!(
                "{} provisioned {id} in {:<8} logical ID {:<9} attachments {:?}",
                t(),
                spec.id,
                member.logical_id.as_ref().map_or("-", LogicalId::as_str),
                member
                    .attachments
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
            );
        }
    }

    // 3. An outage: the leader manager's machine dies.
    let managers = Tags::new().with(GROUP_TAG, "managers");
    let victim = cloud.describe(&managers, false).await?.remove(0);
    cloud.kill(&victim.id);
    while let Some(event) = events.next().await {
        if let InstanceEvent::Gone { id, tags } = event {
            println!(
                "{} event: {id} ({}) is gone",
                t(),
                tags.get(GROUP_TAG).unwrap_or("?")
            );
            break;
        }
    }
    let left = cloud.describe(&managers, false).await?;
    let missing: Vec<&LogicalId> = specs[0]
        .allocation
        .ids()
        .iter()
        .filter(|lid| !left.iter().any(|d| d.logical_id.as_ref() == Some(*lid)))
        .collect();
    for lid in missing {
        let volumes: Vec<&str> = specs[0]
            .allocation
            .attachments_for(lid)
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        println!(
            "{} managers now {} of 3: logical ID {lid} is missing; its replacement must get {lid} and {volumes:?}",
            t(),
            left.len(),
        );
    }
    println!(
        "{} {} provider calls, {} of them failed and were retried",
        t(),
        cloud.calls().len(),
        cloud.calls().iter().filter(|c| c.outcome.is_err()).count()
    );
    Ok(())
}
