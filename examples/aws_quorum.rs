//! A quorum of three EC2 instances with fixed private IPs and an EBS state volume each, kept
//! by the engine: one is terminated out of band and comes back with the same IP and volume.
//!
//! Against moto (what the README shows; `scripts/test --prepare-only` starts it):
//!
//! ```text
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 cargo run --features aws --example aws_quorum -- --create-network
//! ```
//!
//! Options: `--create-network` builds a VPC (10.77.0.0/16) and a subnet (10.77.1.0/24) for the
//! run; otherwise `--subnet subnet-…` names an existing one (the IPs are then `--ip-prefix`
//! `.10`-`.12`, default `10.77.1`). `--image ami-…` picks the AMI (default: the first
//! Amazon-owned image the endpoint lists). `--scope` names the namespace (default
//! `aws-quorum-<pid>`). The credentials and region come from the usual `AWS_*` variables.
//! Everything it creates is removed at the end; the exit code is 0 only if the member healed.

use infrakit::aws::aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use infrakit::aws::{ATTACHMENT_TAG, Ec2Instance, Ec2Options, SCOPE_TAG, client_from_env};
use infrakit::reconcile::EngineEvent;
use infrakit::*;
use serde_json::json;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    create_network: bool,
    subnet: Option<String>,
    ip_prefix: String,
    image: Option<String>,
    scope: String,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        create_network: false,
        subnet: None,
        ip_prefix: "10.77.1".into(),
        image: None,
        scope: format!("aws-quorum-{}", std::process::id()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--create-network" => a.create_network = true,
            "--subnet" => a.subnet = Some(value("--subnet")?),
            "--ip-prefix" => a.ip_prefix = value("--ip-prefix")?,
            "--image" => a.image = Some(value("--image")?),
            "--scope" => a.scope = value("--scope")?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if !a.create_network && a.subnet.is_none() {
        return Err("give --create-network or --subnet subnet-…".into());
    }
    Ok(a)
}

fn main() {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run()));
    if let Err(e) = result {
        eprintln!("aws_quorum: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let args = args()?;
    if std::env::var(infrakit::aws::ENDPOINT_ENV).is_err() {
        println!("AWS_ENDPOINT_URL is not set: talking to AWS itself");
    }
    let client = client_from_env();
    let mut created_vpc = None;
    let subnet = match &args.subnet {
        Some(s) => s.clone(),
        None => {
            let vpc = client
                .create_vpc()
                .cidr_block("10.77.0.0/16")
                .send()
                .await
                .map_err(|e| format!("creating a VPC (is AWS_ENDPOINT_URL right?): {e:?}"))?
                .vpc
                .and_then(|v| v.vpc_id)
                .ok_or("no VPC ID")?;
            let subnet = client
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block("10.77.1.0/24")
                .send()
                .await?
                .subnet
                .and_then(|s| s.subnet_id)
                .ok_or("no subnet ID")?;
            println!("created {vpc} and {subnet}");
            created_vpc = Some((vpc, subnet.clone()));
            subnet
        }
    };
    let az = client
        .describe_subnets()
        .subnet_ids(&subnet)
        .send()
        .await?
        .subnets()
        .first()
        .and_then(|s| s.availability_zone())
        .ok_or("the subnet has no availability zone")?
        .to_owned();
    let image = match &args.image {
        Some(i) => i.clone(),
        None => client
            .describe_images()
            .owners("amazon")
            .send()
            .await?
            .images()
            .iter()
            .find_map(|i| i.image_id().map(str::to_owned))
            .ok_or("no image found: give --image")?,
    };

    // The state volumes, one per logical ID, found by their attachment tag.
    let ips: Vec<String> = (10..13)
        .map(|h| format!("{}.{h}", args.ip_prefix))
        .collect();
    let mut allocation = Allocation::logical_ids(ips.iter().map(String::as_str));
    let mut volumes = Vec::new();
    for ip in &ips {
        let name = format!("state-{ip}");
        let v = client
            .create_volume()
            .availability_zone(&az)
            .size(8)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .tags(Tag::builder().key(ATTACHMENT_TAG).value(&name).build())
                    .tags(Tag::builder().key(SCOPE_TAG).value(&args.scope).build())
                    .build(),
            )
            .send()
            .await?
            .volume_id
            .ok_or("no volume ID")?;
        println!("volume {v} is attachment {name:?}");
        volumes.push(v);
        allocation = allocation.with_attachment(ip.as_str(), Attachment::new(name, "ebs"));
    }

    let ec2 = Ec2Instance::new(client.clone(), &args.scope)?
        .options(Ec2Options::default().poll_interval(Duration::from_millis(500)));
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("ec2", ec2.clone())
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(EngineOptions::default().resync(Duration::from_secs(1)))
        .build();
    manager.start();
    manager.wait_leading(Duration::from_secs(30)).await?;
    let group = GroupId::from("managers");
    let spec = GroupSpec::new(
        "managers",
        PluginSpec::new(
            "ec2",
            json!({"ImageId": image, "InstanceType": "t3.small", "SubnetId": subnet}),
        ),
        PluginSpec::new("vanilla", json!({"Init": ["#!/bin/sh", "echo manager"]})),
        allocation,
    );
    let outcome = heal(&manager, &ec2, &client, spec, &group, &ips, &volumes).await;

    // Clean up whatever happened.
    if let Err(e) = manager.destroy(&group).await {
        eprintln!("destroying the group: {e}");
    }
    manager.shutdown().await;
    for v in &volumes {
        for _ in 0..20 {
            match client.delete_volume().volume_id(v).send().await {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    if let Some((vpc, subnet)) = created_vpc {
        let _ = client.delete_subnet().subnet_id(&subnet).send().await;
        let _ = client.delete_vpc().vpc_id(&vpc).send().await;
    }
    println!("cleaned up");
    outcome
}

async fn heal(
    manager: &Manager,
    ec2: &Ec2Instance,
    client: &infrakit::aws::aws_sdk_ec2::Client,
    spec: GroupSpec,
    group: &GroupId,
    ips: &[String],
    volumes: &[String],
) -> Result<(), Error> {
    println!(
        "committing a quorum group of {} (fixed IPs, one volume each)",
        ips.len()
    );
    manager.commit(spec, false).await?;
    let d = manager
        .wait_converged(group, Duration::from_secs(120))
        .await?;
    show(ec2, client).await?;
    let victim = d
        .instances
        .iter()
        .find(|m| m.logical_id.as_ref().map(LogicalId::as_str) == Some(ips[0].as_str()))
        .ok_or("no member with the first IP")?
        .id
        .clone();
    let mut events = manager.events();
    let start = Instant::now();
    println!("terminating {victim} ({}) out of band", ips[0]);
    client
        .terminate_instances()
        .instance_ids(victim.as_str())
        .send()
        .await?;
    let replacement = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match events.recv().await {
                Ok(EngineEvent::Provisioned {
                    id,
                    logical_id: Some(l),
                    ..
                }) if l.as_str() == ips[0] => return Ok::<_, Error>(id),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await
    .map_err(|_| "no replacement within 120 s")??;
    manager
        .wait_converged(group, Duration::from_secs(60))
        .await?;
    println!(
        "replacement {replacement} launched and attached {:.1?} after the termination",
        start.elapsed()
    );
    show(ec2, client).await?;
    let described = ec2
        .describe(&Tags::new().with(GROUP_TAG, group.as_str()), true)
        .await?;
    let back = described
        .iter()
        .find(|d| d.id == replacement)
        .ok_or("the replacement is not a member")?;
    let ip = back
        .properties
        .as_ref()
        .and_then(|p| p["PrivateIpAddress"].as_str())
        .unwrap_or_default();
    let volume = client
        .describe_volumes()
        .volume_ids(&volumes[0])
        .send()
        .await?
        .volumes()
        .first()
        .and_then(|v| v.attachments().first())
        .and_then(|a| a.instance_id())
        .unwrap_or_default()
        .to_owned();
    if ip != ips[0] || volume != replacement.as_str() {
        return Err(format!(
            "the replacement has IP {ip} (want {}) and {} holds the volume (want {replacement})",
            ips[0], volume
        )
        .into());
    }
    println!("healed: {replacement} has {ip} and volume {}", volumes[0]);
    Ok(())
}

async fn show(ec2: &Ec2Instance, client: &infrakit::aws::aws_sdk_ec2::Client) -> Result<(), Error> {
    let members = ec2.describe(&Tags::new(), true).await?;
    println!("  {:<21} {:<12} {:<10} volume", "instance", "ip", "state");
    for m in members {
        let p = m.properties.unwrap_or_default();
        let volume = client
            .describe_volumes()
            .filters(
                infrakit::aws::aws_sdk_ec2::types::Filter::builder()
                    .name("attachment.instance-id")
                    .values(m.id.as_str())
                    .build(),
            )
            .send()
            .await?
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "  {:<21} {:<12} {:<10} {volume}",
            m.id,
            p["PrivateIpAddress"].as_str().unwrap_or("-"),
            p["State"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}
