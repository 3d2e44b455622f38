//! `infrakit plugin ...`: list the plugin directory; serve a built-in plugin on a socket.

use crate::builtins::Builtin;
use crate::cli::BuiltinArgs;
use crate::remote::socket_for;
use crate::table::Table;
use anyhow::Context;
use infrakit_core::Simulator;
use infrakit_rpc::{Client, PluginDir, PluginServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long `plugin ls` waits for each plugin's handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// `plugin ls`: every socket in the directory and what it implements (via the handshake).
pub async fn ls(dir: &PluginDir, json: bool) -> anyhow::Result<()> {
    let names = match dir.list() {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("list {}", dir.dir().display()));
        }
    };
    let mut found = Vec::new();
    for name in names {
        let socket = dir.socket(&name);
        let client = Client::with_timeout(name.clone(), &socket, HANDSHAKE_TIMEOUT);
        let answer = client.implements().await.map(|i| {
            i.interfaces
                .iter()
                .map(|(interface, (version, types))| {
                    (interface.clone(), version.clone(), types.clone())
                })
                .collect::<Vec<_>>()
        });
        found.push((name, socket, answer));
    }
    if json {
        let out: Vec<_> = found
            .iter()
            .map(|(name, socket, answer)| match answer {
                Ok(interfaces) => json!({
                    "Name": name,
                    "Socket": socket,
                    "Interfaces": interfaces.iter().map(|(i, v, t)| json!({"Name": i, "Version": v, "Types": t})).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"Name": name, "Socket": socket, "Error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(());
    }
    let mut t = Table::new(["NAME", "INTERFACES"]);
    for (name, _, answer) in &found {
        let what = match answer {
            Ok(interfaces) if interfaces.is_empty() => "nothing".to_owned(),
            Ok(interfaces) => interfaces
                .iter()
                .map(|(i, v, types)| match types.as_deref() {
                    Some(t) if t.iter().any(|t| !t.is_empty()) => {
                        format!("{i}/{v} (types: {})", t.join(", "))
                    }
                    _ => format!("{i}/{v}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unreachable: {e}"),
        };
        t.row([name.clone(), what]);
    }
    print!("{t}");
    Ok(())
}

/// `plugin start`: serves a built-in on `<plugin-dir>/<name>` until SIGTERM or SIGINT.
pub async fn start(
    dir: &PluginDir,
    kind: &str,
    name: Option<String>,
    opts: &BuiltinArgs,
    sim: SimulatorExtras,
) -> anyhow::Result<()> {
    let name = name.unwrap_or_else(|| kind.to_owned());
    let socket = socket_for(dir, &name);
    if kind == "simulator" && sim.wanted() {
        return start_simulator(&socket, opts, sim).await;
    }
    if sim.wanted() {
        anyhow::bail!("--caller-socket and --call-log are options of the simulator");
    }
    let builtin = Builtin::make(kind, opts)
        .await
        .with_context(|| format!("built-in {kind}"))?;
    let server = builtin
        .serve(PluginServer::new().latest_names())
        .serve(&socket)
        .await
        .with_context(|| format!("serve {kind} on {}", socket.display()))?;
    tracing::info!(%kind, socket = %socket.display(), "plugin serving");
    let signal = crate::manager::shutdown_signal().await?;
    tracing::info!(%signal, "stopping");
    server.stop().await;
    Ok(())
}

/// The simulator's options for telling callers apart and keeping a log of their calls.
#[derive(Debug, Default)]
pub struct SimulatorExtras {
    /// Extra sockets, each a view whose calls are logged as made by its caller.
    pub caller_sockets: Vec<(PathBuf, String)>,
    /// Where every call is appended, one JSON line each.
    pub call_log: Option<PathBuf>,
}

impl SimulatorExtras {
    fn wanted(&self) -> bool {
        !self.caller_sockets.is_empty() || self.call_log.is_some()
    }
}

/// How often new calls are appended to the call log.
const CALL_LOG_EVERY: Duration = Duration::from_millis(50);

/// Serves one simulated cloud on `socket` and on every caller socket, logging calls.
async fn start_simulator(
    socket: &Path,
    opts: &BuiltinArgs,
    sim: SimulatorExtras,
) -> anyhow::Result<()> {
    let cloud = Simulator::builder().latency(opts.simulator_latency).build();
    let mut servers = Vec::new();
    let views = std::iter::once((socket.to_path_buf(), None))
        .chain(sim.caller_sockets.into_iter().map(|(p, c)| (p, Some(c))));
    for (path, caller) in views {
        let view = match &caller {
            Some(c) => cloud.with_caller(c.clone()),
            None => cloud.clone(),
        };
        let server = PluginServer::new()
            .latest_names()
            .instance("", Arc::new(view))
            .serve(&path)
            .await
            .with_context(|| format!("serve the simulator on {}", path.display()))?;
        tracing::info!(socket = %path.display(), caller = caller.as_deref().unwrap_or("-"), "simulator serving");
        servers.push(server);
    }
    let log = sim
        .call_log
        .map(|path| tokio::spawn(write_call_log(cloud.clone(), path)));
    let signal = crate::manager::shutdown_signal().await?;
    tracing::info!(%signal, "stopping");
    for server in servers {
        server.stop().await;
    }
    if let Some(log) = log {
        log.abort();
    }
    Ok(())
}

/// Appends the simulator's new calls to `path` every [`CALL_LOG_EVERY`].
async fn write_call_log(cloud: Simulator, path: PathBuf) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let started = std::time::Instant::now();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut written = 0usize;
    let mut tick = tokio::time::interval(CALL_LOG_EVERY);
    loop {
        tick.tick().await;
        let calls = cloud.calls();
        let mut text = String::new();
        for call in calls.iter().skip(written) {
            let at = call.at.saturating_duration_since(started) + since_epoch;
            let line = json!({
                "Seq": call.seq,
                "AtMs": u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
                "Caller": call.caller,
                "Op": call.op.to_string(),
                "Instance": call.instance.as_ref().map(|i| i.as_str()),
                "LogicalID": call.logical_id.as_ref().map(|l| l.as_str()),
                "Error": call.outcome.as_ref().err(),
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        written = calls.len();
        if !text.is_empty() {
            file.write_all(text.as_bytes())
                .await
                .with_context(|| format!("write {}", path.display()))?;
        }
    }
}
