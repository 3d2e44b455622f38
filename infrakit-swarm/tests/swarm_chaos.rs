//! The chaos test of the local self-healing swarm (root, docker.io; `scripts/test` prepares
//! both): a swarm grown from one seed node by replicas beside its managers; the leader node is
//! killed, a worker is killed and its replacement boots cut off (it never joins, and is
//! replaced for its unknown health) and the dead workers' nodes are removed from the swarm, the
//! leader's link is cut and restored, two managers are killed at once (a majority: the
//! survivor forces a new cluster and the swarm heals itself), and two managers' links are cut
//! at once (a partition: nothing is forced, the swarm heals with its own nodes). Checked
//! throughout: no two live nodes for one logical ID, a node of another group is never touched,
//! at most one replica issues mutations at any time (per replica and term), and never two
//! swarms (at most one manager reports itself leader, all report one cluster ID).

use infrakit_core::reconcile::{Cause, EngineEvent};
use infrakit_core::*;
use infrakit_swarm::local_swarm::{LocalSwarm, MANAGERS, WORKERS};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swarm_heals_kills_and_partitions_with_one_active_replica() {
    let swarm = Arc::new(
        LocalSwarm::new("ikch", "/tmp/infrakit-chaos", "10.219.0", 3, 2)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_remove_down_after(Some(Duration::from_secs(5)))
            .with_recover_after(Duration::from_secs(10)),
    );
    let start = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(1200), chaos(&swarm)).await;
    let log = swarm.mutation_lines(start);
    if !matches!(outcome, Ok(Ok(()))) {
        println!("{}", swarm.diagnose().await);
    }
    swarm.shutdown().await;
    for line in &log {
        println!("mutation {line}");
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("the chaos test did not finish within 20 minutes"),
    }
}

async fn chaos(swarm: &Arc<LocalSwarm>) -> Result<(), infrakit_swarm::local_swarm::Error> {
    // A node that is not ours: another group, started before anything else.
    let foreign = swarm
        .nodes
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "someone-else"))
        .await?;
    swarm.bootstrap().await?;
    let supervisor = tokio::spawn(swarm.clone().supervise());

    // Watch for two live nodes with one logical ID, all along.
    let duplicates: Arc<Mutex<Vec<String>>> = Arc::default();
    let watcher = {
        let (swarm, duplicates) = (swarm.clone(), duplicates.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(live) = swarm
                    .nodes
                    .describe(&Tags::new().with(GROUP_TAG, MANAGERS), false)
                    .await
                {
                    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for d in live {
                        if let Some(l) = d.logical_id {
                            by_id
                                .entry(l.to_string())
                                .or_default()
                                .push(d.id.to_string());
                        }
                    }
                    for (l, ids) in by_id {
                        if ids.len() > 1 {
                            duplicates.lock().unwrap().push(format!("{l}: {ids:?}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // Never two swarms: one cluster ID all along; and while no quorum is left (a majority
    // killed, or cut off) at most one manager reports itself leader. (A leader cut off alone
    // may still believe it leads while the majority elects another: the Raft leader's stale
    // view, not a second swarm; its cluster ID is the same.)
    let split: Arc<Mutex<Vec<String>>> = Arc::default();
    let no_quorum = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (swarm, split, no_quorum) = (swarm.clone(), split.clone(), no_quorum.clone());
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                let reports = swarm.self_reports().await;
                let leaders = reports.iter().filter(|r| r.leader).count();
                let clusters: std::collections::BTreeSet<&String> =
                    reports.iter().filter_map(|r| r.cluster.as_ref()).collect();
                let strict = no_quorum.load(std::sync::atomic::Ordering::SeqCst);
                if clusters.len() > 1 || (strict && leaders > 1) {
                    split.lock().unwrap().push(format!(
                        "{:.1}s{}: {reports:?}",
                        start.elapsed().as_secs_f64(),
                        if strict { " (no quorum)" } else { "" }
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    for plan in swarm.commit_groups(Duration::from_secs(60)).await? {
        println!("committed: {plan}");
    }
    swarm.wait_whole(Duration::from_secs(240)).await?;

    // 1. The leader node dies.
    let leader = swarm.health().await.leader.ok_or("no leader")?;
    let victim = swarm.node_of(&leader).await.ok_or("no leader node")?;
    swarm.nodes.kill(&victim)?;
    // Right after the kill the survivors may still count the dead leader as reachable: wait
    // for a new node at its IP first, then for the swarm to be whole.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let back = loop {
        match swarm.node_of(&leader).await {
            Some(node) if node != victim => break node,
            _ if tokio::time::Instant::now() > deadline => {
                return Err("no new node took the leader's IP within 240 s".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let h = swarm.wait_whole(Duration::from_secs(240)).await?;
    assert!(h.reachable.contains(&leader), "{leader} is back: {h:?}");
    assert_eq!(
        swarm.node_of(&leader).await.as_ref(),
        Some(&back),
        "the new node keeps the IP"
    );

    // Let the swarm settle (a rejoined old leader can cause another election).
    stable(swarm, Duration::from_secs(15)).await?;

    // 2. A worker dies, and its replacement boots cut off from the network: its join never
    //    happens, the swarm never knows it, its health stays unknown. The groups'
    //    `ReplaceUnknownAfter` (60 s) replaces it, and that node joins.
    let mut events = swarm.events.subscribe();
    let workers = swarm
        .nodes
        .describe(&Tags::new().with(GROUP_TAG, WORKERS), true)
        .await?;
    let dead = workers.first().ok_or("no worker")?;
    let worker = dead.id.clone();
    let ip: std::net::Ipv4Addr = dead
        .properties
        .as_ref()
        .and_then(|p| p["IP"].as_str())
        .and_then(|ip| ip.parse().ok())
        .ok_or("a worker without an IP")?;
    // The replacement takes the lowest free worker address: the dead one's.
    swarm.nodes.cut_next_boot(ip);
    swarm.nodes.kill(&worker)?;
    let killed = std::time::Instant::now();
    let deadline = killed + Duration::from_secs(300);
    let mut cut_off: Option<InstanceId> = None;
    let mut replaced_at = None;
    loop {
        while let Ok((_, at, e)) = events.try_recv() {
            if let EngineEvent::Destroyed { id, cause, .. } = e
                && cause == Cause::HealthUnknown
            {
                assert!(replaced_at.is_none(), "one replacement, not {id} too");
                cut_off = Some(id);
                replaced_at = Some(at.duration_since(killed));
            }
        }
        let live = swarm
            .nodes
            .describe(&Tags::new().with(GROUP_TAG, WORKERS), false)
            .await?;
        let h = swarm.health().await;
        if let Some(c) = &cut_off
            && live.len() == 2
            && !live.iter().any(|d| d.id == worker || d.id == *c)
            && swarm.whole(&h)
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the cut-off worker was not replaced (destroyed for unknown health: {cut_off:?}): \
                 {live:?} {h:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let replaced_at = replaced_at.unwrap_or_default();
    println!(
        "the cut-off worker {} was replaced {:.1}s after the kill; whole after {:.1}s",
        cut_off.as_ref().map(|c| c.as_str()).unwrap_or("?"),
        replaced_at.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        replaced_at >= Duration::from_secs(60),
        "replaced before its 60 s: {replaced_at:?}"
    );
    // The killed worker's node and the cut-off one's (if it ever registered) stay `Down`
    // with no instance: the workers' flavor removes them after its grace period (5 s here).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let down = swarm.down_nodes().await;
        if down.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("dead nodes still in the swarm after 60 s: {down:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("the dead workers' nodes are gone from the swarm");

    stable(swarm, Duration::from_secs(15)).await?;

    // 3. The leader is cut off: the others elect another; then the link comes back.
    let leader = swarm.health().await.leader.ok_or("no leader")?;
    let cut = swarm.node_of(&leader).await.ok_or("no leader node")?;
    swarm.nodes.set_link(&cut, false)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let h = swarm.health().await;
        if h.leader.as_ref().is_some_and(|l| *l != leader) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no new leader while {leader} is cut off: {h:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    swarm.nodes.set_link(&cut, true)?;
    swarm.wait_whole(Duration::from_secs(240)).await?;
    assert_eq!(
        swarm.node_of(&leader).await.as_ref(),
        Some(&cut),
        "a partitioned node is not replaced: it comes back as itself"
    );

    stable(swarm, Duration::from_secs(15)).await?;

    // 4. Two managers die at once: no quorum, no Raft leader, ever, until the survivor (the
    //    only one the provider still lists) forces a new cluster from its state. Its replica
    //    then leads and brings the two back with their IPs and data roots.
    let before = swarm.health().await;
    let leader = before.leader.clone().ok_or("no leader")?;
    let ips = swarm.manager_ips();
    let other = ips
        .iter()
        .find(|ip| **ip != leader)
        .ok_or("one manager only")?
        .clone();
    let survivor = ips
        .iter()
        .find(|ip| **ip != leader && **ip != other)
        .ok_or("two managers only")?
        .clone();
    let workers_before: Vec<InstanceId> = ids(swarm, WORKERS).await?;
    let mut victims = Vec::new();
    for ip in [&leader, &other] {
        victims.push(swarm.node_of(ip).await.ok_or("no manager node")?);
    }
    no_quorum.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = std::time::Instant::now();
    for v in &victims {
        swarm.nodes.kill(v)?;
    }
    let deadline = killed + Duration::from_secs(300);
    loop {
        let h = swarm.health().await;
        if swarm.whole(&h) && h.reachable == ips {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "two managers killed: not whole after 300 s: {h:?}, recoveries {:?}",
                swarm.recoveries.lock().unwrap()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    no_quorum.store(false, std::sync::atomic::Ordering::SeqCst);
    let recoveries = swarm.recoveries.lock().unwrap().clone();
    println!(
        "two managers killed: the survivor forced a new cluster after {:.1}s, whole after {:.1}s",
        recoveries
            .first()
            .map(|r| r.at.duration_since(killed).as_secs_f64())
            .unwrap_or(f64::NAN),
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(
        recoveries.len(),
        1,
        "one forced new cluster: {recoveries:?}"
    );
    assert_eq!(recoveries[0].node, survivor, "the survivor forced it");
    for (ip, old) in [&leader, &other].into_iter().zip(&victims) {
        let node = swarm.node_of(ip).await.ok_or("no node at a killed IP")?;
        assert_ne!(&node, old, "{ip} is a new node");
    }
    let replica = swarm
        .replica_manager(&survivor)
        .ok_or("no replica beside the survivor")?;
    let groups = Group::inspect(&replica).await?;
    assert_eq!(
        groups.len(),
        2,
        "the committed spec is still in the swarm: {groups:?}"
    );
    assert_eq!(
        ids(swarm, WORKERS).await?,
        workers_before,
        "the workers stayed joined: none was replaced"
    );

    stable(swarm, Duration::from_secs(15)).await?;

    // 5. Two managers' links are cut at once: no leader either, but the provider still lists
    //    them, so nothing is forced; when the links return the swarm is whole with its own
    //    nodes.
    let managers_before: Vec<InstanceId> = ids(swarm, MANAGERS).await?;
    let cut: Vec<InstanceId> = managers_before.iter().take(2).cloned().collect();
    no_quorum.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in &cut {
        swarm.nodes.set_link(c, false)?;
    }
    let cut_at = std::time::Instant::now();
    // Longer than the recovery's 10 s without a leader, with room for its checks.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let leaderless = swarm.health().await;
    for c in &cut {
        swarm.nodes.set_link(c, true)?;
    }
    no_quorum.store(false, std::sync::atomic::Ordering::SeqCst);
    swarm.wait_whole(Duration::from_secs(240)).await?;
    println!(
        "two links cut for 30 s (leader meanwhile: {:?}): whole again {:.1}s after the cut",
        leaderless.leader,
        cut_at.elapsed().as_secs_f64()
    );
    let recoveries = swarm.recoveries.lock().unwrap().len();
    assert_eq!(recoveries, 1, "no new cluster forced during a partition");
    assert_eq!(
        ids(swarm, MANAGERS).await?,
        managers_before,
        "partitioned managers are not replaced: they come back as themselves"
    );

    supervisor.abort();
    watcher.abort();
    sampler.abort();
    let split = split.lock().unwrap().clone();
    assert!(split.is_empty(), "two swarms at once: {split:?}");
    let duplicates = duplicates.lock().unwrap().clone();
    assert!(
        duplicates.is_empty(),
        "two live nodes for one logical ID: {duplicates:?}"
    );
    let all = swarm.nodes.describe(&Tags::new(), false).await?;
    assert!(
        all.iter().any(|d| d.id == foreign),
        "the node of another group is untouched"
    );
    let log = swarm.mutation_lines(std::time::Instant::now());
    // (times are irrelevant here: only what was mutated)
    assert!(
        !log.iter().any(|l| l.contains(foreign.as_str())),
        "no mutation names the foreign node: {log:?}"
    );
    let n = swarm.check_mutations()?;
    println!("{n} mutations, never two replicas at once");
    Ok(())
}

/// The live instances of `group`, sorted.
async fn ids(
    swarm: &LocalSwarm,
    group: &str,
) -> Result<Vec<InstanceId>, infrakit_swarm::local_swarm::Error> {
    let mut ids: Vec<InstanceId> = swarm
        .nodes
        .describe(&Tags::new().with(GROUP_TAG, group), false)
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    Ok(ids)
}

/// Waits until the swarm has stayed whole under one leader for `period`.
async fn stable(
    swarm: &LocalSwarm,
    period: Duration,
) -> Result<(), infrakit_swarm::local_swarm::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut since: Option<(std::time::Instant, Option<String>)> = None;
    loop {
        let h = swarm.health().await;
        let now = std::time::Instant::now();
        since = match since {
            Some((t, leader)) if swarm.whole(&h) && leader == h.leader => Some((t, leader)),
            _ if swarm.whole(&h) => Some((now, h.leader.clone())),
            _ => None,
        };
        if let Some((t, _)) = &since
            && now.duration_since(*t) >= period
        {
            return Ok(());
        }
        if now > deadline {
            return Err(format!("the swarm did not settle: {h:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
