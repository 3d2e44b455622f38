//! Leadership and the spec store on a real 3-member etcd cluster (started per test on free
//! loopback ports, in a temporary directory). Needs Debian's `etcd-server`: a test that finds
//! no etcd fails saying how to install it.

use futures::StreamExt;
use infrakit_core::store::{Epoch, Version};
use infrakit_core::{
    FencedStore, GlobalSpec, Leadership, LeadershipState, Store, StoreError, leadership::Term,
};
use infrakit_etcd::cluster::EtcdCluster;
use infrakit_etcd::{EtcdConfig, EtcdLeadership, EtcdStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);

async fn cluster() -> EtcdCluster {
    match EtcdCluster::start(3).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start a 3-member etcd cluster: {e}"),
    }
}

async fn client(cluster: &EtcdCluster) -> etcd_client::Client {
    EtcdConfig::new(cluster.endpoints())
        .connect()
        .await
        .expect("connect to the test cluster")
}

async fn leadership(cluster: &EtcdCluster, name: &str) -> EtcdLeadership {
    EtcdLeadership::builder(client(cluster).await)
        .prefix("/test")
        .ttl(TTL)
        .location(name)
        .start()
}

/// Waits (real time) until `check` holds, at most `within`.
async fn wait_until(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn leaders(replicas: &[&EtcdLeadership]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        if r.current().await.is_leader() {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_its_term_is_a_revision_followers_see_where_it_is_and_resign_hands_over() {
    let cluster = cluster().await;
    let a = leadership(&cluster, "replica-a").await;
    wait_until("a leads", Duration::from_secs(10), async || {
        a.current().await.is_leader()
    })
    .await;
    let b = leadership(&cluster, "replica-b").await;
    wait_until("b follows a", Duration::from_secs(10), async || {
        b.current().await.leader_location() == Some("replica-a")
    })
    .await;
    let term_a = a.current().await.term().unwrap();
    assert!(term_a.0 > 1, "the term is the leader key's revision");

    let mut states = b.watch();
    assert!(!states.next().await.unwrap().is_leader());
    let resigned = Instant::now();
    a.resign_now().await;
    let took = wait_until(
        "b leads after a resigns",
        Duration::from_secs(5),
        async || b.current().await.is_leader(),
    )
    .await;
    let handover = resigned.elapsed();
    assert!(
        handover < TTL,
        "a resign hands over without waiting for the lease ({handover:?}, {took:?})"
    );
    let term_b = b.current().await.term().unwrap();
    assert!(
        term_b > term_a,
        "terms grow across replicas: {term_a} then {term_b}"
    );
    assert_eq!(
        a.current().await,
        LeadershipState::Follower { leader: None }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_is_replaced_once_its_lease_expires_and_never_two_lead() {
    let cluster = cluster().await;
    let a = leadership(&cluster, "a").await;
    wait_until("a leads", Duration::from_secs(10), async || {
        a.current().await.is_leader()
    })
    .await;
    let b = leadership(&cluster, "b").await;
    let c = leadership(&cluster, "c").await;
    wait_until("b and c follow", Duration::from_secs(10), async || {
        b.current().await.leader_location() == Some("a")
            && c.current().await.leader_location() == Some("a")
    })
    .await;
    // Dropping aborts the campaign without revoking: the lease must expire, as after a crash.
    let died = Instant::now();
    drop(a);
    let mut samples = 0;
    loop {
        let now = leaders(&[&b, &c]).await;
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if now.len() == 1 {
            break;
        }
        assert!(
            died.elapsed() < TTL * 3,
            "nobody leads {:?} after the leader died",
            died.elapsed()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = died.elapsed();
    assert!(
        samples > 0 && after >= TTL / 2,
        "the lease was waited out: {after:?}"
    );
    assert!(
        after < TTL + Duration::from_secs(2),
        "replaced within TTL + 2 s: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_writes_are_fenced_in_the_transaction_and_a_deposed_leader_is_refused() {
    let cluster = cluster().await;
    let etcd = client(&cluster).await;
    let a = leadership(&cluster, "a").await;
    wait_until("a leads", Duration::from_secs(10), async || {
        a.current().await.is_leader()
    })
    .await;
    let term = a.current().await.term().unwrap();
    let store_a: Arc<dyn Store> =
        Arc::new(EtcdStore::new(etcd.clone(), "/test/spec").fenced_by(&a));
    let claim = FencedStore::claim_in(Arc::clone(&store_a), term)
        .await
        .unwrap();
    assert!(claim.from_leadership);
    assert_eq!(
        claim.store.epoch(),
        Epoch(term.0),
        "the epoch is the leader key's revision"
    );
    let fenced_a = claim.store;
    fenced_a
        .update(|g| {
            g.destroying.insert("kept".into());
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert!(fenced_a.verify().await.unwrap().is_some_and(|d| d <= TTL));

    // Revoke a's lease behind its back (what expiry does to a paused replica), and let b lead.
    let mut admin = etcd.clone();
    let keys = admin
        .get(
            "/test/leader/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let lease = keys.kvs()[0].lease();
    let b = leadership(&cluster, "b").await;
    admin.lease_revoke(lease).await.unwrap();
    wait_until("b leads", Duration::from_secs(5), async || {
        b.current().await.is_leader()
    })
    .await;
    let term_b = b.current().await.term().unwrap();
    let store_b: Arc<dyn Store> =
        Arc::new(EtcdStore::new(etcd.clone(), "/test/spec").fenced_by(&b));
    let fenced_b = FencedStore::claim_in(Arc::clone(&store_b), term_b)
        .await
        .unwrap();
    assert!(
        fenced_b.global.is_destroying(&"kept".into()),
        "the new leader reads the old one's writes"
    );

    let refused = fenced_a
        .update(|g| {
            g.destroying.clear();
            Ok::<_, StoreError>(())
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { epoch, current }) if epoch == Epoch(term.0) && current == Epoch(term_b.0)),
        "{refused:?}"
    );
    assert!(matches!(
        fenced_a.verify().await,
        Err(StoreError::Fenced { .. })
    ));
    let stored = store_b.load().await.unwrap().unwrap().value;
    assert!(
        stored.is_destroying(&"kept".into()),
        "the deposed leader's write did not land"
    );
    assert_eq!(stored.epoch, Some(Epoch(term_b.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_wins_one_conflicts_and_a_spec_too_large_is_refused_whole() {
    let cluster = cluster().await;
    let etcd = client(&cluster).await;
    let one = EtcdStore::new(etcd.clone(), "/test/spec");
    let two = EtcdStore::new(client(&cluster).await, "/test/spec");
    assert!(one.load().await.unwrap().is_none());
    let mut version: Option<Version> = None;
    for round in 0..20 {
        let mut spec = GlobalSpec::default();
        spec.destroying.insert(format!("round-{round}").into());
        let (a, b) = tokio::join!(one.save(&spec, version), two.save(&spec, version));
        let (won, lost) = match (a, b) {
            (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
            other => panic!("round {round}: exactly one writer must win: {other:?}"),
        };
        assert_eq!(
            lost,
            StoreError::Conflict {
                expected: version,
                actual: Some(won)
            },
            "round {round}"
        );
        version = Some(won);
    }
    assert_eq!(one.load().await.unwrap().unwrap().version, version.unwrap());

    let mut huge = GlobalSpec::default();
    huge.destroying.insert("x".repeat(2 << 20).into());
    let err = one.save(&huge, version).await.unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { size, limit } if size > limit),
        "{err}"
    );
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(
        one.load().await.unwrap().unwrap().version,
        version.unwrap(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_member_keeps_elections_and_the_store_working() {
    let mut cluster = cluster().await;
    let a = leadership(&cluster, "a").await;
    let b = leadership(&cluster, "b").await;
    wait_until("one leads", Duration::from_secs(10), async || {
        leaders(&[&a, &b]).await.len() == 1
    })
    .await;
    let member = cluster
        .leader()
        .await
        .expect("the cluster has a Raft leader");
    cluster.kill(member).await.unwrap();
    let store = EtcdStore::new(client(&cluster).await, "/test/spec");
    let mut version = None;
    wait_until(
        "a save works on the two left",
        Duration::from_secs(15),
        async || match store.save(&GlobalSpec::default(), version).await {
            Ok(v) => {
                version = Some(v);
                true
            }
            Err(_) => false,
        },
    )
    .await;
    wait_until(
        "one replica leads on the two left",
        Duration::from_secs(15),
        async || leaders(&[&a, &b]).await.len() == 1,
    )
    .await;
    let leader = if a.current().await.is_leader() {
        &a
    } else {
        &b
    };
    let term = leader.current().await.term().unwrap();
    let fenced = EtcdStore::new(client(&cluster).await, "/test/spec").fenced_by(leader);
    let claim = FencedStore::claim_in(Arc::new(fenced), term).await.unwrap();
    claim.store.verify().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_nobody_leads_and_when_it_returns_one_does() {
    let mut cluster = cluster().await;
    let a = leadership(&cluster, "a").await;
    let b = leadership(&cluster, "b").await;
    wait_until("one leads", Duration::from_secs(10), async || {
        leaders(&[&a, &b]).await.len() == 1
    })
    .await;
    let first: Term = {
        let l = leaders(&[&a, &b]).await[0];
        [&a, &b][l].current().await.term().unwrap()
    };
    cluster.kill(1).await.unwrap();
    cluster.kill(2).await.unwrap();
    let lost = Instant::now();
    wait_until(
        "nobody leads without quorum",
        TTL + Duration::from_secs(3),
        async || leaders(&[&a, &b]).await.is_empty(),
    )
    .await;
    let stepped_down = lost.elapsed();
    // And it stays so while the quorum is gone.
    for _ in 0..20 {
        assert!(leaders(&[&a, &b]).await.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.restart(1).await.unwrap();
    cluster.restart(2).await.unwrap();
    wait_until("one leads again", Duration::from_secs(30), async || {
        leaders(&[&a, &b]).await.len() == 1
    })
    .await;
    let l = leaders(&[&a, &b]).await[0];
    let again = [&a, &b][l].current().await.term().unwrap();
    assert!(again > first, "a new term: {first} then {again}");
    assert!(
        stepped_down <= TTL + Duration::from_secs(3),
        "{stepped_down:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_campaigns_and_stores_and_a_client_without_a_certificate_is_refused() {
    let cluster = match EtcdCluster::start_tls(1).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start a TLS etcd cluster: {e}"),
    };
    let tls = cluster.tls().unwrap().clone();
    assert!(cluster.endpoint(0).starts_with("https://"));
    let client = EtcdConfig::new(cluster.endpoints())
        .tls(tls.ca.clone(), Some(tls.client.clone()))
        .connect()
        .await
        .unwrap();
    let leadership = EtcdLeadership::builder(client.clone())
        .prefix("/tls")
        .ttl(TTL)
        .location("secure")
        .start();
    wait_until(
        "the TLS replica leads",
        Duration::from_secs(10),
        async || leadership.current().await.is_leader(),
    )
    .await;
    let store = EtcdStore::new(client, "/tls/spec").fenced_by(&leadership);
    let term = leadership.current().await.term().unwrap();
    let claim = FencedStore::claim_in(Arc::new(store), term).await.unwrap();
    claim.store.verify().await.unwrap();

    // The members require a client certificate: without one nothing is read or written.
    let anonymous = EtcdConfig::new(cluster.endpoints())
        .tls(tls.ca.clone(), None)
        .connect()
        .await;
    if let Ok(client) = anonymous {
        let err = EtcdStore::new(client, "/tls/spec")
            .load()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    }
    // A CA that did not sign the members' certificate is refused too.
    let wrong_ca = EtcdConfig::new(cluster.endpoints())
        .tls(tls.client.0.clone(), Some(tls.client.clone()))
        .connect()
        .await;
    if let Ok(client) = wrong_ca {
        assert!(EtcdStore::new(client, "/tls/spec").load().await.is_err());
    }
    let Err(missing) = EtcdConfig::new(cluster.endpoints())
        .tls("/nonexistent/ca.pem", None)
        .connect()
        .await
    else {
        panic!("a missing CA file must be an error");
    };
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
}
