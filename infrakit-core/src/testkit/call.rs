//! Calling a plugin under test safely: every call bounded by a timeout and shielded from
//! panics, so a hanging or crashing plugin fails a rule instead of hanging or aborting the check.

use futures::FutureExt;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// How often `describe` is polled while waiting for a change to show.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A call that did not answer: it timed out or panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoAnswer(String);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `call` (named `what` in messages) for at most `limit`.
pub(crate) async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = T>,
) -> Result<T, NoAnswer> {
    match tokio::time::timeout(limit, AssertUnwindSafe(call).catch_unwind()).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            tracing::warn!(call = what, %message, "conformance: the plugin panicked");
            Err(NoAnswer(format!("{what} panicked: {message}")))
        }
        Err(_) => {
            tracing::warn!(
                call = what,
                ?limit,
                "conformance: the plugin did not answer"
            );
            Err(NoAnswer(format!("no answer from {what} within {limit:?}")))
        }
    }
}
