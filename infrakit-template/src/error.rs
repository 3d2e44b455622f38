//! Template errors: each names the template URL and, where it applies, the line.

use infrakit_core::{Classify, ErrorKind};

/// Rendering a template failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A template could not be fetched.
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
        /// Whether retrying may help (a network error; not a missing file).
        transient: bool,
    },
    /// A template does not parse.
    #[error("{url}{}: {message}", at(*line, *column))]
    Parse {
        /// The template's URL.
        url: String,
        /// Line (from 1), if known.
        line: Option<usize>,
        /// Column (from 1), if known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Rendering failed: a missing variable, a helper error.
    #[error("{url}{}: {message}", at(*line, *column))]
    Render {
        /// The URL of the template where it failed.
        url: String,
        /// Line (from 1), if known.
        line: Option<usize>,
        /// Column (from 1), if known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A template includes itself, directly or not.
    #[error("include cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The URLs, the first repeated at the end.
        chain: Vec<String>,
    },
    /// A URL or path cannot be understood.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The text.
        url: String,
        /// Why.
        reason: String,
    },
    /// A `--global` is not of the form `/path=value`.
    #[error("invalid global {text:?}: {reason}")]
    InvalidGlobal {
        /// The text.
        text: String,
        /// Why.
        reason: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" line {l}, column {c}"),
        (Some(l), None) => format!(" line {l}"),
        _ => String::new(),
    }
}

impl Classify for TemplateError {
    fn kind(&self) -> ErrorKind {
        match self {
            TemplateError::Fetch {
                transient: true, ..
            } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }
}
