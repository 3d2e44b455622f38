//! `Ec2Instance` and `Ec2Metadata` against moto server (a real EC2 API emulator), with a
//! recording proxy in front of it for counting calls and injecting faults on the wire.

mod common;

use common::{Proxy, Seen, Verdict, client_at, ec2_error, image, moto, network, volume};
use infrakit_aws::{ATTACHED_VOLUMES_TAG, Ec2Instance, Ec2Metadata, Ec2Options, SCOPE_TAG};
use infrakit_core::{
    Allocation, Attachment, Classify, DestroyContext, EngineEvent, EngineOptions, GROUP_TAG, Group,
    GroupSpec, Instance, InstanceError, InstanceId, InstanceSpec, LOGICAL_ID_TAG, Manager,
    MemoryStore, Metadata, Plugins, StaticLeadership, Tags, flavor::Vanilla, group::PluginSpec,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn scope(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{test}-{}-{nanos:x}", std::process::id())
}

fn fast() -> Ec2Options {
    Ec2Options::default()
        .ready_timeout(Duration::from_secs(20))
        .poll_interval(Duration::from_millis(100))
}

async fn instance_of(client: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    client
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .clone()
}

fn tags_map(i: &aws_sdk_ec2::types::Instance) -> std::collections::BTreeMap<String, String> {
    i.tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_has_its_fixed_ip_and_its_tags_from_the_start() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    let net = network(&client, 41).await;
    let scope = scope("launch");
    let ec2 = Ec2Instance::new(client.clone(), &scope)
        .unwrap()
        .options(fast());
    let ami = image(&client).await;
    let spec = InstanceSpec::new(json!({
        "ImageId": ami, "InstanceType": "t3.micro", "SubnetId": net.subnet,
        "Tags": {"team": "infra"},
    }))
    .with_tag(GROUP_TAG, "managers")
    .with_logical_id(net.ip(10))
    .with_init("#!/bin/sh\necho hello");
    proxy.clear();
    let id = ec2.provision(spec).await.unwrap();

    let actions = proxy.actions();
    assert!(
        !actions.iter().any(|a| a == "CreateTags"),
        "tags are set at launch, never after: {actions:?}"
    );
    let run = proxy
        .seen()
        .into_iter()
        .find(|s| s.action == "RunInstances")
        .unwrap();
    assert!(
        run.params
            .get("ClientToken")
            .is_some_and(|t| t.starts_with("ik-")),
        "a client token is sent: {:?}",
        run.params
    );
    assert_eq!(
        run.params.get("UserData").map(String::as_str),
        Some("IyEvYmluL3NoCmVjaG8gaGVsbG8="),
        "init is the user data"
    );

    let i = instance_of(&client, id.as_str()).await;
    assert_eq!(i.private_ip_address(), Some(net.ip(10).as_str()));
    assert_eq!(i.subnet_id(), Some(net.subnet.as_str()));
    let tags = tags_map(&i);
    assert_eq!(tags.get(GROUP_TAG).map(String::as_str), Some("managers"));
    assert_eq!(tags.get(SCOPE_TAG), Some(&scope));
    assert_eq!(tags.get(LOGICAL_ID_TAG), Some(&net.ip(10)));
    assert_eq!(tags.get("team").map(String::as_str), Some("infra"));

    let described = ec2
        .describe(&Tags::new().with(GROUP_TAG, "managers"), true)
        .await
        .unwrap();
    assert_eq!(described.len(), 1);
    let d = &described[0];
    assert_eq!(d.id, id);
    assert_eq!(
        d.logical_id.as_ref().map(|l| l.as_str()),
        Some(net.ip(10).as_str())
    );
    let props = d.properties.as_ref().unwrap();
    assert_eq!(props["PrivateIpAddress"], net.ip(10));
    assert_eq!(props["State"], "running");
    assert_eq!(props["InstanceType"], "t3.micro");

    // A second instance asking for the same IP is a conflict naming the holder, before any
    // launch is attempted.
    proxy.clear();
    let again = InstanceSpec::new(json!({
        "ImageId": image(&client).await, "InstanceType": "t3.micro", "SubnetId": net.subnet,
    }))
    .with_tag(GROUP_TAG, "managers")
    .with_logical_id(net.ip(10));
    let err = ec2.provision(again).await.unwrap_err();
    assert!(
        matches!(&err, InstanceError::Conflict { message } if message.contains(id.as_str())),
        "{err}"
    );
    assert_eq!(proxy.count("RunInstances"), 0);

    // Bad logical IDs and properties name the field.
    let bad = InstanceSpec::new(json!({"ImageId": "ami-1", "InstanceType": "t3.micro",
        "SubnetId": net.subnet}))
    .with_logical_id("manager-1");
    let err = ec2.provision(bad).await.unwrap_err().to_string();
    assert!(err.contains("LogicalID"), "{err}");
    let err = ec2
        .validate(&json!({"ImageId": "ami-1", "InstanceTyp": "t3.micro"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("InstanceTyp"), "{err}");
    ec2.destroy(&id, DestroyContext::Terminate).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_follows_every_page_in_one_listing() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    let net = network(&client, 42).await;
    let ec2 = Ec2Instance::new(client.clone(), &scope("pages"))
        .unwrap()
        .options(fast().page_size(5));
    let ami = image(&client).await;
    let spec = InstanceSpec::new(
        json!({"ImageId": ami, "InstanceType": "t3.nano", "SubnetId": net.subnet}),
    )
    .with_tag(GROUP_TAG, "workers");
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(ec2.provision(spec.clone()).await.unwrap());
    }
    // One terminated out of band: not a member any more.
    client
        .terminate_instances()
        .instance_ids(ids[0].as_str())
        .send()
        .await
        .unwrap();
    proxy.clear();
    let described = ec2
        .describe(&Tags::new().with(GROUP_TAG, "workers"), false)
        .await
        .unwrap();
    let mut got: Vec<InstanceId> = described.into_iter().map(|d| d.id).collect();
    got.sort();
    let mut want = ids[1..].to_vec();
    want.sort();
    assert_eq!(got, want);
    let pages = proxy.seen();
    assert!(
        pages.iter().all(|s| s.action == "DescribeInstances"),
        "nothing but the listing: {:?}",
        proxy.actions()
    );
    assert!(
        pages.len() >= 3,
        "11 instances at 5 per page need 3 pages, got {}",
        pages.len()
    );
    assert!(
        pages[1..]
            .iter()
            .all(|s| s.params.contains_key("NextToken"))
    );
    assert_eq!(
        pages[0].params.get("MaxResults").map(String::as_str),
        Some("5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_never_see_or_touch_each_others_instances() {
    let client = client_at(&moto());
    let net = network(&client, 43).await;
    let a = Ec2Instance::new(client.clone(), &scope("ns-a")).unwrap();
    let b = Ec2Instance::new(client.clone(), &scope("ns-b")).unwrap();
    let ami = image(&client).await;
    let spec = InstanceSpec::new(
        json!({"ImageId": ami, "InstanceType": "t3.nano", "SubnetId": net.subnet}),
    )
    .with_tag(GROUP_TAG, "workers");
    let ia = a.provision(spec.clone()).await.unwrap();
    let ib = b.provision(spec.clone()).await.unwrap();
    let group = Tags::new().with(GROUP_TAG, "workers");
    let seen_a: Vec<_> = a.describe(&group, false).await.unwrap();
    let seen_b: Vec<_> = b.describe(&group, false).await.unwrap();
    assert_eq!(seen_a.iter().map(|d| &d.id).collect::<Vec<_>>(), [&ia]);
    assert_eq!(seen_b.iter().map(|d| &d.id).collect::<Vec<_>>(), [&ib]);
    // a cannot destroy or relabel b's instance.
    assert_eq!(
        a.destroy(&ib, DestroyContext::Terminate).await.unwrap_err(),
        InstanceError::NotFound { id: ib.clone() }
    );
    assert!(matches!(
        a.label(&ib, &Tags::new().with("x", "y")).await,
        Err(InstanceError::NotFound { .. })
    ));
    let state = instance_of(&client, ib.as_str()).await;
    assert_eq!(
        state.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    b.destroy(&ib, DestroyContext::Terminate).await.unwrap();
    a.destroy(&ia, DestroyContext::Terminate).await.unwrap();
    assert!(a.describe(&group, false).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ebs_attachment_is_attached_and_a_held_volume_is_a_clear_conflict() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    let net = network(&client, 44).await;
    let scope = scope("attach");
    let ec2 = Ec2Instance::new(client.clone(), &scope)
        .unwrap()
        .options(fast());
    let vol = volume(&client, &net.az, &scope, "state-a").await;
    let ami = image(&client).await;
    let props = json!({"ImageId": ami, "InstanceType": "t3.micro", "SubnetId": net.subnet,
        "AttachDevice": "/dev/xvdg"});
    let spec = InstanceSpec::new(props.clone())
        .with_tag(GROUP_TAG, "managers")
        .with_logical_id(net.ip(20))
        .with_attachment(Attachment::new("state-a", "ebs"));
    let id = ec2.provision(spec).await.unwrap();
    let v = client
        .describe_volumes()
        .volume_ids(&vol)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .clone();
    let att = &v.attachments()[0];
    assert_eq!(att.instance_id(), Some(id.as_str()));
    assert_eq!(att.device(), Some("/dev/xvdg"));
    let tags = tags_map(&instance_of(&client, id.as_str()).await);
    assert_eq!(tags.get(ATTACHED_VOLUMES_TAG), Some(&vol));

    // The same volume for another instance, while the first runs: a conflict that names the
    // volume and its holder, and nothing is launched.
    proxy.clear();
    let other = InstanceSpec::new(props.clone())
        .with_tag(GROUP_TAG, "managers")
        .with_logical_id(net.ip(21))
        .with_attachment(Attachment::new("state-a", "ebs"));
    let err = ec2.provision(other).await.unwrap_err();
    assert!(
        matches!(&err, InstanceError::Conflict { message }
            if message.contains(&vol) && message.contains(id.as_str())),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(proxy.count("RunInstances"), 0);

    // An attachment that names no volume, or a type we do not attach: permanent errors.
    let missing = InstanceSpec::new(props.clone())
        .with_logical_id(net.ip(22))
        .with_attachment(Attachment::new("no-such-volume", "ebs"));
    let err = ec2.provision(missing).await.unwrap_err();
    assert!(
        !err.is_transient() && err.to_string().contains("no-such-volume"),
        "{err}"
    );
    let nfs = InstanceSpec::new(props.clone())
        .with_logical_id(net.ip(22))
        .with_attachment(Attachment::new("x", "nfs"));
    let err = ec2.provision(nfs).await.unwrap_err().to_string();
    assert!(err.contains("Attachments[0].Type"), "{err}");

    // A rolling update detaches the volume before terminating, so that a replacement can
    // take it at once.
    proxy.clear();
    ec2.destroy(&id, DestroyContext::RollingUpdate)
        .await
        .unwrap();
    let actions = proxy.actions();
    let detach = actions.iter().position(|a| a == "DetachVolume");
    let terminate = actions.iter().position(|a| a == "TerminateInstances");
    assert!(
        detach.is_some() && detach < terminate,
        "detach then terminate: {actions:?}"
    );
    let v = client
        .describe_volumes()
        .volume_ids(&vol)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .clone();
    assert_eq!(
        v.state().map(|s| s.as_str()),
        Some("available"),
        "kept, free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_replaces_a_terminated_member_with_the_same_ip_and_volume() {
    let client = client_at(&moto());
    let net = network(&client, 45).await;
    let scope = scope("quorum");
    let ec2 = Ec2Instance::new(client.clone(), &scope)
        .unwrap()
        .options(fast());
    let ips: Vec<String> = (10..13).map(|h| net.ip(h)).collect();
    let mut alloc = Allocation::logical_ids(ips.iter().map(String::as_str));
    let mut volumes = Vec::new();
    for ip in &ips {
        let name = format!("state-{ip}");
        volumes.push(volume(&client, &net.az, &scope, &name).await);
        alloc = alloc.with_attachment(ip.as_str(), Attachment::new(name, "ebs"));
    }
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("ec2", ec2.clone())
                .flavor("vanilla", Vanilla),
        )
        .options(
            EngineOptions::default()
                .resync(Duration::from_millis(500))
                .settle(Duration::from_millis(50)),
        )
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let ami = image(&client).await;
    manager
        .commit(
            GroupSpec::new(
                "managers",
                PluginSpec::new(
                    "ec2",
                    json!({"ImageId": ami, "InstanceType": "t3.small", "SubnetId": net.subnet}),
                ),
                PluginSpec::new("vanilla", json!({"Init": ["echo manager"]})),
                alloc,
            ),
            false,
        )
        .await
        .unwrap();
    let d = manager
        .wait_converged(&"managers".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(d.instances.len(), 3);
    let victim = d
        .instances
        .iter()
        .find(|m| m.logical_id.as_ref().map(|l| l.as_str()) == Some(ips[1].as_str()))
        .unwrap()
        .id
        .clone();

    let mut events = manager.events();
    let start = Instant::now();
    client
        .terminate_instances()
        .instance_ids(victim.as_str())
        .send()
        .await
        .unwrap();
    let replacement = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(EngineEvent::Provisioned {
                id,
                logical_id: Some(l),
                ..
            }) = events.recv().await
                && l.as_str() == ips[1]
            {
                return id;
            }
        }
    })
    .await
    .expect("no replacement within 30 s");
    println!(
        "terminated -> replacement launched and attached: {:?}",
        start.elapsed()
    );
    assert_ne!(replacement, victim);
    manager
        .wait_converged(&"managers".into(), Duration::from_secs(30))
        .await
        .unwrap();
    let i = instance_of(&client, replacement.as_str()).await;
    assert_eq!(i.private_ip_address(), Some(ips[1].as_str()), "same IP");
    let v = client
        .describe_volumes()
        .volume_ids(&volumes[1])
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .clone();
    assert_eq!(
        v.attachments().first().and_then(|a| a.instance_id()),
        Some(replacement.as_str()),
        "same volume"
    );
    // Exactly three live members, one per IP.
    let live = ec2
        .describe(&Tags::new().with(GROUP_TAG, "managers"), true)
        .await
        .unwrap();
    let mut live_ips: Vec<String> = live
        .iter()
        .map(|d| {
            d.properties.as_ref().unwrap()["PrivateIpAddress"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    live_ips.sort();
    assert_eq!(live_ips, ips);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_then_surfaced_as_transient() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    let ec2 = Ec2Instance::new(client, &scope("throttle")).unwrap();
    let group = Tags::new().with(GROUP_TAG, "g");
    // The first two listings are throttled; the client's adaptive retries get through.
    proxy.rule(|s: &Seen, n| {
        if s.action == "DescribeInstances" && n < 2 {
            Verdict::Reply(
                503,
                ec2_error("RequestLimitExceeded", "Request limit exceeded."),
            )
        } else {
            Verdict::Forward
        }
    });
    let t = Instant::now();
    let first = ec2.describe(&group, false).await;
    println!("two throttles then through: {:?}", t.elapsed());
    assert_eq!(proxy.count("DescribeInstances"), 3, "{first:?}");
    assert!(first.unwrap().is_empty());

    // Throttled on every attempt: a transient, typed error keeping AWS's words. (Two
    // attempts, so that the adaptive limiter's slowing down does not make the test long.)
    let ec2 = Ec2Instance::new(
        common::client_with(&proxy.endpoint, infrakit_aws::retry_config(2)),
        &scope("throttle"),
    )
    .unwrap();
    proxy.clear();
    proxy.rule(|_: &Seen, _| {
        Verdict::Reply(
            503,
            ec2_error("RequestLimitExceeded", "Request limit exceeded."),
        )
    });
    let t = Instant::now();
    let err = ec2.describe(&group, false).await.unwrap_err();
    println!("throttled on every attempt: {:?}", t.elapsed());
    assert!(matches!(err, InstanceError::Throttled { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("RequestLimitExceeded")
            && err.to_string().contains("Request limit exceeded."),
        "{err}"
    );
    assert_eq!(
        proxy.count("DescribeInstances"),
        2,
        "the client's 2 attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_ami_is_a_permanent_error_naming_it() {
    let client = client_at(&moto());
    let net = network(&client, 46).await;
    let ec2 = Ec2Instance::new(client, &scope("ami")).unwrap();
    let spec = InstanceSpec::new(json!({
        "ImageId": "ami-0badc0ffee0000000", "InstanceType": "t3.micro", "SubnetId": net.subnet,
    }));
    let err = ec2.provision(spec).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("ami-0badc0ffee0000000") && text.contains("InvalidAMIID"),
        "{text} (moto must run with MOTO_ENABLE_AMI_VALIDATION=true, as scripts/test starts it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_with_a_lost_answer_is_retried_with_the_same_client_token() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    let net = network(&client, 47).await;
    let ec2 = Ec2Instance::new(client.clone(), &scope("token")).unwrap();
    let ami = image(&client).await;
    let spec = InstanceSpec::new(
        json!({"ImageId": ami, "InstanceType": "t3.nano", "SubnetId": net.subnet}),
    )
    .with_tag(GROUP_TAG, "workers");
    let tokens = |p: &Proxy| -> Vec<String> {
        p.seen()
            .into_iter()
            .filter(|s| s.action == "RunInstances")
            .map(|s| s.params["ClientToken"].clone())
            .collect()
    };

    // Every attempt of the first launch fails with a 500: its outcome is unknown.
    proxy.rule(|s: &Seen, _| {
        if s.action == "RunInstances" {
            Verdict::Reply(
                500,
                ec2_error("InternalError", "An internal error has occurred"),
            )
        } else {
            Verdict::Forward
        }
    });
    let err = ec2.provision(spec.clone()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let first = tokens(&proxy);
    assert!(first.len() > 1, "the client retried: {first:?}");
    assert!(
        first.iter().all(|t| t == &first[0]),
        "one token per launch: {first:?}"
    );

    // The engine's retry of the same spec reuses the token (EC2 would answer with the first
    // instance if it had been started); this time the answer comes back.
    proxy.clear();
    proxy.rule(|_: &Seen, _| Verdict::Forward);
    ec2.provision(spec.clone()).await.unwrap();
    assert_eq!(tokens(&proxy), [first[0].clone()]);

    // The next launch of the same spec is a new instance: a new token.
    proxy.clear();
    ec2.provision(spec.clone()).await.unwrap();
    let third = tokens(&proxy);
    assert_eq!(third.len(), 1);
    assert_ne!(third[0], first[0]);

    // A launch EC2 surely refused frees its token.
    proxy.clear();
    proxy.rule(|s: &Seen, _| {
        if s.action == "RunInstances" {
            Verdict::Reply(400, ec2_error("InvalidParameterValue", "bad"))
        } else {
            Verdict::Forward
        }
    });
    assert!(
        !ec2.provision(spec.clone())
            .await
            .unwrap_err()
            .is_transient()
    );
    let refused = tokens(&proxy);
    proxy.clear();
    proxy.rule(|_: &Seen, _| Verdict::Forward);
    ec2.provision(spec).await.unwrap();
    assert_ne!(tokens(&proxy), refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_metadata_service_gives_the_instance_its_facts() {
    // moto also serves the other tests (listing 500 instances takes it seconds): a longer
    // limit than the 2 s that suits a real, local metadata service.
    let md = Ec2Metadata::new(moto()).timeout(Duration::from_secs(60));
    assert_eq!(md.get("region").await.unwrap(), Some(json!("us-east-1")));
    assert_eq!(
        md.get("/availability_zone").await.unwrap(),
        Some(json!("us-east-1a"))
    );
    assert_eq!(
        md.get("private_ip").await.unwrap(),
        Some(json!("127.0.0.1"))
    );
    assert_eq!(md.get("instance_id").await.unwrap(), Some(json!("i-fake")));
    assert_eq!(md.get("no_such_fact").await.unwrap(), None);
    assert!(
        md.list("")
            .await
            .unwrap()
            .contains(&"subnet_id".to_string())
    );
    // A service that is not there: an error naming where it looked.
    let nowhere = Ec2Metadata::new("http://127.0.0.1:9");
    let err = nowhere.get("region").await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

/// The closing note's number: EC2 calls per reconcile pass of a converged group of 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_500_instances_costs_the_listing_pages_and_nothing_per_instance() {
    let moto = moto();
    let proxy = Proxy::start(&moto).await;
    let client = client_at(&proxy.endpoint);
    // A /22: a /24 holds only 251 instances (AWS keeps 5 addresses of every subnet).
    let net = common::network_of(&client, 48, 22).await;
    let ec2 = Ec2Instance::new(client.clone(), &scope("pass500"))
        .unwrap()
        .options(fast().page_size(200));
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("ec2", ec2)
                .flavor("vanilla", Vanilla),
        )
        .options(
            EngineOptions::default()
                .resync(Duration::from_millis(1000))
                .parallelism(32),
        )
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let ami = image(&client).await;
    let started = Instant::now();
    manager
        .commit(
            GroupSpec::new(
                "big",
                PluginSpec::new(
                    "ec2",
                    json!({"ImageId": ami, "InstanceType": "t3.nano", "SubnetId": net.subnet}),
                ),
                PluginSpec::new("vanilla", json!({})),
                Allocation::size(500),
            ),
            false,
        )
        .await
        .unwrap();
    manager
        .wait_converged(&"big".into(), Duration::from_secs(300))
        .await
        .unwrap();
    println!(
        "500 instances launched by the engine in {:?}",
        started.elapsed()
    );
    // Watch two whole passes: from the first page of one listing to the first page of the
    // third (moto takes seconds to list 500 instances, so no fixed window is used).
    proxy.clear();
    let first_page =
        |s: &Seen| s.action == "DescribeInstances" && !s.params.contains_key("NextToken");
    let seen = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let seen = proxy.seen();
            let starts: Vec<usize> = seen
                .iter()
                .enumerate()
                .filter(|(_, s)| first_page(s))
                .map(|(i, _)| i)
                .collect();
            if starts.len() >= 3 {
                return seen[starts[0]..starts[2]].to_vec();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("two passes within 180 s");
    manager.shutdown().await;
    let passes = seen.iter().filter(|s| first_page(s)).count();
    let pages = seen
        .iter()
        .filter(|s| s.action == "DescribeInstances")
        .count();
    let others = seen.len() - pages;
    println!(
        "EC2 calls over {passes} passes of a converged group of 500: {pages} DescribeInstances \
         pages ({:.1} per pass at 200 per page), {others} other calls",
        pages as f64 / passes.max(1) as f64
    );
    assert_eq!(passes, 2);
    assert_eq!(pages, 6, "500 at 200 per page: 3 pages a pass");
    assert_eq!(others, 0, "nothing per instance: {:?}", proxy.actions());
    assert_eq!(pages, passes * 3, "500 at 200 per page is 3 pages a pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_passes_the_instance_conformance_check() {
    use infrakit_core::testkit::{InstanceFixture, check_instance};
    let client = client_at(&moto());
    let net = network(&client, 49).await;
    let ec2 = Ec2Instance::new(client.clone(), &scope("conformance"))
        .unwrap()
        .options(fast());
    let ami = image(&client).await;
    // Two free IPs of the test subnet as logical IDs. moto answers at once; on EC2 describe
    // lags a launch or a termination by a few seconds (eventual consistency).
    let fixture = InstanceFixture::new(
        json!({"ImageId": ami, "InstanceType": "t3.nano", "SubnetId": net.subnet}),
    )
    .logical_ids(net.ip(250), net.ip(251))
    .settle(Duration::from_secs(10));
    let start = Instant::now();
    let report = check_instance(&ec2, &fixture).await;
    println!("ec2 conformance in {:?}:\n{report}", start.elapsed());
    assert!(report.passed(), "{report}");
    let left = ec2.describe(&Tags::new(), false).await.unwrap();
    assert!(
        left.is_empty(),
        "the check destroys what it creates: {left:?}"
    );
}
