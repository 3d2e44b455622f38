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
