//! Three `infrakit manager run --leadership etcd --store etcd` replicas (separate processes)
//! on a real 3-member etcd cluster, driving one served simulator. Each replica reaches the
//! simulator through its own socket, so the simulator's call log says which replica made each
//! call. Needs Debian's `etcd-server` (the test fails saying how to install it).

use infrakit_core::{DestroyContext, Instance, InstanceId, Store, Tags};
use infrakit_etcd::cluster::EtcdCluster;
use infrakit_etcd::{EtcdConfig, EtcdStore};
use infrakit_rpc::PluginDir;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_infrakit");
const WAIT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The replicas' lease TTL.
const TTL: Duration = Duration::from_secs(2);
const REPLICAS: [&str; 3] = ["a", "b", "c"];

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
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!(
                "---- log of {} ----\n{log}---- end of {} ----",
                self.name, self.name
            );
        }
    }
}

/// The test's world. Fields drop in order: processes, then the cluster, then its runtime,
/// then the directory.
struct World {
    children: Vec<Proc>,
    cluster: EtcdCluster,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

struct Call {
    at_ms: u64,
    caller: Option<String>,
    op: String,
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl World {
    fn new() -> Self {
        Self::with(false)
    }

    /// With `tls`: one member, serving clients over mutual TLS only.
    fn with(tls: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let started = if tls {
            rt.block_on(EtcdCluster::start_tls(1))
        } else {
            rt.block_on(EtcdCluster::start(3))
        };
        let cluster = match started {
            Ok(c) => c,
            Err(e) => panic!("cannot start a 3-member etcd cluster: {e}"),
        };
        let dir = tempfile::tempdir().unwrap();
        for r in REPLICAS {
            std::fs::create_dir_all(dir.path().join(r).join("plugins")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        let mut w = Self {
            children: Vec::new(),
            cluster,
            rt,
            dir,
        };
        w.start_simulator();
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A replica's plugin directory (its `sim` is its own view of the simulator).
    fn plugins(&self, replica: &str) -> PathBuf {
        self.path(replica).join("plugins")
    }

    fn socket(&self, replica: &str) -> PathBuf {
        self.plugins(replica).join("group")
    }

    fn command(&self, plugins: &PathBuf, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env(infrakit_rpc::PLUGINS_DIR_ENV, plugins)
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("INFRAKIT_MANAGER")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, name: &str, plugins: &PathBuf, args: &[&str], socket: PathBuf) {
        let log = self.path(&format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(plugins, args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.children.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
        wait_for(&format!("{name} serving {}", socket.display()), || {
            socket.exists().then_some(())
        });
    }

    fn start_simulator(&mut self) {
        let shared = self.path("shared");
        let main = shared.join("sim").display().to_string();
        let log = self.path("calls.jsonl").display().to_string();
        let mut args = vec![
            "plugin".to_owned(),
            "start".into(),
            "simulator".into(),
            "--name".into(),
            main,
            "--call-log".into(),
            log,
        ];
        for r in REPLICAS {
            args.push("--caller-socket".into());
            args.push(format!("{}={r}", self.plugins(r).join("sim").display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("sim", &shared, &args, shared.join("sim"));
        for r in REPLICAS {
            let sock = self.plugins(r).join("sim");
            wait_for("the simulator's caller sockets", || {
                sock.exists().then_some(())
            });
        }
    }

    fn start_replica(&mut self, name: &str) {
        let endpoints = self.cluster.endpoint_list();
        let plugins = self.plugins(name);
        let tls: Vec<String> = match self.cluster.tls() {
            Some(t) => [
                ("--etcd-ca", &t.ca),
                ("--etcd-cert", &t.client.0),
                ("--etcd-key", &t.client.1),
            ]
            .iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
            .collect(),
            None => Vec::new(),
        };
        let mut args = vec![
            "manager",
            "run",
            "--name",
            "group",
            "--id",
            name,
            "--leadership",
            "etcd",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            "/test",
            "--etcd-ttl",
            "2s",
            "--resync",
            "300ms",
        ];
        args.extend(tls.iter().map(String::as_str));
        let socket = self.socket(name);
        self.spawn(name, &plugins, &args, socket);
    }

    fn start_replicas(&mut self) {
        for r in REPLICAS {
            self.start_replica(r);
        }
    }

    fn signal(&self, name: &str, signal: &str) {
        let p = self
            .children
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {name}");
    }

    /// SIGKILLs a replica and reaps it.
    fn kill(&mut self, name: &str) {
        let i = self.children.iter().position(|p| p.name == name).unwrap();
        let mut p = self.children.remove(i);
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    fn run(&self, via: &str, args: &[&str]) -> (i32, String, String) {
        let mut child = self
            .command(&self.plugins(via), args)
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

    /// `manager status --json` of a replica, `None` if it does not answer.
    fn status(&self, replica: &str) -> Option<Value> {
        let socket = self.socket(replica).display().to_string();
        let (code, out, _) = self.run(
            replica,
            &["manager", "status", "--json", "--manager", &socket],
        );
        (code == 0)
            .then(|| serde_json::from_str(&out).ok())
            .flatten()
    }

    /// The replicas (among `alive`) that say they lead.
    fn leaders(&self, alive: &[&str]) -> Vec<String> {
        alive
            .iter()
            .filter(|r| {
                self.status(r)
                    .is_some_and(|s| s["Leader"] == Value::Bool(true))
            })
            .map(|r| (*r).to_owned())
            .collect()
    }

    fn wait_leader(&self, alive: &[&str]) -> String {
        wait_for("one replica to lead", || {
            let l = self.leaders(alive);
            assert!(l.len() <= 1, "two replicas lead: {l:?}");
            l.into_iter().next()
        })
    }

    /// Commits a group of `size` through `via` (a follower sends it on to the leader).
    fn commit(&self, via: &str, size: usize) {
        let spec = self.path(&format!("spec-{size}.json"));
        std::fs::write(
            &spec,
            format!(
                r#"{{"ID": "workers", "Properties": {{
                     "Allocation": {{"Size": {size}}},
                     "Instance": {{"Plugin": "sim", "Properties": {{}}}},
                     "Flavor": {{"Plugin": "vanilla", "Properties": {{}}}}}}}}"#
            ),
        )
        .unwrap();
        let socket = self.socket(via).display().to_string();
        let (code, out, err) = self.run(
            via,
            &[
                "manager",
                "commit",
                spec.to_str().unwrap(),
                "--manager",
                &socket,
            ],
        );
        assert_eq!(code, 0, "commit via {via}\nstdout: {out}\nstderr: {err}");
    }

    fn sim_instances(&self) -> Vec<InstanceId> {
        let dir = PluginDir::new(self.path("shared"));
        let mut ids: Vec<InstanceId> = self
            .rt
            .block_on(dir.instance("sim").describe(&Tags::new(), false))
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        ids.sort();
        ids
    }

    fn sim_destroy(&self, id: &InstanceId) {
        let dir = PluginDir::new(self.path("shared"));
        self.rt
            .block_on(dir.instance("sim").destroy(id, DestroyContext::Terminate))
            .unwrap();
    }

    fn wait_instances(&self, n: usize) {
        wait_for(&format!("{n} instances"), || {
            (self.sim_instances().len() == n).then_some(())
        });
    }

    /// The simulator's calls so far (the log is appended every 50 ms).
    fn calls(&self) -> Vec<Call> {
        std::fs::read_to_string(self.path("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Call {
                    at_ms: v["AtMs"].as_u64().unwrap(),
                    caller: v["Caller"].as_str().map(String::from),
                    op: v["Op"].as_str().unwrap().to_owned(),
                }
            })
            .collect()
    }

    fn mutations_since(&self, ms: u64) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.at_ms >= ms && matches!(c.op.as_str(), "provision" | "destroy" | "label"))
            .collect()
    }

    /// The stored spec's version, read from etcd directly.
    fn spec_version(&self) -> Option<u64> {
        self.rt.block_on(async {
            let mut config = EtcdConfig::new(self.cluster.endpoints());
            if let Some(t) = self.cluster.tls() {
                config = config.tls(t.ca.clone(), Some(t.client.clone()));
            }
            let client = config.connect().await.unwrap();
            EtcdStore::new(client, "/test/spec")
                .load()
                .await
                .unwrap()
                .map(|v| v.version.0)
        })
    }
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn others<'a>(gone: &str) -> Vec<&'a str> {
    REPLICAS.iter().copied().filter(|r| *r != gone).collect()
}

#[test]
fn a_killed_leader_is_replaced_within_its_ttl_and_nothing_is_provisioned_twice() {
    let mut w = World::new();
    w.start_replicas();
    let leader = w.wait_leader(&REPLICAS);
    let follower = others(&leader)[0];
    // Commit on a follower: it goes on to the leader's published location.
    w.commit(follower, 3);
    w.wait_instances(3);
    let status = w.status(follower).unwrap();
    assert_eq!(
        status["LeaderLocation"].as_str(),
        Some(w.socket(&leader).to_str().unwrap()),
        "{status}"
    );
    let epoch = w.status(&leader).unwrap()["Epoch"]
        .as_u64()
        .expect("the leader's epoch");
    assert_eq!(status["LeaderEpoch"].as_u64(), Some(epoch), "{status}");

    // Kill the leader and take an instance away at the same moment.
    let victim = w.sim_instances()[0].clone();
    let killed_at = now_ms();
    w.kill(&leader);
    w.sim_destroy(&victim);
    w.wait_instances(3);
    std::thread::sleep(Duration::from_millis(1500));
    let after = w.mutations_since(killed_at);
    let provisions: Vec<&Call> = after.iter().filter(|c| c.op == "provision").collect();
    assert_eq!(
        provisions.len(),
        1,
        "exactly one replacement: {:?}",
        after.iter().map(|c| (&c.caller, &c.op)).collect::<Vec<_>>()
    );
    let first = provisions[0];
    assert_ne!(first.caller.as_deref(), Some(leader.as_str()));
    let took = Duration::from_millis(first.at_ms - killed_at);
    assert!(
        took <= TTL + Duration::from_secs(1),
        "kill → first action took {took:?} (TTL {TTL:?})"
    );
    assert_eq!(w.sim_instances().len(), 3, "no duplicates");
    let new_leader = w.wait_leader(&others(&leader));
    assert_eq!(first.caller.as_deref(), Some(new_leader.as_str()));
    let new_epoch = w.status(&new_leader).unwrap()["Epoch"].as_u64().unwrap();
    assert!(new_epoch > epoch, "epoch {epoch} then {new_epoch}");
}

#[test]
fn a_paused_leader_resumed_after_its_ttl_writes_nothing_and_mutates_nothing() {
    let mut w = World::new();
    w.start_replicas();
    let leader = w.wait_leader(&REPLICAS);
    w.commit(&leader, 3);
    w.wait_instances(3);

    w.signal(&leader, "STOP");
    let stopped_at = now_ms();
    let rest = others(&leader);
    let new_leader = w.wait_leader(&rest);
    // The new leader grows the group: the paused one, with its old spec (3), would shrink it.
    w.commit(&new_leader, 5);
    w.wait_instances(5);
    std::thread::sleep(TTL);
    let version = w.spec_version();
    let resumed_at = now_ms();
    w.signal(&leader, "CONT");
    std::thread::sleep(Duration::from_secs(4));

    let from_old: Vec<String> = w
        .mutations_since(stopped_at)
        .into_iter()
        .filter(|c| c.caller.as_deref() == Some(leader.as_str()))
        .map(|c| c.op)
        .collect();
    assert!(
        from_old.is_empty(),
        "the resumed replica mutated the provider: {from_old:?}"
    );
    assert_eq!(w.sim_instances().len(), 5);
    assert_eq!(w.spec_version(), version, "no store write after the resume");
    assert!(
        w.mutations_since(resumed_at).is_empty(),
        "nothing to do after the resume"
    );
    assert_eq!(
        w.leaders(&REPLICAS),
        vec![new_leader.clone()],
        "one leader, the new one"
    );
    let old = w.status(&leader).unwrap();
    assert_eq!(old["Leader"], Value::Bool(false), "{old}");
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(w.path(&format!("{leader}.log"))).unwrap()
        );
    }
}

#[test]
fn the_replicas_ride_out_an_etcd_member_kill_and_wait_without_quorum() {
    let mut w = World::new();
    w.start_replicas();
    let leader = w.wait_leader(&REPLICAS);
    w.commit(&leader, 2);
    w.wait_instances(2);

    // The Raft leader member goes: elections and the store keep working on two.
    let member = w.rt.block_on(w.cluster.leader()).expect("a Raft leader");
    w.rt.block_on(w.cluster.kill(member)).unwrap();
    let leader = w.wait_leader(&REPLICAS);
    wait_for("a commit on two members", || {
        let socket = w.socket(&leader).display().to_string();
        let spec = w.path("spec-3.json");
        std::fs::write(&spec, r#"{"ID": "workers", "Properties": {"Allocation": {"Size": 3}, "Instance": {"Plugin": "sim", "Properties": {}}, "Flavor": {"Plugin": "vanilla", "Properties": {}}}}"#).unwrap();
        let (code, _, _) = w.run(
            &leader,
            &[
                "manager",
                "commit",
                spec.to_str().unwrap(),
                "--manager",
                &socket,
            ],
        );
        (code == 0).then_some(())
    });
    w.wait_instances(3);
    w.rt.block_on(w.cluster.restart(member)).unwrap();
    w.rt.block_on(w.cluster.wait_healthy(Duration::from_secs(30)))
        .unwrap();

    // Two of three members go: no quorum, so nobody leads and nothing is done.
    let survivor = (member + 1) % 3;
    let down: Vec<usize> = (0..3).filter(|m| *m != survivor).collect();
    for m in &down {
        w.rt.block_on(w.cluster.kill(*m)).unwrap();
    }
    let lost_at = Instant::now();
    wait_for("no replica leading without quorum", || {
        w.leaders(&REPLICAS).is_empty().then_some(())
    });
    assert!(
        lost_at.elapsed() < TTL + Duration::from_secs(5),
        "{:?}",
        lost_at.elapsed()
    );
    let victim = w.sim_instances()[0].clone();
    let quiet_from = now_ms();
    w.sim_destroy(&victim);
    std::thread::sleep(Duration::from_secs(3));
    assert!(w.leaders(&REPLICAS).is_empty());
    let acted: Vec<(Option<String>, String)> = w
        .mutations_since(quiet_from)
        .into_iter()
        .filter(|c| c.caller.is_some())
        .map(|c| (c.caller, c.op))
        .collect();
    assert!(
        acted.is_empty(),
        "a replica acted without quorum: {acted:?}"
    );

    // The quorum returns: one replica leads again and heals.
    for m in &down {
        w.rt.block_on(w.cluster.restart(*m)).unwrap();
    }
    w.wait_leader(&REPLICAS);
    w.wait_instances(3);
}

#[test]
fn a_replica_on_a_mutual_tls_cluster_leads_and_commits() {
    let mut w = World::with(true);
    w.start_replica("a");
    assert_eq!(w.wait_leader(&["a"]), "a");
    w.commit("a", 2);
    w.wait_instances(2);
    assert!(w.spec_version().is_some(), "the spec is in etcd");
    let status = w.status("a").unwrap();
    assert!(status["Epoch"].as_u64().is_some_and(|e| e > 0), "{status}");
}
