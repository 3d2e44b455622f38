//! Leadership sources: terms grow with each new term; a failing source means "not leader".

use futures::StreamExt;
use infrakit_core::leadership::LeadershipCell;
use infrakit_core::*;
use std::time::Duration;

#[tokio::test]
async fn manual_terms_increase_with_each_gain() {
    let l = ManualLeadership::new();
    let mut states = l.watch();
    assert_eq!(
        states.next().await,
        Some(LeadershipState::Follower { leader: None })
    );
    let mut last = Term(0);
    for round in 0..5 {
        l.gain();
        let term = states.next().await.unwrap().term().unwrap();
        assert!(term > last, "round {round}: {term} after {last}");
        last = term;
        l.gain(); // no change, no new term, no new item
        if round % 2 == 0 {
            l.lose(Some("other".into()));
        } else {
            l.fail("source down");
        }
        let s = states.next().await.unwrap();
        assert!(!s.is_leader());
    }
    assert_eq!(last, Term(5));
}

#[tokio::test]
async fn a_failed_source_is_not_leadership() {
    let l = ManualLeadership::new();
    l.gain();
    l.fail("etcd unreachable");
    let s = l.current().await;
    assert!(!s.is_leader());
    assert!(s.to_string().contains("etcd unreachable"), "{s}");
}

#[tokio::test]
async fn every_watcher_sees_the_same_terms() {
    let cell = LeadershipCell::new();
    let mut w1 = cell.watch();
    let mut w2 = cell.watch();
    assert!(!w1.next().await.unwrap().is_leader());
    cell.set_leader();
    let t1 = w1.next().await.unwrap().term();
    assert_eq!(t1, Some(Term(1)));
    // A watcher that joins later sees the same term.
    assert_eq!(cell.watch().next().await.unwrap().term(), t1);
    assert_eq!(w2.next().await.unwrap().term(), t1);
}

#[tokio::test]
async fn static_leadership() {
    let leader = StaticLeadership::leader();
    assert_eq!(leader.current().await.term(), Some(Term(1)));
    let follower = StaticLeadership::follower(Some("10.0.0.1".into()));
    assert_eq!(follower.current().await.leader_location(), Some("10.0.0.1"));
    assert!(!follower.watch().next().await.unwrap().is_leader());
}

async fn next_matching(
    states: &mut LeadershipStream,
    pred: impl Fn(&LeadershipState) -> bool,
) -> LeadershipState {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = states.next().await.expect("stream ended");
            if pred(&s) {
                return s;
            }
        }
    })
    .await
    .expect("no matching leadership state within 5 s")
}

#[tokio::test]
async fn file_leadership_follows_the_file_and_terms_grow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leader");
    let interval = Duration::from_millis(20);
    let a = FileLeadership::with_interval(&path, "a", interval);
    let b = FileLeadership::with_interval(&path, "b", interval);
    let mut wa = a.watch();
    let mut wb = b.watch();

    FileLeadership::write_leader(&path, "a").unwrap();
    let t1 = next_matching(&mut wa, LeadershipState::is_leader)
        .await
        .term()
        .unwrap();
    let sb = next_matching(&mut wb, |s| s.leader_location() == Some("a")).await;
    assert!(!sb.is_leader());

    FileLeadership::write_leader(&path, "b").unwrap();
    next_matching(&mut wa, |s| s.leader_location() == Some("b")).await;
    next_matching(&mut wb, LeadershipState::is_leader).await;

    FileLeadership::write_leader(&path, "a").unwrap();
    let t2 = next_matching(&mut wa, LeadershipState::is_leader)
        .await
        .term()
        .unwrap();
    assert!(t2 > t1, "{t2} after {t1}");

    // An unreadable source means not leader.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let s = next_matching(&mut wa, |s| {
        matches!(s, LeadershipState::Unavailable { .. })
    })
    .await;
    assert!(!s.is_leader());
    assert!(!a.current().await.is_leader());
}

#[tokio::test]
async fn file_leadership_without_a_file_is_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let l = FileLeadership::new(dir.path().join("missing"), "a");
    assert_eq!(
        l.current().await,
        LeadershipState::Follower { leader: None }
    );
    std::fs::write(dir.path().join("missing"), "\n").unwrap();
    assert_eq!(
        l.current().await,
        LeadershipState::Follower { leader: None }
    );
}
