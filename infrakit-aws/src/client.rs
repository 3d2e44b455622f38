//! Building an EC2 client that suits a controller: adaptive retries, bounded timeouts.

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_ec2::{Client, Config};
use std::time::Duration;

/// The environment variable naming an EC2 endpoint (moto, LocalStack, a VPC endpoint).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";

/// Retries for a controller: **adaptive** mode (a client-side rate limiter that slows down
/// when EC2 throttles, `RequestLimitExceeded`), up to `max_attempts` per call with
/// exponential backoff from 200 ms. Transient server errors and timeouts are retried too; an
/// invalid request is not.
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10))
}

/// Timeouts: 5 s to connect, 30 s per attempt, 2 min per call with its retries.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

/// A client with [`retry_config`] (5 attempts) and [`timeout_config`] for `region`, with
/// static credentials, at `endpoint` if given (else AWS's own endpoint for the region).
///
/// Use this for emulators and tests; in production build the client from `aws-config`'s
/// shared config (`aws_sdk_ec2::config::Builder::from(&sdk_config)`) and set the same retry
/// and timeout configs.
///
/// ```
/// use aws_sdk_ec2::config::Credentials;
/// let client = infrakit_aws::client(
///     Some("http://127.0.0.1:5000"),
///     "us-east-1",
///     Credentials::new("test", "test", None, None, "static"),
/// );
/// assert_eq!(client.config().region().map(|r| r.as_ref()), Some("us-east-1"));
/// ```
pub fn client(endpoint: Option<&str>, region: &str, credentials: Credentials) -> Client {
    Client::from_conf(config(endpoint, region, credentials).build())
}

/// The configuration [`client`] builds its client from, to adjust before building (for
/// instance a `retry_partition` of its own: the adaptive rate limiter's state is shared by
/// every client of a partition, by default all EC2 clients of the process).
///
/// ```
/// use aws_sdk_ec2::config::{Credentials, retry::RetryPartition};
/// let config = infrakit_aws::config(None, "eu-west-1",
///     Credentials::new("AKIA...", "secret", None, None, "static"))
///     .retry_partition(RetryPartition::new("cluster-a"))
///     .build();
/// let client = aws_sdk_ec2::Client::from_conf(config);
/// # let _ = client;
/// ```
pub fn config(endpoint: Option<&str>, region: &str, credentials: Credentials) -> Builder {
    let mut builder = Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .retry_config(retry_config(5))
        .timeout_config(timeout_config());
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder
}

/// A client from the standard environment variables: `AWS_ENDPOINT_URL` (optional),
/// `AWS_REGION` or `AWS_DEFAULT_REGION` (default `us-east-1`), `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (default to `test` credentials, which only
/// an emulator accepts).
pub fn client_from_env() -> Client {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    if var("AWS_ACCESS_KEY_ID").is_none() {
        tracing::warn!(
            "AWS_ACCESS_KEY_ID is not set: using the emulator credentials test/test, which AWS \
             itself refuses (AuthFailure)"
        );
    }
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "test".into()),
        var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "test".into()),
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    client(var(ENDPOINT_ENV).as_deref(), &region, credentials)
}
