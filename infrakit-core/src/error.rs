//! What every error in infrakit-rs says about itself: may the same call succeed if retried later?
//!
//! Each concern has its own error enum ([`InstanceError`](crate::instance::InstanceError),
//! [`FlavorError`](crate::flavor::FlavorError), [`StoreError`](crate::store::StoreError), ...).
//! All of them implement [`Classify`], which is what the reconcile engine looks at to decide
//! between "retry with backoff" and "surface it and stop".

use std::time::Duration;

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The same call may succeed later: throttling, timeouts, an unreachable endpoint,
    /// a conflict with a resource that is being released. Retry with backoff.
    Transient,
    /// Retrying the same call will fail the same way: invalid input, an unknown image,
    /// a missing permission. Surface it to a person.
    Permanent,
}

/// Implemented by every error type of the SDK.
///
/// ```
/// use infrakit_core::{Classify, ErrorKind, instance::InstanceError};
/// use std::time::Duration;
///
/// let throttled = InstanceError::Throttled {
///     message: "Rate exceeded".into(),
///     retry_after: Some(Duration::from_millis(200)),
/// };
/// assert_eq!(throttled.kind(), ErrorKind::Transient);
/// assert!(throttled.is_transient());
/// assert_eq!(throttled.retry_after(), Some(Duration::from_millis(200)));
/// ```
pub trait Classify {
    /// Transient or permanent.
    fn kind(&self) -> ErrorKind;

    /// A hint from the provider about how long to wait before retrying, if it gave one.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Shorthand for `self.kind() == ErrorKind::Transient`.
    fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}
