//! The plain flavor: adds boot-script lines and tags from its properties.

use super::{Flavor, FlavorError, Health, Index};
use crate::group::Allocation;
use crate::instance::{Description, InstanceSpec};
use crate::spec_error::SpecError;
use crate::tags::Tags;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

/// A flavor with no application knowledge: it appends `Init` lines to the boot script and
/// adds `Tags`, and considers every member healthy.
///
/// Properties: `{"Init": ["line", ...] | "script", "Tags": {"k": "v"}}` (both optional).
///
/// ```
/// use infrakit_core::{Allocation, Flavor, Index, InstanceSpec, flavor::Vanilla};
/// use serde_json::json;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let props = json!({"Init": ["echo one", "echo two"], "Tags": {"role": "worker"}});
/// let spec = Vanilla
///     .prepare(&props, InstanceSpec::default(), &Allocation::size(1), &Index::default())
///     .await
///     .unwrap();
/// assert_eq!(spec.init, "echo one\necho two");
/// assert_eq!(spec.tags.get("role"), Some("worker"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Vanilla;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Props {
    #[serde(rename = "Init", default)]
    init: Option<Init>,
    #[serde(rename = "Tags", default)]
    tags: Option<Tags>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Init {
    Lines(Vec<String>),
    Script(String),
}

fn parse(properties: &Value) -> Result<Props, FlavorError> {
    if properties.is_null() {
        return Ok(Props::default());
    }
    SpecError::from_value(properties.clone()).map_err(FlavorError::InvalidProperties)
}

#[async_trait]
impl Flavor for Vanilla {
    async fn validate(&self, properties: &Value, _: &Allocation) -> Result<(), FlavorError> {
        parse(properties).map(|_| ())
    }

    async fn prepare(
        &self,
        properties: &Value,
        mut spec: InstanceSpec,
        _: &Allocation,
        _: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let props = parse(properties)?;
        let lines = match props.init {
            Some(Init::Lines(lines)) => lines,
            Some(Init::Script(s)) => vec![s],
            None => Vec::new(),
        };
        if !lines.is_empty() {
            if !spec.init.is_empty() && !spec.init.ends_with('\n') {
                spec.init.push('\n');
            }
            spec.init.push_str(&lines.join("\n"));
        }
        if let Some(tags) = props.tags {
            spec.tags.merge(&tags);
        }
        Ok(spec)
    }

    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
        Ok(Health::Healthy)
    }

    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
}
