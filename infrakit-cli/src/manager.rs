//! `infrakit manager ...`: run a replica, commit specs, show a replica's leadership.

use crate::builtins::Builtin;
use crate::cli::{CommitArgs, LeadershipKind, RunArgs, StoreKind};
use crate::remote::{self, Manager as Replica};
use anyhow::Context;
use async_trait::async_trait;
use infrakit_core::CallLimit;
use infrakit_core::metadata::path_segments;
use infrakit_core::reconcile::EngineOptions;
use infrakit_core::{
    FileLeadership, FileStore, Group, GroupSpec, Leadership, Manager, Metadata, MetadataError,
    Plugins, StaticLeadership, Store, flavor::Vanilla,
};
use infrakit_rpc::{PluginDir, PluginServer};
use infrakit_template::{Engine, Globals};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// `~/.infrakit`, where the default leader file and spec store live.
fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".infrakit")
}

/// Runs one replica until SIGTERM or SIGINT.
pub async fn run(dir: PluginDir, args: RunArgs) -> anyhow::Result<()> {
    let socket = remote::socket_for(&dir, &args.name);
    let id = args.id.clone().unwrap_or_else(|| args.name.clone());

    if args.follow.is_some() && args.leadership != LeadershipKind::Static {
        anyhow::bail!("--follow goes with --leadership static");
    }
    if args.recover_with.is_some() && args.leadership != LeadershipKind::Swarm {
        anyhow::bail!("--recover-with goes with --leadership swarm");
    }
    let mut campaign = etcd::Campaign::new();
    let leadership: Arc<dyn Leadership> = match args.leadership {
        LeadershipKind::Static => match &args.follow {
            Some(leader) => Arc::new(StaticLeadership::follower(Some(leader.clone()))),
            None => Arc::new(StaticLeadership::leader()),
        },
        LeadershipKind::File => {
            let path = args
                .leader_file
                .clone()
                .unwrap_or_else(|| home().join("leader"));
            tracing::info!(file = %path.display(), %id, "file leadership: this replica leads while the file names it");
            Arc::new(FileLeadership::new(path, id.clone()))
        }
        LeadershipKind::Swarm => swarm_leadership(&args).await?,
        LeadershipKind::Etcd => campaign.start(&args, &socket).await?,
    };
    let store: Arc<dyn Store> = match args.store {
        StoreKind::File => {
            let path = args
                .store_file
                .clone()
                .unwrap_or_else(|| home().join("configs").join("groups.json"));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("create {}", parent.display()))?;
            }
            tracing::info!(file = %path.display(), "file store");
            Arc::new(FileStore::new(path))
        }
        StoreKind::Swarm => swarm_store(&args).await?,
        StoreKind::Etcd => campaign.store(&args).await?,
    };

    let mut plugins = Plugins::new().flavor("vanilla", Vanilla);
    let mut names = BTreeSet::new();
    for (kind, name) in &args.builtins {
        if !names.insert(name.clone()) {
            anyhow::bail!("two built-ins named {name:?}: use --builtin KIND=NAME");
        }
        let builtin = Builtin::make(kind, &args.builtin)
            .await
            .with_context(|| format!("built-in {kind}"))?;
        tracing::info!(%kind, %name, "built-in plugin in this process");
        plugins = builtin.register(plugins, name);
    }
    let mut plugins = plugins.fallback(Arc::new(dir.clone()));
    if args.calls_per_second > 0 {
        plugins = plugins.limit_instances(CallLimit::per_second(args.calls_per_second));
    }

    let manager = Manager::builder_arc(leadership, store)
        .plugins(plugins.clone())
        .options(EngineOptions::default().resync(args.resync))
        .build();
    let status = ReplicaStatus {
        manager: manager.clone(),
        id: id.clone(),
        socket: socket.clone(),
        dir: dir.clone(),
    };
    // One socket: the Group API, the leadership metadata, and the `Manager` object both Go
    // CLI generations look for (`Manager/0.1.0`, `Stack/0.1.1`), announced as master does.
    let server = PluginServer::new()
        .group("", Arc::new(manager.clone()))
        .metadata("", Arc::new(status.clone()))
        .manager(Arc::new(status))
        .latest_names()
        .serve(&socket)
        .await
        .with_context(|| format!("serve the Group API on {}", socket.display()))?;
    let http = match args.http {
        Some(addr) => Some(crate::http::serve(addr, manager.clone(), id.clone()).await?),
        None => None,
    };
    let recovery = match &args.recover_with {
        Some(plugin) => {
            let instances = plugins
                .resolve_instance(&infrakit_core::PluginSpec::new(plugin.clone(), Value::Null))
                .with_context(|| format!("--recover-with {plugin}"))?;
            Some(quorum_recovery(&args, instances).await?)
        }
        None => None,
    };
    manager.start();
    tracing::info!(socket = %socket.display(), %id, leadership = ?args.leadership, store = ?args.store, plugin_dir = %dir.dir().display(), "manager replica running");

    let signal = shutdown_signal().await?;
    tracing::info!(%signal, "shutting down: controllers stop, instances keep running");
    if let Some(http) = http {
        http.stop().await;
    }
    if let Some(recovery) = recovery {
        recovery.abort();
    }
    server.stop().await;
    manager.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; says which.
pub async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// `--leadership etcd` and `--store etcd`: one client, and the store fenced by the
/// campaign when both are etcd.
#[cfg(feature = "etcd")]
mod etcd {
    use super::*;
    use infrakit_etcd::{EtcdConfig, EtcdLeadership, EtcdStore};
    use std::path::Path;

    async fn client(args: &RunArgs) -> anyhow::Result<infrakit_etcd::etcd_client::Client> {
        let e = &args.etcd;
        let mut config = EtcdConfig::parse_endpoints(&e.etcd_endpoints);
        if let Some(ca) = &e.etcd_ca {
            let identity = e.etcd_cert.clone().zip(e.etcd_key.clone());
            config = config.tls(ca.clone(), identity);
        } else if e.etcd_cert.is_some() {
            anyhow::bail!("--etcd-cert needs --etcd-ca (TLS)");
        }
        config
            .connect()
            .await
            .with_context(|| format!("connect to etcd at {}", e.etcd_endpoints))
    }

    /// The etcd campaign of this replica, once started: the store is fenced by it.
    #[derive(Default)]
    pub(super) struct Campaign(Option<Arc<EtcdLeadership>>);

    impl Campaign {
        /// Not started yet.
        pub(super) fn new() -> Self {
            Self::default()
        }

        /// Starts campaigning, publishing the replica's socket (or `--advertise`).
        pub(super) async fn start(
            &mut self,
            args: &RunArgs,
            socket: &Path,
        ) -> anyhow::Result<Arc<dyn Leadership>> {
            let location = match &args.etcd.advertise {
                Some(l) => l.clone(),
                None => std::path::absolute(socket)
                    .unwrap_or_else(|_| socket.to_path_buf())
                    .display()
                    .to_string(),
            };
            let leadership = EtcdLeadership::builder(client(args).await?)
                .prefix(args.etcd.etcd_prefix.clone())
                .ttl(args.etcd.etcd_ttl)
                .location(location.clone())
                .start();
            tracing::info!(endpoints = %args.etcd.etcd_endpoints, prefix = %args.etcd.etcd_prefix, ttl = ?leadership.ttl(), %location, "etcd leadership: campaigning");
            let leadership = Arc::new(leadership);
            self.0 = Some(Arc::clone(&leadership));
            Ok(leadership)
        }

        /// The specs in `PREFIX/spec`, fenced by the campaign when there is one.
        pub(super) async fn store(&self, args: &RunArgs) -> anyhow::Result<Arc<dyn Store>> {
            let key = format!("{}/spec", args.etcd.etcd_prefix.trim_end_matches('/'));
            let mut store = EtcdStore::new(client(args).await?, key.clone());
            match &self.0 {
                Some(l) => {
                    store = store.fenced_by(l);
                    tracing::info!(%key, "etcd store: every leader write fenced by the campaign's lease");
                }
                None => {
                    tracing::warn!(%key, "etcd store without etcd leadership: writes are fenced by the epoch in the record only")
                }
            }
            Ok(Arc::new(store))
        }
    }
}

#[cfg(not(feature = "etcd"))]
mod etcd {
    use super::*;

    fn without_etcd(what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{what} needs feature `etcd`, which this infrakit was built without \
             (cargo build -p infrakit-cli --features etcd)"
        )
    }

    /// Without feature `etcd`: says how to get it.
    #[derive(Default)]
    pub(super) struct Campaign;

    impl Campaign {
        /// Never started: there is no etcd here.
        pub(super) fn new() -> Self {
            Campaign
        }

        pub(super) async fn start(
            &mut self,
            _: &RunArgs,
            _: &std::path::Path,
        ) -> anyhow::Result<Arc<dyn Leadership>> {
            Err(without_etcd("--leadership etcd"))
        }

        pub(super) async fn store(&self, _: &RunArgs) -> anyhow::Result<Arc<dyn Store>> {
            Err(without_etcd("--store etcd"))
        }
    }
}

#[cfg(feature = "swarm")]
async fn swarm_leadership(args: &RunArgs) -> anyhow::Result<Arc<dyn Leadership>> {
    let docker = crate::docker(&args.builtin.docker_host).await?;
    Ok(Arc::new(infrakit_swarm::SwarmLeadership::new(docker)))
}

#[cfg(not(feature = "swarm"))]
async fn swarm_leadership(_: &RunArgs) -> anyhow::Result<Arc<dyn Leadership>> {
    Err(crate::without_swarm("--leadership swarm"))
}

/// `--recover-with`: a [`QuorumRecovery`](infrakit_swarm::QuorumRecovery) beside the replica,
/// on the same engine.
#[cfg(feature = "swarm")]
async fn quorum_recovery(
    args: &RunArgs,
    instances: Arc<dyn infrakit_core::Instance>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let docker = crate::docker(&args.builtin.docker_host).await?;
    let managers = infrakit_core::Tags::new().with(infrakit_core::GROUP_TAG, &args.recover_group);
    tracing::info!(group = %args.recover_group, after = ?args.recover_after, "quorum recovery on");
    let recovery =
        infrakit_swarm::QuorumRecovery::new(docker, instances, managers).after(args.recover_after);
    Ok(tokio::spawn(recovery.run()))
}

#[cfg(not(feature = "swarm"))]
async fn quorum_recovery(
    _: &RunArgs,
    _: Arc<dyn infrakit_core::Instance>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Err(crate::without_swarm("--recover-with"))
}

#[cfg(feature = "swarm")]
async fn swarm_store(args: &RunArgs) -> anyhow::Result<Arc<dyn Store>> {
    let docker = crate::docker(&args.builtin.docker_host).await?;
    Ok(Arc::new(infrakit_swarm::SwarmStore::new(docker)))
}

#[cfg(not(feature = "swarm"))]
async fn swarm_store(_: &RunArgs) -> anyhow::Result<Arc<dyn Store>> {
    Err(crate::without_swarm("--store swarm"))
}

/// A replica's leadership, served as metadata next to its Group API: `manager/leader`,
/// `manager/id`, `manager/location` (the leader's location), `manager/term`,
/// `manager/epoch` (the epoch it writes with, while it leads); and as the Go
/// `Manager` interface's `IsLeader` / `LeaderLocation`.
#[derive(Clone)]
struct ReplicaStatus {
    manager: Manager,
    id: String,
    /// This replica's socket: its location when it leads.
    socket: PathBuf,
    /// Where a follower's leader name is looked up as a socket.
    dir: PluginDir,
}

impl infrakit_rpc::ManagerStatus for ReplicaStatus {
    fn is_leader(&self) -> bool {
        self.manager.leadership().is_leader()
    }

    /// A leader answers its socket's path; a follower the leader's socket when the location
    /// the leadership source reports is one reachable here, else that location as it is.
    fn leader_location(&self) -> Option<String> {
        let state = self.manager.leadership();
        if state.is_leader() {
            return Some(self.socket.display().to_string());
        }
        let location = state.leader_location()?;
        Some(
            remote::locate(&self.dir, location)
                .map_or_else(|| location.to_owned(), |p| p.display().to_string()),
        )
    }
}

#[async_trait]
impl Metadata for ReplicaStatus {
    async fn get(&self, path: &str) -> Result<Option<Value>, MetadataError> {
        let state = self.manager.leadership();
        let segments: Vec<&str> = path_segments(path).collect();
        Ok(match segments.as_slice() {
            ["manager", "leader"] => Some(json!(state.is_leader())),
            ["manager", "id"] => Some(json!(self.id)),
            ["manager", "location"] if state.is_leader() => Some(json!(self.id)),
            ["manager", "location"] => state.leader_location().map(|l| json!(l)),
            ["manager", "term"] => state.term().map(|t| json!(t.0)),
            ["manager", "epoch"] => self.manager.epoch().map(|e| json!(e.0)),
            _ => None,
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        let segments: Vec<&str> = path_segments(path).collect();
        Ok(match segments.as_slice() {
            [] => vec!["manager".into()],
            ["manager"] => ["epoch", "id", "leader", "location", "term"]
                .map(String::from)
                .into(),
            _ => Vec::new(),
        })
    }
}

/// Reads the specs' text: a path, a URL or `-`; rendered as a template when it is one (or when
/// globals are given).
pub async fn load_text(source: &str, globals: &[String]) -> anyhow::Result<String> {
    let engine = || -> anyhow::Result<Engine> {
        Ok(Engine::new().with_globals(Globals::parse(globals).context("--global")?))
    };
    let render_url = |url: String| async move {
        engine()?
            .render_url_async(&url, &json!({}))
            .await
            .with_context(|| format!("render {url}"))
    };
    if source == "-" {
        let text = tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
            .await
            .context("read standard input")?
            .context("read standard input")?;
        if !text.contains("{{") && globals.is_empty() {
            return Ok(text);
        }
        let engine = engine()?;
        return tokio::task::spawn_blocking(move || engine.render_str(&text, &json!({})))
            .await
            .context("render standard input")?
            .context("render standard input");
    }
    if source.contains("://") {
        return render_url(source.to_owned()).await;
    }
    let text = tokio::fs::read_to_string(source)
        .await
        .with_context(|| format!("read {source}"))?;
    if text.contains("{{") || !globals.is_empty() {
        render_url(source.to_owned()).await
    } else {
        Ok(text)
    }
}

/// Parses one spec, a list of specs, or Go InfraKit's `[{"Plugin":"group","Properties":spec}]`.
/// Every spec is validated; errors name the spec and the field.
pub fn parse_specs(text: &str) -> anyhow::Result<Vec<GroupSpec>> {
    let value: Value = serde_json::from_str(text).context("the specs are not JSON")?;
    let (items, listed) = match value {
        Value::Array(items) => (items, true),
        other => (vec![other], false),
    };
    let mut specs: Vec<GroupSpec> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let item = match item {
            Value::Object(mut o)
                if !o.contains_key("ID")
                    && o.contains_key("Plugin")
                    && o.get("Properties").is_some_and(|p| p.get("ID").is_some()) =>
            {
                o.remove("Properties").unwrap_or_default()
            }
            other => other,
        };
        let name = item
            .get("ID")
            .and_then(Value::as_str)
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let spec = GroupSpec::from_json(&item.to_string()).with_context(|| {
            if listed {
                format!("spec [{i}]{name}")
            } else {
                format!("spec{name}")
            }
        })?;
        if specs.iter().any(|s| s.id == spec.id) {
            anyhow::bail!("group {} appears twice", spec.id);
        }
        specs.push(spec);
    }
    if specs.is_empty() {
        anyhow::bail!("no group specs");
    }
    Ok(specs)
}

/// `manager commit`: render, validate, plan, commit on the leader, optionally watch.
pub async fn commit(replica: &Replica, json: bool, args: CommitArgs) -> anyhow::Result<()> {
    let text = load_text(&args.source, &args.globals).await?;
    let specs = parse_specs(&text).with_context(|| format!("specs from {}", args.source))?;
    let mut results = Vec::new();
    for spec in specs {
        let id = spec.id.clone();
        let pretend = args.pretend;
        let plan = replica
            .on_leader(|g| {
                let spec = spec.clone();
                async move { g.commit(spec, pretend).await }
            })
            .await
            .with_context(|| format!("commit {id}"))?;
        if json {
            results.push(json!({"ID": id, "Plan": plan, "Committed": !pretend}));
        } else if pretend {
            println!("{id}: would {plan} (pretend: nothing committed)");
        } else {
            println!("{id}: committed; plan: {plan}");
        }
        if !pretend && args.watch.watch {
            crate::group::watch(replica, &id, &args.watch, json).await?;
        }
    }
    if json {
        println!("{}", Value::Array(results));
    }
    Ok(())
}

/// `manager status`.
pub async fn status(replica: &Replica, json: bool) -> anyhow::Result<()> {
    let s = replica.status().await?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        let who = s.id.as_deref().unwrap_or("?");
        let socket = s.socket.display();
        let epoch = |e: Option<u64>| e.map(|e| format!(" in epoch {e}")).unwrap_or_default();
        match (s.leader, s.location.as_deref()) {
            (true, _) => println!("{who} ({socket}) leads{}", epoch(s.epoch)),
            (false, Some(l)) => println!(
                "{who} ({socket}) follows; the leader is {l}{}",
                epoch(s.leader_epoch)
            ),
            (false, None) => println!("{who} ({socket}) follows; no replica leads right now"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"ID": "workers", "Properties": {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "sim", "Properties": {}},
        "Flavor": {"Plugin": "vanilla", "Properties": {}}}}"#;

    #[test]
    fn one_spec_a_list_or_go_wrapped() {
        assert_eq!(parse_specs(SPEC).unwrap()[0].id.as_str(), "workers");
        let list = format!("[{SPEC}, {}]", SPEC.replace("workers", "others"));
        let ids: Vec<String> = parse_specs(&list)
            .unwrap()
            .iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(ids, vec!["workers", "others"]);
        let go = format!(r#"[{{"Plugin": "group", "Properties": {SPEC}}}]"#);
        assert_eq!(parse_specs(&go).unwrap()[0].id.as_str(), "workers");
    }

    #[test]
    fn errors_name_the_spec_and_field() {
        let bad = SPEC.replace(r#"{"Size": 2}"#, "{}");
        let e = format!("{:#}", parse_specs(&format!("[{bad}]")).unwrap_err());
        assert!(e.contains("spec [0] (workers)"), "{e}");
        assert!(e.contains("Properties.Allocation"), "{e}");
        let e = format!(
            "{:#}",
            parse_specs(&format!("[{SPEC},{SPEC}]")).unwrap_err()
        );
        assert!(e.contains("twice"), "{e}");
        assert!(parse_specs("[]").is_err());
        assert!(parse_specs("nope").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn templates_are_rendered_with_globals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        std::fs::write(
            &path,
            SPEC.replace(r#""Size": 2"#, r#""Size": {{var "/size"}}"#),
        )
        .unwrap();
        let text = load_text(path.to_str().unwrap(), &["/size=4".into()])
            .await
            .unwrap();
        assert_eq!(
            parse_specs(&text).unwrap()[0].allocation,
            infrakit_core::Allocation::Size(4)
        );
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, SPEC).unwrap();
        assert_eq!(load_text(plain.to_str().unwrap(), &[]).await.unwrap(), SPEC);
        let missing = load_text(path.to_str().unwrap(), &[]).await.unwrap_err();
        assert!(format!("{missing:#}").contains("/size"), "{missing:#}");
    }
}
