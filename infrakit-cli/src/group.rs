//! `infrakit group ...`: list, describe (with `--watch`), scale, destroy instances, free and
//! destroy groups, through a manager replica (mutations go to the leader).

use crate::cli::{GroupCommand, WatchArgs};
use crate::exit::{Exit, NOT_CONVERGED};
use crate::remote::Manager;
use crate::table::Table;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use infrakit_core::{Group, GroupDescription, GroupError, GroupId, Health, InstanceId};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Runs one `group` subcommand.
pub async fn run(manager: &Manager, json: bool, command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::Ls => ls(manager, json).await,
        GroupCommand::Describe { id, watch } => {
            let id = GroupId::new(id);
            let d = if watch.watch {
                self::watch(manager, &id, &watch, json).await?
            } else {
                manager
                    .reader()
                    .await?
                    .describe(&id)
                    .await
                    .with_context(|| format!("describe {id}"))?
            };
            print_description(&id, &d, json)
        }
        GroupCommand::Scale { id, size, watch } => {
            let id = GroupId::new(id);
            let before = manager
                .reader()
                .await?
                .size(&id)
                .await
                .with_context(|| format!("size of {id}"))?;
            let Some(size) = size else {
                if json {
                    println!("{}", json!({"ID": id, "Size": before}));
                } else {
                    println!("{before}");
                }
                return Ok(());
            };
            manager
                .on_leader(|g| {
                    let id = id.clone();
                    async move { g.set_size(&id, size).await }
                })
                .await
                .with_context(|| format!("scale {id} to {size}"))?;
            if json {
                println!("{}", json!({"ID": id, "Size": size, "Previous": before}));
            } else {
                println!("{id}: size {before} -> {size}");
            }
            if watch.watch {
                self::watch(manager, &id, &watch, json).await?;
            }
            Ok(())
        }
        GroupCommand::DestroyInstances { id, instances } => {
            let id = GroupId::new(id);
            let ids: Vec<InstanceId> = instances.into_iter().map(InstanceId::from).collect();
            manager
                .on_leader(|g| {
                    let (id, ids) = (id.clone(), ids.clone());
                    async move { g.destroy_instances(&id, &ids).await }
                })
                .await
                .with_context(|| format!("destroy instances of {id}"))?;
            if json {
                println!("{}", json!({"ID": id, "Destroyed": ids}));
            } else {
                println!(
                    "{id}: destroyed {} (size lowered by {})",
                    join(&ids),
                    ids.len()
                );
            }
            Ok(())
        }
        GroupCommand::Free { id } => {
            let id = GroupId::new(id);
            manager
                .on_leader(|g| {
                    let id = id.clone();
                    async move { g.free(&id).await }
                })
                .await
                .with_context(|| format!("free {id}"))?;
            done(
                json,
                &id,
                "freed (no longer managed; its instances keep running)",
            );
            Ok(())
        }
        GroupCommand::Destroy { id } => {
            let id = GroupId::new(id);
            manager
                .on_leader(|g| {
                    let id = id.clone();
                    async move { g.destroy(&id).await }
                })
                .await
                .with_context(|| format!("destroy {id}"))?;
            done(json, &id, "destroyed (every member, then the group)");
            Ok(())
        }
    }
}

fn join(ids: &[InstanceId]) -> String {
    ids.iter()
        .map(InstanceId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn done(json: bool, id: &GroupId, what: &str) {
    if json {
        println!("{}", json!({"ID": id, "Done": true}));
    } else {
        println!("{id}: {what}");
    }
}

async fn ls(manager: &Manager, json: bool) -> anyhow::Result<()> {
    let group = manager.reader().await?;
    let specs = group.inspect().await.context("list groups")?;
    let mut rows = Vec::new();
    for spec in specs {
        let d = group.describe(&spec.id).await;
        let (members, converged) = match &d {
            Ok(d) => (Some(d.instances.len()), Some(d.converged)),
            Err(e) => {
                tracing::warn!(group = %spec.id, error = %e, "cannot describe");
                (None, None)
            }
        };
        rows.push((spec, members, converged));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(spec, members, converged)| {
                json!({
                    "ID": spec.id,
                    "Size": spec.allocation.target_size(),
                    "Members": members,
                    "Converged": converged,
                    "Spec": spec,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(());
    }
    let mut t = Table::new(["ID", "SIZE", "MEMBERS", "CONVERGED", "INSTANCE", "FLAVOR"]);
    for (spec, members, converged) in &rows {
        t.row([
            spec.id.to_string(),
            spec.allocation.target_size().to_string(),
            members.map_or("?".into(), |m| m.to_string()),
            converged.map_or("?".into(), yes_no),
            spec.instance.plugin.clone(),
            spec.flavor.plugin.clone(),
        ]);
    }
    print!("{t}");
    Ok(())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The members table of a description: ID, logical ID, health, config up to date.
pub fn members_table(d: &GroupDescription) -> Table {
    let mut t = Table::new(["ID", "LOGICAL ID", "HEALTH", "UP TO DATE"]);
    if d.members.is_empty() {
        // A group plugin that reports instances only (a Go one): health is not known.
        for i in &d.instances {
            t.row([
                i.id.to_string(),
                i.logical_id
                    .as_ref()
                    .map_or("-".into(), ToString::to_string),
                "?".into(),
                "?".into(),
            ]);
        }
    }
    for m in &d.members {
        t.row([
            m.id.to_string(),
            m.logical_id
                .as_ref()
                .map_or("-".into(), ToString::to_string),
            m.health.to_string(),
            yes_no(m.up_to_date),
        ]);
    }
    t
}

fn print_description(id: &GroupId, d: &GroupDescription, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(d)?);
        return Ok(());
    }
    print!("{}", members_table(d));
    println!(
        "group {id}: {} members, converged: {}",
        d.instances.len(),
        yes_no(d.converged)
    );
    if let Some(p) = &d.plan {
        println!("plan: {p}");
    }
    if let Some(e) = &d.last_error {
        println!("last error: {e}");
    }
    Ok(())
}

/// Members that are healthy and up to date.
pub fn ready(d: &GroupDescription) -> usize {
    d.members
        .iter()
        .filter(|m| m.health == Health::Healthy && m.up_to_date)
        .count()
}

/// Follows a group until it converges; after `deadline` fails with exit code 4. Progress is
/// members healthy and up to date out of the target size: a bar on a terminal, otherwise one
/// line (JSON with `--json`) per change.
pub async fn watch(
    manager: &Manager,
    id: &GroupId,
    args: &WatchArgs,
    json: bool,
) -> anyhow::Result<GroupDescription> {
    let started = Instant::now();
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ready  {elapsed}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(id.to_string());
        bar
    });
    let mut last_line = String::new();
    let mut last_error: Option<String> = None;
    // Only a pass that started after this command may say "converged": ask the leader for
    // one now. A plugin that cannot be asked (Go's) is watched until its next pass; one that
    // numbers no passes at all is taken at its word.
    let mut after = match manager
        .on_leader(|g| async move { g.trigger(id).await })
        .await
    {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "watch: no pass could be requested");
            None
        }
    };
    let mut members: Option<BTreeMap<InstanceId, Health>> = None;
    loop {
        match observe(manager, id).await {
            Ok((d, size)) => {
                last_error = None;
                let after = *after.get_or_insert(d.passes_started);
                let fresh = d.pass > after || (d.pass == 0 && d.passes_started == 0);
                for line in progress(&mut members, &d, json) {
                    match &bar {
                        Some(bar) => bar.println(line),
                        None => println!("{line}"),
                    }
                }
                let ready = ready(&d).min(size as usize);
                let plan = d.plan.clone().unwrap_or_default();
                if let Some(bar) = &bar {
                    bar.set_length(u64::from(size));
                    bar.set_position(ready as u64);
                    bar.set_message(if d.converged {
                        "converged".to_string()
                    } else {
                        plan.clone()
                    });
                } else {
                    let line = if json {
                        json!({"ID": id, "Ready": ready, "Size": size, "Members": d.instances.len(),
                               "Converged": d.converged, "Plan": plan})
                        .to_string()
                    } else {
                        format!(
                            "{id}: {ready}/{size} ready, {} members, converged: {}, plan: {plan}",
                            d.instances.len(),
                            yes_no(d.converged)
                        )
                    };
                    if line != last_line {
                        println!("{line}");
                        last_line = line;
                    }
                }
                if d.converged && fresh {
                    if let Some(bar) = &bar {
                        bar.finish();
                    }
                    return Ok(d);
                }
            }
            // Leadership may move, or a replica restart, while we watch: keep trying.
            Err(e) if is_transient(&e) => {
                let text = format!("{e:#}");
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(error = %text, "watch: retrying");
                    last_error = Some(text);
                }
            }
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(e);
            }
        }
        if started.elapsed() >= args.deadline {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Err(Exit::new(
                NOT_CONVERGED,
                format!(
                    "group {id} did not converge within {:?}{}",
                    args.deadline,
                    last_error
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The members' changes since the last look, one line each: provisioned (a new member),
/// healthy / unhealthy (its health changed), destroyed (gone). JSON lines with `--json`.
fn progress(
    seen: &mut Option<BTreeMap<InstanceId, Health>>,
    d: &GroupDescription,
    json: bool,
) -> Vec<String> {
    let now: BTreeMap<InstanceId, Health> =
        d.members.iter().map(|m| (m.id.clone(), m.health)).collect();
    let Some(before) = seen.replace(now.clone()) else {
        return Vec::new();
    };
    let line = |id: &InstanceId, what: &str| {
        if json {
            json!({"Member": id, "Event": what}).to_string()
        } else {
            format!("{id}: {what}")
        }
    };
    let health = |h: Health| match h {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Unknown => "health unknown",
    };
    let mut lines = Vec::new();
    for (id, h) in &now {
        match before.get(id) {
            None => {
                lines.push(line(id, "provisioned"));
                if *h != Health::Unknown {
                    lines.push(line(id, health(*h)));
                }
            }
            Some(old) if old != h => lines.push(line(id, health(*h))),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !now.contains_key(*id)) {
        lines.push(line(id, "destroyed"));
    }
    lines
}

fn is_transient(e: &anyhow::Error) -> bool {
    use infrakit_core::Classify;
    e.chain().any(|c| {
        c.downcast_ref::<GroupError>()
            .is_some_and(|g| g.is_transient())
    })
}

async fn observe(manager: &Manager, id: &GroupId) -> anyhow::Result<(GroupDescription, u32)> {
    let group = manager.reader().await?;
    let d = group.describe(id).await?;
    let size = group.size(id).await?;
    Ok((d, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_core::MemberStatus;

    #[test]
    fn members_table_and_readiness() {
        let mut d = GroupDescription::default();
        d.members = vec![
            MemberStatus::new("i-1", Health::Healthy),
            MemberStatus::new("i-2", Health::Unknown),
            MemberStatus::new("i-3", Health::Healthy)
                .with_logical_id("10.0.0.3")
                .outdated(),
        ];
        assert_eq!(ready(&d), 1);
        let text = members_table(&d).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID   LOGICAL ID  HEALTH   UP TO DATE");
        assert_eq!(lines[1], "i-1  -           healthy  yes");
        assert_eq!(lines[2], "i-2  -           unknown  yes");
        assert_eq!(lines[3], "i-3  10.0.0.3    healthy  no");
    }
}
