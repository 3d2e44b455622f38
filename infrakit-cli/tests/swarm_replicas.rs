//! The seed's swarm run by the `infrakit` binary itself, as the seed runs it: every replica is
//! an `infrakit manager run --leadership swarm --store swarm` process started by its node's
//! boot script, inside the node's network namespace, against the node's own engine; the
//! machines come from `infrakit plugin start nodes` on the host (Docker engines in network
//! namespaces), which every replica reaches on its Unix socket.
//!
//! The test drives and observes the cluster only from outside: the CLI, the engines, and the
//! machines (killing one is a machine dying). Needs root and `docker.io`, `iproute2`,
//! `iptables` (`scripts/test --prepare-only` installs them).

use infrakit_core::{GROUP_TAG, Instance, Tags};
use infrakit_swarm::local_swarm::LocalSwarm;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_infrakit");
const PREFIX: &str = "ikcr";
const ROOT: &str = "/tmp/infrakit-cli-replicas";
const NET: &str = "10.214.0";
/// A CLI call never takes this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// A child process, killed on drop; its log printed when the test fails.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            print_log(&self.name, &self.log);
        }
    }
}

fn print_log(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(80).collect();
    eprintln!("---- end of the log of {name} ----");
    for line in tail.iter().rev() {
        eprintln!("{line}");
    }
    eprintln!("---- {name} ----");
}

/// The cluster's world: the plugin directory, the host's `nodes` plugin, and the observer.
struct World {
    plugin: Option<Proc>,
    swarm: LocalSwarm,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for ip in self.swarm.manager_ips() {
                print_log(&format!("replica {ip}"), &self.replica_log(&ip));
            }
            let diagnosis = self.rt.block_on(self.swarm.diagnose());
            eprintln!("{diagnosis}");
        }
        // The replicas die with their nodes.
        self.swarm.nodes.remove_all(true);
        self.plugin.take();
    }
}

impl World {
    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn replica_log(&self, ip: &str) -> PathBuf {
        self.dir.path().join(format!("replica-{ip}.log"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env(infrakit_rpc::PLUGINS_DIR_ENV, self.plugins())
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("INFRAKIT_MANAGER")
            .stdin(Stdio::null());
        c
    }

    /// Runs one CLI command to completion (bounded): exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("infrakit {args:?} took over {CALL_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "infrakit {args:?}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// What the replica beside manager `ip` says of its leadership (`None`: no answer).
    fn status(&self, ip: &str) -> Option<Value> {
        let manager = format!("replica-{ip}");
        let (code, out, _) = self.run(&["manager", "status", "--manager", &manager, "--json"]);
        (code == 0)
            .then(|| serde_json::from_str(&out).ok())
            .flatten()
    }

    /// The managers whose replicas answer, and those that lead.
    fn replicas(&self) -> (Vec<String>, Vec<String>) {
        let (mut answering, mut leading) = (Vec::new(), Vec::new());
        for ip in self.swarm.manager_ips() {
            if let Some(s) = self.status(&ip) {
                if s["Leader"] == json!(true) {
                    leading.push(ip.clone());
                }
                answering.push(ip);
            }
        }
        (answering, leading)
    }

    /// Polls `check` every 250 ms until it gives a value, or fails naming `what`.
    fn wait_for<T>(&self, what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether a process whose command line names the replica of `ip` runs.
    fn replica_runs(&self, ip: &str) -> bool {
        Command::new("pgrep")
            .args(["-f", "--", &format!("--name replica-{ip} ")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The boot script's preamble on a manager node: its replica, in the node's namespace, against
/// the node's engine (`DOCKER_HOST`), in a session of its own so that the boot script can end;
/// it dies with the node.
fn replica_preamble(plugins: &Path, logs: &Path) -> String {
    format!(
        "# this node's manager replica\n\
         setsid {BIN} --plugin-dir {plugins} manager run --name replica-$INFRAKIT_NODE_IP \
         --leadership swarm --store swarm --docker-host \"$DOCKER_HOST\" --builtin swarm \
         --recover-with nodes --recover-after 20s --resync 1s \
         >>{logs}/replica-$INFRAKIT_NODE_IP.log 2>&1 </dev/null &\n",
        plugins = plugins.display(),
        logs = logs.display(),
    )
}

#[test]
fn replicas_are_infrakit_processes_on_the_nodes_and_heal_the_swarm() {
    let swarm = LocalSwarm::new(PREFIX, ROOT, NET, 3, 1).unwrap_or_else(|e| {
        panic!("{e} (the local swarm needs root: run `scripts/test --prepare-only` as root)")
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut world = World {
        plugin: None,
        swarm,
        dir,
        rt,
    };
    let managers = world.swarm.manager_ips();

    // The machines: engine nodes served from the host.
    let log = world.dir.path().join("nodes.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = world
        .command(&[
            "plugin",
            "start",
            "nodes",
            "--nodes-prefix",
            PREFIX,
            "--nodes-root",
            ROOT,
            "--nodes-subnet",
            &format!("{NET}.0/24"),
        ])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    world.plugin = Some(Proc {
        name: "plugin nodes".into(),
        child,
        log,
    });
    let socket = world.plugins().join("nodes");
    world.wait_for("the nodes plugin's socket", Duration::from_secs(60), || {
        socket.exists().then_some(())
    });

    // The managers' boot script: the replica, then the flavor's join.
    let preamble = replica_preamble(&world.plugins(), world.dir.path());
    let join = infrakit_swarm::DEFAULT_TEMPLATE
        .strip_prefix("#!/bin/sh\n")
        .unwrap();
    let boot = world.dir.path().join("manager-boot.sh");
    std::fs::write(&boot, format!("#!/bin/sh\n{preamble}{join}")).unwrap();

    // The seed, started by hand as in the seed: it initialises the swarm.
    let seed_ip = &managers[0];
    let seed = world.dir.path().join("seed.json");
    std::fs::write(
        &seed,
        json!({
            "Tags": {GROUP_TAG: "managers"},
            "LogicalID": seed_ip,
            "Attachments": [{"ID": format!("manager-{seed_ip}"), "Type": "dataroot"}],
            "Init": format!("#!/bin/sh\n{preamble}docker swarm init --advertise-addr {seed_ip}\n"),
        })
        .to_string(),
    )
    .unwrap();
    world.ok(&[
        "instance",
        "provision",
        "--name",
        "nodes",
        "--spec",
        seed.to_str().unwrap(),
    ]);
    world.wait_for(
        "the seed's replica to lead",
        Duration::from_secs(120),
        || (world.replicas().1 == std::slice::from_ref(seed_ip)).then_some(()),
    );

    // The groups, committed through the seed's replica.
    let groups = world.dir.path().join("groups.json");
    let attachments: serde_json::Map<String, Value> = managers
        .iter()
        .map(|ip| {
            (
                ip.clone(),
                json!([{"ID": format!("manager-{ip}"), "Type": "dataroot"}]),
            )
        })
        .collect();
    std::fs::write(
        &groups,
        json!([
            {"ID": "managers", "Properties": {
                "Allocation": {"LogicalIDs": managers, "Attachments": attachments},
                "Instance": {"Plugin": "nodes", "Properties": {}},
                "Flavor": {"Plugin": "swarm/manager", "Properties": {
                    "InitScriptTemplateURL": format!("file://{}", boot.display())
                }},
                "Healing": {"ReplaceUnknownAfter": "60s"}
            }},
            {"ID": "workers", "Properties": {
                "Allocation": {"Size": 1},
                "Instance": {"Plugin": "nodes", "Properties": {}},
                "Flavor": {"Plugin": "swarm/worker", "Properties": {}},
                "Healing": {"ReplaceUnknownAfter": "60s"}
            }}
        ])
        .to_string(),
    )
    .unwrap();
    let seed_replica = format!("replica-{seed_ip}");
    world.ok(&[
        "manager",
        "commit",
        "--manager",
        &seed_replica,
        groups.to_str().unwrap(),
    ]);

    // Whole: three reachable managers, each with its replica process answering, one leading.
    let whole = |world: &World| {
        let h = world.rt.block_on(world.swarm.health());
        world.swarm.whole(&h).then_some(h)
    };
    let h = world.wait_for("the swarm to grow whole", Duration::from_secs(300), || {
        whole(&world)
    });
    let (answering, leading) = world.wait_for(
        "a replica answering beside every manager, one leading",
        Duration::from_secs(60),
        || {
            let (answering, leading) = world.replicas();
            (answering.len() == 3 && leading.len() == 1).then_some((answering, leading))
        },
    );
    assert_eq!(answering, managers);
    eprintln!("whole: {h:?}; replicas lead: {leading:?}");

    // The Raft leader's machine dies, and its replica with it.
    let leader_ip = h.leader.clone().unwrap();
    let leader_node = world
        .rt
        .block_on(world.swarm.node_of(&leader_ip))
        .expect("the leader's node");
    assert!(
        world.replica_runs(&leader_ip),
        "no replica process of {leader_ip}"
    );
    let killed = Instant::now();
    world.swarm.nodes.kill(&leader_node).unwrap();
    assert!(
        !world.replica_runs(&leader_ip),
        "the replica of {leader_ip} outlived its node"
    );

    // The survivors elect a leader, its replica takes over and brings the manager back on
    // its data root.
    let h = world.wait_for(
        "the swarm whole again after the leader's death",
        Duration::from_secs(300),
        || {
            let h = whole(&world)?;
            let back = world.rt.block_on(world.swarm.node_of(&leader_ip))?;
            (back != leader_node).then_some(h)
        },
    );
    eprintln!(
        "leader {leader_ip} killed; whole again after {:.1} s: {h:?}",
        killed.elapsed().as_secs_f64()
    );
    let (answering, leading) = world.wait_for(
        "a replica beside every manager again, one leading",
        Duration::from_secs(60),
        || {
            let (answering, leading) = world.replicas();
            (answering.len() == 3 && leading.len() == 1).then_some((answering, leading))
        },
    );
    assert_eq!(answering, managers);
    assert!(
        !leading.contains(&leader_ip),
        "a new replica leads: {leading:?}"
    );

    // The committed spec survived in the swarm's store, read through a follower.
    let follower = managers
        .iter()
        .find(|ip| !leading.contains(ip))
        .map(|ip| format!("replica-{ip}"))
        .unwrap();
    let groups: Value =
        serde_json::from_str(&world.ok(&["group", "ls", "--manager", &follower, "--json"]))
            .unwrap();
    let ids: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["ID"].as_str())
        .collect();
    assert_eq!(ids, ["managers", "workers"], "{groups}");

    // Two managers' machines die at once: no Raft quorum is left, and nothing in the swarm
    // can ever elect a leader again. The survivor's replica sees that the provider lists no
    // instance for the other two, forces a new cluster from its own state, leads it and brings
    // the other two back on their data roots.
    let h = world.wait_for("a Raft leader", Duration::from_secs(60), || {
        let h = world.rt.block_on(world.swarm.health());
        h.leader.is_some().then_some(h)
    });
    let raft_leader = h.leader.clone().unwrap();
    let other = managers
        .iter()
        .find(|ip| **ip != raft_leader)
        .unwrap()
        .clone();
    let survivor = managers
        .iter()
        .find(|ip| **ip != raft_leader && **ip != other)
        .unwrap()
        .clone();
    let victims: Vec<_> = [&raft_leader, &other]
        .iter()
        .map(|ip| world.rt.block_on(world.swarm.node_of(ip)).unwrap())
        .collect();
    let killed = Instant::now();
    for v in &victims {
        world.swarm.nodes.kill(v).unwrap();
    }
    let mut samples = 0;
    let h = world.wait_for(
        "the swarm whole again after losing two managers",
        Duration::from_secs(300),
        || {
            // At every sample: at most one node says it leads, and one swarm.
            let reports = world.rt.block_on(world.swarm.self_reports());
            let leaders = reports.iter().filter(|r| r.leader).count();
            assert!(leaders <= 1, "two leaders: {reports:?}");
            let mut clusters: Vec<_> = reports.iter().filter_map(|r| r.cluster.clone()).collect();
            clusters.dedup();
            assert!(clusters.len() <= 1, "two swarms: {reports:?}");
            samples += 1;
            let h = whole(&world)?;
            let back = [&raft_leader, &other]
                .iter()
                .filter_map(|ip| world.rt.block_on(world.swarm.node_of(ip)))
                .filter(|id| !victims.contains(id))
                .count();
            (back == 2).then_some(h)
        },
    );
    eprintln!(
        "two managers ({raft_leader}, {other}) killed; whole again after {:.1} s \
         ({samples} samples, never two leaders or two swarms): {h:?}",
        killed.elapsed().as_secs_f64()
    );
    let forced = |ip: &str| {
        std::fs::read_to_string(world.replica_log(ip))
            .unwrap_or_default()
            .matches("new cluster forced")
            .count()
    };
    assert_eq!(
        forced(&survivor),
        1,
        "the survivor {survivor} forced the new cluster"
    );
    assert_eq!(
        forced(&raft_leader) + forced(&other),
        0,
        "only the survivor forced one"
    );
    let (answering, leading) = world.wait_for(
        "a replica beside every manager after the recovery, one leading",
        Duration::from_secs(60),
        || {
            let (answering, leading) = world.replicas();
            (answering.len() == 3 && leading.len() == 1).then_some((answering, leading))
        },
    );
    assert_eq!(answering, managers);
    let groups: Value = serde_json::from_str(&world.ok(&[
        "group",
        "ls",
        "--manager",
        &format!("replica-{}", leading[0]),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        groups.as_array().map(Vec::len),
        Some(2),
        "the committed spec is still in the swarm's store: {groups}"
    );

    // Nothing else was made: three managers and one worker, as committed.
    let live = world
        .rt
        .block_on(world.swarm.nodes.describe(&Tags::new(), false))
        .unwrap();
    assert_eq!(live.len(), 4, "{live:?}");
}
