//! `infrakit instance ...`: look at or act on single instances of any instance plugin, as Go
//! InfraKit's `infrakit instance describe|provision|destroy` did.

use crate::cli::{DestroyReason, InstanceCommand};
use crate::table::Table;
use anyhow::Context;
use infrakit_core::{DestroyContext, Instance, InstanceId, InstanceSpec, SpecError, Tags};
use infrakit_rpc::PluginDir;
use serde_json::{Value, json};
use std::path::Path;

/// Runs an instance command against the plugin `--name` of the plugin directory.
pub async fn run(dir: &PluginDir, json: bool, command: InstanceCommand) -> anyhow::Result<()> {
    match command {
        InstanceCommand::Describe {
            name,
            tags,
            properties,
        } => {
            let tags = Tags::from_iter(tags);
            let found = dir
                .instance(&name)
                .describe(&tags, properties)
                .await
                .with_context(|| format!("describe the instances of {name}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
                return Ok(());
            }
            if properties {
                let mut table = Table::new(["ID", "LOGICAL ID", "TAGS", "PROPERTIES"]);
                for d in &found {
                    table.row([
                        d.id.to_string(),
                        logical(d),
                        d.tags.to_string(),
                        d.properties
                            .as_ref()
                            .map(Value::to_string)
                            .unwrap_or_default(),
                    ]);
                }
                print!("{table}");
            } else {
                let mut table = Table::new(["ID", "LOGICAL ID", "TAGS"]);
                for d in &found {
                    table.row([d.id.to_string(), logical(d), d.tags.to_string()]);
                }
                print!("{table}");
            }
            Ok(())
        }
        InstanceCommand::Provision { name, spec } => {
            let spec: InstanceSpec = read_json(&spec).await?;
            let id = dir
                .instance(&name)
                .provision(spec)
                .await
                .with_context(|| format!("provision on {name}"))?;
            if json {
                println!("{}", json!({ "ID": id }));
            } else {
                println!("{id}");
            }
            Ok(())
        }
        InstanceCommand::Destroy { name, id, reason } => {
            let context = match reason {
                DestroyReason::Terminate => DestroyContext::Terminate,
                DestroyReason::RollingUpdate => DestroyContext::RollingUpdate,
                DestroyReason::ScaleDown => DestroyContext::ScaleDown,
            };
            let id = InstanceId::new(id);
            dir.instance(&name)
                .destroy(&id, context)
                .await
                .with_context(|| format!("destroy {id} on {name}"))?;
            if json {
                println!("{}", json!({ "ID": id, "Destroyed": true }));
            } else {
                println!("destroyed {id} ({context})");
            }
            Ok(())
        }
        InstanceCommand::Validate { name, properties } => {
            let properties: Value = read_json(&properties).await?;
            dir.instance(&name)
                .validate(&properties)
                .await
                .with_context(|| format!("{name} refused the properties"))?;
            if json {
                println!("{}", json!({ "OK": true }));
            } else {
                println!("valid for {name}");
            }
            Ok(())
        }
    }
}

fn logical(d: &infrakit_core::Description) -> String {
    d.logical_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}

/// A JSON file (`-`: standard input), parsed with errors that name the field.
async fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .context("read standard input")?;
        text
    } else {
        tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("read {}", path.display()))?
    };
    SpecError::parse_json(&text).map_err(|e: SpecError| anyhow::anyhow!("{}: {e}", path.display()))
}
