//! `infrakit plugin ...`: list the plugin directory; serve a built-in plugin on a socket.

use crate::builtins::Builtin;
use crate::cli::BuiltinArgs;
use crate::remote::socket_for;
use crate::table::Table;
use anyhow::Context;
use infrakit_rpc::{Client, PluginDir, PluginServer};
use serde_json::json;
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
) -> anyhow::Result<()> {
    let name = name.unwrap_or_else(|| kind.to_owned());
    let socket = socket_for(dir, &name);
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
