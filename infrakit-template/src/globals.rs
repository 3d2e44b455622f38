//! Globals: path-like keys (`/cluster/name`) with JSON values.

use crate::error::TemplateError;
use serde_json::Value;
use std::collections::BTreeMap;

/// A set of globals, as given on a command line (`--global /cluster/name=mystack`).
///
/// Keys are paths; a leading `/` is optional (`/cluster/name` and `cluster/name` are the same
/// global). A value that parses as JSON is taken as JSON (`4` is a number, `true` a boolean,
/// `[1,2]` a list); anything else is a string.
///
/// ```
/// use infrakit_template::Globals;
/// let g = Globals::parse(["/cluster/name=mystack", "/cluster/swarm/size=4"]).unwrap();
/// assert_eq!(g.get("/cluster/swarm/size"), Some(&serde_json::json!(4)));
/// assert_eq!(g.get("cluster/name"), Some(&serde_json::json!("mystack")));
/// assert!(Globals::parse(["no-equals-sign"]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Globals(BTreeMap<String, Value>);

/// The canonical form of a global's key: no leading or trailing `/`, no empty segments.
pub(crate) fn key(path: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = path.trim_start_matches('/');
    if !trimmed.ends_with('/') && !trimmed.contains("//") {
        // The common case, `/cluster/name`: no allocation.
        return std::borrow::Cow::Borrowed(trimmed);
    }
    std::borrow::Cow::Owned(
        path.split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

impl Globals {
    /// No globals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `path=value` pairs.
    pub fn parse<I, S>(pairs: I) -> Result<Self, TemplateError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut g = Self::new();
        for pair in pairs {
            let text = pair.as_ref();
            let (path, value) =
                text.split_once('=')
                    .ok_or_else(|| TemplateError::InvalidGlobal {
                        text: text.to_owned(),
                        reason: "expected /path=value".into(),
                    })?;
            if key(path).is_empty() {
                return Err(TemplateError::InvalidGlobal {
                    text: text.to_owned(),
                    reason: "the path is empty".into(),
                });
            }
            let value =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            g.set(path, value);
        }
        Ok(g)
    }

    /// Sets a global.
    pub fn set(&mut self, path: &str, value: Value) {
        self.0.insert(key(path).into_owned(), value);
    }

    /// Builder form of [`set`](Self::set).
    #[must_use]
    pub fn with(mut self, path: &str, value: Value) -> Self {
        self.set(path, value);
        self
    }

    /// A global's value.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.0.get(&*key(path))
    }

    pub(crate) fn into_map(self) -> BTreeMap<String, Value> {
        self.0
    }
}
