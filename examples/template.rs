//! Renders a template, as the seed's boot line does:
//!
//! ```sh
//! cargo run --example template -- --url examples/templates/boot.sh \
//!     --global /cluster/name=mystack --global /cluster/swarm/size=4 \
//!     --global /local/role=manager --global /local/ip=10.0.0.2 \
//!     --global /cluster/swarm/join/token=SWMTKN-1-xyz
//! ```
//!
//! Options: `--url <url or path>` (required), `--global /path=value` (repeatable), `--context
//! <json>` (the template's data). The rendered text goes to standard output; on error the
//! message goes to standard error and the exit code is 1 (2 for bad usage).

use infrakit::template::{Engine, Globals};
use std::process::ExitCode;

const USAGE: &str =
    "usage: template --url <url|path> [--global /path=value ...] [--context <json>]";

fn main() -> ExitCode {
    let mut url = None;
    let mut globals = Vec::new();
    let mut context = serde_json::json!({});
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--url" => url = value(),
            "--global" => match value() {
                Some(v) => globals.push(v),
                None => return usage("--global needs /path=value"),
            },
            "--context" => match value().map(|v| serde_json::from_str(&v)) {
                Some(Ok(v)) => context = v,
                Some(Err(e)) => return usage(&format!("--context is not JSON: {e}")),
                None => return usage("--context needs a JSON value"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(url) = url else {
        return usage("--url is required");
    };
    let engine = match Globals::parse(&globals) {
        Ok(g) => Engine::new().with_globals(g),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match engine.render_url(&url, &context) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n{USAGE}");
    ExitCode::from(2)
}
