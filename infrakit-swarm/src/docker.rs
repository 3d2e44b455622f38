//! Connecting to an engine, and what its errors mean.

use bollard::Docker;
use infrakit_core::{InstanceError, InstanceId};

/// Connecting to a Docker engine failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("docker engine at {address}: {message}")]
pub struct DockerError {
    /// The engine's address.
    pub address: String,
    /// What happened.
    pub message: String,
}

/// Connects to the engine at `address` (`unix:///var/run/docker.sock`, or a socket path) and
/// negotiates the API version, so an older engine (API 1.41) is spoken to in its own version.
///
/// ```no_run
/// # async fn run() -> Result<(), infrakit_swarm::DockerError> {
/// let docker = infrakit_swarm::connect("unix:///var/run/docker.sock").await?;
/// # Ok(()) }
/// ```
pub async fn connect(address: &str) -> Result<Docker, DockerError> {
    let fail = |message: String| DockerError {
        address: address.to_owned(),
        message,
    };
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let docker = Docker::connect_with_unix(path, 30, bollard::API_DEFAULT_VERSION)
        .map_err(|e| fail(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Maps an engine error to the instance plugin's typed errors.
pub(crate) fn instance_error(e: bollard::errors::Error, id: Option<&InstanceId>) -> InstanceError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => match id {
                Some(id) => InstanceError::NotFound { id: id.clone() },
                None => InstanceError::Provider {
                    message,
                    transient: false,
                },
            },
            409 => InstanceError::Conflict { message },
            400 => InstanceError::Provider {
                message,
                transient: false,
            },
            _ if message.contains("already in use") || message.contains("Address already") => {
                InstanceError::Conflict { message }
            }
            500..=599 => InstanceError::Unavailable { message },
            _ => InstanceError::Provider {
                message,
                transient: false,
            },
        },
        other => InstanceError::Unavailable {
            message: other.to_string(),
        },
    }
}
