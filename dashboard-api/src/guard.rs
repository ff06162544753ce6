//! What every request passes before a handler sees it: the caller is identified
//! from its bearer token, held to a rate (429 with `Retry-After` beyond it) and
//! given a deadline (503 `timeout` after it), so one client can neither flood the
//! API nor hold a worker forever. Body sizes are capped by the router's
//! `DefaultBodyLimit`; WebSocket messages by the upgrade.

use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Requests per second and burst per client (a token's subject, else an address).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    fn default() -> Self {
        // A dashboard polls a few endpoints a second; 50/s with bursts of 100 is
        // far above any honest client and far below what hurts the pipeline.
        RateLimit { per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN), burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN) }
    }
}

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    pub timeout: Duration,
}

impl Limiter {
    pub fn new(rate: RateLimit, timeout: Duration) -> Self {
        Limiter { limiter: RateLimiter::keyed(Quota::per_second(rate.per_second).allow_burst(rate.burst)), timeout }
    }

    /// Forgets clients whose buckets are full again, so the table stays bounded.
    pub fn forget_idle_clients(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// None when the request may go ahead, else how long to wait.
    fn check(&self, client: String) -> Option<Duration> {
        self.limiter.check_key(&client).err().map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The middleware: identify, limit, time out.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let caller = Caller::from_header(request.headers().get(header::AUTHORIZATION), &state.security.tokens);
    let client = match caller.subject() {
        Some(subject) => format!("sub:{subject}"),
        None => request.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "ip:unknown".to_owned(), |c| format!("ip:{}", c.0.ip())),
    };
    if let Some(wait) = state.security.limiter.check(client) {
        metrics::counter!("egret_api_rate_limited_total").increment(1);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = ApiError { status: StatusCode::TOO_MANY_REQUESTS, code: "rate_limited", message: format!("too many requests; retry in {seconds} s") }
            .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return response;
    }
    request.extensions_mut().insert(caller);
    let started = std::time::Instant::now();
    let response = match tokio::time::timeout(state.security.limiter.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!("no answer within {} s", state.security.limiter.timeout.as_secs_f64())).into_response(),
    };
    metrics::histogram!("egret_api_request_seconds").record(started.elapsed().as_secs_f64());
    response
}
