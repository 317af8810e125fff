//! `GET /think`: real CPU work for a set time, optionally followed by a pulse from heart.

use std::hash::{DefaultHasher, Hasher};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::extract::Query;

use crate::{AppState, MAX_THINK_MS};

/// Hash rounds between two looks at the clock (a few microseconds of work).
const SLICE: u64 = 256;

/// What one think did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thought {
    /// SipHash rounds run.
    pub iterations: u64,
    /// The final hash, so the work cannot be skipped.
    pub digest: u64,
}

/// Iterates SipHash-1-3 over its own output, starting from `seed`, until `budget` has elapsed
/// (checking the clock every 256 rounds). Blocks the calling thread for `budget`: call it on a blocking
/// thread.
pub fn think_for(budget: Duration, seed: u64) -> Thought {
    let start = Instant::now();
    let mut digest = seed;
    let mut iterations = 0;
    loop {
        for _ in 0..SLICE {
            let mut h = DefaultHasher::new();
            h.write_u64(digest);
            digest = h.finish();
        }
        iterations += SLICE;
        if start.elapsed() >= budget {
            break;
        }
    }
    Thought {
        iterations,
        digest: black_box(digest),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ThinkParams {
    ms: Option<u64>,
    pulse: Option<bool>,
}

/// The body of a successful `/think`: what was asked, what was done, and heart's beat.
#[derive(Serialize)]
struct ThinkReport {
    target_ms: f64,
    thought_ms: f64,
    iterations: u64,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pulse: Option<serde_json::Value>,
}

pub(crate) async fn think(
    State(state): State<AppState>,
    Query(params): Query<ThinkParams>,
) -> Response {
    let pulse = params.pulse.unwrap_or(false);
    run(state, params.ms, pulse).await
}

pub(crate) async fn think_pulse(
    State(state): State<AppState>,
    Query(params): Query<ThinkParams>,
) -> Response {
    if params.pulse == Some(false) {
        return ApiError::bad_request("/think/pulse always pulses; use /think for pulse=false")
            .with_field("pulse")
            .into_response();
    }
    run(state, params.ms, true).await
}

async fn run(state: AppState, ms: Option<u64>, pulse: bool) -> Response {
    let target = match ms {
        None => jittered(state.think, state.jitter),
        Some(ms) if ms <= MAX_THINK_MS => Duration::from_millis(ms),
        Some(ms) => {
            return ApiError::bad_request(format!("ms must be at most {MAX_THINK_MS}, got {ms}"))
                .with_field("ms")
                .into_response();
        }
    };
    if pulse {
        // Fail fast: no point thinking for an answer that cannot be given.
        state.heart.record_state_on_current_span();
        if let Err(e) = state.heart.check_permitted() {
            return e.into_response();
        }
    }

    let start = Instant::now();
    let thought = {
        let _core = match state.thinkers.clone().try_acquire_owned() {
            Ok(core) => core,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return ApiError::unavailable("the service is shutting down", Some(1))
                    .into_response();
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Every core is busy: wait in a short, bounded line, or be shed at once.
                let waiting = state.waiting.fetch_add(1, Ordering::AcqRel);
                let _leave = Leave(&state.waiting);
                if waiting >= state.max_waiting {
                    return overloaded(format!(
                        "every core is thinking and {} requests are already waiting",
                        state.max_waiting
                    ));
                }
                match tokio::time::timeout(state.queue_wait, state.thinkers.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(core)) => core,
                    Ok(Err(_)) => {
                        return ApiError::unavailable("the service is shutting down", Some(1))
                            .into_response();
                    }
                    Err(_) => {
                        return overloaded(format!(
                            "no core became free within {} ms",
                            state.queue_wait.as_millis()
                        ));
                    }
                }
            }
        };
        match tokio::task::spawn_blocking(move || think_for(target, rand::random())).await {
            Ok(t) => t,
            Err(e) => return ApiError::internal(format!("thinking failed: {e}")).into_response(),
        }
    };
    let took = start.elapsed();
    state.think_duration.observe(took.as_secs_f64());

    let pulse = if pulse {
        let result = state.heart.beat().await;
        state.heart.record_state_on_current_span();
        match result {
            Ok(beat) => Some(beat),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    axum::Json(ThinkReport {
        target_ms: target.as_secs_f64() * 1000.0,
        thought_ms: took.as_secs_f64() * 1000.0,
        iterations: thought.iterations,
        digest: format!("{:016x}", thought.digest),
        pulse,
    })
    .into_response()
}

/// Leaves the waiting line when dropped.
struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// 503 `overloaded` with `Retry-After: 1`.
fn overloaded(message: String) -> Response {
    let mut response = ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        message,
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

fn jittered(base: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    let j = jitter.as_secs_f64();
    let offset = rand::random_range(-j..=j);
    Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_takes_the_budget_and_does_work() {
        let start = Instant::now();
        let a = think_for(Duration::from_millis(20), 1);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(20), "{took:?}");
        assert!(took < Duration::from_millis(200), "{took:?}");
        assert!(a.iterations >= SLICE);
        let b = think_for(Duration::ZERO, 1);
        assert_eq!(b.iterations, SLICE);
        assert_ne!(a.digest, b.digest);
        assert_eq!(
            think_for(Duration::ZERO, 1),
            b,
            "deterministic for a seed and a count"
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let base = Duration::from_millis(10);
        let jitter = Duration::from_millis(4);
        let samples: Vec<Duration> = (0..200).map(|_| jittered(base, jitter)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_millis(6) && *d <= Duration::from_millis(14))
        );
        assert!(samples.iter().any(|d| *d != base), "jitter varies");
        assert_eq!(jittered(base, Duration::ZERO), base);
    }
}
