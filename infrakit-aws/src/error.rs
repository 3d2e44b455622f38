//! EC2 errors, classified: what to retry, what to show a person.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use infrakit_core::{Classify, ErrorKind, InstanceError, InstanceId};
use std::time::Duration;

/// What kind of failure an EC2 call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ec2ErrorKind {
    /// Throttled (`RequestLimitExceeded`, ...) even after the client's adaptive retries.
    Throttled,
    /// EC2 is failing or out of capacity (`InternalError`, `Unavailable`,
    /// `InsufficientInstanceCapacity`, a 5xx).
    Unavailable,
    /// The request may or may not have been carried out (a timeout, a lost connection, an
    /// unreadable answer): a launch must be retried with the same client token.
    OutcomeUnknown,
    /// A resource is held by something else for now (`InvalidIPAddress.InUse`, `VolumeInUse`,
    /// `IncorrectState`).
    Conflict,
    /// The instance (or volume) does not exist.
    NotFound,
    /// Anything else EC2 refused: invalid input (`InvalidAMIID.NotFound`,
    /// `InvalidParameterValue`), missing permissions (`UnauthorizedOperation`).
    Rejected,
}

/// An EC2 call that failed, with everything AWS said about it.
///
/// Converts into [`InstanceError`] keeping the message:
///
/// ```
/// use infrakit_aws::{Ec2Error, Ec2ErrorKind};
/// use infrakit_core::{Classify, InstanceError};
/// let e = Ec2Error::new("RunInstances", Ec2ErrorKind::Rejected, Some("InvalidAMIID.NotFound"),
///     "The image id '[ami-0bad]' does not exist");
/// assert!(!e.is_transient());
/// let i: InstanceError = e.into();
/// assert!(i.to_string().contains("ami-0bad"), "{i}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EC2 {operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct Ec2Error {
    /// The API operation (`RunInstances`, ...).
    pub operation: &'static str,
    /// The classification.
    pub kind: Ec2ErrorKind,
    /// AWS's error code, when there was an answer.
    pub code: Option<String>,
    /// AWS's message, or the transport's.
    pub message: String,
}

impl Ec2Error {
    /// An error of the given kind.
    pub fn new(
        operation: &'static str,
        kind: Ec2ErrorKind,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            kind,
            code: code.map(str::to_owned),
            message: message.into(),
        }
    }

    /// Classifies an SDK error of `operation`.
    pub fn from_sdk<E, R>(operation: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match &e {
            SdkError::ServiceError(_) => {
                let code = e.code().map(str::to_owned);
                let message = e
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| DisplayErrorContext(&e).to_string());
                let kind = code
                    .as_deref()
                    .map(kind_of_code)
                    .unwrap_or(Ec2ErrorKind::OutcomeUnknown);
                Self {
                    operation,
                    kind,
                    code,
                    message,
                }
            }
            SdkError::ConstructionFailure(_) => Self {
                operation,
                kind: Ec2ErrorKind::Rejected,
                code: None,
                message: DisplayErrorContext(&e).to_string(),
            },
            SdkError::DispatchFailure(d) if d.is_user() => Self {
                operation,
                kind: Ec2ErrorKind::Rejected,
                code: None,
                message: DisplayErrorContext(&e).to_string(),
            },
            // Timeouts, lost connections, answers that could not be read (moto answers some
            // conflicts with an HTML page): nothing says whether EC2 acted.
            _ => Self {
                operation,
                kind: Ec2ErrorKind::OutcomeUnknown,
                code: e.code().map(str::to_owned),
                message: DisplayErrorContext(&e).to_string(),
            },
        }
    }

    /// Whether a launch that failed this way may have happened anyway.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self.kind,
            Ec2ErrorKind::OutcomeUnknown | Ec2ErrorKind::Unavailable
        ) && !self
            .code
            .as_deref()
            .is_some_and(|c| c.starts_with("Insufficient"))
    }

    /// The instance error, naming `id` when the instance was not found.
    pub fn into_instance_error(self, id: Option<&InstanceId>) -> InstanceError {
        let message = self.to_string();
        match (self.kind, id) {
            (Ec2ErrorKind::Throttled, _) => InstanceError::Throttled {
                message,
                retry_after: Some(Duration::from_secs(1)),
            },
            (Ec2ErrorKind::Unavailable | Ec2ErrorKind::OutcomeUnknown, _) => {
                InstanceError::Unavailable { message }
            }
            (Ec2ErrorKind::Conflict, _) => InstanceError::Conflict { message },
            (Ec2ErrorKind::NotFound, Some(id)) => InstanceError::NotFound { id: id.clone() },
            (Ec2ErrorKind::NotFound | Ec2ErrorKind::Rejected, _) => InstanceError::Provider {
                message,
                transient: false,
            },
        }
    }
}

impl Classify for Ec2Error {
    fn kind(&self) -> ErrorKind {
        match self.kind {
            Ec2ErrorKind::Throttled
            | Ec2ErrorKind::Unavailable
            | Ec2ErrorKind::OutcomeUnknown
            | Ec2ErrorKind::Conflict => ErrorKind::Transient,
            Ec2ErrorKind::NotFound | Ec2ErrorKind::Rejected => ErrorKind::Permanent,
        }
    }
}

impl From<Ec2Error> for InstanceError {
    fn from(e: Ec2Error) -> Self {
        e.into_instance_error(None)
    }
}

/// The kind of an EC2 error code.
///
/// ```
/// use infrakit_aws::{Ec2ErrorKind, error::kind_of_code};
/// assert_eq!(kind_of_code("RequestLimitExceeded"), Ec2ErrorKind::Throttled);
/// assert_eq!(kind_of_code("InvalidAMIID.NotFound"), Ec2ErrorKind::Rejected);
/// assert_eq!(kind_of_code("InvalidInstanceID.NotFound"), Ec2ErrorKind::NotFound);
/// assert_eq!(kind_of_code("InvalidInstanceID.Malformed"), Ec2ErrorKind::NotFound);
/// ```
pub fn kind_of_code(code: &str) -> Ec2ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "PriorRequestNotComplete"
        | "BandwidthLimitExceeded"
        | "SlowDown" => Ec2ErrorKind::Throttled,
        "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "Unavailable"
        | "RequestTimeout"
        | "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientCapacity"
        | "InsufficientAddressCapacity"
        | "InsufficientFreeAddressesInSubnet" => Ec2ErrorKind::Unavailable,
        "InvalidIPAddress.InUse"
        | "VolumeInUse"
        | "IncorrectState"
        | "IncorrectInstanceState"
        | "InvalidNetworkInterface.InUse"
        | "InvalidVolume.AttachmentInUse"
        | "InvalidAttachment.InUse" => Ec2ErrorKind::Conflict,
        // A malformed ID names no instance either: `destroy` of it is `NotFound`, as the
        // Instance contract wants for any unknown ID.
        "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed"
        | "InvalidVolume.NotFound"
        | "InvalidVolumeID.Malformed" => Ec2ErrorKind::NotFound,
        _ => Ec2ErrorKind::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        for (code, transient) in [
            ("RequestLimitExceeded", true),
            ("InsufficientInstanceCapacity", true),
            ("InvalidIPAddress.InUse", true),
            ("InvalidAMIID.NotFound", false),
            ("InvalidAMIID.Malformed", false),
            ("UnauthorizedOperation", false),
            ("InvalidParameterValue", false),
        ] {
            let e = Ec2Error::new("RunInstances", kind_of_code(code), Some(code), "m");
            assert_eq!(e.is_transient(), transient, "{code}");
            let i: InstanceError = e.into();
            assert_eq!(i.is_transient(), transient, "{code} as instance error");
            assert!(i.to_string().contains(code), "{i}");
        }
    }

    #[test]
    fn capacity_errors_are_not_unknown_outcomes() {
        let e = Ec2Error::new(
            "RunInstances",
            Ec2ErrorKind::Unavailable,
            Some("InsufficientInstanceCapacity"),
            "none left",
        );
        assert!(!e.outcome_unknown());
        let e = Ec2Error::new(
            "RunInstances",
            Ec2ErrorKind::OutcomeUnknown,
            None,
            "timeout",
        );
        assert!(e.outcome_unknown());
    }

    #[test]
    fn not_found_names_the_instance() {
        let e = Ec2Error::new(
            "TerminateInstances",
            Ec2ErrorKind::NotFound,
            Some("InvalidInstanceID.NotFound"),
            "gone",
        );
        let id = InstanceId::from("i-1");
        assert_eq!(
            e.into_instance_error(Some(&id)),
            InstanceError::NotFound { id }
        );
    }
}
