//! The plugins a manager can use, by name: what a group spec's `"Plugin"` fields refer to.

use crate::flavor::Flavor;
use crate::group::PluginSpec;
use crate::instance::Instance;
use crate::spec_error::SpecError;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Resolves plugin references that are not registered locally, e.g. to plugins served by
/// other processes on sockets (`infrakit-rpc`'s plugin directory implements it).
pub trait PluginResolver: Send + Sync {
    /// The instance plugin for `spec.plugin`, if this resolver knows it.
    fn instance(&self, spec: &PluginSpec) -> Option<Arc<dyn Instance>>;
    /// The flavor plugin for `spec.plugin`, if this resolver knows it.
    fn flavor(&self, spec: &PluginSpec) -> Option<Arc<dyn Flavor>>;
}

/// A registry of instance and flavor plugins, by name.
///
/// A reference `name/subtype` resolves to a plugin registered as `name/subtype` if there is
/// one, else to `name`, else to the [fallback](Self::fallback) resolver, if any.
///
/// ```
/// use infrakit_core::{Plugins, Simulator, flavor::Vanilla, PluginSpec};
/// let plugins = Plugins::new()
///     .instance("simulator", Simulator::new())
///     .flavor("vanilla", Vanilla);
/// assert!(plugins.resolve_instance(&PluginSpec::new("simulator", serde_json::json!({}))).is_ok());
/// let missing = plugins.resolve_flavor(&PluginSpec::new("swarm/manager", serde_json::json!({})));
/// assert_eq!(missing.err().map(|e| e.field), Some("Plugin".to_string()));
/// ```
#[derive(Clone, Default)]
pub struct Plugins {
    instances: BTreeMap<String, Arc<dyn Instance>>,
    flavors: BTreeMap<String, Arc<dyn Flavor>>,
    fallback: Option<Arc<dyn PluginResolver>>,
}

impl fmt::Debug for Plugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugins")
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("flavors", &self.flavors.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Plugins {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an instance plugin.
    #[must_use]
    pub fn instance(mut self, name: impl Into<String>, plugin: impl Instance + 'static) -> Self {
        self.instances.insert(name.into(), Arc::new(plugin));
        self
    }

    /// Registers a shared instance plugin.
    #[must_use]
    pub fn instance_arc(mut self, name: impl Into<String>, plugin: Arc<dyn Instance>) -> Self {
        self.instances.insert(name.into(), plugin);
        self
    }

    /// Registers a flavor plugin.
    #[must_use]
    pub fn flavor(mut self, name: impl Into<String>, plugin: impl Flavor + 'static) -> Self {
        self.flavors.insert(name.into(), Arc::new(plugin));
        self
    }

    /// Registers a shared flavor plugin.
    #[must_use]
    pub fn flavor_arc(mut self, name: impl Into<String>, plugin: Arc<dyn Flavor>) -> Self {
        self.flavors.insert(name.into(), plugin);
        self
    }

    /// Resolves what is not registered locally (local plugins always win).
    #[must_use]
    pub fn fallback(mut self, resolver: Arc<dyn PluginResolver>) -> Self {
        self.fallback = Some(resolver);
        self
    }

    /// The instance plugin a spec refers to; the error names the `Plugin` field.
    pub fn resolve_instance(&self, spec: &PluginSpec) -> Result<Arc<dyn Instance>, SpecError> {
        lookup(&self.instances, spec, "instance").or_else(|e| {
            self.fallback
                .as_ref()
                .and_then(|f| f.instance(spec))
                .ok_or(e)
        })
    }

    /// The flavor plugin a spec refers to; the error names the `Plugin` field.
    pub fn resolve_flavor(&self, spec: &PluginSpec) -> Result<Arc<dyn Flavor>, SpecError> {
        lookup(&self.flavors, spec, "flavor")
            .or_else(|e| self.fallback.as_ref().and_then(|f| f.flavor(spec)).ok_or(e))
    }
}

fn lookup<T: ?Sized>(
    map: &BTreeMap<String, Arc<T>>,
    spec: &PluginSpec,
    kind: &str,
) -> Result<Arc<T>, SpecError> {
    map.get(&spec.plugin)
        .or_else(|| map.get(spec.name()))
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            SpecError::new(
                "Plugin",
                format!(
                    "no {kind} plugin named {:?} (known: {})",
                    spec.plugin,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
}
