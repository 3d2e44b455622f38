//! Containers as instances, against a real Docker engine (started by `scripts/test`).

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use infrakit_core::*;
use infrakit_swarm::{ContainerInstance, connect};
use serde_json::json;
use std::time::{Duration, Instant};

fn address() -> String {
    std::env::var("INFRAKIT_DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn image() -> String {
    std::env::var("INFRAKIT_TEST_IMAGE").unwrap_or_else(|_| "infrakit-test/busybox:latest".into())
}

/// The engine, or a failure that says how to get one.
async fn engine() -> Docker {
    let docker = connect(&address()).await.unwrap_or_else(|e| {
        panic!("these tests need a Docker engine ({e}); start one with `scripts/test --prepare-only` (installs docker.io, starts dockerd, builds the test image)")
    });
    if docker.inspect_image(&image()).await.is_err() {
        panic!(
            "the test image {} is missing; `scripts/test --prepare-only` builds it with docker import",
            image()
        );
    }
    docker
}

/// A plugin on its own network and scope, cleared of anything a crashed run left.
async fn plugin(name: &str, subnet: &str) -> ContainerInstance {
    let docker = engine().await;
    let plugin =
        ContainerInstance::new(docker.clone(), format!("ikt-{name}"), format!("ikt-{name}"));
    cleanup(&plugin, name).await;
    plugin.ensure_network(subnet).await.unwrap();
    plugin
}

async fn cleanup(plugin: &ContainerInstance, name: &str) {
    plugin.remove_all().await.unwrap();
    let _ = plugin.docker().remove_network(&format!("ikt-{name}")).await;
    for i in 0..4 {
        let _ = plugin
            .docker()
            .remove_volume(
                &format!("ikt-{name}-vol-{i}"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
}

/// Runs a command in a container and returns its output.
async fn exec(docker: &Docker, id: &str, cmd: &[&str]) -> String {
    let created = docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.to_vec()),
                ..CreateExecOptions::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&chunk.to_string());
        }
    }
    text
}

fn spec(name: &str, lid: &str, vol: usize, init: &str) -> InstanceSpec {
    InstanceSpec::new(json!({"Image": image()}))
        .with_tag(GROUP_TAG, name)
        .with_logical_id(lid)
        .with_attachment(Attachment::new(format!("ikt-{name}-vol-{vol}"), "volume"))
        .with_init(init)
}

async fn wait_described(p: &ContainerInstance, tags: &Tags, n: usize) -> Vec<Description> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = p.describe(tags, true).await.unwrap();
        if found.len() == n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_ip_labels_and_a_volume_that_outlives_its_container() {
    let name = "c1";
    let p = plugin(name, "10.213.1.0/24").await;
    p.validate(&json!({"Image": "x"})).await.unwrap();
    let bad = p
        .validate(&json!({"Image": "x", "Env": ["NOEQUALS"]}))
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, InstanceError::InvalidProperties(e) if e.field == "Env[0]"),
        "{bad}"
    );

    let first = p
        .provision(spec(
            name,
            "10.213.1.10",
            0,
            "echo first > /data/marker && exec sleep 3600",
        ))
        .await
        .unwrap();
    let group = Tags::new().with(GROUP_TAG, name);
    let found = wait_described(&p, &group, 1).await;
    assert_eq!(found[0].id, first);
    assert_eq!(
        found[0].logical_id.as_ref().map(LogicalId::as_str),
        Some("10.213.1.10")
    );
    assert_eq!(found[0].properties.as_ref().unwrap()["IP"], "10.213.1.10");
    assert!(
        p.describe(&group.clone().with("absent", ""), false)
            .await
            .unwrap()
            .is_empty(),
        "a missing label never matches"
    );

    // The IP is held: a second container cannot take it.
    let conflict = p
        .provision(spec(name, "10.213.1.10", 1, "exec sleep 3600"))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, InstanceError::Conflict { .. }),
        "{conflict:?}"
    );
    assert_eq!(
        p.describe(&group, false).await.unwrap().len(),
        1,
        "the failed provision left nothing behind"
    );

    // Replace it: same IP, same volume, and the data is still there.
    p.destroy(&first, DestroyContext::RollingUpdate)
        .await
        .unwrap();
    assert!(matches!(
        p.destroy(&first, DestroyContext::Terminate).await,
        Err(InstanceError::NotFound { .. })
    ));
    let second = p
        .provision(spec(
            name,
            "10.213.1.10",
            0,
            "test \"$(cat /data/marker)\" = first && exec sleep 3600",
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let found = p.describe(&group, true).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "the replacement did not find the first container's data"
    );
    assert_eq!(found[0].id, second);
    assert_eq!(found[0].properties.as_ref().unwrap()["IP"], "10.213.1.10");
    assert_eq!(
        exec(p.docker(), second.as_str(), &["cat", "/data/marker"])
            .await
            .trim(),
        "first"
    );
    cleanup(&p, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_container_is_reported_at_once_and_not_described() {
    let name = "c2";
    let p = plugin(name, "10.213.2.0/24").await;
    let mut events = p.events().unwrap();
    let id = p
        .provision(spec(name, "10.213.2.10", 0, "exec sleep 3600"))
        .await
        .unwrap();
    let group = Tags::new().with(GROUP_TAG, name);
    assert_eq!(wait_described(&p, &group, 1).await.len(), 1);
    let start = Instant::now();
    p.docker()
        .kill_container(
            id.as_str(),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(InstanceEvent::Gone { id: gid, tags }) if gid == id => return tags,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("no Gone event within 10 s");
    println!("kill -> Gone event: {:?}", start.elapsed());
    assert_eq!(
        gone.get(GROUP_TAG),
        Some(name),
        "events carry the container's labels"
    );
    assert!(
        wait_described(&p, &group, 0).await.is_empty(),
        "a dead container is not an instance"
    );
    cleanup(&p, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_replaces_a_killed_container_keeping_its_ip_and_volume() {
    let name = "c3";
    let p = plugin(name, "10.213.3.0/24").await;
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("container", p.clone())
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(
            EngineOptions::default()
                // Long resync: healing must come from the engine's events.
                .resync(Duration::from_secs(60))
                .settle(Duration::from_millis(20)),
        )
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let ips = ["10.213.3.10", "10.213.3.11"];
    let mut alloc = Allocation::logical_ids(ips);
    for (i, ip) in ips.iter().enumerate() {
        alloc = alloc.with_attachment(
            *ip,
            Attachment::new(format!("ikt-{name}-vol-{i}"), "volume"),
        );
    }
    let group = GroupSpec::new(
        name,
        PluginSpec::new("container", json!({"Image": image()})),
        // Each boot appends the container's hostname to the volume's history.
        PluginSpec::new(
            "vanilla",
            json!({"Init": ["hostname >> /data/history", "exec sleep 3600"]}),
        ),
        alloc,
    );
    manager.commit(group, false).await.unwrap();
    let d = manager
        .wait_converged(&name.into(), Duration::from_secs(30))
        .await
        .unwrap();
    let victim = d
        .instances
        .iter()
        .find(|i| i.logical_id == Some(ips[0].into()))
        .unwrap()
        .id
        .clone();

    let mut events = manager.events();
    let start = Instant::now();
    p.docker()
        .kill_container(
            victim.as_str(),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let replacement = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = events.recv().await;
            if let Ok(EngineEvent::Provisioned {
                id,
                logical_id: Some(l),
                ..
            }) = e
                && l == ips[0]
            {
                return id;
            }
        }
    })
    .await
    .expect("no replacement within 20 s");
    println!(
        "container killed -> replacement running: {:?}",
        start.elapsed()
    );
    assert_ne!(replacement, victim);
    let d = manager
        .wait_converged(&name.into(), Duration::from_secs(20))
        .await
        .unwrap();
    let back = d.instances.iter().find(|i| i.id == replacement).unwrap();
    assert_eq!(
        back.logical_id.as_ref().map(LogicalId::as_str),
        Some(ips[0])
    );
    let described = p
        .describe(&Tags::new().with(GROUP_TAG, name), true)
        .await
        .unwrap();
    let props = described
        .iter()
        .find(|i| i.id == replacement)
        .unwrap()
        .properties
        .clone()
        .unwrap();
    assert_eq!(props["IP"], ips[0]);
    // The volume saw both boots: the killed container's and the replacement's.
    let history = exec(p.docker(), replacement.as_str(), &["cat", "/data/history"]).await;
    assert_eq!(history.lines().count(), 2, "volume history: {history:?}");
    manager.destroy(&name.into()).await.unwrap();
    manager.shutdown().await;
    cleanup(&p, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_pass_the_instance_conformance_check() {
    use infrakit_core::testkit::{InstanceFixture, InstanceRule, Outcome, check_instance};
    let name = "c4";
    let p = plugin(name, "10.213.4.0/24").await;
    // Two free addresses of the plugin's network as logical IDs. Containers are listed as
    // soon as they start; the settle covers a loaded engine.
    let fixture = InstanceFixture::new(json!({"Image": image(), "Cmd": ["sleep", "3600"]}))
        .logical_ids("10.213.4.250", "10.213.4.251")
        .settle(Duration::from_secs(5));
    let start = Instant::now();
    let report = check_instance(&p, &fixture).await;
    println!("container conformance in {:?}:\n{report}", start.elapsed());
    let left = p.describe(&Tags::new(), false).await.unwrap();
    cleanup(&p, name).await;
    // The one rule containers cannot keep: Docker cannot change the labels of a container,
    // so `label` of a live one is `Unsupported` (the engine labels only to adopt instances
    // it did not create). It must fail for that reason and no other; every other rule holds.
    for r in &report.results {
        if r.rule == InstanceRule::LabelAddsTags.into() {
            assert!(
                matches!(&r.outcome, Outcome::Failed { seen, .. } if seen.contains("Unsupported")),
                "label_adds_tags should fail only as Unsupported:\n{report}"
            );
        } else {
            assert!(!r.outcome.is_failed(), "{report}");
        }
    }
    assert!(
        left.is_empty(),
        "the check destroys what it creates: {left:?}"
    );
}
