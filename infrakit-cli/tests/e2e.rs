//! End-to-end tests of the `infrakit` binary: real processes, real sockets, temp dirs.
//!
//! Every child process is owned by a guard that kills it on drop and, when the test fails,
//! prints its log. Every wait is bounded.

use infrakit_core::{DestroyContext, FileLeadership, Instance, InstanceId, Tags};
use infrakit_rpc::PluginDir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_infrakit");
/// A single CLI call never takes this long (2 slow cores, parallel tests).
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// Waiting for a process, a socket or a state.
const WAIT: Duration = Duration::from_secs(60);

/// A test's world: a temp dir with a plugin directory, and the processes started in it.
struct World {
    // Fields drop in order: the processes go (and print their logs) before the directory.
    children: Vec<Proc>,
    dir: tempfile::TempDir,
}

/// A child process, killed on drop.
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

/// What a CLI call did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        Self {
            dir,
            children: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn plugins(&self) -> PathBuf {
        self.path("plugins")
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.plugins().join(name)
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

    /// Starts a long-running `infrakit` process and waits for the socket it serves.
    fn start(&mut self, name: &str, args: &[&str], socket: &str) {
        let log = self.path(&format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.children.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
        let socket = self.socket(socket);
        self.wait_for(&format!("{name} serving {}", socket.display()), || {
            socket.exists().then_some(())
        });
    }

    /// Sends SIGTERM to a started process and returns its exit code.
    fn terminate(&mut self, name: &str) -> i32 {
        let i = self
            .children
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let mut p = self.children.remove(i);
        let status = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "{name} ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one CLI command to completion (bounded).
    fn run(&self, args: &[&str]) -> Run {
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
                let out = child.wait_with_output().unwrap();
                panic!(
                    "infrakit {args:?} took over {CALL_TIMEOUT:?}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Polls `check` until it gives a value (bounded).
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the simulator plugin as `sim`.
    fn start_simulator(&mut self, extra: &[&str]) {
        let mut args = vec!["plugin", "start", "simulator", "--name", "sim"];
        args.extend_from_slice(extra);
        self.start("sim", &args, "sim");
    }

    /// Starts a replica `name` with file leadership and the shared file store.
    fn start_replica(&mut self, name: &str) {
        self.start_replica_with(name, &["--resync", "300ms"]);
    }

    /// Like [`start_replica`](Self::start_replica), with these options instead of the
    /// default resync.
    fn start_replica_with(&mut self, name: &str, options: &[&str]) {
        let leader = self.path("leader").display().to_string();
        let store = self.path("groups.json").display().to_string();
        let mut args = vec![
            "manager",
            "run",
            "--name",
            name,
            "--leadership",
            "file",
            "--leader-file",
            &leader,
            "--store-file",
            &store,
        ];
        args.extend_from_slice(options);
        self.start(name, &args, name);
    }

    fn write_spec(&self, file: &str, size: &str) -> String {
        let path = self.path(file);
        std::fs::write(
            &path,
            format!(
                r#"{{"ID": "workers", "Properties": {{
                     "Allocation": {{"Size": {size}}},
                     "Instance": {{"Plugin": "sim", "Properties": {{"Image": "busybox"}}}},
                     "Flavor": {{"Plugin": "vanilla", "Properties": {{"Init": ["echo hi"]}}}}}}}}"#
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    /// The simulator's instances, straight from its socket.
    fn sim_instances(&self) -> Vec<InstanceId> {
        let dir = PluginDir::new(self.plugins());
        let sim = dir.instance("sim");
        let mut ids: Vec<InstanceId> = rt()
            .block_on(sim.describe(&Tags::new(), false))
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        ids.sort();
        ids
    }

    /// Destroys an instance behind the managers' backs.
    fn sim_destroy(&self, id: &InstanceId) {
        let dir = PluginDir::new(self.plugins());
        rt().block_on(dir.instance("sim").destroy(id, DestroyContext::Terminate))
            .unwrap();
    }

    fn describe(&self, manager: &str) -> Value {
        self.run(&[
            "group",
            "describe",
            "workers",
            "--json",
            "--manager",
            manager,
        ])
        .ok()
        .json()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn member_ids(description: &Value) -> Vec<String> {
    let mut ids: Vec<String> = description["Members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["ID"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn all_ready(description: &Value) -> bool {
    description["Members"].as_array().is_some_and(|a| {
        a.iter()
            .all(|m| m["Health"] == 1 && m["UpToDate"] == Value::Bool(true))
    })
}

fn strs(ids: &[InstanceId]) -> Vec<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

#[test]
fn two_replicas_share_a_simulator_and_the_follower_takes_over() {
    let mut w = World::new();
    w.start_simulator(&[]);
    FileLeadership::write_leader(&w.path("leader"), "group-a").unwrap();
    w.start_replica("group-a");
    w.start_replica("group-b");

    // The plugin directory: both replicas and the simulator, by handshake.
    let ls = w.run(&["plugin", "ls", "--json"]).ok().json();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["group-a", "group-b", "sim"]);
    let interfaces = |name: &str| -> Vec<String> {
        ls.as_array()
            .unwrap()
            .iter()
            .find(|p| p["Name"] == name)
            .unwrap()["Interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["Name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(interfaces("sim"), vec!["Instance"]);
    // The Group API, leadership metadata, and the Manager object both Go CLIs look for.
    assert_eq!(
        interfaces("group-a"),
        vec!["Group", "Manager", "Metadata", "Stack"]
    );

    // group-b follows and knows who leads.
    let status = w.wait_for("group-b to see group-a lead", || {
        let s = w
            .run(&["manager", "status", "--json", "--manager", "group-b"])
            .ok()
            .json();
        (s["LeaderLocation"] == "group-a").then_some(s)
    });
    assert_eq!(status["Leader"], Value::Bool(false));
    assert_eq!(status["ID"], "group-b");

    // A template spec, committed through the follower: rendered, planned, sent to the leader,
    // and watched until it converges.
    // The example spec of the README (a template: `--global /size=N`).
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workers.json");
    let spec = spec.display().to_string();
    let pretend = w
        .run(&[
            "manager",
            "commit",
            &spec,
            "--global",
            "/size=3",
            "--pretend",
            "--json",
            "--manager",
            "group-b",
        ])
        .ok()
        .json();
    assert_eq!(pretend[0]["Plan"], "add 3 to reach 3");
    assert_eq!(pretend[0]["Committed"], Value::Bool(false));
    assert!(
        w.sim_instances().is_empty(),
        "pretend provisioned something"
    );

    let commit = w
        .run(&[
            "manager",
            "commit",
            &spec,
            "--global",
            "/size=3",
            "--watch",
            "--deadline",
            "60s",
            "--manager",
            "group-b",
        ])
        .ok();
    assert!(
        commit
            .stdout
            .contains("workers: committed; plan: add 3 to reach 3"),
        "{}",
        commit.stdout
    );
    assert!(
        commit.stdout.contains("3/3 ready"),
        "the watch ends converged: {}",
        commit.stdout
    );

    // Both replicas report the leader's view.
    let d = w.describe("group-a");
    assert_eq!(d["Converged"], Value::Bool(true));
    assert!(all_ready(&d), "{d}");
    let members = member_ids(&d);
    assert_eq!(members, strs(&w.sim_instances()));
    assert_eq!(members.len(), 3);
    assert_eq!(member_ids(&w.describe("group-b")), members);

    // The table form has the columns operators read.
    let table = w
        .run(&["group", "describe", "workers", "--manager", "group-b"])
        .ok()
        .stdout;
    assert!(
        table.starts_with("ID          LOGICAL ID  HEALTH   UP TO DATE\n"),
        "{table}"
    );
    assert!(table.contains("healthy  yes"), "{table}");
    assert!(table.contains("converged: yes"), "{table}");

    // Flip the leader file: group-b takes over.
    FileLeadership::write_leader(&w.path("leader"), "group-b").unwrap();
    w.wait_for("group-b to lead", || {
        let s = w
            .run(&["manager", "status", "--json", "--manager", "group-b"])
            .ok()
            .json();
        (s["Leader"] == Value::Bool(true)).then_some(())
    });
    // group-a notices at its next poll of the leader file.
    w.wait_for("group-a to follow group-b", || {
        let a = w
            .run(&["manager", "status", "--manager", "group-a"])
            .ok()
            .stdout;
        a.contains("follows; the leader is group-b").then_some(())
    });

    // The old leader goes away gracefully; the new one alone heals the group.
    assert_eq!(w.terminate("group-a"), 0, "SIGTERM is a clean exit");
    assert!(!w.socket("group-a").exists(), "the socket is removed");
    let victim = InstanceId::from(members[0].as_str());
    w.sim_destroy(&victim);
    let healed = w.wait_for("group-b to replace the destroyed member", || {
        let d = w.describe("group-b");
        let ids = member_ids(&d);
        (d["Converged"] == Value::Bool(true)
            && ids.len() == 3
            && !ids.contains(&victim.to_string())
            && all_ready(&d))
        .then_some(ids)
    });
    assert_eq!(healed, strs(&w.sim_instances()));

    // Scale through the new leader, watching.
    let scaled = w
        .run(&[
            "group",
            "scale",
            "workers",
            "5",
            "--watch",
            "--deadline",
            "60s",
            "--manager",
            "group-b",
        ])
        .ok();
    assert!(
        scaled.stdout.contains("workers: size 3 -> 5"),
        "{}",
        scaled.stdout
    );
    assert_eq!(w.sim_instances().len(), 5);

    // Nobody leads: mutations exit 3 and say so; reads still work.
    FileLeadership::write_leader(&w.path("leader"), "nobody").unwrap();
    w.wait_for("group-b to step down", || {
        let s = w
            .run(&["manager", "status", "--json", "--manager", "group-b"])
            .ok()
            .json();
        (s["Leader"] == Value::Bool(false)).then_some(())
    });
    let refused = w
        .run(&["group", "scale", "workers", "1", "--manager", "group-b"])
        .code(3);
    assert!(
        refused
            .stderr
            .contains("not the leader; the leader is at nobody"),
        "{}",
        refused.stderr
    );
    let size = w
        .run(&[
            "group",
            "scale",
            "workers",
            "--json",
            "--manager",
            "group-b",
        ])
        .ok()
        .json();
    assert_eq!(size["Size"], 5);
    assert_eq!(
        w.sim_instances().len(),
        5,
        "no replica acts without leading"
    );
    assert_eq!(w.terminate("group-b"), 0);
}

#[test]
fn scale_and_destroy_instances_round_trip() {
    let mut w = World::new();
    w.start_simulator(&[]);
    let store = w.path("groups.json").display().to_string();
    // One replica, static leadership, on the default socket name.
    w.start(
        "group",
        &[
            "manager",
            "run",
            "--store-file",
            &store,
            "--resync",
            "300ms",
            "--log-format",
            "json",
        ],
        "group",
    );
    let spec = w.write_spec("spec.json", "2");
    w.run(&["manager", "commit", &spec, "--watch", "--deadline", "60s"])
        .ok();

    let ls = w.run(&["group", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["ID"], "workers");
    assert_eq!(ls[0]["Size"], 2);
    assert_eq!(ls[0]["Converged"], Value::Bool(true));
    let table = w.run(&["group", "ls"]).ok().stdout;
    assert!(
        table.starts_with("ID       SIZE  MEMBERS  CONVERGED"),
        "{table}"
    );

    // Scale up, then down by destroying named members.
    let scaled = w
        .run(&["group", "scale", "workers", "4", "--json"])
        .ok()
        .json();
    assert_eq!(
        (scaled["Previous"].clone(), scaled["Size"].clone()),
        (2.into(), 4.into())
    );
    w.run(&[
        "group",
        "describe",
        "workers",
        "--watch",
        "--deadline",
        "60s",
    ])
    .ok();
    let before = w.sim_instances();
    assert_eq!(before.len(), 4);

    let victims = strs(&before[..2]);
    let out = w
        .run(&[
            "group",
            "destroy-instances",
            "workers",
            &victims[0],
            &victims[1],
        ])
        .ok();
    assert!(out.stdout.contains("size lowered by 2"), "{}", out.stdout);
    assert_eq!(
        w.run(&["group", "scale", "workers"]).ok().stdout.trim(),
        "2"
    );
    w.run(&[
        "group",
        "describe",
        "workers",
        "--watch",
        "--deadline",
        "60s",
    ])
    .ok();
    assert_eq!(w.sim_instances(), before[2..].to_vec());

    // A non-member is refused and nothing changes.
    let refused = w
        .run(&["group", "destroy-instances", "workers", "not-a-member"])
        .code(1);
    assert!(
        refused.stderr.contains("not members of group workers"),
        "{}",
        refused.stderr
    );
    assert_eq!(w.sim_instances(), before[2..].to_vec());

    // An unknown group is exit code 5.
    w.run(&["group", "describe", "nope"]).code(5);
    w.run(&["group", "scale", "nope", "3"]).code(5);

    // Free leaves the instances; a new commit adopts them; destroy removes everything.
    w.run(&["group", "free", "workers"]).ok();
    assert_eq!(
        w.run(&["group", "ls", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    assert_eq!(w.sim_instances().len(), 2);
    let spec = w.write_spec("spec.json", "2");
    w.run(&["manager", "commit", &spec, "--watch", "--deadline", "60s"])
        .ok();
    assert_eq!(
        w.sim_instances(),
        before[2..].to_vec(),
        "adopted, not replaced"
    );
    w.run(&["group", "destroy", "workers"]).ok();
    assert!(w.sim_instances().is_empty());
    assert_eq!(w.terminate("group"), 0);

    // --log-format json: one JSON object per line, shutdown included.
    let log = std::fs::read_to_string(w.path("group.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "manager replica running"),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["signal"] == "SIGTERM"),
        "{log}"
    );
}

#[test]
fn watch_gives_up_at_the_deadline() {
    let mut w = World::new();
    // Every call takes two seconds: the group cannot converge within the deadline.
    w.start_simulator(&["--simulator-latency", "2s"]);
    let store = w.path("groups.json").display().to_string();
    w.start(
        "group",
        &["manager", "run", "--store-file", &store],
        "group",
    );
    let spec = w.write_spec("spec.json", "3");
    let late = w
        .run(&[
            "manager",
            "commit",
            &spec,
            "--watch",
            "--deadline",
            "500ms",
            "--json",
        ])
        .code(4);
    assert!(
        late.stderr.contains("did not converge within"),
        "{}",
        late.stderr
    );
    // Plain lines (JSON with --json) when not on a terminal.
    let first = late.stdout.lines().next().unwrap_or_default();
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    assert_eq!(line["ID"], "workers");
    assert_eq!(line["Size"], 3);
}

#[test]
fn template_renders_like_the_seed() {
    let w = World::new();
    let boot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/templates/boot.sh");
    let boot = boot.display().to_string();
    let out = w
        .run(&[
            "template",
            "--url",
            &boot,
            "--global",
            "/cluster/name=mystack",
            "--global",
            "/local/role=worker",
            "--global",
            "/local/ip=10.0.0.9",
            "--global",
            "/cluster/swarm/join/token=SWMTKN-1-xyz",
        ])
        .ok();
    assert!(
        out.stdout
            .contains("# mystack: boot script of worker 10.0.0.9"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("docker swarm join --token SWMTKN-1-xyz 10.0.0.1:2377"),
        "{}",
        out.stdout
    );
    // A missing global is an error naming it.
    let missing = w.run(&["template", "--url", &boot]).code(1);
    assert!(missing.stderr.contains("/local/ip"), "{}", missing.stderr);
    // Bad usage is exit code 2.
    w.run(&["template"]).code(2);
}

#[test]
fn no_manager_is_a_clear_error() {
    let w = World::new();
    let out = w.run(&["group", "ls"]).code(1);
    assert!(
        out.stderr.contains("no manager socket at") && out.stderr.contains("plugins/group"),
        "{}",
        out.stderr
    );
    assert!(w.run(&["plugin", "ls", "--json"]).ok().json() == Value::Array(vec![]));
}

#[test]
fn quorum_recovery_goes_with_swarm_leadership() {
    let w = World::new();
    let out = w
        .run(&[
            "manager",
            "run",
            "--builtin",
            "simulator=nodes",
            "--recover-with",
            "nodes",
        ])
        .code(1);
    assert!(
        out.stderr
            .contains("--recover-with goes with --leadership swarm"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_reads_well() {
    let w = World::new();
    let top = w.run(&["--help"]).ok().stdout;
    for needle in [
        "manager",
        "group",
        "template",
        "plugin",
        "Exit codes",
        "--json",
    ] {
        assert!(top.contains(needle), "--help lacks {needle:?}:\n{top}");
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["manager", "run", "--help"],
            &["--leadership", "--store", "--builtin", "SIGTERM"],
        ),
        (
            &["manager", "commit", "--help"],
            &["--pretend", "--global", "--watch"],
        ),
        (&["manager", "status", "--help"], &["leads"]),
        (
            &["group", "--help"],
            &["describe", "scale", "destroy-instances", "free", "destroy"],
        ),
        (&["group", "describe", "--help"], &["--watch", "--deadline"]),
        (&["template", "--help"], &["--url", "--global"]),
        (&["plugin", "start", "--help"], &["simulator", "--name"]),
        (&["plugin", "ls", "--help"], &["interfaces"]),
    ];
    for (args, needles) in cases {
        let help = w.run(args).ok().stdout;
        for needle in *needles {
            assert!(help.contains(needle), "{args:?} lacks {needle:?}:\n{help}");
        }
    }
    let version = w.run(&["--version"]).ok().stdout;
    assert!(version.starts_with("infrakit "), "{version}");
}

/// `plugin start ec2` serves the EC2 instance plugin (against moto, as `scripts/test` starts
/// it): a launch through the socket is an EC2 instance with our tags, in our namespace only.
#[cfg(feature = "aws")]
#[test]
fn the_ec2_builtin_serves_ec2_instances_on_a_socket() {
    use infrakit_aws::aws_sdk_ec2::config::Credentials;
    use infrakit_core::{GROUP_TAG, InstanceSpec};
    let moto = std::env::var("INFRAKIT_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "INFRAKIT_MOTO_ENDPOINT is not set: this test needs moto server; run `scripts/test` \
             (root) or `eval \"$(scripts/test --prepare-only)\"`"
        )
    });
    let mut w = World::new();
    let scope = format!("cli-{}", std::process::id());
    let mut args = vec!["plugin", "start", "ec2", "--name", "ec2", "--ec2-scope"];
    args.push(&scope);
    {
        let log = w.path("ec2.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = w
            .command(&args)
            .env("AWS_ENDPOINT_URL", &moto)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        w.children.push(Proc {
            name: "ec2".into(),
            child,
            log,
        });
        let socket = w.socket("ec2");
        w.wait_for("ec2 serving", || socket.exists().then_some(()));
    }
    let ls = w.run(&["plugin", "ls", "--json"]).ok().json();
    assert!(ls.to_string().contains("Instance"), "{ls}");

    rt().block_on(async {
        let ec2 = infrakit_aws::client(
            Some(&moto),
            "us-east-1",
            Credentials::new("test", "test", None, None, "static"),
        );
        let ami = ec2
            .describe_images()
            .owners("amazon")
            .send()
            .await
            .unwrap()
            .images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        let remote = infrakit_rpc::RemoteInstance::new(
            infrakit_rpc::Client::new("ec2", w.socket("ec2")),
            "",
        );
        let err = remote
            .validate(&serde_json::json!({"ImageId": "ubuntu", "InstanceType": "t3.micro"}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ImageId"), "{err}");
        let id = remote
            .provision(
                InstanceSpec::new(serde_json::json!({"ImageId": ami, "InstanceType": "t3.micro"}))
                    .with_tag(GROUP_TAG, "cli-workers"),
            )
            .await
            .unwrap();
        let found = remote
            .describe(&Tags::new().with(GROUP_TAG, "cli-workers"), false)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, id);
        assert_eq!(
            found[0].tags.get(infrakit_aws::SCOPE_TAG),
            Some(scope.as_str())
        );
        remote
            .destroy(&id, DestroyContext::Terminate)
            .await
            .unwrap();
        assert!(
            remote
                .describe(&Tags::new().with(GROUP_TAG, "cli-workers"), false)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// The operator's window (`manager run --http`): metrics, readiness, the live status page.

/// A free loopback port (bound and released: another process may take it, but tests here
/// pick different ones).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: (status code, body); `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    // Read to the end of the body: Content-Length when given (Chromium's DevTools server
    // keeps the connection open), else to the end of the stream.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| bytes.len() >= end + 4 + n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

impl World {
    /// Starts a replica `name` serving its window on `port` (file leadership, shared store).
    fn start_replica_with_http(&mut self, name: &str, port: u16) {
        let http = format!("127.0.0.1:{port}");
        let options = [
            "--resync",
            "300ms",
            "--calls-per-second",
            "0",
            "--http",
            &http,
        ];
        self.start_replica_with(name, &options);
        self.wait_for(&format!("{name}'s window on {http}"), || {
            http_get(port, "/healthz").filter(|(c, _)| *c == 200)
        });
    }
}

#[test]
fn metrics_parse_as_prometheus_and_readiness_follows_leadership() {
    let mut w = World::new();
    w.start_simulator(&[]);
    let (pa, pb) = (free_port(), free_port());
    w.start_replica_with_http("group-a", pa);
    w.start_replica_with_http("group-b", pb);

    // Nobody named in the leader file: neither leads nor knows a leader, so neither is ready.
    for port in [pa, pb] {
        w.wait_for("not ready without a leader", || {
            http_get(port, "/readyz").filter(|(c, _)| *c == 503)
        });
    }
    std::fs::write(w.path("leader"), "group-a").unwrap();
    let (_, body) = w.wait_for("group-a ready as leader", || {
        http_get(pa, "/readyz").filter(|(c, _)| *c == 200)
    });
    assert!(body.contains("leading"), "{body}");
    let (_, body) = w.wait_for("group-b ready as follower", || {
        http_get(pb, "/readyz").filter(|(c, b)| *c == 200 && b.contains("group-a"))
    });
    assert!(body.contains("following"), "{body}");

    let spec = w.write_spec("workers.json", "2");
    w.run(&["manager", "commit", &spec, "--manager", "group-a"])
        .ok();
    w.wait_for("two members", || {
        (w.sim_instances().len() == 2).then_some(())
    });

    // The text parses with a real Prometheus parser and carries every named metric.
    let scrape = w.wait_for("metrics of a converged group", || {
        let (code, body) = http_get(pa, "/metrics")?;
        assert_eq!(code, 200);
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
        let converged = scrape.samples.iter().any(|s| {
            s.metric == "infrakit_group_converged"
                && s.labels.get("group") == Some("workers")
                && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)
        });
        converged.then_some(scrape)
    });
    let has = |metric: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .any(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
    };
    assert!(has("infrakit_reconcile_passes_total", ("group", "workers")));
    assert!(has("infrakit_group_members", ("state", "healthy")));
    assert!(has("infrakit_update_outdated", ("group", "workers")));
    assert!(has("infrakit_group_target_size", ("group", "workers")));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "infrakit_provider_call_seconds"
                && s.labels.get("op") == Some("provision")
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "provider call latency is a histogram by operation"
    );
    let gauge = |scrape: &prometheus_parse::Scrape, metric: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(gauge(&scrape, "infrakit_leader"), Some(1.0));
    assert!(gauge(&scrape, "infrakit_leadership_term").is_some_and(|t| t >= 1.0));

    // Leadership moves: the new leader is ready as leader, the old one as its follower.
    std::fs::write(w.path("leader"), "group-b").unwrap();
    w.wait_for("group-b ready as leader", || {
        http_get(pb, "/readyz").filter(|(c, b)| *c == 200 && b.contains("leading"))
    });
    w.wait_for("group-a ready as follower of group-b", || {
        http_get(pa, "/readyz").filter(|(c, b)| *c == 200 && b.contains("following group-b"))
    });
    let (_, body) = http_get(pa, "/metrics").unwrap();
    assert!(body.contains("infrakit_leader 0"), "{body}");
}

/// Chromium with its DevTools protocol, driven over a websocket.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Opens `url` in a headless Chromium (`$INFRAKIT_CHROMIUM`, else `chromium` on PATH).
    async fn open(url: &str) -> Browser {
        let exe = std::env::var("INFRAKIT_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,700",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {exe} ({e}): the browser test needs Chromium; run \
                     `scripts/test --prepare-only` as root (installs Debian's chromium) or set \
                     INFRAKIT_CHROMIUM"
                )
            });
        // Chromium writes its DevTools port to the profile, then lists its pages over HTTP.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + WAIT;
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.parse().ok()))
            {
                break p;
            }
            assert!(Instant::now() < deadline, "Chromium never opened DevTools");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ws = loop {
            let pages: Vec<Value> = http_get(port, "/json/list")
                .and_then(|(_, b)| serde_json::from_str(&b).ok())
                .unwrap_or_default();
            if let Some(ws) = pages
                .iter()
                .find(|p| {
                    p["type"] == "page" && p["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
                .and_then(|p| p["webSocketDebuggerUrl"].as_str())
            {
                break ws.to_owned();
            }
            assert!(Instant::now() < deadline, "Chromium never listed {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
        Browser {
            child,
            _profile: profile,
            socket,
            next: 0,
        }
    }

    /// One DevTools call; its `result`.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let request = serde_json::json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the DevTools socket closed")
                .unwrap();
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// The member IDs the page shows for a group.
    async fn members(&mut self, group: &str) -> Vec<String> {
        let js = format!(
            "JSON.stringify([...document.querySelectorAll('[data-group=\"{group}\"] .member')]\
             .map(e => e.dataset.id))"
        );
        let text = self.eval(&js).await;
        serde_json::from_str(text.as_str().unwrap_or("[]")).unwrap_or_default()
    }

    /// Waits until the page shows `check` true of the group's members.
    async fn wait_members(
        &mut self,
        group: &str,
        what: &str,
        check: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let ids = self.members(group).await;
            if check(&ids) {
                return ids;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}; it shows {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page.
    async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let r = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png"}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .unwrap()
    }
}

#[test]
fn the_status_page_shows_a_killed_member_go_and_its_replacement_arrive() {
    let mut w = World::new();
    w.start_simulator(&[]);
    let port = free_port();
    std::fs::write(w.path("leader"), "group").unwrap();
    w.start_replica_with_http("group", port);
    let spec = w.write_spec("workers.json", "3");
    w.run(&["manager", "commit", &spec, "--manager", "group"])
        .ok();
    w.wait_for("three members", || {
        (w.sim_instances().len() == 3).then_some(())
    });

    let url = format!("http://127.0.0.1:{port}/");
    rt().block_on(async {
        let mut page = Browser::open(&url).await;
        let before = page
            .wait_members("workers", "three members", |ids| ids.len() == 3)
            .await;
        let live = page
            .wait_for_text("live", "document.getElementById('live').textContent")
            .await;
        assert_eq!(live, "live");
        // A mark that a reload would lose: the page must change in place, from the stream.
        page.eval("window.__marked = 'still here'").await;

        let victim = InstanceId::new(before[0].clone());
        PluginDir::new(w.plugins())
            .instance("sim")
            .destroy(&victim, DestroyContext::Terminate)
            .await
            .unwrap();
        page.wait_members("workers", "the killed member go", |ids| {
            !ids.contains(&before[0])
        })
        .await;
        let after = page
            .wait_members("workers", "a replacement arrive", |ids| {
                ids.len() == 3 && !ids.contains(&before[0])
            })
            .await;
        let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
        assert_eq!(
            new.len(),
            1,
            "one replacement: before {before:?}, after {after:?}"
        );
        assert_eq!(
            page.eval("window.__marked").await,
            "still here",
            "the page reloaded"
        );
        let log = page.eval("document.getElementById('log').innerText").await;
        let log = log.as_str().unwrap_or_default();
        assert!(log.contains("provisioned"), "{log}");
        assert!(
            log.contains(new[0].as_str()),
            "the event log names the replacement: {log}"
        );

        let png = page.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot of the status page: {}", path.display());
    });
}

impl Browser {
    /// Waits until a JavaScript expression gives `want`.
    async fn wait_for_text(&mut self, want: &str, expression: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(expression).await;
            let text = v.as_str().unwrap_or_default().to_owned();
            if text == want || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `instance` commands' round trip against one plugin: validate, provision (with tags and
/// a logical ID), describe by tag (table and JSON, with properties), destroy, and the exit code
/// of a destroy of an unknown ID.
fn instance_round_trip(w: &World, plugin: &str, properties: Value, logical_id: &str) {
    let props = w.path("properties.json");
    std::fs::write(&props, properties.to_string()).unwrap();
    let props = props.display().to_string();
    let out = w
        .run(&[
            "instance",
            "validate",
            "--name",
            plugin,
            "--properties",
            &props,
        ])
        .ok();
    assert!(out.stdout.contains("valid"), "{}", out.stdout);
    let bad = w.path("bad.json");
    std::fs::write(&bad, r#"{"Properties": {}, "Tags": {"a": 1}}"#).unwrap();
    let bad = w
        .run(&[
            "instance",
            "provision",
            "--name",
            plugin,
            "--spec",
            &bad.display().to_string(),
        ])
        .code(1);
    assert!(
        bad.stderr.contains("Tags"),
        "the field is named: {}",
        bad.stderr
    );

    let spec = w.path("spec.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "Properties": properties,
            "Tags": {"infrakit.group": "cli-test", "role": "web"},
            "Init": "",
            "LogicalID": logical_id,
        })
        .to_string(),
    )
    .unwrap();
    let spec = spec.display().to_string();
    let id = w
        .run(&[
            "instance",
            "provision",
            "--name",
            plugin,
            "--spec",
            &spec,
            "--json",
        ])
        .ok()
        .json()["ID"]
        .as_str()
        .unwrap()
        .to_owned();

    let table = w
        .run(&[
            "instance", "describe", "--name", plugin, "--tags", "role=web",
        ])
        .ok()
        .stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[1].starts_with(&id) && lines[1].contains(logical_id),
        "{table}"
    );
    let described = w
        .run(&[
            "instance",
            "describe",
            "--name",
            plugin,
            "--tags",
            "role=web",
            "--tags",
            "infrakit.group=cli-test",
            "--properties",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(described[0]["ID"], id.as_str());
    assert_eq!(described[0]["LogicalID"], logical_id);
    assert!(!described[0]["Properties"].is_null(), "{described}");
    let none = w
        .run(&[
            "instance", "describe", "--name", plugin, "--tags", "role=db", "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        none,
        serde_json::json!([]),
        "a subset match: role=db matches nothing"
    );

    let out = w
        .run(&[
            "instance",
            "destroy",
            "--name",
            plugin,
            &id,
            "--reason",
            "scale-down",
        ])
        .ok();
    assert!(
        out.stdout.contains(&format!("destroyed {id}")),
        "{}",
        out.stdout
    );
    w.wait_for("the instance gone", || {
        let found = w
            .run(&[
                "instance", "describe", "--name", plugin, "--tags", "role=web", "--json",
            ])
            .ok()
            .json();
        (found == serde_json::json!([])).then_some(())
    });
    let gone = w
        .run(&["instance", "destroy", "--name", plugin, &id])
        .code(6);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

#[test]
fn instance_commands_round_trip_on_the_simulator() {
    let mut w = World::new();
    w.start_simulator(&[]);
    instance_round_trip(
        &w,
        "sim",
        serde_json::json!({"Image": "busybox"}),
        "10.0.0.7",
    );
}

#[cfg(feature = "swarm")]
#[test]
fn instance_commands_round_trip_on_the_container_plugin() {
    let host = std::env::var("INFRAKIT_DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "INFRAKIT_DOCKER_HOST is unset: run `eval \"$(scripts/test --prepare-only)\"` as root"
        )
    });
    let image = std::env::var("INFRAKIT_TEST_IMAGE").unwrap_or_else(|_| {
        panic!(
            "INFRAKIT_TEST_IMAGE is unset: run `eval \"$(scripts/test --prepare-only)\"` as root"
        )
    });
    let mut w = World::new();
    w.start(
        "ctr",
        &[
            "plugin",
            "start",
            "container",
            "--name",
            "ctr",
            "--docker-host",
            &host,
            "--container-network",
            "ikt-cli-instance",
            "--container-subnet",
            "10.213.9.0/24",
            "--container-scope",
            "cli-instance-test",
        ],
        "ctr",
    );
    instance_round_trip(
        &w,
        "ctr",
        serde_json::json!({"Image": image, "Cmd": ["sleep", "600"]}),
        "10.213.9.20",
    );
}

#[test]
fn watch_after_an_out_of_band_destroy_waits_for_the_replacement() {
    let mut w = World::new();
    w.start_simulator(&[]);
    std::fs::write(w.path("leader"), "group").unwrap();
    // A resync far longer than the test: only the watch's own request can bring a pass.
    w.start_replica_with("group", &["--resync", "10m", "--calls-per-second", "0"]);
    let spec = w.write_spec("workers.json", "3");
    w.run(&["manager", "commit", &spec, "--manager", "group", "--watch"])
        .ok();
    let before = w.sim_instances();
    assert_eq!(before.len(), 3);

    // Out of band: the leader's last pass still says "converged, 3 members".
    let victim = before[1].clone();
    rt().block_on(
        PluginDir::new(w.plugins())
            .instance("sim")
            .destroy(&victim, DestroyContext::Terminate),
    )
    .unwrap();
    let stale = w
        .run(&[
            "group",
            "describe",
            "workers",
            "--manager",
            "group",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        stale["Converged"], true,
        "the stale view this test is about: {stale}"
    );

    let watched = w
        .run(&[
            "group",
            "describe",
            "workers",
            "--manager",
            "group",
            "--watch",
            "--json",
        ])
        .ok();
    // When the watch says converged, the replacement exists.
    let now = w.sim_instances();
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!now.contains(&victim), "{now:?}");
    let new = now.iter().find(|id| !before.contains(id)).unwrap();
    // And it said so member by member, as JSON lines.
    let events: Vec<Value> = watched
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("Member").is_some())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["Member"] == new.as_str() && e["Event"] == "provisioned"),
        "{}",
        watched.stdout
    );
}
