//! The plugins a manager can use, by name: what a group spec's `"Plugin"` fields refer to.

use crate::flavor::Flavor;
use crate::group::PluginSpec;
use crate::instance::Instance;
use crate::spec_error::SpecError;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A registry of instance and flavor plugins, by name.
///
/// A reference `name/subtype` resolves to a plugin registered as `name/subtype` if there is
/// one, else to `name`.
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
}

impl fmt::Debug for Plugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugins")
            .field("instances", &self.instances.keys().collect::<Vec<_>>())
            .field("flavors", &self.flavors.keys().collect::<Vec<_>>())
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

    /// The instance plugin a spec refers to; the error names the `Plugin` field.
    pub fn resolve_instance(&self, spec: &PluginSpec) -> Result<Arc<dyn Instance>, SpecError> {
        lookup(&self.instances, spec, "instance")
    }

    /// The flavor plugin a spec refers to; the error names the `Plugin` field.
    pub fn resolve_flavor(&self, spec: &PluginSpec) -> Result<Arc<dyn Flavor>, SpecError> {
        lookup(&self.flavors, spec, "flavor")
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
