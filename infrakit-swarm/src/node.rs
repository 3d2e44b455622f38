//! Docker engines as instances: each node a `dockerd` in its own network namespace, on a
//! bridge of the host, its logical ID its IP and an attachment its data root. Linux, root.

use async_trait::async_trait;
use infrakit_core::{
    Description, DestroyContext, Instance, InstanceError, InstanceId, InstanceSpec, LOGICAL_ID_TAG,
    LogicalId, SpecError, Tags,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The attachment type of a node's data root (`{"ID": "manager-1", "Type": "dataroot"}`): a
/// directory under the plugin's root that follows the logical ID, like the seed's EBS volume
/// mounted at /var/lib/docker.
pub const DATA_ROOT_ATTACHMENT: &str = "dataroot";

/// What a node's record (`node.json`, beside its data) holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "IP")]
    ip: Ipv4Addr,
    #[serde(rename = "Tags")]
    tags: Tags,
    #[serde(rename = "DataRoot")]
    data_root: PathBuf,
    #[serde(rename = "Attachment", default)]
    attachment: Option<String>,
}

/// An instance plugin whose instances are Docker engines on this machine — the seed's
/// machines, made local: each node is a `dockerd` in its own network namespace, reachable
/// from the others over the plugin's bridge, with the logical ID as its IP and a `dataroot`
/// attachment as its `--data-root`.
///
/// - **provision** creates the namespace and its link, starts the engine, waits until it
///   answers, then starts the spec's `init` as the node's boot script and returns: like a
///   machine's user data, the script runs in the background, inside the namespace, with
///   `DOCKER_HOST` set to the node's engine (and `INFRAKIT_NODE_IP`, `INFRAKIT_NODE_ID`).
///   It is kept as `<root>/nodes/<id>/init.sh`, its output goes to `init.log`, it is stopped
///   after 300 s and it dies with the node. A failing script is logged, not an error (a
///   machine whose boot script fails still exists: its flavor's health check says what it
///   is worth); [`boot`](Self::boot) and [`wait_boot`](Self::wait_boot) report it.
///   A spec's `infrakit.link` tag (see [`LINK_LABEL`](crate::LINK_LABEL)) becomes an engine
///   label, so the swarm flavor finds the node. Without a logical ID a node gets the lowest
///   free address from `.100` up.
/// - **describe** reads the records kept beside the nodes (`<root>/nodes/<id>/node.json`) and
///   reports the nodes whose engine process is alive.
/// - **destroy** kills the engine, removes the namespace and its link, and deletes the node's
///   directory. A node without attachment has its data root there: it goes, whatever the
///   reason. A `dataroot` attachment (`<root>/data/<ID>`) is **kept whatever the reason**
///   (`terminate`, `rolling_update`, `scale_down`): it belongs to the logical ID and a
///   replacement restarts the engine on it, as itself. Only
///   [`remove_all(true)`](Self::remove_all) deletes attachments.
/// - Everything is named after the prefix (namespaces `<prefix>-<octet>-<n>`, links
///   `<prefix>h<octet>`, the bridge `<prefix>br`) and lives under the root, so that
///   [`remove_all`](Self::remove_all) cleans up after a crash too.
/// - Properties: `{}` or `{"DaemonArgs": ["--debug"]}` (extra `dockerd` arguments).
#[derive(Clone)]
pub struct EngineNodes {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    root: PathBuf,
    network: [u8; 3],
    sequence: AtomicU64,
    /// Addresses being provisioned: two launches at once never pick the same one.
    reserved: Mutex<HashSet<Ipv4Addr>>,
    /// Fault injection: the next node with one of these addresses boots cut off.
    cut_on_boot: Mutex<HashSet<Ipv4Addr>>,
    ready_timeout: Duration,
    init_timeout: Duration,
}

impl std::fmt::Debug for EngineNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineNodes")
            .field("prefix", &self.inner.prefix)
            .field("root", &self.inner.root)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    #[serde(rename = "DaemonArgs", default)]
    daemon_args: Vec<String>,
}

fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn quiet(cmd: &str, args: &[&str]) -> bool {
    sh(cmd, args).is_ok()
}

fn unavailable(message: impl Into<String>) -> InstanceError {
    InstanceError::Unavailable {
        message: message.into(),
    }
}

/// Whether process `pid` runs (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Unmounts everything mounted under `dir` (dockerd bind-mounts its data root onto itself).
fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        quiet("umount", &["-l", m]);
    }
}

impl EngineNodes {
    /// Nodes named after `prefix` (1 to 8 lowercase letters or digits), kept under `root`, on
    /// the network `subnet` (a `/24`, e.g. `10.93.0.0/24`; the host is `.1` on the bridge).
    pub fn new(prefix: &str, root: impl Into<PathBuf>, subnet: &str) -> Result<Self, SpecError> {
        if prefix.is_empty()
            || prefix.len() > 8
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(SpecError::new(
                "prefix",
                "1 to 8 lowercase letters or digits (it names network links)",
            ));
        }
        let network = subnet
            .strip_suffix("/24")
            .and_then(|n| n.parse::<Ipv4Addr>().ok())
            .filter(|n| n.octets()[3] == 0)
            .map(|n| {
                let o = n.octets();
                [o[0], o[1], o[2]]
            })
            .ok_or_else(|| SpecError::new("subnet", format!("{subnet:?} is not an a.b.c.0/24")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                prefix: prefix.to_owned(),
                root: root.into(),
                network,
                sequence: AtomicU64::new(0),
                reserved: Mutex::new(HashSet::new()),
                cut_on_boot: Mutex::new(HashSet::new()),
                ready_timeout: Duration::from_secs(60),
                init_timeout: Duration::from_secs(300),
            }),
        })
    }

    /// Where the nodes live: `nodes/<id>/` (record, engine socket and logs, boot script log)
    /// and `data/<attachment>/` (data roots that follow logical IDs).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The host's address on the bridge (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.inner.network;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("{}br", self.inner.prefix)
    }

    fn nodes_dir(&self) -> PathBuf {
        self.inner.root.join("nodes")
    }

    fn node_dir(&self, id: &str) -> PathBuf {
        self.nodes_dir().join(id)
    }

    fn link(&self, ip: Ipv4Addr) -> String {
        format!("{}h{}", self.inner.prefix, ip.octets()[3])
    }

    /// The engine address of node `id` (`unix://…/docker.sock`).
    pub fn socket(&self, id: &InstanceId) -> String {
        format!(
            "unix://{}",
            self.node_dir(id.as_str()).join("docker.sock").display()
        )
    }

    /// Creates the bridge (host address `.1`) and lets traffic cross it, unless done.
    pub fn ensure_network(&self) -> Result<(), InstanceError> {
        let br = self.bridge();
        if !quiet("ip", &["link", "show", &br]) {
            sh("ip", &["link", "add", &br, "type", "bridge"]).map_err(unavailable)?;
        }
        let _ = sh(
            "ip",
            &["addr", "add", &format!("{}/24", self.gateway()), "dev", &br],
        );
        sh("ip", &["link", "set", &br, "up"]).map_err(unavailable)?;
        let rule = ["FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"];
        if !quiet("iptables", &[&["-C"], &rule[..]].concat()) {
            sh("iptables", &[&["-I"], &rule[..]].concat()).map_err(unavailable)?;
        }
        Ok(())
    }

    fn records(&self) -> Vec<Record> {
        let Ok(dir) = std::fs::read_dir(self.nodes_dir()) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("node.json")).ok())
            .filter_map(|b| serde_json::from_slice::<Record>(&b).ok())
            .collect()
    }

    fn pid(&self, id: &str) -> Option<u32> {
        std::fs::read_to_string(self.node_dir(id).join("docker.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn is_alive(&self, id: &str) -> bool {
        self.pid(id).is_some_and(alive)
    }

    fn write_record(&self, r: &Record) -> Result<(), InstanceError> {
        let dir = self.node_dir(&r.id);
        let tmp = dir.join("node.json.tmp");
        let bytes = serde_json::to_vec_pretty(r).map_err(|e| unavailable(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, dir.join("node.json")))
            .map_err(|e| unavailable(format!("writing {}: {e}", dir.display())))
    }

    /// Kills the engine of node `id`, its boot script and everything they started, and every
    /// other process in the node's namespace (a daemon the boot script started in a session
    /// of its own, say): what runs on a machine dies with it.
    fn kill_engine(&self, id: &str) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", id])
            .stdin(Stdio::null())
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                quiet("kill", &["-9", pid]);
            }
        }
        if let Some(group) = self.boot_pid(id) {
            quiet("kill", &["-9", "--", &format!("-{group}")]);
        }
        if let Some(pid) = self.pid(id) {
            quiet("kill", &["-9", &pid.to_string()]);
        }
        let pattern = format!("{}/", self.node_dir(id).display());
        quiet("pkill", &["-9", "-f", &pattern]);
        for _ in 0..50 {
            if !self.is_alive(id) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn remove_links(&self, id: &str, ip: Ipv4Addr) {
        quiet("ip", &["netns", "del", id]);
        quiet("ip", &["link", "del", &self.link(ip)]);
    }

    /// What a dead machine looks like: the engine of node `id` is killed and its namespace
    /// and link vanish. Its record stays (describe no longer reports it); `destroy` or the
    /// next node with its IP clears it.
    pub fn kill(&self, id: &InstanceId) -> Result<(), InstanceError> {
        let r = self.record(id)?;
        self.kill_engine(&r.id);
        self.remove_links(&r.id, r.ip);
        Ok(())
    }

    /// Fault injection: the next node provisioned with address `ip` boots with its link to the
    /// bridge down (a machine on a broken network: its boot script cannot reach anyone), until
    /// [`set_link`](Self::set_link) restores it. One node only; later ones boot normally.
    pub fn cut_next_boot(&self, ip: Ipv4Addr) {
        if let Ok(mut set) = self.inner.cut_on_boot.lock() {
            set.insert(ip);
        }
    }

    /// Cuts (`up = false`) or restores node `id`'s link to the bridge: a network partition.
    pub fn set_link(&self, id: &InstanceId, up: bool) -> Result<(), InstanceError> {
        let r = self.record(id)?;
        sh(
            "ip",
            &[
                "link",
                "set",
                &self.link(r.ip),
                if up { "up" } else { "down" },
            ],
        )
        .map_err(unavailable)
    }

    fn record(&self, id: &InstanceId) -> Result<Record, InstanceError> {
        std::fs::read(self.node_dir(id.as_str()).join("node.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| InstanceError::NotFound { id: id.clone() })
    }

    /// Removes everything this plugin created (engines, namespaces, links, the bridge, the
    /// forwarding rule, node directories), even after a crash; `delete_data` also deletes the
    /// `dataroot` attachments. Returns how many node records it found.
    pub fn remove_all(&self, delete_data: bool) -> usize {
        let root = self.inner.root.display().to_string();
        quiet("pkill", &["-9", "-f", &format!("{root}/")]);
        std::thread::sleep(Duration::from_millis(300));
        let records = self.records();
        for r in &records {
            self.remove_links(&r.id, r.ip);
        }
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(ns) = line.split_whitespace().next()
                    && ns.starts_with(&format!("{}-", self.inner.prefix))
                {
                    quiet("ip", &["netns", "del", ns]);
                }
            }
        }
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(name) = line.split(':').nth(1).map(str::trim)
                    && let Some(name) = name.split('@').next()
                    && name.starts_with(&format!("{}h", self.inner.prefix))
                {
                    quiet("ip", &["link", "del", name]);
                }
            }
        }
        let br = self.bridge();
        while quiet(
            "iptables",
            &["-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        ) {}
        quiet("ip", &["link", "del", &br]);
        unmount_under(&self.inner.root);
        let _ = std::fs::remove_dir_all(self.nodes_dir());
        if delete_data {
            let _ = std::fs::remove_dir_all(&self.inner.root);
        }
        records.len()
    }

    /// Picks (or checks) the node's address and reserves it until the provision ends.
    fn reserve(
        &self,
        logical_id: Option<&LogicalId>,
        live: &[Record],
    ) -> Result<Ipv4Addr, InstanceError> {
        let mut reserved = self
            .inner
            .reserved
            .lock()
            .map_err(|_| unavailable("a lock was poisoned"))?;
        let ip = match logical_id {
            Some(l) => {
                let ip: Ipv4Addr = l.as_str().parse().map_err(|_| {
                    SpecError::new("LogicalID", format!("{l:?} is not an IPv4 address"))
                })?;
                let o = ip.octets();
                if [o[0], o[1], o[2]] != self.inner.network || !(2..=254).contains(&o[3]) {
                    return Err(SpecError::new(
                        "LogicalID",
                        format!("{ip} is not a node address of {}/24", self.gateway()),
                    )
                    .into());
                }
                ip
            }
            None => self
                .free_ip(live, &reserved)
                .ok_or_else(|| unavailable("no free address left on the node network"))?,
        };
        if let Some(holder) = live.iter().find(|r| r.ip == ip) {
            return Err(InstanceError::Conflict {
                message: format!("{ip} is held by the running node {}", holder.id),
            });
        }
        if !reserved.insert(ip) {
            return Err(InstanceError::Conflict {
                message: format!("{ip} is being provisioned"),
            });
        }
        Ok(ip)
    }

    fn free_ip(&self, live: &[Record], reserved: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let [a, b, c] = self.inner.network;
        (100..=254)
            .map(|d| Ipv4Addr::new(a, b, c, d))
            .find(|ip| !reserved.contains(ip) && !live.iter().any(|r| r.ip == *ip))
    }

    /// Sets up the namespace and starts the engine of `r` (blocking).
    fn start(&self, r: &Record, labels: &[String], extra: &[String]) -> Result<(), String> {
        let dir = self.node_dir(&r.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::create_dir_all(&r.data_root)
            .map_err(|e| format!("{}: {e}", r.data_root.display()))?;
        let (ns, host, peer) = (r.id.as_str(), self.link(r.ip), "eth0");
        let tmp_peer = format!("{}p{}", self.inner.prefix, r.ip.octets()[3]);
        sh("ip", &["netns", "add", ns])?;
        sh(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", &tmp_peer,
            ],
        )?;
        sh("ip", &["link", "set", &host, "master", &self.bridge()])?;
        let cut = self
            .inner
            .cut_on_boot
            .lock()
            .map(|mut set| set.remove(&r.ip))
            .unwrap_or(false);
        if cut {
            tracing::info!(node = %r.id, ip = %r.ip, "booting cut off (fault injection)");
        } else {
            sh("ip", &["link", "set", &host, "up"])?;
        }
        // A MAC derived from the IP: a replacement answers with the MAC its peers have
        // cached for the address, so they reach it at once (no stale ARP entries).
        let o = r.ip.octets();
        let mac = format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
        sh("ip", &["link", "set", "dev", &tmp_peer, "address", &mac])?;
        sh("ip", &["link", "set", &tmp_peer, "netns", ns])?;
        let inside = |args: &[&str]| sh("ip", &[&["netns", "exec", ns, "ip"], args].concat());
        inside(&["link", "set", &tmp_peer, "name", peer])?;
        inside(&["addr", "add", &format!("{}/24", r.ip), "dev", peer])?;
        inside(&["link", "set", peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&[
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ])?;
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("nsenter");
        // nsenter, not `ip netns exec`, which hides the cgroup mounts dockerd needs.
        cmd.arg(format!("--net=/var/run/netns/{ns}"))
            .arg("dockerd")
            .args(["--data-root", &r.data_root.display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["-H", &self.socket(&InstanceId::from(r.id.as_str()))])
            .args(["--pidfile", &dir.join("docker.pid").display().to_string()])
            .args(["--bip", &format!("172.31.{}.1/24", r.ip.octets()[3])])
            .arg("--iptables=false");
        for l in labels {
            cmd.args(["--label", l]);
        }
        cmd.args(extra).stdin(Stdio::null()).stdout(log).stderr(err);
        let mut child = cmd.spawn().map_err(|e| format!("starting dockerd: {e}"))?;
        // Reaped by a thread of its own: the engine outlives this call.
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    async fn wait_ready(&self, id: &InstanceId) -> Result<(), InstanceError> {
        let socket = self.socket(id);
        let deadline = tokio::time::Instant::now() + self.inner.ready_timeout;
        loop {
            if let Ok(d) = crate::connect(&socket).await
                && d.ping().await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.node_dir(id.as_str()).join("dockerd.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(unavailable(format!(
                    "the engine of {id} did not answer within {:?}: {}",
                    self.inner.ready_timeout,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `init` as node `r`'s boot script, in the background: a machine runs its user
    /// data after it boots, whoever launched it. The script is kept beside the node
    /// (`init.sh`), runs in its own process group (`init.pid`), is stopped after the boot
    /// timeout, and its exit code lands in `init.exit` (while this process lives).
    fn start_boot(&self, r: &Record, init: &str) -> Result<(), String> {
        if init.trim().is_empty() {
            return Ok(());
        }
        let dir = self.node_dir(&r.id);
        let script = dir.join("init.sh");
        std::fs::write(&script, init).map_err(|e| format!("{}: {e}", script.display()))?;
        let log = std::fs::File::create(dir.join("init.log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let id = InstanceId::from(r.id.as_str());
        let mut child = tokio::process::Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", r.id))
            .args(["timeout", "-k", "5"])
            .arg(self.inner.init_timeout.as_secs().max(1).to_string())
            .arg("sh")
            .arg(&script)
            .env("DOCKER_HOST", self.socket(&id))
            .env("INFRAKIT_NODE_IP", r.ip.to_string())
            .env("INFRAKIT_NODE_ID", &r.id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the boot script: {e}"))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(dir.join("init.pid"), pid.to_string());
        }
        let node = r.id.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let code = match &status {
                Ok(s) => s.code(),
                Err(_) => None,
            };
            // The node may be gone already; then there is nothing to record.
            if dir.is_dir() {
                let _ = std::fs::write(
                    dir.join("init.exit"),
                    code.map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                );
            }
            match code {
                Some(0) => tracing::info!(%node, "boot script done"),
                Some(124) => tracing::warn!(%node, "boot script stopped at its timeout"),
                _ => {
                    tracing::warn!(%node, ?status, log = %dir.join("init.log").display(), "boot script failed")
                }
            }
        });
        Ok(())
    }

    /// The process (and process group) of node `id`'s boot script, if one was started.
    fn boot_pid(&self, id: &str) -> Option<u32> {
        std::fs::read_to_string(self.node_dir(id).join("init.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Where node `id`'s boot script stands.
    ///
    /// ```no_run
    /// # async fn f(nodes: infrakit_swarm::EngineNodes, id: infrakit_core::InstanceId)
    /// # -> Result<(), infrakit_core::InstanceError> {
    /// use infrakit_swarm::Boot;
    /// match nodes.boot(&id)? {
    ///     Boot::Finished { code: Some(0) } => println!("booted"),
    ///     other => println!("not yet: {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn boot(&self, id: &InstanceId) -> Result<Boot, InstanceError> {
        let dir = self.node_dir(id.as_str());
        if !dir.join("node.json").is_file() {
            return Err(InstanceError::NotFound { id: id.clone() });
        }
        let finished = || {
            std::fs::read_to_string(dir.join("init.exit"))
                .ok()
                .map(|text| Boot::Finished {
                    code: text.trim().parse().ok(),
                })
        };
        if let Some(done) = finished() {
            return Ok(done);
        }
        Ok(match self.boot_pid(id.as_str()) {
            None if dir.join("init.sh").is_file() => Boot::Lost,
            None => Boot::NoScript,
            Some(pid) if alive(pid) => Boot::Running,
            // The exit code may have landed since the first look.
            Some(_) => finished().unwrap_or(Boot::Lost),
        })
    }

    /// Waits up to `limit` for node `id`'s boot script to finish, and returns its exit code
    /// (`None`: killed by a signal). A node without a boot script is finished with code 0.
    pub async fn wait_boot(
        &self,
        id: &InstanceId,
        limit: Duration,
    ) -> Result<Option<i32>, InstanceError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.boot(id)? {
                Boot::NoScript => return Ok(Some(0)),
                Boot::Finished { code } => return Ok(code),
                Boot::Lost => {
                    return Err(unavailable(format!(
                        "the boot script of {id} ended and its exit code was not recorded"
                    )));
                }
                Boot::Running if tokio::time::Instant::now() >= deadline => {
                    return Err(unavailable(format!(
                        "the boot script of {id} is still running after {limit:?}"
                    )));
                }
                Boot::Running => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Where a node's boot script stands (see [`EngineNodes::boot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Boot {
    /// The node was provisioned without one.
    NoScript,
    /// Still running.
    Running,
    /// It ended with this exit code (`None`: killed by a signal; 124: stopped at the boot
    /// timeout).
    Finished {
        /// The exit code.
        code: Option<i32>,
    },
    /// It ended while no process of this plugin watched it: the exit code is not known.
    Lost,
}

#[async_trait]
impl Instance for EngineNodes {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        if properties.is_null() {
            return Ok(());
        }
        SpecError::from_value::<Props>(properties.clone())?;
        Ok(())
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let props: Props = if spec.properties.is_null() {
            Props::default()
        } else {
            SpecError::from_value(spec.properties.clone())?
        };
        let records = self.records();
        let (live, dead): (Vec<Record>, Vec<Record>) =
            records.into_iter().partition(|r| self.is_alive(&r.id));
        let ip = self.reserve(spec.logical_id.as_ref(), &live)?;
        let _release = Release {
            set: &self.inner.reserved,
            ip,
        };
        let attachment = match spec.attachments.as_slice() {
            [] => None,
            [a] if a.kind == DATA_ROOT_ATTACHMENT => {
                if a.id.is_empty() || a.id.contains('/') || a.id.starts_with('.') {
                    return Err(SpecError::new(
                        "Attachments[0].ID",
                        "a plain directory name is required",
                    )
                    .into());
                }
                if let Some(holder) = live.iter().find(|r| r.attachment.as_deref() == Some(&a.id)) {
                    return Err(InstanceError::Conflict {
                        message: format!("data root {:?} is in use by node {}", a.id, holder.id),
                    });
                }
                Some(a.id.clone())
            }
            [a] => {
                return Err(SpecError::new(
                    "Attachments[0].Type",
                    format!("{:?} is not {DATA_ROOT_ATTACHMENT:?}", a.kind),
                )
                .into());
            }
            _ => {
                return Err(
                    SpecError::new("Attachments", "a node has at most one data root").into(),
                );
            }
        };
        // The remains of dead nodes with this IP go first (their attachments stay).
        for d in dead.iter().filter(|d| d.ip == ip) {
            self.clear(d);
        }

        let n = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let id = format!(
            "{}-{}-{:x}",
            self.inner.prefix,
            ip.octets()[3],
            (u64::from(nanos) << 8) ^ n
        );
        let data_root = match &attachment {
            Some(a) => self.inner.root.join("data").join(a),
            None => self.node_dir(&id).join("data"),
        };
        let mut tags = spec.tags.clone();
        if spec.logical_id.is_some() {
            tags.insert(LOGICAL_ID_TAG, ip.to_string());
        }
        let record = Record {
            id: id.clone(),
            ip,
            tags,
            data_root,
            attachment,
        };
        let labels: Vec<String> = spec
            .tags
            .iter()
            .filter(|(k, _)| *k == crate::LINK_LABEL)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let this = self.clone();
        let r = record.clone();
        let started = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(this.node_dir(&r.id)).map_err(|e| e.to_string())?;
            this.write_record(&r).map_err(|e| e.to_string())?;
            this.start(&r, &labels, &props.daemon_args)
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
        let iid = InstanceId::from(id.as_str());
        if let Err(e) = started {
            self.clear(&record);
            return Err(unavailable(format!("starting node {id} ({ip}): {e}")));
        }
        if let Err(e) = self.wait_ready(&iid).await {
            self.clear(&record);
            return Err(e);
        }
        tracing::info!(node = %id, %ip, "engine up");
        if let Err(e) = self.start_boot(&record, &spec.init) {
            self.clear(&record);
            return Err(unavailable(format!("node {id} ({ip}): {e}")));
        }
        Ok(iid)
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        let mut r = self.record(id)?;
        r.tags.merge(labels);
        self.write_record(&r)
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        let r = self.record(id)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.clear(&r))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        tracing::info!(node = %id, reason = %context, "destroyed");
        Ok(())
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        Ok(self
            .records()
            .into_iter()
            .filter(|r| r.tags.contains_all(tags) && self.is_alive(&r.id))
            .map(|r| {
                let mut d = Description::new(r.id.as_str(), r.tags.clone());
                d.logical_id = r.tags.get(LOGICAL_ID_TAG).map(LogicalId::from);
                if with_properties {
                    d.properties = Some(json!({
                        "IP": r.ip.to_string(),
                        "Socket": self.socket(&InstanceId::from(r.id.as_str())),
                        "DataRoot": r.data_root.display().to_string(),
                        "Attachment": r.attachment,
                        "Pid": self.pid(&r.id),
                    }));
                }
                d
            })
            .collect())
    }
}

impl EngineNodes {
    /// Kills node `r` and removes all of it but an attached data root (blocking).
    fn clear(&self, r: &Record) {
        self.kill_engine(&r.id);
        self.remove_links(&r.id, r.ip);
        let dir = self.node_dir(&r.id);
        unmount_under(&dir);
        unmount_under(&r.data_root);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Frees a reserved address when a provision ends, however it ends.
struct Release<'a> {
    set: &'a Mutex<HashSet<Ipv4Addr>>,
    ip: Ipv4Addr,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(EngineNodes::new("ik", "/tmp/x", "10.93.0.0/24").is_ok());
        assert!(EngineNodes::new("IK", "/tmp/x", "10.93.0.0/24").is_err());
        assert!(EngineNodes::new("toolongprefix", "/tmp/x", "10.93.0.0/24").is_err());
        assert!(EngineNodes::new("ik", "/tmp/x", "10.93.0.0/16").is_err());
        assert!(EngineNodes::new("ik", "/tmp/x", "10.93.0.5/24").is_err());
        let n = EngineNodes::new("ik", "/tmp/x", "10.93.0.0/24").unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 93, 0, 1));
        assert_eq!(n.link(Ipv4Addr::new(10, 93, 0, 12)), "ikh12");
    }

    #[test]
    fn a_zombie_is_not_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[tokio::test]
    async fn bad_specs_name_the_field() {
        let n = EngineNodes::new("ikt", "/tmp/ikt-unit", "10.93.0.0/24").unwrap();
        let e = n
            .provision(InstanceSpec::default().with_logical_id("10.94.0.5"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("LogicalID"), "{e}");
        let e = n
            .provision(
                InstanceSpec::default()
                    .with_attachment(infrakit_core::Attachment::new("../etc", "dataroot")),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Attachments[0].ID"), "{e}");
        let e = n
            .validate(&json!({"DaemonArg": []}))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("DaemonArg"), "{e}");
    }
}
