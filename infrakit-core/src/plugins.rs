//! The plugins a manager can use, by name: what a group spec's `"Plugin"` fields refer to.

use crate::flavor::Flavor;
use crate::group::{GroupSpec, PluginSpec};
use crate::instance::{CallLimit, Instance};
use crate::reconcile::{GroupOptions, RateLimiter};
use crate::spec_error::SpecError;
use crate::timeouts::{ALL_CALLS, CallTimeouts, PluginCall};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

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
///
/// **Call limits** belong to a plugin: the one it declares ([`Instance::call_limit`]), or the
/// one given at registration ([`instance_limited`](Self::instance_limited)), or one for
/// every instance plugin ([`limit_instances`](Self::limit_instances)). One budget per plugin
/// is shared by every group that uses it (and by clones of the registry).
///
/// **Call deadlines** can belong to a plugin too ([`timeouts`](Self::timeouts)): a group's
/// own (its spec's `Options.Timeouts`) win over them, and they win over the engine's
/// ([`EngineOptions::timeouts`](crate::EngineOptions::timeouts)).
#[derive(Clone, Default)]
pub struct Plugins {
    instances: BTreeMap<String, Arc<dyn Instance>>,
    flavors: BTreeMap<String, Arc<dyn Flavor>>,
    fallback: Option<Arc<dyn PluginResolver>>,
    limits: BTreeMap<String, Option<CallLimit>>,
    all_limited: Option<CallLimit>,
    limiters: Arc<Mutex<BTreeMap<String, Arc<RateLimiter>>>>,
    timeouts: BTreeMap<String, CallTimeouts>,
}

/// A group's plugins, resolved once per commit: what its controller calls.
#[derive(Clone)]
pub(crate) struct GroupPlugins {
    pub(crate) instance: Arc<dyn Instance>,
    pub(crate) flavor: Arc<dyn Flavor>,
    /// The plugin's budget (shared) and the group's own (from its spec), where set.
    pub(crate) limits: Vec<Arc<RateLimiter>>,
    /// The deadline of each call: the group's, over the plugins', over the engine's.
    pub(crate) timeouts: CallTimeouts,
    /// The group's effective options (its spec's over the builder's).
    pub(crate) options: GroupOptions,
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

    /// Registers an instance plugin with a call limit of its own (`None`: unlimited), in
    /// place of the one the plugin declares.
    ///
    /// ```
    /// use infrakit_core::{Plugins, Simulator, instance::CallLimit};
    /// let plugins = Plugins::new()
    ///     .instance_limited("cloud", Simulator::new(), Some(CallLimit::per_second(20)));
    /// # let _ = plugins;
    /// ```
    #[must_use]
    pub fn instance_limited(
        mut self,
        name: impl Into<String>,
        plugin: impl Instance + 'static,
        limit: Option<CallLimit>,
    ) -> Self {
        let name = name.into();
        self.limits.insert(name.clone(), limit);
        self.instances.insert(name, Arc::new(plugin));
        self
    }

    /// Limits every instance plugin to `limit` (registered or resolved by the fallback), in
    /// place of what each declares.
    #[must_use]
    pub fn limit_instances(mut self, limit: CallLimit) -> Self {
        self.all_limited = Some(limit);
        self
    }

    /// Sets the call deadlines of the plugin registered (or resolved) as `name`: the instance
    /// operations for an instance plugin, the flavor operations for a flavor plugin.
    ///
    /// ```
    /// use infrakit_core::{Plugins, Simulator, timeouts::{CallTimeouts, PluginCall}};
    /// use std::time::Duration;
    /// let plugins = Plugins::new()
    ///     .instance("slow-cloud", Simulator::new())
    ///     .timeouts("slow-cloud", CallTimeouts::new().set(PluginCall::Provision, Duration::from_secs(600)));
    /// # let _ = plugins;
    /// ```
    #[must_use]
    pub fn timeouts(mut self, name: impl Into<String>, timeouts: CallTimeouts) -> Self {
        self.timeouts.insert(name.into(), timeouts);
        self
    }

    fn timeouts_for(&self, spec: &PluginSpec) -> CallTimeouts {
        self.timeouts
            .get(&spec.plugin)
            .or_else(|| self.timeouts.get(spec.name()))
            .copied()
            .unwrap_or_default()
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

    /// The call limit in effect for an instance plugin reference, if any.
    pub fn call_limit(&self, spec: &PluginSpec) -> Option<CallLimit> {
        let plugin = self.resolve_instance(spec).ok()?;
        self.limit_for(spec, plugin.as_ref()).1
    }

    /// The key a reference's budget is kept under, and the limit.
    fn limit_for(&self, spec: &PluginSpec, plugin: &dyn Instance) -> (String, Option<CallLimit>) {
        let key = if self.instances.contains_key(&spec.plugin) {
            spec.plugin.clone()
        } else if self.instances.contains_key(spec.name()) {
            spec.name().to_owned()
        } else {
            spec.plugin.clone()
        };
        let limit = match (self.all_limited, self.limits.get(&key)) {
            (Some(all), _) => Some(all),
            (None, Some(set)) => *set,
            (None, None) => plugin.call_limit(),
        };
        (key, limit)
    }

    /// Resolves a group's plugins with its effective options (the spec's over the
    /// builder's) and the engine's deadlines; errors name the spec's field.
    pub(crate) fn resolve_group(
        &self,
        spec: &GroupSpec,
        group: &GroupOptions,
        engine: &CallTimeouts,
    ) -> Result<GroupPlugins, SpecError> {
        let instance = self
            .resolve_instance(&spec.instance)
            .map_err(|e| e.under("Properties.Instance"))?;
        let flavor = self
            .resolve_flavor(&spec.flavor)
            .map_err(|e| e.under("Properties.Flavor"))?;
        let mut limits = Vec::new();
        if let (key, Some(limit)) = self.limit_for(&spec.instance, instance.as_ref()) {
            let mut shared = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            limits.push(Arc::clone(
                shared
                    .entry(key)
                    .or_insert_with(|| Arc::new(RateLimiter::from_limit(limit))),
            ));
        }
        for own in [spec.instance.rate_limit, group.rate_limit]
            .into_iter()
            .flatten()
        {
            limits.push(Arc::new(RateLimiter::from_limit(own)));
        }
        let (of_instance, of_flavor) = (
            self.timeouts_for(&spec.instance),
            self.timeouts_for(&spec.flavor),
        );
        let mut plugin = CallTimeouts::new();
        for call in ALL_CALLS {
            let own = match call {
                PluginCall::Prepare | PluginCall::Healthy | PluginCall::Drain => &of_flavor,
                _ => &of_instance,
            };
            if let Some(d) = own.configured(call) {
                plugin = plugin.set(call, d);
            }
        }
        Ok(GroupPlugins {
            instance,
            flavor,
            limits,
            timeouts: group.timeouts.or(&plugin).or(engine),
            options: group.clone(),
        })
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
