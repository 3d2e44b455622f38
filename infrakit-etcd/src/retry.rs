//! Requests that never reached a member are sent again.
//!
//! The client balances over every endpoint, and a request may be routed to a member that is
//! down: it fails to connect and was never sent. Such a request is retried (a few times,
//! shortly), so one dead member of three does not fail one request in three. A request that
//! may have reached a member (a timeout, an answer) is never retried here: its outcome is
//! for the caller to find out.

use std::future::Future;
use std::time::Duration;

/// How many times a request that was never sent is tried again.
const UNSENT_RETRIES: u32 = 4;

/// True when the error proves the request never left: the connection itself failed.
pub(crate) fn never_sent(e: &etcd_client::Error) -> bool {
    let connect = |text: &str| {
        let text = text.to_ascii_lowercase();
        text.contains("tcp connect error")
            || text.contains("connection refused")
            || text.contains("error trying to connect")
    };
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            i32::from(status.code()) == 14 && connect(status.message())
        }
        etcd_client::Error::TransportError(t) => connect(&crate::error::describe_any(t)),
        _ => false,
    }
}

/// Runs `call`, again while it fails before reaching a member.
pub(crate) async fn unsent_retried<T, Fut>(
    mut call: impl FnMut() -> Fut,
) -> Result<T, etcd_client::Error>
where
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if attempt < UNSENT_RETRIES && never_sent(&e) => {
                attempt += 1;
                tracing::debug!(attempt, error = %crate::error::describe(&e), "etcd request not sent: trying another member");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}
