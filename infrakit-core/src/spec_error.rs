//! Errors for invalid user input: every one names the offending field path and the reason.

use crate::error::{Classify, ErrorKind};

/// An invalid spec: `field` is a path such as `Properties.Allocation.LogicalIDs[2]`, in the
/// JSON names a user writes, and `reason` says what is wrong with it.
///
/// Plugins validating their own properties name fields relative to those properties
/// (`"Size"`, or `""` for the properties as a whole); the manager prefixes the path
/// (`Properties.Instance.Properties.Size`).
///
/// ```
/// use infrakit_core::SpecError;
/// let e = SpecError::new("Properties.Allocation", "exactly one of Size or LogicalIDs must be set");
/// assert_eq!(
///     e.to_string(),
///     "invalid spec: Properties.Allocation: exactly one of Size or LogicalIDs must be set"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct SpecError {
    /// Path of the offending field, dot-separated, with `[i]` for list positions.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SpecError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `Allocation` under `Properties` becomes
    /// `Properties.Allocation`.
    #[must_use]
    pub fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() || self.field == "." {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Parses JSON into `T`, turning a serde error into a `SpecError` that names the path
    /// where decoding failed.
    ///
    /// ```
    /// use infrakit_core::{GroupSpec, SpecError};
    /// let err = SpecError::parse_json::<GroupSpec>(
    ///     r#"{"ID":"g","Properties":{"Allocation":{"Size":"three"}}}"#,
    /// ).unwrap_err();
    /// assert_eq!(err.field, "Properties.Allocation.Size");
    /// ```
    pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SpecError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(Self::from_path_error)
    }

    /// Like [`parse_json`](Self::parse_json) from an already parsed value.
    pub fn from_value<T: serde::de::DeserializeOwned>(
        value: serde_json::Value,
    ) -> Result<T, SpecError> {
        serde_path_to_error::deserialize(value).map_err(Self::from_path_error)
    }

    fn from_path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Self {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        SpecError::new(field, e.into_inner().to_string())
    }
}

impl Classify for SpecError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Permanent
    }
}
