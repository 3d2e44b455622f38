//! How etcd's errors are classified: what a retry may fix and what it will not.

use infrakit_core::StoreError;
use infrakit_core::leadership::LeadershipError;

/// An error from the etcd crate: connecting, configuring or calling the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The configuration cannot be used (no endpoints, a TLS file that cannot be read).
    #[error("etcd configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The cluster could not be reached or answered an error.
    #[error("etcd request failed")]
    Request(#[source] etcd_client::Error),
}

/// gRPC status codes a retry may fix: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
/// RESOURCE_EXHAUSTED, CANCELLED, UNKNOWN (etcd reports "request timed out" and "no leader"
/// as UNAVAILABLE).
const TRANSIENT_CODES: [i32; 6] = [14, 4, 10, 8, 1, 2];

/// Whether retrying the call may help.
pub(crate) fn is_transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            TRANSIENT_CODES.contains(&i32::from(status.code()))
        }
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_)
        | etcd_client::Error::EndpointError(_) => true,
        _ => false,
    }
}

/// The message of an etcd error with its causes, for error types that keep a message.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => describe_any(other),
    }
}

/// An error's message with its causes, each once.
pub(crate) fn describe_any(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// True when the server refused the request for its size.
pub(crate) fn is_too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("too large"))
}

pub(crate) fn store_error(e: &etcd_client::Error) -> StoreError {
    if is_transient(e) {
        StoreError::Unavailable {
            message: format!("etcd: {}", describe(e)),
        }
    } else {
        StoreError::Other {
            message: format!("etcd: {}", describe(e)),
            transient: false,
        }
    }
}

pub(crate) fn leadership_error(e: &etcd_client::Error) -> LeadershipError {
    LeadershipError::Unreachable {
        message: format!("etcd: {}", describe(e)),
    }
}
