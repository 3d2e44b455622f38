//! Serves the simulator as an instance plugin and the plain flavor as flavor plugins, each on
//! its own Unix socket in the plugin directory, the way InfraKit plugins run as processes.
//!
//! ```sh
//! cargo run --example plugin_server            # until Ctrl-C
//! cargo run --example remote_group             # in another terminal
//! ```
//!
//! The plugin directory is `$INFRAKIT_PLUGINS_DIR`, default `~/.infrakit/plugins`. Sockets:
//! `simulator` (instance plugin) and `vanilla` (flavors `manager` and `worker`). Options:
//! `--for <seconds>` stops after that long.

use infrakit::rpc::{PluginDir, PluginServer};
use infrakit::{Simulator, flavor::Vanilla};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut stop_after = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--for" => {
                stop_after = args
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: plugin_server [--for <seconds>])"
                )
                .into());
            }
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let dir = PluginDir::from_env();
            let cloud = Simulator::builder().latency(Duration::from_millis(5)).build();
            let instances = PluginServer::new()
                .instance("", Arc::new(cloud.clone()))
                .serve(dir.socket("simulator"))
                .await?;
            let flavors = PluginServer::new()
                .flavor("manager", Arc::new(Vanilla))
                .flavor("worker", Arc::new(Vanilla))
                .serve(dir.socket("vanilla"))
                .await?;
            println!("instance plugin: {}", instances.path().display());
            println!("flavor plugin:   {} (types: manager, worker)", flavors.path().display());
            println!(
                "try: curl --unix-socket {} -H 'Content-Type: application/json' \\\n  -d '{{\"jsonrpc\":\"2.0\",\"method\":\"Instance.DescribeInstances\",\"params\":{{\"Type\":\"\",\"Tags\":{{}}}},\"id\":1}}' http://unix/",
                instances.path().display()
            );
            match stop_after {
                Some(d) => tokio::time::sleep(d).await,
                None => tokio::signal::ctrl_c().await?,
            }
            println!("stopping: {} instances were alive", cloud.len());
            instances.stop().await;
            flavors.stop().await;
            Ok::<_, Box<dyn std::error::Error>>(())
        })
}
