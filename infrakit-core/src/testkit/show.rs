//! How the reports show the model: tags, logical IDs.

use crate::id::LogicalId;
use crate::tags::Tags;

/// Tags in braces: `{a=1,b=2}`.
pub(crate) fn show_tags(t: &Tags) -> String {
    format!("{{{t}}}")
}

/// A logical ID, or `none`.
pub(crate) fn show_logical_id(l: Option<&LogicalId>) -> String {
    l.map_or_else(|| "none".to_owned(), ToString::to_string)
}
