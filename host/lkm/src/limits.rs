//! Bounds that keep one client from starving the others: a limit on requests in
//! flight (503 `busy` beyond it) and a token bucket per Hawk credential on decrypts
//! (429 `rate_limited`, with the seconds to wait in `Retry-After`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Rate;
use crate::http::Shared;
use crate::reply::ApiError;

/// Middleware: answers 503 when `max_in_flight` requests are already being handled.
pub(crate) async fn admit(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        tracing::warn!("too many requests in flight");
        return ApiError::busy("the LKM is handling too many requests; retry shortly")
            .into_response();
    };
    next.run(request).await
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by credential id.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Buckets refilling at `rate`.
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `id`'s bucket, or says how many whole seconds until one
    /// is there.
    pub(crate) fn take(&self, id: &str, now: Instant) -> Result<(), u64> {
        let burst = f64::from(self.rate.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.rate.per_second;
        // Rounded up, at least one second, and finite whatever the rate.
        Err(if wait.is_finite() {
            wait.ceil().max(1.0) as u64
        } else {
            1
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(Rate {
            per_second: 2.0,
            burst: 3,
        });
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", now), Ok(()));
        }
        assert_eq!(limiter.take("a", now), Err(1));
        assert_eq!(limiter.take("b", now), Ok(()), "buckets are per credential");
        let later = now + Duration::from_millis(500);
        assert_eq!(limiter.take("a", later), Ok(()));
        assert_eq!(limiter.take("a", later), Err(1));

        let slow = RateLimiter::new(Rate {
            per_second: 0.1,
            burst: 1,
        });
        assert_eq!(slow.take("a", now), Ok(()));
        assert_eq!(slow.take("a", now), Err(10));
    }
}
