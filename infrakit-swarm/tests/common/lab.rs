//! A lab of Docker engines on one machine, each in its own network namespace with its own IP
//! on a host bridge (DESIGN §5): a real multi-manager swarm for tests. Root only. Everything
//! is named after the lab and removed on drop (and before start, after a crash).
#![allow(dead_code)]

use bollard::Docker;
use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Lab {
    name: String,
    octet: u8,
    size: usize,
    pub nodes: Vec<LabNode>,
}

pub struct LabNode {
    pub ip: String,
    pub dir: PathBuf,
    pub socket: String,
    /// The dockerd process, reaped on drop.
    process: std::process::Child,
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "the swarm lab needs `{tool}`: run `scripts/test --prepare-only` as root (installs docker.io, iproute2, iptables)"
    );
}

impl Lab {
    /// Starts `size` engines at 10.<octet>.0.10, .11, ... (not yet a swarm).
    pub fn start(name: &str, octet: u8, size: usize) -> Lab {
        let mut lab = Lab::new(name, octet, size);
        for i in 0..size {
            lab.start_node(i, &[]);
        }
        lab
    }

    /// Creates the lab's network (bridge, namespaces, addresses) without starting engines.
    pub fn new(name: &str, octet: u8, size: usize) -> Lab {
        for tool in ["dockerd", "ip", "nsenter", "iptables", "pkill"] {
            require(tool);
        }
        let lab = Lab {
            name: name.to_owned(),
            octet,
            size,
            nodes: Vec::new(),
        };
        lab.cleanup();
        let br = lab.bridge();
        must("ip", &["link", "add", &br, "type", "bridge"]);
        must(
            "ip",
            &["addr", "add", &format!("10.{octet}.0.1/24"), "dev", &br],
        );
        must("ip", &["link", "set", &br, "up"]);
        must(
            "iptables",
            &["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        );
        for i in 0..size {
            let (ns, host, peer) = lab.names(i);
            let ip = lab.ip(i);
            must("ip", &["netns", "add", &ns]);
            must(
                "ip",
                &["link", "add", &host, "type", "veth", "peer", "name", &peer],
            );
            must("ip", &["link", "set", &host, "master", &br]);
            must("ip", &["link", "set", &host, "up"]);
            must("ip", &["link", "set", &peer, "netns", &ns]);
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "ip",
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    &peer,
                ],
            );
            must(
                "ip",
                &["netns", "exec", &ns, "ip", "link", "set", &peer, "up"],
            );
            must(
                "ip",
                &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
            );
        }
        lab
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.octet, 10 + i)
    }

    /// Starts node `i`'s engine with extra dockerd arguments (nodes start in order).
    pub fn start_node(&mut self, i: usize, extra: &[&str]) {
        assert_eq!(i, self.nodes.len(), "start lab nodes in order");
        let (ns, _, _) = self.names(i);
        let dir = self.root().join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let process = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .arg("dockerd")
            .args(["--data-root", &dir.join("data").display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["-H", &format!("unix://{}", socket.display())])
            .args(["--pidfile", &dir.join("docker.pid").display().to_string()])
            .args(["--bip", &format!("172.31.{i}.1/24")])
            .arg("--iptables=false")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.nodes.push(LabNode {
            ip: self.ip(i),
            dir,
            socket: format!("unix://{}", socket.display()),
            process,
        });
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/infrakit-lab-{}", self.name))
    }

    fn bridge(&self) -> String {
        format!("ik{}br", self.octet)
    }

    fn names(&self, i: usize) -> (String, String, String) {
        let o = self.octet;
        (
            format!("ik{o}n{i}"),
            format!("ik{o}h{i}"),
            format!("ik{o}p{i}"),
        )
    }

    /// Connects to node `i`, waiting up to 60 s for its engine to answer.
    pub async fn engine(&self, i: usize) -> Docker {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(d) = infrakit_swarm::connect(&self.nodes[i].socket).await
                && d.ping().await.is_ok()
            {
                return d;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.nodes[i].dir.join("dockerd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "lab node {i} did not answer within 60 s; dockerd log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes every node a manager of one swarm (node 0 initialises it).
    pub async fn form_swarm(&self) -> Vec<Docker> {
        let mut engines = Vec::new();
        for i in 0..self.size {
            engines.push(self.engine(i).await);
        }
        let first = &self.nodes[0];
        engines[0]
            .init_swarm(SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(first.ip.clone()),
                ..SwarmInitRequest::default()
            })
            .await
            .expect("swarm init");
        let token = engines[0]
            .inspect_swarm()
            .await
            .unwrap()
            .join_tokens
            .unwrap()
            .manager
            .unwrap();
        for (i, e) in engines.iter().enumerate().skip(1) {
            e.join_swarm(SwarmJoinRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(self.nodes[i].ip.clone()),
                remote_addrs: Some(vec![format!("{}:2377", first.ip)]),
                join_token: Some(token.clone()),
                ..SwarmJoinRequest::default()
            })
            .await
            .unwrap_or_else(|e| panic!("node {i} join: {e}"));
        }
        engines
    }

    /// Kills node `i`'s engine (dockerd and its containerd): what a dead machine looks like.
    pub fn kill(&self, i: usize) {
        let pattern = format!("{}/", self.nodes[i].dir.display());
        run("pkill", &["-9", "-f", &pattern]);
    }

    fn cleanup(&self) {
        let root = self.root();
        run("pkill", &["-9", "-f", &format!("{}/", root.display())]);
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..self.size.max(5) {
            let (ns, host, _) = self.names(i);
            run("ip", &["netns", "del", &ns]);
            run("ip", &["link", "del", &host]);
        }
        let br = self.bridge();
        while run(
            "iptables",
            &["-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        ) {}
        run("ip", &["link", "del", &br]);
        if root.exists() {
            // dockerd bind-mounts its data root onto itself.
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            for line in mounts.lines() {
                if let Some(m) = line.split_whitespace().nth(1)
                    && m.starts_with(&root.display().to_string())
                {
                    run("umount", &["-l", m]);
                }
            }
            let _ = std::fs::remove_dir_all(&root);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
        for node in &mut self.nodes {
            let _ = node.process.kill();
            let _ = node.process.wait();
        }
    }
}
