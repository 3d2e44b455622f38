//! Connecting to an etcd cluster: endpoints, timeouts and (mutual) TLS.

use crate::error::EtcdError;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Where the cluster is and how to talk to it.
///
/// ```
/// use infrakit_etcd::EtcdConfig;
/// use std::time::Duration;
/// let config = EtcdConfig::new(["https://10.0.0.1:2379", "https://10.0.0.2:2379"])
///     .tls("/etc/etcd/ca.pem", Some(("/etc/etcd/client.pem".into(), "/etc/etcd/client-key.pem".into())))
///     .request_timeout(Duration::from_secs(2));
/// assert_eq!(config.endpoints().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    endpoints: Vec<String>,
    tls: Option<TlsFiles>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

/// PEM files for TLS: the CA that signed the members' certificates, and optionally a client
/// certificate and key (mutual TLS).
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
}

impl EtcdConfig {
    /// The cluster's client URLs (`http://host:2379`, or `https://` with [`tls`](Self::tls)).
    /// Defaults: 2 s per request, 2 s to connect.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Parses a comma-separated endpoint list (`URL[,URL..]`), as the command line gives it.
    ///
    /// ```
    /// let c = infrakit_etcd::EtcdConfig::parse_endpoints("http://127.0.0.1:2379, http://127.0.0.1:22379");
    /// assert_eq!(c.endpoints(), ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]);
    /// ```
    pub fn parse_endpoints(list: &str) -> Self {
        Self::new(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        )
    }

    /// Uses TLS: `ca` verifies the members; `identity` is a client certificate and its key,
    /// for clusters that require mutual TLS.
    pub fn tls(mut self, ca: impl Into<PathBuf>, identity: Option<(PathBuf, PathBuf)>) -> Self {
        self.tls = Some(TlsFiles {
            ca: ca.into(),
            identity,
        });
        self
    }

    /// How long one request may take (a member without quorum answers no sooner).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting to a member may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Connects. The client balances over every endpoint; it needs a leader in the cluster
    /// for its streams (a member cut off from the quorum ends them at once). Fails when no
    /// endpoint answers.
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        if self.endpoints.is_empty() {
            return Err(EtcdError::Config {
                message: "no endpoints: give at least one client URL".into(),
            });
        }
        let mut options = ConnectOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), self.request_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.load().await?);
        }
        tracing::debug!(endpoints = ?self.endpoints, tls = self.tls.is_some(), "connecting to etcd");
        Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(EtcdError::Request)
    }
}

impl TlsFiles {
    async fn load(&self) -> Result<TlsOptions, EtcdError> {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path).await.map_err(|e| EtcdError::Config {
                message: format!("read {}: {e}", path.display()),
            })
        };
        let mut options =
            TlsOptions::new().ca_certificate(Certificate::from_pem(read(self.ca.clone()).await?));
        if let Some((cert, key)) = &self.identity {
            options = options.identity(Identity::from_pem(
                read(cert.clone()).await?,
                read(key.clone()).await?,
            ));
        }
        Ok(options)
    }
}
