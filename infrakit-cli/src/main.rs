//! # infrakit
//!
//! The `infrakit` command: the reference composition of the infrakit-rs SDK that operators
//! use directly.
//!
//! - `infrakit manager run` runs one manager replica: a leadership source (`static`, `file`,
//!   `swarm`), a spec store (`file`, `swarm`), plugins (built-ins in the process, sockets in the
//!   plugin directory), the Group API served on `<plugin-dir>/<name>`.
//! - `infrakit manager commit <file|url>` renders, validates, plans and commits specs on the
//!   leader; `infrakit manager status` says who leads.
//! - `infrakit group ls | describe | scale | destroy-instances | free | destroy`, with
//!   `--watch` to follow convergence.
//! - `infrakit template --url ... --global /k=v` renders a template.
//! - `infrakit plugin ls | start <kind>` lists the plugin directory, serves a built-in plugin.
//! - `infrakit instance describe | provision | destroy | validate --name <plugin>` looks at or
//!   acts on single instances of any instance plugin.
//!
//! Read commands take `--json`. Exit codes are listed by `infrakit --help` ([`exit`]).

// Like the libraries: no unwrap/expect on fallible paths outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod builtins;
mod cli;
mod duration;
mod exit;
mod group;
mod http;
mod instance;
mod logging;
mod manager;
mod plugin;
mod remote;
mod table;
mod template;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command, ManagerCommand, PluginCommand};
use infrakit_rpc::PluginDir;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.global.log_format, cli.log_level()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(exit::USAGE);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime");
    exit::finish(runtime.and_then(|rt| rt.block_on(run(cli))))
}

/// Runs the command.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    let dir = g
        .plugin_dir
        .clone()
        .map(PluginDir::new)
        .unwrap_or_else(PluginDir::from_env)
        .with_timeout(g.timeout);
    let replica = || remote::Manager::new(dir.clone(), &g.manager, g.timeout);
    match cli.command {
        Command::Manager(ManagerCommand::Run(args)) => manager::run(dir, *args).await,
        Command::Manager(ManagerCommand::Commit(args)) => {
            manager::commit(&replica(), g.json, args).await
        }
        Command::Manager(ManagerCommand::Status) => manager::status(&replica(), g.json).await,
        Command::Group(command) => group::run(&replica(), g.json, command).await,
        Command::Template(args) => template::run(args).await,
        Command::Plugin(PluginCommand::Ls) => plugin::ls(&dir, g.json).await,
        Command::Plugin(PluginCommand::Start {
            kind,
            name,
            caller_sockets,
            call_log,
            builtin,
        }) => {
            let sim = plugin::SimulatorExtras {
                caller_sockets,
                call_log,
            };
            plugin::start(&dir, &kind, name, &builtin, sim).await
        }
        Command::Instance(command) => instance::run(&dir, g.json, command).await,
    }
}

/// A client of the Docker engine at `host` (API version negotiated).
#[cfg(feature = "swarm")]
async fn docker(host: &str) -> anyhow::Result<bollard::Docker> {
    infrakit_swarm::connect(host)
        .await
        .with_context(|| format!("connect to the Docker engine at {host}"))
}

/// The error of a Docker-backed choice in a build without the `swarm` feature.
#[cfg(not(feature = "swarm"))]
fn without_swarm(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the Docker support of feature `swarm`, which this infrakit was built without \
         (cargo build -p infrakit-cli --features swarm)"
    )
}
