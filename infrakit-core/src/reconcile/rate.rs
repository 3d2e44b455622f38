//! A limit on provider calls per second: one per plugin (shared by the groups using it), and
//! one per group whose spec sets its own.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: at most `per_second` calls per second on average, bursts up to `burst`.
///
/// ```
/// use infrakit_core::reconcile::RateLimiter;
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let limiter = RateLimiter::new(10, 1);
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     limiter.acquire().await;
/// }
/// // One token at once, then one every 100 ms.
/// assert!(start.elapsed() >= std::time::Duration::from_millis(200));
/// # });
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// At most `per_second` calls per second, bursts up to `burst` (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: f64::from(per_second.max(1)),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// The limiter for a [`CallLimit`](crate::instance::CallLimit).
    pub fn from_limit(limit: crate::instance::CallLimit) -> Self {
        Self::new(limit.per_second, limit.burst_size())
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(st.1).as_secs_f64() * self.per_second;
                st.0 = (st.0 + refill).min(self.burst);
                st.1 = now;
                if st.0 >= 1.0 {
                    st.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - st.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}
