//! The instance's own facts, from the EC2 instance metadata service (IMDSv2).

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use infrakit_core::metadata::{Metadata, MetadataError, path_segments};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable overriding the metadata service's address (the AWS SDKs' name).
pub const IMDS_ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";

/// The metadata service's address on EC2.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

const TOKEN_TTL_SECONDS: u64 = 21_600;

/// The facts, by name: the metadata path each is read from.
const FACTS: [(&str, &str); 7] = [
    ("availability_zone", "placement/availability-zone"),
    ("instance_id", "instance-id"),
    ("instance_type", "instance-type"),
    ("mac", "mac"),
    ("private_ip", "local-ipv4"),
    ("region", "placement/region"),
    ("subnet_id", "network/interfaces/macs/{mac}/subnet-id"),
];

/// A [`Metadata`] of the instance it runs on: `region`, `availability_zone`, `subnet_id`,
/// `private_ip`, `instance_id`, `instance_type` and `mac`, read from IMDSv2 (a session token
/// first, then each path with it) and cached, since they do not change while the instance
/// lives. Mounted under a name (say `aws`), templates read `{{ metadata "aws/private_ip" }}`.
///
/// A fact the service does not have (404) is `None`; a service that does not answer is
/// [`MetadataError::Unavailable`] naming the path.
///
/// ```no_run
/// use infrakit_aws::Ec2Metadata;
/// use infrakit_core::Metadata;
/// # async fn run() -> Result<(), infrakit_core::metadata::MetadataError> {
/// let md = Ec2Metadata::from_env();
/// let ip = md.get("private_ip").await?;
/// # let _ = ip; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ec2Metadata {
    endpoint: String,
    timeout: Duration,
    token: Mutex<Option<(String, Instant)>>,
    cache: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl Ec2Metadata {
    /// The service at `endpoint` (`http://host[:port]`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(2),
            token: Mutex::new(None),
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// How long one request may take (default 2 s: the service is local to the instance).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service at `$AWS_EC2_METADATA_SERVICE_ENDPOINT`, else at 169.254.169.254.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var(IMDS_ENDPOINT_ENV)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned()),
        )
    }

    /// The names of the facts.
    pub fn facts() -> impl Iterator<Item = &'static str> {
        FACTS.iter().map(|(name, _)| *name)
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        header: (&str, &str),
    ) -> Result<(u16, String), MetadataError> {
        let unavailable = |message: String| MetadataError::Unavailable {
            message: format!("{}{path}: {message}", self.endpoint),
        };
        let uri: hyper::Uri = format!("{}{path}", self.endpoint)
            .parse()
            .map_err(|e| unavailable(format!("bad endpoint: {e}")))?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| unavailable("the endpoint has no host".into()))?;
        let address = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let call = async {
            let stream = tokio::net::TcpStream::connect(&address)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
            tokio::spawn(connection);
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, authority.as_str())
                .header(header.0, header.1)
                .body(Empty::<Bytes>::new())
                .map_err(|e| unavailable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unavailable(e.to_string()))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
    }

    async fn token(&self) -> Result<String, MetadataError> {
        if let Ok(t) = self.token.lock()
            && let Some((token, expires)) = t.as_ref()
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let ttl = TOKEN_TTL_SECONDS.to_string();
        let (status, body) = self
            .request(
                "PUT",
                "/latest/api/token",
                ("x-aws-ec2-metadata-token-ttl-seconds", &ttl),
            )
            .await?;
        if status != 200 || body.is_empty() {
            return Err(MetadataError::Unavailable {
                message: format!(
                    "{}/latest/api/token: IMDSv2 session token refused (HTTP {status})",
                    self.endpoint
                ),
            });
        }
        if let Ok(mut t) = self.token.lock() {
            // Renewed a minute before it expires.
            *t = Some((
                body.clone(),
                Instant::now() + Duration::from_secs(TOKEN_TTL_SECONDS - 60),
            ));
        }
        Ok(body)
    }

    async fn read(&self, path: &str) -> Result<Option<String>, MetadataError> {
        let token = self.token().await?;
        let full = format!("/latest/meta-data/{path}");
        let (status, body) = self
            .request("GET", &full, ("x-aws-ec2-metadata-token", &token))
            .await?;
        match status {
            200 => Ok(Some(body.trim().to_owned())),
            404 => Ok(None),
            401 => {
                // The token expired early (the service restarted): next call mints another.
                if let Ok(mut t) = self.token.lock() {
                    *t = None;
                }
                Err(MetadataError::Unavailable {
                    message: format!("{}{full}: token rejected (HTTP 401)", self.endpoint),
                })
            }
            other => Err(MetadataError::Unavailable {
                message: format!("{}{full}: HTTP {other}", self.endpoint),
            }),
        }
    }

    /// One fact by name, cached.
    async fn fact(&self, name: &str) -> Result<Option<String>, MetadataError> {
        let Some((name, path)) = FACTS.iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        if let Ok(cache) = self.cache.lock()
            && let Some(v) = cache.get(name)
        {
            return Ok(v.clone());
        }
        let value = if path.contains("{mac}") {
            match Box::pin(self.fact("mac")).await? {
                Some(mac) => self.read(&path.replace("{mac}", &mac)).await?,
                None => None,
            }
        } else {
            self.read(path).await?
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name, value.clone());
        }
        Ok(value)
    }
}

#[async_trait]
impl Metadata for Ec2Metadata {
    async fn get(&self, path: &str) -> Result<Option<Value>, MetadataError> {
        let segments: Vec<&str> = path_segments(path).collect();
        match segments.as_slice() {
            [] => {
                let mut all = Map::new();
                for name in Self::facts() {
                    if let Some(v) = self.fact(name).await? {
                        all.insert(name.to_owned(), Value::String(v));
                    }
                }
                Ok(Some(Value::Object(all)))
            }
            [name] => Ok(self.fact(name).await?.map(Value::String)),
            _ => Ok(None),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, MetadataError> {
        Ok(if path_segments(path).next().is_none() {
            Self::facts().map(str::to_owned).collect()
        } else {
            Vec::new()
        })
    }
}
