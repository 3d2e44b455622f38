//! The seed's story, unattended, on one machine: a swarm grown by our engine from one seed
//! node; its leader node is killed three times; each time leadership moves, the replica on
//! the new leader takes over and brings back a node with the same IP and the same data root,
//! which rejoins as itself. Then two managers are killed at once, a majority: the swarm has no
//! Raft leader and cannot elect one, until the survivor's quorum recovery (the provider lists
//! no instance for the other two) forces a new cluster from its state; its replica then leads
//! and brings both back with their IPs and data roots.
//!
//! `cargo run --features swarm --example swarm_self_heal` (root, `docker.io` installed:
//! `scripts/test --prepare-only` installs it). Options: `--kills N` (default 3), `--workers N`
//! (default 2). Prints a timeline per kill (kill → new Raft leader → replica active →
//! replacement provisioned → rejoined → three reachable managers) and for the two-manager loss
//! (kill → new cluster forced → replica active → both provisioned → both rejoined → whole),
//! cleans up everything, and exits 0 only if every kill healed.

use infrakit::reconcile::EngineEvent;
use infrakit_swarm::local_swarm::{Error, LocalSwarm};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut kills = 3;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let n = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), n) {
            ("--kills", Some(n)) => kills = n,
            ("--workers", Some(n)) => workers = n,
            _ => {
                eprintln!("usage: swarm_self_heal [--kills N] [--workers N]");
                std::process::exit(2);
            }
        }
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(kills, workers)));
    match result {
        Ok(()) => println!("every kill healed"),
        Err(e) => {
            eprintln!("swarm_self_heal: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(kills: usize, workers: usize) -> Result<(), Error> {
    let swarm = Arc::new(LocalSwarm::new(
        "iksh",
        "/tmp/infrakit-self-heal",
        "10.218.0",
        3,
        workers,
    )?);
    let outcome = scenario(&swarm, kills).await;
    swarm.shutdown().await;
    println!("cleaned up");
    outcome
}

/// Seconds since `t0`, or `-` if it never happened.
fn since(t0: Instant, t: Option<Instant>) -> String {
    t.map(|t| format!("{:6.1}", t.saturating_duration_since(t0).as_secs_f64()))
        .unwrap_or_else(|| "     -".into())
}

async fn scenario(swarm: &Arc<LocalSwarm>, kills: usize) -> Result<(), Error> {
    let t = Instant::now();
    let seed = swarm.bootstrap().await?;
    println!(
        "seed node {seed} up, swarm initialised ({:.1?})",
        t.elapsed()
    );
    let supervisor = tokio::spawn(swarm.clone().supervise());
    for plan in swarm.commit_groups(Duration::from_secs(60)).await? {
        println!("committed: {plan}");
    }
    let h = swarm.wait_whole(Duration::from_secs(240)).await?;
    println!(
        "grown to {} managers (leader {}) and {} workers in {:.1?}",
        h.reachable.len(),
        h.leader.as_deref().unwrap_or("?"),
        h.workers.len(),
        t.elapsed()
    );

    println!(
        "\n kill  victim        election  takeover  provisioned  rejoined  whole   (seconds after the kill)"
    );
    let mut healed = 0;
    let mut outcome = Ok(());
    let mut phases: Vec<[Option<f64>; 7]> = Vec::new();
    for k in 1..=kills {
        let before = swarm.health().await;
        let Some(leader_ip) = before.leader.clone() else {
            outcome = Err("no leader before the kill".into());
            break;
        };
        let Some(victim) = swarm.node_of(&leader_ip).await else {
            outcome = Err(format!("no node with the leader's IP {leader_ip}").into());
            break;
        };
        let mut events = swarm.events.subscribe();
        let wall0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let t0 = Instant::now();
        swarm.nodes.kill(&victim)?;
        let (mut election, mut takeover, mut provisioned, mut rejoined, mut whole) =
            (None, None, None, None, None);
        let deadline = t0 + Duration::from_secs(240);
        while whole.is_none() && Instant::now() < deadline {
            while let Ok((_, at, e)) = events.try_recv() {
                match e {
                    EngineEvent::LeadershipGained { .. } if takeover.is_none() => {
                        takeover = Some(at)
                    }
                    EngineEvent::Provisioned {
                        logical_id: Some(l),
                        ..
                    } if l.as_str() == leader_ip && provisioned.is_none() => provisioned = Some(at),
                    _ => {}
                }
            }
            let h = swarm.health().await;
            let now = Instant::now();
            if election.is_none()
                && let Some(at) = swarm.election_after(wall0)
            {
                election = Some(t0 + Duration::from_secs_f64(at - wall0));
            }
            if rejoined.is_none() && provisioned.is_some() && h.reachable.contains(&leader_ip) {
                rejoined = Some(now);
            }
            if rejoined.is_some() && swarm.whole(&h) {
                whole = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            " {k:>4}  {leader_ip:<12}  {}    {}    {}       {}    {}",
            since(t0, election),
            since(t0, takeover),
            since(t0, provisioned),
            since(t0, rejoined),
            since(t0, whole)
        );
        let gap = |a: Option<Instant>, b: Option<Instant>| {
            Some(b?.saturating_duration_since(a?).as_secs_f64())
        };
        phases.push([
            gap(Some(t0), election),
            gap(election, takeover),
            gap(takeover, provisioned),
            gap(provisioned, rejoined),
            gap(rejoined, whole),
            gap(Some(t0), whole),
            gap(election, whole),
        ]);
        if whole.is_none() {
            outcome = Err(format!("kill {k} ({leader_ip}) did not heal within 240 s").into());
            break;
        }
        healed += 1;
    }
    if phases.len() > 1 {
        summary(&phases);
    }
    if outcome.is_ok() {
        outcome = majority_loss(swarm).await;
    }
    supervisor.abort();
    println!("\nmutations (time since the start, replica node, its term, what):");
    for line in swarm.mutation_lines(t) {
        println!("  {line}");
    }
    let mutations = swarm.check_mutations()?;
    println!("\n{healed}/{kills} kills healed; {mutations} mutations, never two replicas at once");
    outcome
}

/// Min / median / max of each phase over the kills.
fn summary(phases: &[[Option<f64>; 7]]) {
    const NAMES: [&str; 7] = [
        "kill → election",
        "election → takeover",
        "takeover → provisioned",
        "provisioned → rejoined",
        "rejoined → whole",
        "kill → whole",
        "election → whole",
    ];
    println!(
        "\n phase (over {} kills, seconds)   min  median     max",
        phases.len()
    );
    for (i, name) in NAMES.iter().enumerate() {
        let mut v: Vec<f64> = phases.iter().filter_map(|p| p[i]).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            continue;
        }
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        println!(
            " {name:<28} {:6.2}  {median:6.2}  {:6.2}",
            v[0],
            v[v.len() - 1]
        );
    }
}

/// Two managers killed at once (the leader and another): the majority is lost.
async fn majority_loss(swarm: &Arc<LocalSwarm>) -> Result<(), Error> {
    let before = swarm.health().await;
    let leader = before.leader.clone().ok_or("no leader before the kill")?;
    let ips = swarm.manager_ips();
    let victims: Vec<String> = std::iter::once(leader.clone())
        .chain(ips.iter().filter(|ip| **ip != leader).take(1).cloned())
        .collect();
    let mut events = swarm.events.subscribe();
    let recovered_before = swarm.recoveries.lock().map(|r| r.len()).unwrap_or(0);
    let t0 = Instant::now();
    for ip in &victims {
        let node = swarm
            .node_of(ip)
            .await
            .ok_or_else(|| format!("no node with IP {ip}"))?;
        swarm.nodes.kill(&node)?;
    }
    let (mut forced, mut takeover, mut whole) = (None, None, None);
    let mut provisioned: Vec<Instant> = Vec::new();
    let mut rejoined: std::collections::BTreeMap<String, Instant> = Default::default();
    let deadline = t0 + Duration::from_secs(300);
    while whole.is_none() && Instant::now() < deadline {
        while let Ok((_, at, e)) = events.try_recv() {
            match e {
                EngineEvent::LeadershipGained { .. } if takeover.is_none() => takeover = Some(at),
                EngineEvent::Provisioned {
                    logical_id: Some(l),
                    ..
                } if victims.iter().any(|v| v == l.as_str()) => provisioned.push(at),
                _ => {}
            }
        }
        if forced.is_none() {
            forced = swarm
                .recoveries
                .lock()
                .ok()
                .and_then(|r| r.get(recovered_before).map(|r| r.at));
        }
        let h = swarm.health().await;
        let now = Instant::now();
        for v in &victims {
            if forced.is_some() && h.reachable.contains(v) {
                rejoined.entry(v.clone()).or_insert(now);
            }
        }
        if rejoined.len() == victims.len() && swarm.whole(&h) {
            whole = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "\n two managers killed at once: {}\n  forced  takeover  provisioned  rejoined  whole   (seconds after the kill)",
        victims.join(" and ")
    );
    println!(
        "  {}    {}      {}     {}  {}",
        since(t0, forced),
        since(t0, takeover),
        since(t0, provisioned.iter().max().copied()),
        since(t0, rejoined.values().max().copied()),
        since(t0, whole)
    );
    if whole.is_none() {
        return Err("the two-manager loss did not heal within 300 s".into());
    }
    let h = swarm.health().await;
    let leader = h.leader.clone().unwrap_or_default();
    let groups = match swarm.replica_manager(&leader) {
        Some(replica) => infrakit::Group::inspect(&replica).await?,
        None => Vec::new(),
    };
    println!(
        "  whole again: managers {:?} (the same IPs), leader {leader}, workers {:?}, \
         committed groups still in the swarm store: {:?}",
        h.reachable,
        h.workers,
        groups.iter().map(|g| g.id.to_string()).collect::<Vec<_>>()
    );
    if groups.is_empty() {
        return Err("the committed spec is gone from the swarm store".into());
    }
    Ok(())
}
