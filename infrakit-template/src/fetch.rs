//! Fetching template sources: `file://`, `http://`, `https://`.

use crate::error::TemplateError;
use std::io::Read;
use std::time::Duration;
use url::Url;

/// Largest template accepted, to keep a wrong URL from filling memory.
const MAX_TEMPLATE_BYTES: u64 = 8 * 1024 * 1024;

/// Fetches template text by URL.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::with_timeout(Duration::from_secs(30))
    }
}

impl Fetcher {
    /// A fetcher whose HTTP requests give up after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The text at `url`.
    pub fn fetch(&self, url: &Url) -> Result<String, TemplateError> {
        let fail = |reason: String, transient: bool| TemplateError::Fetch {
            url: url.to_string(),
            reason,
            transient,
        };
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| fail("not a local file path".into(), false))?;
                std::fs::read_to_string(&path).map_err(|e| {
                    let transient = !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                    );
                    fail(e.to_string(), transient)
                })
            }
            "http" | "https" => {
                let mut response = self
                    .agent
                    .get(url.as_str())
                    .call()
                    .map_err(|e| fail(e.to_string(), true))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(fail(
                        format!("HTTP status {status}"),
                        status.is_server_error(),
                    ));
                }
                let mut text = String::new();
                response
                    .body_mut()
                    .as_reader()
                    .take(MAX_TEMPLATE_BYTES + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| fail(e.to_string(), true))?;
                if text.len() as u64 > MAX_TEMPLATE_BYTES {
                    return Err(fail(
                        format!("larger than {MAX_TEMPLATE_BYTES} bytes"),
                        false,
                    ));
                }
                Ok(text)
            }
            other => Err(fail(
                format!("unsupported scheme {other:?} (use file, http or https)"),
                false,
            )),
        }
    }
}

/// Resolves a URL or a path: absolute URLs stay as they are; anything else is a path, relative
/// to the current directory.
pub(crate) fn to_url(text: &str) -> Result<Url, TemplateError> {
    let invalid = |reason: String| TemplateError::InvalidUrl {
        url: text.to_owned(),
        reason,
    };
    if let Ok(u) = Url::parse(text)
        && u.scheme().len() > 1
    {
        return Ok(u);
    }
    let path = std::path::Path::new(text);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(e.to_string()))?
            .join(path)
    };
    Url::from_file_path(&absolute).map_err(|()| invalid("not a usable path".into()))
}

/// The current directory as a base URL for inline templates.
pub(crate) fn cwd_url() -> Result<Url, TemplateError> {
    let dir = std::env::current_dir().map_err(|e| TemplateError::InvalidUrl {
        url: ".".into(),
        reason: e.to_string(),
    })?;
    Url::from_directory_path(&dir).map_err(|()| TemplateError::InvalidUrl {
        url: dir.display().to_string(),
        reason: "not a usable directory".into(),
    })
}

/// Resolves `reference` against the including template's URL.
pub(crate) fn resolve(base: &Url, reference: &str) -> Result<Url, TemplateError> {
    match Url::parse(reference) {
        Ok(u) if u.scheme().len() > 1 => Ok(u),
        _ => base.join(reference).map_err(|e| TemplateError::InvalidUrl {
            url: reference.to_owned(),
            reason: format!("relative to {base}: {e}"),
        }),
    }
}
