//! `EngineNodes`: real dockerd processes in network namespaces (root; `scripts/test` installs
//! docker.io, iproute2, iptables and busybox-static).

use infrakit_core::{
    Attachment, DestroyContext, GROUP_TAG, Instance, InstanceError, InstanceSpec, Tags,
};
use infrakit_swarm::{Boot, EngineNodes, LINK_LABEL};
use std::process::Command;
use std::time::Duration;

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "EngineNodes tests need `{tool}`: run `scripts/test --prepare-only` as root \
         (installs docker.io, iproute2, iptables, busybox-static)"
    );
}

fn reachable(from_ns: &str, ip: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{from_ns}"))
        .args(["busybox", "ping", "-c", "1", "-W", "3", ip])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_engines_with_fixed_ips_that_come_back_on_their_data_root() {
    for tool in ["dockerd", "docker", "ip", "nsenter", "iptables", "busybox"] {
        require(tool);
    }
    let root = "/tmp/infrakit-nodes-test";
    let nodes = EngineNodes::new("iknt", root, "10.217.0.0/24").unwrap();
    nodes.remove_all(true);
    nodes.ensure_network().unwrap();
    let group = Tags::new().with(GROUP_TAG, "managers");

    // A node with a fixed IP and a data root; its boot script runs against its engine.
    let spec = InstanceSpec::default()
        .with_tag(GROUP_TAG, "managers")
        .with_tag(LINK_LABEL, "link-1")
        .with_logical_id("10.217.0.10")
        .with_attachment(Attachment::new("state-a", "dataroot"))
        .with_init("docker volume create marker && echo booted on $INFRAKIT_NODE_IP");
    let a = nodes.provision(spec.clone()).await.unwrap();
    // The boot script runs in the background, as a machine's user data does.
    assert_eq!(
        nodes.wait_boot(&a, Duration::from_secs(60)).await.unwrap(),
        Some(0)
    );
    assert_eq!(nodes.boot(&a).unwrap(), Boot::Finished { code: Some(0) });
    let log = std::fs::read_to_string(nodes.root().join("nodes").join(a.as_str()).join("init.log"))
        .unwrap();
    assert!(log.contains("booted on 10.217.0.10"), "{log}");
    let found = nodes.describe(&group, true).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, a);
    assert_eq!(
        found[0].logical_id.as_ref().map(|l| l.as_str()),
        Some("10.217.0.10")
    );
    let engine = infrakit_swarm::connect(&nodes.socket(&a)).await.unwrap();
    let volumes = engine
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap();
    assert!(
        volumes
            .volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.name == "marker"),
        "the boot script ran against the node's engine"
    );
    let labels = engine.info().await.unwrap().labels.unwrap_or_default();
    assert!(
        labels.contains(&format!("{LINK_LABEL}=link-1")),
        "{labels:?}"
    );

    // The IP and the data root are exclusive.
    let err = nodes.provision(spec.clone()).await.unwrap_err();
    assert!(matches!(err, InstanceError::Conflict { .. }), "{err}");

    // A node without a logical ID gets a free address; the nodes reach each other.
    let b = nodes
        .provision(InstanceSpec::default().with_tag(GROUP_TAG, "workers"))
        .await
        .unwrap();
    let b_ip = nodes
        .describe(&Tags::new().with(GROUP_TAG, "workers"), true)
        .await
        .unwrap()[0]
        .properties
        .clone()
        .unwrap()["IP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b_ip, "10.217.0.100");
    assert!(reachable(a.as_str(), &b_ip), "a reaches b over the bridge");

    // A network cut and its repair.
    nodes.set_link(&b, false).unwrap();
    assert!(!reachable(a.as_str(), &b_ip), "the cut holds");
    nodes.set_link(&b, true).unwrap();
    assert!(reachable(a.as_str(), &b_ip), "and heals");

    // A dead machine: gone from describe.
    nodes.kill(&a).unwrap();
    assert!(nodes.describe(&group, false).await.unwrap().is_empty());

    // Its replacement: same IP, same data root, so the engine finds its volume again.
    let a2 = nodes.provision(spec.clone()).await.unwrap();
    assert_ne!(a2, a);
    let engine = infrakit_swarm::connect(&nodes.socket(&a2)).await.unwrap();
    let volumes = engine
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    assert!(volumes.iter().any(|v| v.name == "marker"), "same data root");
    assert!(reachable(b.as_str(), "10.217.0.10"), "same IP");

    // Destroy keeps an attached data root, deletes an ephemeral one.
    nodes.destroy(&a2, DestroyContext::Terminate).await.unwrap();
    nodes.destroy(&b, DestroyContext::ScaleDown).await.unwrap();
    assert!(std::path::Path::new(&format!("{root}/data/state-a")).exists());
    assert!(!std::path::Path::new(&format!("{root}/nodes/{b}")).exists());
    assert!(
        nodes
            .describe(&Tags::new(), false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        nodes.destroy(&b, DestroyContext::Terminate).await,
        Err(InstanceError::NotFound { .. })
    ));

    // Two launches at once get two addresses.
    let w = InstanceSpec::default().with_tag(GROUP_TAG, "workers");
    let (c, d) = tokio::join!(nodes.provision(w.clone()), nodes.provision(w.clone()));
    let (c, d) = (c.unwrap(), d.unwrap());
    let mut ips: Vec<String> = nodes
        .describe(&Tags::new().with(GROUP_TAG, "workers"), true)
        .await
        .unwrap()
        .iter()
        .map(|n| {
            n.properties.as_ref().unwrap()["IP"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ips.sort();
    assert_eq!(ips, ["10.217.0.100", "10.217.0.101"]);
    assert!(reachable(c.as_str(), "10.217.0.101") && reachable(d.as_str(), "10.217.0.100"));

    // A boot script that fails is reported, not an error: the machine exists.
    let failing = nodes
        .provision(w.clone().with_init("echo trying; exit 3"))
        .await
        .unwrap();
    assert_eq!(
        nodes
            .wait_boot(&failing, Duration::from_secs(60))
            .await
            .unwrap(),
        Some(3)
    );
    // One that hangs does not hold up the provision, and dies with its node.
    let hanging = nodes
        .provision(w.clone().with_init("sleep 600"))
        .await
        .unwrap();
    assert_eq!(nodes.boot(&hanging).unwrap(), Boot::Running);
    let pid = std::fs::read_to_string(format!("{root}/nodes/{hanging}/init.pid")).unwrap();
    assert!(std::path::Path::new(&format!("/proc/{}", pid.trim())).exists());
    nodes.kill(&hanging).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the boot script outlived its node: {stat}"
    );
    nodes
        .destroy(&failing, DestroyContext::Terminate)
        .await
        .unwrap();

    // One call removes everything, after a crash too.
    assert!(nodes.remove_all(true) >= 1);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(c.as_str()));
    assert!(
        !Command::new("ip")
            .args(["link", "show", &nodes.bridge()])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(!std::path::Path::new(root).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_nodes_pass_the_instance_conformance_check() {
    use infrakit_core::testkit::{InstanceFixture, check_instance};
    for tool in ["dockerd", "ip", "nsenter", "iptables"] {
        require(tool);
    }
    // A prefix, root and subnet of its own: no collision with the other node tests.
    let root = "/tmp/infrakit-nodes-conformance";
    let nodes = EngineNodes::new("ikcf", root, "10.216.0.0/24").unwrap();
    nodes.remove_all(true);
    nodes.ensure_network().unwrap();
    // Two free node addresses as logical IDs (nodes without one get .100 and up). A node is
    // listed once its engine answers, which provision waits for; a provision may take as
    // long as an engine start (up to 60 s on a loaded machine).
    let fixture = InstanceFixture::new(serde_json::json!({}))
        .logical_ids("10.216.0.10", "10.216.0.11")
        .settle(Duration::from_secs(5))
        .call_timeout(Duration::from_secs(90));
    let start = std::time::Instant::now();
    let report = check_instance(&nodes, &fixture).await;
    println!(
        "engine node conformance in {:?}:\n{report}",
        start.elapsed()
    );
    let left = nodes.describe(&Tags::new(), false).await.unwrap();
    nodes.remove_all(true);
    assert!(report.passed(), "{report}");
    assert!(
        left.is_empty(),
        "the check destroys what it creates: {left:?}"
    );
    assert!(!std::path::Path::new(root).exists());
}
