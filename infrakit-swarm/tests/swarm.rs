//! Swarm leadership and the swarm store on a real 3-manager swarm (three dockerd in their own
//! network namespaces; root).

mod common;

use common::lab::Lab;
use futures::StreamExt;
use infrakit_core::*;
use infrakit_swarm::{SwarmLeadership, SwarmStore};
use serde_json::json;
use std::time::{Duration, Instant};

fn spec(id: &str) -> GroupSpec {
    GroupSpec::new(
        id,
        PluginSpec::new("container", json!({"Image": "x"})),
        PluginSpec::new("vanilla", json!({})),
        Allocation::size(2),
    )
}

async fn leaders(ls: &[SwarmLeadership], alive: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for &i in alive {
        if ls[i].current().await.is_leader() {
            out.push(i);
        }
    }
    out
}

async fn one_leader(ls: &[SwarmLeadership], alive: &[usize], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let l = leaders(ls, alive).await;
        if l.len() == 1 {
            return l[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader among {alive:?} within {within:?}: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_and_the_store_follow_the_raft_quorum() {
    let lab = Lab::start("t1", 201, 3);
    let engines = lab.form_swarm().await;
    let leadership: Vec<SwarmLeadership> = engines
        .iter()
        .map(|e| SwarmLeadership::new(e.clone()))
        .collect();
    let all = [0, 1, 2];
    let leader = one_leader(&leadership, &all, Duration::from_secs(30)).await;
    let first_term = leadership[leader].current().await.term().unwrap();
    let follower = all.iter().copied().find(|&i| i != leader).unwrap();
    let state = leadership[follower].current().await;
    assert_eq!(
        state.leader_location(),
        Some(format!("{}:2377", lab.nodes[leader].ip).as_str()),
        "{state}"
    );

    // The store: written through one manager, read through another.
    let store = SwarmStore::new(engines[follower].clone());
    let mut global = GlobalSpec::default();
    global.put(spec("workers"));
    let v1 = store.save(&global, None).await.unwrap();
    let other = all
        .iter()
        .copied()
        .find(|&i| i != leader && i != follower)
        .unwrap();
    let loaded = SwarmStore::new(engines[other].clone())
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!((loaded.version, loaded.value.clone()), (v1, global.clone()));

    // Watchers see the change when the leader's machine dies.
    let mut watches: Vec<_> = leadership.iter().map(|l| l.watch()).collect();
    let killed_at = Instant::now();
    lab.kill(leader);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = one_leader(&leadership, &survivors, Duration::from_secs(60)).await;
    println!(
        "leader killed -> new Raft leader seen: {:?}",
        killed_at.elapsed()
    );
    assert!(
        !leadership[leader].current().await.is_leader(),
        "a dead engine is not a leader"
    );
    let term = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(LeadershipState::Leader { term }) = watches[new_leader].next().await {
                return term;
            }
        }
    })
    .await
    .expect("the new leader's watcher saw it");
    assert!(term >= first_term || new_leader != leader);

    // The store survived the leader change, and a stale write is refused.
    let survivor = SwarmStore::new(engines[new_leader].clone());
    let loaded = survivor.load().await.unwrap().unwrap();
    assert_eq!(loaded.version, v1);
    global.put(spec("managers"));
    let v2 = survivor.save(&global, Some(v1)).await.unwrap();
    assert!(v2 > v1);
    let stale = survivor
        .save(&GlobalSpec::default(), Some(v1))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict { .. }), "{stale}");
    assert_eq!(
        survivor.load().await.unwrap().unwrap().value.groups.len(),
        2
    );
    drop(lab);
}

/// Runs a join script against a lab node's engine, as its boot would.
fn run_script(socket: &str, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .env("DOCKER_HOST", socket)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "join script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn health_within(
    f: &infrakit_swarm::SwarmFlavor,
    d: &Description,
    want: Health,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let h = f.healthy(&json!({}), d).await.unwrap();
        if h == want {
            return;
        }
        assert!(Instant::now() < deadline, "health {h}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flavor_joins_judges_and_drains_real_nodes() {
    use infrakit_swarm::{LINK_LABEL, Role, SwarmFlavor};
    let mut lab = Lab::new("t2", 202, 3);
    lab.start_node(0, &[]);
    let seed = lab.engine(0).await;
    seed.init_swarm(bollard::models::SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: Some(lab.ip(0)),
        ..Default::default()
    })
    .await
    .unwrap();
    let managers = SwarmFlavor::new(seed.clone(), Role::Manager);
    let workers = SwarmFlavor::new(seed.clone(), Role::Worker);
    assert!(!format!("{managers:?}").contains("SWMTKN"));

    // Validation: managers need an odd number of logical IDs.
    let e = managers
        .validate(&json!({}), &Allocation::size(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FlavorError::InvalidProperties(s) if s.field == "Allocation"),
        "{e}"
    );
    let e = managers
        .validate(&json!({}), &Allocation::logical_ids(["a", "b"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FlavorError::InvalidProperties(s) if s.field == "Allocation.LogicalIDs"),
        "{e}"
    );
    let quorum = Allocation::logical_ids([lab.ip(0), lab.ip(1), lab.ip(2)])
        .with_attachment(lab.ip(1), Attachment::new("state-1", "ebs"));
    managers.validate(&json!({}), &quorum).await.unwrap();
    workers
        .validate(&json!({}), &Allocation::size(5))
        .await
        .unwrap();
    let e = managers
        .validate(&json!({"Nope": 1}), &quorum)
        .await
        .unwrap_err();
    assert!(matches!(e, FlavorError::InvalidProperties(_)), "{e}");

    // Prepare a manager (node 1) and a worker (node 2).
    let index = Index {
        group: "managers".into(),
        sequence: 1,
    };
    let m_spec = managers
        .prepare(
            &json!({}),
            InstanceSpec::default().with_logical_id(lab.ip(1)),
            &quorum,
            &index,
        )
        .await
        .unwrap();
    assert!(
        m_spec.init.contains("docker swarm join --token SWMTKN-"),
        "{}",
        m_spec.init
    );
    assert!(m_spec.init.contains(&format!("{}:2377", lab.ip(0))));
    assert_eq!(m_spec.attachments, vec![Attachment::new("state-1", "ebs")]);
    let m_link = m_spec.tags.get(LINK_LABEL).unwrap().to_owned();
    let w_spec = workers
        .prepare(
            &json!({}),
            InstanceSpec::default().with_logical_id(lab.ip(2)),
            &Allocation::size(1),
            &index,
        )
        .await
        .unwrap();
    let w_link = w_spec.tags.get(LINK_LABEL).unwrap().to_owned();
    assert_ne!(m_link, w_link);
    let token = |s: &str| {
        s.split_whitespace()
            .skip_while(|w| *w != "--token")
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        token(&m_spec.init),
        token(&w_spec.init),
        "managers and workers join with their own tokens"
    );

    // The instances boot: their engines carry the link label and run the join script.
    lab.start_node(1, &["--label", &format!("{LINK_LABEL}={m_link}")]);
    lab.start_node(2, &["--label", &format!("{LINK_LABEL}={w_link}")]);
    lab.engine(1).await;
    lab.engine(2).await;
    let m_desc = Description::new("m-1", m_spec.tags.clone());
    let w_desc = Description::new("w-1", w_spec.tags.clone());
    assert_eq!(
        managers.healthy(&json!({}), &m_desc).await.unwrap(),
        Health::Unknown,
        "not joined yet"
    );
    run_script(&lab.nodes[1].socket, &m_spec.init);
    run_script(&lab.nodes[2].socket, &w_spec.init);
    health_within(&managers, &m_desc, Health::Healthy, Duration::from_secs(30)).await;
    health_within(&workers, &w_desc, Health::Healthy, Duration::from_secs(30)).await;
    let nodes = seed.list_nodes(None).await.unwrap();
    assert_eq!(
        nodes.iter().filter(|n| n.manager_status.is_some()).count(),
        2
    );

    // A whole group at once: one node listing for a thousand members, whatever the size.
    let mut batch = vec![m_desc.clone(), w_desc.clone()];
    batch.extend((0..998).map(|i| {
        Description::new(
            format!("x-{i}").as_str(),
            infrakit_core::Tags::new().with(LINK_LABEL, format!("nobody-{i}")),
        )
    }));
    let before = workers.node_listings();
    let healths = workers
        .healthy_batch(&json!({}), &batch)
        .await
        .expect("the swarm flavor answers batches")
        .unwrap();
    assert_eq!(workers.node_listings(), before + 1, "one listing per batch");
    assert_eq!(healths.len(), batch.len());
    assert_eq!(healths[1], Health::Healthy);
    assert!(healths[2..].iter().all(|h| *h == Health::Unknown));
    let before = managers.node_listings();
    let healths = managers
        .healthy_batch(&json!({}), &batch[..1])
        .await
        .expect("the swarm flavor answers batches")
        .unwrap();
    assert_eq!(healths, vec![Health::Healthy]);
    assert_eq!(managers.node_listings(), before + 1);

    // Drain: the manager is really demoted, the worker really removed.
    managers.drain(&json!({}), &m_desc).await.unwrap();
    workers.drain(&json!({}), &w_desc).await.unwrap();
    let nodes = seed.list_nodes(None).await.unwrap();
    assert_eq!(nodes.len(), 2, "the worker is gone");
    assert_eq!(
        nodes.iter().filter(|n| n.manager_status.is_some()).count(),
        1,
        "only the seed manages"
    );
    drop(lab);
}

/// A killed worker's node goes `Down`; once its instance is gone from the provider (it is no
/// member any more) the leader's flavor removes it from the swarm after the grace period,
/// while a `Down` node whose instance is still listed stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_node_is_removed_and_a_members_is_kept() {
    use infrakit_swarm::{LINK_LABEL, Role, SwarmFlavor};
    let mut lab = Lab::new("t3", 203, 3);
    lab.start_node(0, &[]);
    let seed = lab.engine(0).await;
    seed.init_swarm(bollard::models::SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: Some(lab.ip(0)),
        ..Default::default()
    })
    .await
    .unwrap();
    let grace = Duration::from_secs(2);
    let workers = SwarmFlavor::new(seed.clone(), Role::Worker).remove_down_after(Some(grace));
    let index = Index {
        group: "workers".into(),
        sequence: 1,
    };
    // Two workers join (nodes 1 and 2), each as the engine would boot it.
    let mut members = Vec::new();
    for i in [1, 2] {
        let spec = workers
            .prepare(
                &json!({}),
                InstanceSpec::default().with_tag(infrakit_core::GROUP_TAG, "workers"),
                &Allocation::size(2),
                &index,
            )
            .await
            .unwrap();
        let link = spec.tags.get(LINK_LABEL).unwrap().to_owned();
        assert!(
            link.ends_with("@workers"),
            "the link names its group: {link}"
        );
        lab.start_node(i, &["--label", &format!("{LINK_LABEL}={link}")]);
        lab.engine(i).await;
        run_script(&lab.nodes[i].socket, &spec.init);
        members.push(Description::new(
            format!("w-{i}").as_str(),
            spec.tags.clone(),
        ));
    }
    for m in &members {
        health_within(&workers, m, Health::Healthy, Duration::from_secs(30)).await;
    }
    assert_eq!(seed.list_nodes(None).await.unwrap().len(), 3);

    // Both machines die; the provider still lists worker 2's instance, not worker 1's.
    lab.kill(1);
    lab.kill(2);
    for m in &members {
        health_within(&workers, m, Health::Unhealthy, Duration::from_secs(60)).await;
    }
    let listed = &members[1..];
    let down_at = Instant::now();
    let deadline = down_at + Duration::from_secs(30);
    loop {
        let healths = workers
            .healthy_batch(&json!({}), listed)
            .await
            .expect("the swarm flavor answers batches")
            .unwrap();
        assert_eq!(
            healths,
            vec![Health::Unhealthy],
            "worker 2 is down, not removed"
        );
        let nodes = seed.list_nodes(None).await.unwrap();
        if nodes.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker 1's node is still in the swarm: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        down_at.elapsed() >= grace,
        "removed only after the grace period"
    );
    let nodes = seed.list_nodes(None).await.unwrap();
    let links: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            n.description
                .as_ref()?
                .engine
                .as_ref()?
                .labels
                .as_ref()?
                .get(LINK_LABEL)
                .cloned()
        })
        .collect();
    assert_eq!(
        links,
        vec![members[1].tags.get(LINK_LABEL).unwrap().to_owned()],
        "the member's down node stays"
    );
    drop(lab);
}
