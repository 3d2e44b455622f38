//! Containers as instances under the engine, on a real Docker engine.
//!
//! `cargo run --example container_group` (root, a running `dockerd`: `scripts/test --prepare-only`
//! starts one and builds the test image `infrakit-test/busybox:latest` with `docker import`).
//!
//! A quorum group of three containers with fixed IPs (10.214.0.11-13) and a named volume each,
//! and a scaled group of two; one quorum container is killed; the engine's event brings a
//! replacement with the same IP and the same volume (its data included). Everything it
//! creates is removed at the end. `INFRAKIT_DOCKER_HOST` and `INFRAKIT_TEST_IMAGE` override the
//! engine address and the image.

use infrakit::reconcile::EngineEvent;
use infrakit::swarm::{ContainerInstance, connect};
use infrakit::*;
use serde_json::json;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Error> {
    let address = std::env::var("INFRAKIT_DOCKER_HOST")
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let image = std::env::var("INFRAKIT_TEST_IMAGE")
        .unwrap_or_else(|_| "infrakit-test/busybox:latest".into());
    let docker = connect(&address)
        .await
        .map_err(|e| format!("{e}\nstart an engine with `scripts/test --prepare-only`"))?;
    if docker.inspect_image(&image).await.is_err() {
        return Err(format!(
            "image {image} not found: `scripts/test --prepare-only` builds it with docker import"
        )
        .into());
    }
    let plugin = ContainerInstance::new(docker.clone(), "infrakit-example", "infrakit-example");
    plugin.remove_all().await?;
    plugin.ensure_network("10.214.0.0/24").await?;

    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("container", plugin.clone())
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(EngineOptions::default().settle(Duration::from_millis(20)))
        .build();
    manager.start();
    manager.wait_leading(Duration::from_secs(30)).await?;

    let ips = ["10.214.0.11", "10.214.0.12", "10.214.0.13"];
    let mut alloc = Allocation::logical_ids(ips);
    for (i, ip) in ips.iter().enumerate() {
        alloc = alloc.with_attachment(
            *ip,
            Attachment::new(format!("infrakit-example-state-{}", i + 1), "volume"),
        );
    }
    let managers = GroupSpec::new(
        "managers",
        PluginSpec::new("container", json!({"Image": image})),
        PluginSpec::new(
            "vanilla",
            json!({"Init": ["hostname >> /data/boots", "exec sleep 3600"]}),
        ),
        alloc,
    );
    let workers = GroupSpec::new(
        "workers",
        PluginSpec::new(
            "container",
            json!({"Image": image, "Cmd": ["sleep", "3600"]}),
        ),
        PluginSpec::new("vanilla", json!({})),
        Allocation::size(2),
    );
    for spec in [managers, workers] {
        println!(
            "commit {}: {}",
            spec.id,
            manager.commit(spec.clone(), false).await?
        );
        manager
            .wait_converged(&spec.id, Duration::from_secs(60))
            .await?;
    }
    let d = manager.describe(&"managers".into()).await?;
    for m in &d.instances {
        println!(
            "  manager {} at {}",
            &m.id.as_str()[..12],
            m.logical_id.as_ref().map_or("-", LogicalId::as_str)
        );
    }

    let victim = d
        .instances
        .iter()
        .find(|m| m.logical_id == Some(ips[1].into()))
        .ok_or("no 10.214.0.12")?;
    let mut events = manager.events();
    let start = Instant::now();
    docker
        .kill_container(
            victim.id.as_str(),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await?;
    println!("killed {} ({})", &victim.id.as_str()[..12], ips[1]);
    let replacement = loop {
        if let EngineEvent::Provisioned {
            id,
            logical_id: Some(l),
            ..
        } = events.recv().await?
            && l == ips[1]
        {
            break id;
        }
    };
    let took = start.elapsed();
    manager
        .wait_converged(&"managers".into(), Duration::from_secs(60))
        .await?;
    let back = plugin
        .describe(&Tags::new().with(GROUP_TAG, "managers"), true)
        .await?;
    let back = back
        .iter()
        .find(|m| m.id == replacement)
        .ok_or("replacement not found")?;
    println!(
        "replacement {} running at {} with volume {} after {:.0} ms",
        &replacement.as_str()[..12],
        back.properties
            .as_ref()
            .map(|p| p["IP"].to_string())
            .unwrap_or_default(),
        back.properties
            .as_ref()
            .map(|p| p["Mounts"][0]["Name"].to_string())
            .unwrap_or_default(),
        took.as_secs_f64() * 1e3
    );

    for g in ["managers", "workers"] {
        manager.destroy(&g.into()).await?;
    }
    manager.shutdown().await;
    plugin.remove_all().await?;
    let _ = docker.remove_network("infrakit-example").await;
    for i in 1..=3 {
        let _ = docker
            .remove_volume(
                &format!("infrakit-example-state-{i}"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
    println!("cleaned up");
    Ok(())
}
