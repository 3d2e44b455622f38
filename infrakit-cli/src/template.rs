//! `infrakit template`: render a template with globals, as Go InfraKit's
//! `infrakit template --url ... --global ...` did.

use crate::cli::TemplateArgs;
use anyhow::Context;
use infrakit_template::{Engine, Globals};
use std::io::Write;

/// Renders the template to standard output.
pub async fn run(args: TemplateArgs) -> anyhow::Result<()> {
    let context: serde_json::Value =
        serde_json::from_str(&args.context).context("--context is not JSON")?;
    let engine = Engine::new().with_globals(Globals::parse(&args.globals).context("--global")?);
    let text = engine
        .render_url_async(&args.url, &context)
        .await
        .with_context(|| format!("render {}", args.url))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write standard output")
}
