//! The simulator honours the `Instance` contract and injects faults deterministically.

use futures::StreamExt;
use infrakit_core::simulator::{Fault, Op};
use infrakit_core::*;
use std::time::Duration;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().copied().collect()
}

#[tokio::test]
async fn describe_is_a_subset_match_and_a_missing_tag_never_matches() {
    let sim = Simulator::new();
    let a = sim
        .provision(
            InstanceSpec::default()
                .with_tag(GROUP_TAG, "workers")
                .with_tag("zone", "a"),
        )
        .await
        .unwrap();
    let b = sim
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "workers"))
        .await
        .unwrap();
    let stranger = sim.provision(InstanceSpec::default()).await.unwrap();

    let ids = |d: Vec<Description>| d.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(sim
            .describe(&tags(&[(GROUP_TAG, "workers")]), false)
            .await
            .unwrap()),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        ids(sim
            .describe(&tags(&[(GROUP_TAG, "workers"), ("zone", "a")]), false)
            .await
            .unwrap()),
        std::slice::from_ref(&a)
    );
    // b has no zone tag at all: it must not match a query for one, even an empty value.
    assert!(!ids(sim.describe(&tags(&[("zone", "")]), false).await.unwrap()).contains(&b));
    assert!(
        sim.describe(&tags(&[(GROUP_TAG, "managers")]), false)
            .await
            .unwrap()
            .is_empty()
    );
    // The empty query matches everything, strangers included.
    assert_eq!(
        ids(sim.describe(&Tags::new(), false).await.unwrap()),
        [a, b, stranger]
    );
}

#[tokio::test]
async fn tags_logical_id_and_attachments_are_kept_from_creation() {
    let sim = Simulator::new();
    let spec = InstanceSpec::new(serde_json::json!({"size": "large"}))
        .with_tag(GROUP_TAG, "managers")
        .with_logical_id("10.0.0.1")
        .with_attachment(Attachment::new("vol-1", "ebs"))
        .with_init("echo boot");
    let id = sim.provision(spec.clone()).await.unwrap();
    let d = &sim.describe(&Tags::new(), true).await.unwrap()[0];
    assert_eq!(d.id, id);
    assert_eq!(
        d.logical_id.as_ref().map(LogicalId::as_str),
        Some("10.0.0.1")
    );
    assert_eq!(d.tags, spec.tags);
    let props = d.properties.as_ref().unwrap();
    assert_eq!(props["Properties"]["size"], "large");
    assert_eq!(props["Attachments"][0]["ID"], "vol-1");
    assert!(
        sim.describe(&Tags::new(), false).await.unwrap()[0]
            .properties
            .is_none()
    );
}

#[tokio::test]
async fn logical_ids_and_attachments_are_exclusive() {
    let sim = Simulator::new();
    let first = sim
        .provision(
            InstanceSpec::default()
                .with_logical_id("10.0.0.1")
                .with_attachment(Attachment::new("vol-1", "ebs")),
        )
        .await
        .unwrap();
    let same_ip = sim
        .provision(InstanceSpec::default().with_logical_id("10.0.0.1"))
        .await
        .unwrap_err();
    assert!(
        matches!(same_ip, InstanceError::Conflict { .. }),
        "{same_ip}"
    );
    assert!(same_ip.is_transient());
    let same_volume = sim
        .provision(
            InstanceSpec::default()
                .with_logical_id("10.0.0.2")
                .with_attachment(Attachment::new("vol-1", "ebs")),
        )
        .await
        .unwrap_err();
    assert!(same_volume.to_string().contains("vol-1"), "{same_volume}");
    // Once the holder is gone, the replacement gets both.
    sim.destroy(&first, DestroyContext::RollingUpdate)
        .await
        .unwrap();
    sim.provision(
        InstanceSpec::default()
            .with_logical_id("10.0.0.1")
            .with_attachment(Attachment::new("vol-1", "ebs")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn label_destroy_and_not_found() {
    let sim = Simulator::new();
    let id = sim.insert(InstanceSpec::default().with_tag("owner", "someone-else"));
    sim.label(&id, &tags(&[(GROUP_TAG, "workers")]))
        .await
        .unwrap();
    let d = sim
        .describe(&tags(&[(GROUP_TAG, "workers")]), false)
        .await
        .unwrap();
    assert_eq!(d[0].tags.get("owner"), Some("someone-else"));
    sim.destroy(&id, DestroyContext::ScaleDown).await.unwrap();
    let again = sim
        .destroy(&id, DestroyContext::ScaleDown)
        .await
        .unwrap_err();
    assert_eq!(again, InstanceError::NotFound { id: id.clone() });
    assert!(!again.is_transient());
    assert!(matches!(
        sim.label(&id, &Tags::new()).await,
        Err(InstanceError::NotFound { .. })
    ));
}

#[tokio::test]
async fn validate_names_the_field() {
    let sim = Simulator::new();
    sim.validate(&serde_json::json!({"a": 1})).await.unwrap();
    let err = sim.validate(&serde_json::json!([1, 2])).await.unwrap_err();
    match err {
        // Relative to the properties themselves: here, the whole object.
        InstanceError::InvalidProperties(e) => assert_eq!(e.field, ""),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn fail_next_then_recover() {
    let sim = Simulator::new();
    sim.fail_next(2, Fault::Unavailable);
    sim.fail_next(1, Fault::Permanent);
    let e1 = sim.provision(InstanceSpec::default()).await.unwrap_err();
    let e2 = sim.describe(&Tags::new(), false).await.unwrap_err();
    let e3 = sim.provision(InstanceSpec::default()).await.unwrap_err();
    assert!(e1.is_transient() && e2.is_transient());
    assert!(!e3.is_transient());
    assert!(sim.is_empty());
    sim.provision(InstanceSpec::default()).await.unwrap();
    assert_eq!(sim.len(), 1);
    let calls = sim.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls[..3].iter().all(|c| c.outcome.is_err()));
    assert!(calls[3].outcome.is_ok());
}

async fn outcomes(seed: u64) -> Vec<bool> {
    let sim = Simulator::builder()
        .seed(seed)
        .error_rate(0.3)
        .throttle_rate(0.1)
        .build();
    let mut out = Vec::new();
    for _ in 0..200 {
        out.push(sim.provision(InstanceSpec::default()).await.is_ok());
    }
    out
}

#[tokio::test]
async fn faults_are_deterministic_given_a_seed() {
    let a = outcomes(42).await;
    assert_eq!(a, outcomes(42).await);
    assert_ne!(a, outcomes(43).await);
    let failures = a.iter().filter(|ok| !**ok).count();
    // 1 - 0.7 * 0.9 = 37% expected.
    assert!((40..=110).contains(&failures), "{failures} failures of 200");
}

#[tokio::test]
async fn throttling_carries_a_retry_hint() {
    let sim = Simulator::builder().throttle_rate(1.0).build();
    let e = sim.describe(&Tags::new(), false).await.unwrap_err();
    assert!(matches!(e, InstanceError::Throttled { .. }));
    assert!(e.retry_after().is_some());
}

#[tokio::test]
async fn a_lost_response_still_creates_the_tagged_instance() {
    let sim = Simulator::builder().lost_response_rate(1.0).build();
    let err = sim
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "g"))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    // The instance exists, tagged at creation, so a controller finds and adopts it.
    assert_eq!(
        sim.describe(&tags(&[(GROUP_TAG, "g")]), false)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn events_report_provision_relabel_destroy_and_kill() {
    let sim = Simulator::new();
    let mut events = sim.events().unwrap();
    let a = sim
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "g"))
        .await
        .unwrap();
    let b = sim
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "g"))
        .await
        .unwrap();
    sim.label(&a, &tags(&[("x", "1")])).await.unwrap();
    sim.destroy(&a, DestroyContext::Terminate).await.unwrap();
    assert!(sim.kill(&b));
    assert!(!sim.kill(&b));
    let got: Vec<InstanceEvent> = events.by_ref().take(5).collect().await;
    assert!(matches!(&got[0], InstanceEvent::Provisioned { id, .. } if *id == a));
    assert!(matches!(&got[1], InstanceEvent::Provisioned { id, .. } if *id == b));
    assert!(
        matches!(&got[2], InstanceEvent::Relabeled { id, tags } if *id == a && tags.get("x") == Some("1"))
    );
    assert!(matches!(&got[3], InstanceEvent::Gone { id, .. } if *id == a));
    assert!(
        matches!(&got[4], InstanceEvent::Gone { id, tags } if *id == b && tags.get(GROUP_TAG) == Some("g"))
    );
}

#[tokio::test]
async fn kill_where_kills_only_matching_instances() {
    let sim = Simulator::new();
    for g in ["a", "a", "b"] {
        sim.provision(InstanceSpec::default().with_tag(GROUP_TAG, g))
            .await
            .unwrap();
    }
    assert_eq!(sim.kill_where(&tags(&[(GROUP_TAG, "a")])).len(), 2);
    assert_eq!(sim.len(), 1);
}

#[tokio::test]
async fn the_call_log_names_the_caller() {
    let sim = Simulator::new();
    let replica_a = sim.with_caller("replica-a");
    let replica_b = sim.with_caller("replica-b");
    let id = replica_a.provision(InstanceSpec::default()).await.unwrap();
    replica_b
        .destroy(&id, DestroyContext::ScaleDown)
        .await
        .unwrap();
    let calls = sim.calls();
    assert_eq!(calls[0].caller.as_deref(), Some("replica-a"));
    assert_eq!(calls[0].op, Op::Provision);
    assert_eq!(calls[1].caller.as_deref(), Some("replica-b"));
    assert_eq!(calls[1].context, Some(DestroyContext::ScaleDown));
    assert!(calls.iter().all(|c| c.op.is_mutation()));
    assert!(calls[0].seq < calls[1].seq);
}

#[tokio::test(start_paused = true)]
async fn latency_is_applied_to_every_call() {
    let sim = Simulator::builder()
        .latency(Duration::from_millis(100))
        .build();
    let start = tokio::time::Instant::now();
    sim.provision(InstanceSpec::default()).await.unwrap();
    sim.describe(&Tags::new(), false).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn usable_as_a_shared_trait_object() {
    let sim = Simulator::new();
    let provider: std::sync::Arc<dyn Instance> = std::sync::Arc::new(sim.clone());
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let p = provider.clone();
            tokio::spawn(async move {
                p.provision(InstanceSpec::default().with_tag("n", i.to_string()))
                    .await
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(sim.len(), 16);
}

#[tokio::test]
async fn a_killed_holder_releases_its_logical_id_and_attachments() {
    let sim = Simulator::new();
    let spec = InstanceSpec::default()
        .with_logical_id("10.0.0.7")
        .with_attachment(Attachment::new("vol-7", "ebs"));
    let first = sim.provision(spec.clone()).await.unwrap();
    assert!(sim.provision(spec.clone()).await.is_err());
    assert_eq!(sim.kill_where(&Tags::new()), vec![first]);
    sim.provision(spec.clone()).await.unwrap();
    let second = sim.instances()[0].id.clone();
    assert!(sim.kill(&second));
    sim.provision(spec).await.unwrap();
}
