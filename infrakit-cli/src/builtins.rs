//! The built-in plugins: run in a manager's process (`manager run --builtin`) or served on a
//! socket for several replicas to share (`plugin start`).
//!
//! Instance providers are made in one place, [`builtin_instance`]; flavors in
//! [`builtin_flavors`]. A new provider (e.g. EC2 from `infrakit-aws`) is one more arm there,
//! behind its cargo feature.

use crate::cli::BuiltinArgs;
use infrakit_core::{Flavor, Instance, Plugins, Simulator, flavor::Vanilla};
use infrakit_rpc::PluginServer;
use std::sync::Arc;

/// The kinds of built-in, for help and error messages.
pub const KINDS: &[&str] = &["simulator", "vanilla", "container", "nodes", "swarm", "ec2"];

/// A built-in plugin, made.
pub enum Builtin {
    /// An instance plugin.
    Instance(Arc<dyn Instance>),
    /// Flavor plugins by subtype (`""` when the kind has no subtypes).
    Flavors(Vec<(String, Arc<dyn Flavor>)>),
}

impl Builtin {
    /// Makes the built-in `kind`.
    pub async fn make(kind: &str, opts: &BuiltinArgs) -> anyhow::Result<Self> {
        if let Some(i) = builtin_instance(kind, opts).await? {
            return Ok(Builtin::Instance(i));
        }
        if let Some(f) = builtin_flavors(kind, opts).await? {
            return Ok(Builtin::Flavors(f));
        }
        anyhow::bail!(
            "no built-in plugin of kind {kind:?} (kinds: {})",
            KINDS.join(", ")
        )
    }

    /// Registers it in `plugins` under `name` (flavors with subtypes as `name/subtype`).
    pub fn register(self, plugins: Plugins, name: &str) -> Plugins {
        match self {
            Builtin::Instance(i) => plugins.instance_arc(name, i),
            Builtin::Flavors(flavors) => flavors.into_iter().fold(plugins, |p, (subtype, f)| {
                if subtype.is_empty() {
                    p.flavor_arc(name, f)
                } else {
                    p.flavor_arc(format!("{name}/{subtype}"), f)
                }
            }),
        }
    }

    /// Adds it to a plugin server (flavors under their subtypes).
    pub fn serve(self, server: PluginServer) -> PluginServer {
        match self {
            Builtin::Instance(i) => server.instance("", i),
            Builtin::Flavors(flavors) => flavors
                .into_iter()
                .fold(server, |s, (subtype, f)| s.flavor(&subtype, f)),
        }
    }
}

/// The built-in instance plugin `kind`, or `None` when `kind` names no instance plugin.
///
/// **Providers are added here**, each behind its cargo feature.
pub async fn builtin_instance(
    kind: &str,
    opts: &BuiltinArgs,
) -> anyhow::Result<Option<Arc<dyn Instance>>> {
    match kind {
        "simulator" => Ok(Some(Arc::new(
            Simulator::builder().latency(opts.simulator_latency).build(),
        ))),
        "container" => container(opts).await.map(Some),
        "nodes" => nodes(opts).await.map(Some),
        "ec2" => ec2(opts).map(Some),
        _ => Ok(None),
    }
}

/// The built-in flavor plugins of `kind` by subtype, or `None` when `kind` names no flavor.
pub async fn builtin_flavors(
    kind: &str,
    opts: &BuiltinArgs,
) -> anyhow::Result<Option<Vec<(String, Arc<dyn Flavor>)>>> {
    match kind {
        "vanilla" => Ok(Some(vec![(String::new(), Arc::new(Vanilla))])),
        "swarm" => swarm_flavors(opts).await.map(Some),
        _ => Ok(None),
    }
}

#[cfg(feature = "swarm")]
async fn container(opts: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    let docker = crate::docker(&opts.docker_host).await?;
    let plugin = infrakit_swarm::ContainerInstance::new(
        docker,
        opts.container_network.clone(),
        opts.container_scope.clone(),
    );
    if let Some(subnet) = &opts.container_subnet {
        plugin.ensure_network(subnet).await.map_err(|e| {
            anyhow::anyhow!("create network {} ({subnet}): {e}", opts.container_network)
        })?;
    }
    Ok(Arc::new(plugin))
}

#[cfg(not(feature = "swarm"))]
async fn container(_: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    Err(crate::without_swarm("the container built-in"))
}

/// Docker engines in network namespaces on this machine, each a node (root only): the seed's
/// machines, made local. The bridge is created here, so the first provision does not wait.
#[cfg(feature = "swarm")]
async fn nodes(opts: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    let subnet = &opts.nodes_subnet;
    let plugin = infrakit_swarm::EngineNodes::new(&opts.nodes_prefix, &opts.nodes_root, subnet)
        .map_err(|e| anyhow::anyhow!("the nodes built-in: {e}"))?;
    let network = plugin.clone();
    tokio::task::spawn_blocking(move || network.ensure_network())
        .await?
        .map_err(|e| anyhow::anyhow!("the nodes built-in's network {subnet}: {e}"))?;
    Ok(Arc::new(plugin))
}

#[cfg(not(feature = "swarm"))]
async fn nodes(_: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    Err(crate::without_swarm("the nodes built-in"))
}

#[cfg(feature = "aws")]
fn ec2(opts: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    let plugin = infrakit_aws::Ec2Instance::new(infrakit_aws::client_from_env(), &opts.ec2_scope)
        .map_err(|e| anyhow::anyhow!("--ec2-scope: {e}"))?;
    Ok(Arc::new(plugin))
}

#[cfg(not(feature = "aws"))]
fn ec2(_: &BuiltinArgs) -> anyhow::Result<Arc<dyn Instance>> {
    Err(anyhow::anyhow!(
        "the ec2 built-in needs feature `aws`, which this infrakit was built without \
         (cargo build -p infrakit-cli --features aws)"
    ))
}

#[cfg(feature = "swarm")]
async fn swarm_flavors(opts: &BuiltinArgs) -> anyhow::Result<Vec<(String, Arc<dyn Flavor>)>> {
    use infrakit_swarm::{Role, SwarmFlavor};
    let docker = crate::docker(&opts.docker_host).await?;
    Ok(vec![
        (
            "manager".into(),
            Arc::new(SwarmFlavor::new(docker.clone(), Role::Manager)),
        ),
        (
            "worker".into(),
            Arc::new(SwarmFlavor::new(docker, Role::Worker)),
        ),
    ])
}

#[cfg(not(feature = "swarm"))]
async fn swarm_flavors(_: &BuiltinArgs) -> anyhow::Result<Vec<(String, Arc<dyn Flavor>)>> {
    Err(crate::without_swarm("the swarm flavor built-in"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use infrakit_core::PluginSpec;
    use serde_json::json;

    fn opts() -> BuiltinArgs {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            b: BuiltinArgs,
        }
        P::parse_from(["p"]).b
    }

    #[tokio::test]
    async fn simulator_and_vanilla_register_by_name() {
        let o = opts();
        let plugins = Builtin::make("simulator", &o)
            .await
            .unwrap()
            .register(Plugins::new(), "sim");
        let plugins = Builtin::make("vanilla", &o)
            .await
            .unwrap()
            .register(plugins, "plain");
        assert!(
            plugins
                .resolve_instance(&PluginSpec::new("sim", json!({})))
                .is_ok()
        );
        assert!(
            plugins
                .resolve_flavor(&PluginSpec::new("plain", json!({})))
                .is_ok()
        );
        let unknown = Builtin::make("nope", &o).await.err().unwrap().to_string();
        assert!(unknown.contains("kinds: simulator"), "{unknown}");
    }

    #[cfg(not(feature = "swarm"))]
    #[tokio::test]
    async fn docker_kinds_say_which_feature_they_need() {
        let e = Builtin::make("container", &opts()).await.err().unwrap();
        assert!(e.to_string().contains("feature `swarm`"), "{e}");
    }
}
