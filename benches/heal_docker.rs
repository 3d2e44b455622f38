//! Heal latency on a real Docker engine: a container killed → its replacement started, for
//! (a) `ContainerInstance` under the engine (event-driven) and (b) Docker Swarm replacing a
//! killed task of a replicated service (restart delay 0, Swarm's best case) on the same engine;
//! and, in the same run, the engine's floor: (c) a bare create + start of the same container
//! through bollard (call → its `start` event), and (d) a kill → its `die` event.
//!
//! Needs root and a running engine (`scripts/test --prepare-only`). If the engine is not in a
//! swarm, the bench makes it a single-node swarm and leaves it afterwards.
#![allow(missing_docs)]

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, SwarmInitRequest, TaskSpec, TaskSpecContainerSpec,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use infrakit::swarm::{ContainerInstance, connect};
use infrakit::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const SERVICE: &str = "infrakit-bench-heal";

async fn running(docker: &Docker, label: &str) -> Vec<String> {
    docker
        .list_containers(Some(ListContainersOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            ..ListContainersOptions::default()
        }))
        .await
        .expect("list")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Kills the one running container carrying `label` and times until another one starts.
async fn kill_and_time(docker: &Docker, label: &str) -> Duration {
    let victim = loop {
        let r = running(docker, label).await;
        if r.len() == 1 {
            break r[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["start".to_owned()]),
            ("label".to_owned(), vec![label.to_owned()]),
        ])),
        ..EventsOptions::default()
    }));
    // Poll the stream once from a task so the subscription exists before the kill.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let victim_id = victim.clone();
    let waiter = tokio::spawn(async move {
        let _ = tx.send(());
        while let Some(Ok(e)) = events.next().await {
            if e.actor.and_then(|a| a.id).is_some_and(|id| id != victim_id) {
                return Instant::now();
            }
        }
        Instant::now()
    });
    let _ = rx.await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    docker
        .kill_container(&victim, None::<KillContainerOptions>)
        .await
        .expect("kill");
    let done = waiter.await.expect("waiter");
    done.duration_since(start)
}

/// A subscription to one kind of container event for containers carrying `label`, live
/// before this returns; the instant the first one arrives.
async fn first_event(
    docker: &Docker,
    label: &str,
    event: &str,
) -> tokio::task::JoinHandle<Instant> {
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec![event.to_owned()]),
            ("label".to_owned(), vec![label.to_owned()]),
        ])),
        ..EventsOptions::default()
    }));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        let _ = tx.send(());
        let _ = events.next().await;
        Instant::now()
    });
    let _ = rx.await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiter
}

const FLOOR_LABEL: &str = "infrakit-bench-floor";

/// The same container as the group's: image, command, labels, network, init.
fn floor_container(image: &str, network: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        labels: Some(HashMap::from([
            (FLOOR_LABEL.to_owned(), "1".to_owned()),
            ("infrakit.group".to_owned(), "floor".to_owned()),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_owned()),
            init: Some(true),
            ..HostConfig::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_owned(),
                EndpointSettings::default(),
            )])),
        }),
        ..ContainerCreateBody::default()
    }
}

fn force() -> Option<RemoveContainerOptions> {
    Some(RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    })
}

/// Creates and starts the floor container named `name`: its ID.
async fn run_floor_container(docker: &Docker, image: &str, network: &str, name: &str) -> String {
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..CreateContainerOptions::default()
            }),
            floor_container(image, network),
        )
        .await
        .expect("create");
    docker
        .start_container(&created.id, None)
        .await
        .expect("start");
    created.id
}

/// (c) A bare create + start through bollard: the create call → the container's `start`
/// event. The container is removed afterwards, untimed.
async fn create_start_once(docker: &Docker, image: &str, network: &str, n: u64) -> Duration {
    let label = format!("{FLOOR_LABEL}=1");
    let started = first_event(docker, &label, "start").await;
    let start = Instant::now();
    let id =
        run_floor_container(docker, image, network, &format!("infrakit-bench-floor-{n}")).await;
    let elapsed = started.await.expect("start event").duration_since(start);
    docker.remove_container(&id, force()).await.expect("remove");
    elapsed
}

/// (d) A kill → the container's `die` event (the engine's share of noticing a death).
async fn kill_die_once(docker: &Docker, image: &str, network: &str, n: u64) -> Duration {
    let label = format!("{FLOOR_LABEL}=1");
    let id = run_floor_container(docker, image, network, &format!("infrakit-bench-kill-{n}")).await;
    let died = first_event(docker, &label, "die").await;
    let start = Instant::now();
    docker
        .kill_container(&id, None::<KillContainerOptions>)
        .await
        .expect("kill");
    let elapsed = died.await.expect("die event").duration_since(start);
    docker.remove_container(&id, force()).await.expect("remove");
    elapsed
}

fn heal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let address = std::env::var("INFRAKIT_DOCKER_HOST")
        .unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let image = std::env::var("INFRAKIT_TEST_IMAGE")
        .unwrap_or_else(|_| "infrakit-test/busybox:latest".into());
    let docker = rt
        .block_on(connect(&address))
        .expect("a Docker engine: run `scripts/test --prepare-only`");
    let mut group = c.benchmark_group("heal_docker");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));

    // (a) ContainerInstance under the engine.
    let plugin = ContainerInstance::new(docker.clone(), "infrakit-bench", "infrakit-bench");
    let manager = rt.block_on(async {
        plugin.remove_all().await.expect("clean");
        plugin
            .ensure_network("10.215.0.0/24")
            .await
            .expect("network");
        let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
            .plugins(
                Plugins::new()
                    .instance("container", plugin.clone())
                    .flavor("vanilla", flavor::Vanilla),
            )
            .options(
                EngineOptions::default()
                    .resync(Duration::from_secs(60))
                    .settle(Duration::from_millis(10)),
            )
            .build();
        manager.start();
        manager
            .wait_leading(std::time::Duration::from_secs(30))
            .await
            .expect("this replica leads");
        let spec = GroupSpec::new(
            "heal",
            PluginSpec::new(
                "container",
                json!({"Image": image, "Cmd": ["sleep", "3600"]}),
            ),
            PluginSpec::new("vanilla", json!({})),
            Allocation::size(1),
        );
        manager.commit(spec, false).await.expect("commit");
        manager
            .wait_converged(&"heal".into(), Duration::from_secs(30))
            .await
            .expect("converge");
        manager
    });
    group.bench_function("container_instance", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += kill_and_time(&docker, "infrakit.group=heal").await;
                }
                total
            })
        })
    });
    rt.block_on(async {
        let _ = manager.destroy(&"heal".into()).await;
        manager.shutdown().await;
        let _ = plugin.remove_all().await;
    });

    // (c) and (d): the engine's own floor, on the same network.
    let mut n = 0u64;
    group.bench_function("floor_create_start", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += create_start_once(&docker, &image, "infrakit-bench", n).await;
                }
                total
            })
        })
    });
    group.bench_function("floor_kill_die", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += kill_die_once(&docker, &image, "infrakit-bench", n).await;
                }
                total
            })
        })
    });
    rt.block_on(async {
        let _ = docker.remove_network("infrakit-bench").await;
    });

    // (b) Docker Swarm replacing a killed task.
    let joined_here = rt.block_on(async {
        let info = docker.info().await.expect("info");
        let active = info
            .swarm
            .and_then(|s| s.node_id)
            .is_some_and(|n| !n.is_empty());
        if !active {
            docker
                .init_swarm(SwarmInitRequest {
                    listen_addr: Some("127.0.0.1:2377".into()),
                    advertise_addr: Some("127.0.0.1".into()),
                    ..SwarmInitRequest::default()
                })
                .await
                .expect("swarm init");
        }
        let _ = docker.delete_service(SERVICE).await;
        let spec = ServiceSpec {
            name: Some(SERVICE.into()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.clone()),
                    command: Some(vec!["sleep".into(), "3600".into()]),
                    ..TaskSpecContainerSpec::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(0),
                    ..TaskSpecRestartPolicy::default()
                }),
                ..TaskSpec::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..ServiceSpecMode::default()
            }),
            ..ServiceSpec::default()
        };
        docker
            .create_service(spec, None)
            .await
            .expect("create service");
        !active
    });
    let label = format!("com.docker.swarm.service.name={SERVICE}");
    group.bench_function("swarm_service_task", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += kill_and_time(&docker, &label).await;
                }
                total
            })
        })
    });
    group.finish();
    rt.block_on(async {
        let _ = docker.delete_service(SERVICE).await;
        if joined_here {
            let _ = docker
                .leave_swarm(Some(bollard::query_parameters::LeaveSwarmOptions {
                    force: true,
                }))
                .await;
        }
    });
}

criterion_group!(benches, heal);
criterion_main!(benches);
