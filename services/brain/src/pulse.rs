//! The call from brain to heart's `/beat`: traced, timed out, retried a bounded number of times,
//! behind a circuit breaker.
//!
//! The breaker is `failsafe`'s state machine with the consecutive-failures policy and a constant
//! cool-down: after `failure_threshold` failures in a row it opens and rejects calls at once (no
//! network, no waiting); once the cool-down has passed the next call is let through half-open,
//! and its outcome closes the breaker or opens it for another cool-down. Transitions are logged
//! once each and published as `brain_circuit_breaker_state`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{StateMachine, backoff, failure_policy};
use http::StatusCode;
use prometheus::IntGauge;
use service_kit::backoff::ExponentialBackoff;
use service_kit::{ApiError, Context};
use telemetry::client::HttpClient;

/// Timeouts, retries and breaker settings of the call to heart.
#[derive(Debug, Clone)]
pub struct PulseConfig {
    /// Time to connect to heart.
    pub connect_timeout: Duration,
    /// Time for one whole attempt.
    pub attempt_timeout: Duration,
    /// Extra attempts after a failed one (connection refused, 502/503/504); a timed-out attempt
    /// is not retried, so a slow heart is not sent more load.
    pub retries: u32,
    /// Pauses between attempts: the workspace's one backoff policy (the first pause, doubled for
    /// each further retry, capped).
    pub retry_backoff: ExponentialBackoff,
    /// Consecutive failed attempts that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a half-open probe.
    pub cool_down: Duration,
}

impl Default for PulseConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(200),
            attempt_timeout: Duration::from_millis(500),
            retries: 2,
            retry_backoff: ExponentialBackoff::new(
                Duration::from_millis(20),
                Duration::from_millis(500),
            ),
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// The breaker's state, as published in `brain_circuit_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls flow.
    Closed = 0,
    /// The cool-down has passed; the next outcome decides.
    HalfOpen = 1,
    /// Calls are rejected at once.
    Open = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::HalfOpen,
            2 => Self::Open,
            _ => Self::Closed,
        }
    }

    /// `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

/// Follows the breaker's transitions: the gauge, the state for spans, when it opened.
#[derive(Debug, Clone)]
struct Observer {
    state: Arc<AtomicU8>,
    opened_at: Arc<Mutex<Option<Instant>>>,
    gauge: IntGauge,
}

impl Observer {
    fn set(&self, state: BreakerState) -> BreakerState {
        self.gauge.set(state as i64);
        BreakerState::from_u8(self.state.swap(state as u8, Ordering::Relaxed))
    }
}

impl failsafe::Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        if let Ok(mut at) = self.opened_at.lock() {
            *at = Some(Instant::now());
        }
        let before = self.set(BreakerState::Open);
        tracing::warn!(
            from = before.as_str(),
            "circuit breaker to heart opened: pulses fail fast"
        );
    }

    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
        tracing::info!("circuit breaker to heart half-open: probing");
    }

    fn on_closed(&self) {
        let before = self.set(BreakerState::Closed);
        if before != BreakerState::Closed {
            tracing::info!(
                from = before.as_str(),
                "circuit breaker to heart closed: heart answers again"
            );
        }
    }
}

type Breaker = StateMachine<failure_policy::ConsecutiveFailures<backoff::Constant>, Observer>;

/// Why a pulse failed.
#[derive(Debug, thiserror::Error)]
pub enum PulseError {
    /// The breaker is open; retry after the given time.
    #[error("heart is unavailable: the circuit breaker is open")]
    Open {
        /// Time left of the cool-down.
        retry_after: Duration,
    },
    /// Heart did not answer within the attempt timeout.
    #[error("heart did not answer in time")]
    Timeout,
    /// Heart could not be reached.
    #[error("heart could not be reached")]
    Connect,
    /// Heart answered with a server error.
    #[error("heart answered {0}")]
    Status(StatusCode),
    /// Heart's answer could not be read.
    #[error("heart's answer could not be read")]
    Body,
}

impl PulseError {
    fn retryable(&self) -> bool {
        match self {
            Self::Connect => true,
            Self::Status(s) => matches!(s.as_u16(), 502..=504),
            Self::Open { .. } | Self::Timeout | Self::Body => false,
        }
    }
}

impl IntoResponse for PulseError {
    fn into_response(self) -> Response {
        match self {
            Self::Open { retry_after } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "circuit_open",
                    format!("heart is unavailable (circuit breaker open); retry after {secs} s"),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
                response
            }
            other => ApiError::unavailable(other.to_string(), Some(1)).into_response(),
        }
    }
}

/// brain's client of heart.
#[derive(Clone)]
pub struct Heart {
    beat_url: Arc<str>,
    client: HttpClient,
    breaker: Breaker,
    observer: Observer,
    config: PulseConfig,
}

impl std::fmt::Debug for Heart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heart")
            .field("beat_url", &self.beat_url)
            .field("state", &self.state())
            .field("config", &self.config)
            .finish()
    }
}

impl Heart {
    /// A client of heart at `heart_url`, registering `brain_circuit_breaker_state` on the
    /// context's registry.
    pub fn new(ctx: &Context, heart_url: &str, config: PulseConfig) -> prometheus::Result<Self> {
        let gauge = IntGauge::new(
            "brain_circuit_breaker_state",
            "State of the circuit breaker on brain's calls to heart: 0 closed, 1 half-open, 2 open.",
        )?;
        ctx.registry.register(Box::new(gauge.clone()))?;
        let observer = Observer {
            state: Arc::default(),
            opened_at: Arc::default(),
            gauge,
        };
        let breaker = failsafe::Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                config.failure_threshold.max(1),
                backoff::constant(config.cool_down),
            ))
            .instrument(observer.clone())
            .build();
        Ok(Self {
            beat_url: format!("{}/beat", heart_url.trim_end_matches('/')).into(),
            client: ctx.http_client_with_timeouts(config.connect_timeout, config.attempt_timeout),
            breaker,
            observer,
            config,
        })
    }

    /// The breaker's state as last published.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.observer.state.load(Ordering::Relaxed))
    }

    /// Sets `brain.circuit_breaker.state` on the current (request) span.
    pub fn record_state_on_current_span(&self) {
        use opentelemetry::trace::TraceContextExt as _;
        opentelemetry::Context::current()
            .span()
            .set_attribute(opentelemetry::KeyValue::new(
                "brain.circuit_breaker.state",
                self.state().as_str(),
            ));
    }

    fn open_error(&self) -> PulseError {
        let opened = self.observer.opened_at.lock().ok().and_then(|at| *at);
        let elapsed = opened.map_or(Duration::ZERO, |at| at.elapsed());
        PulseError::Open {
            retry_after: self.config.cool_down.saturating_sub(elapsed),
        }
    }

    /// Fails at once while the breaker is open and its cool-down has not passed.
    ///
    /// Reads the published state rather than asking the state machine, which would move it to
    /// half-open and make this request the probe before it has done its own work.
    pub fn check_permitted(&self) -> Result<(), PulseError> {
        if self.state() == BreakerState::Open {
            let err = self.open_error();
            if matches!(err, PulseError::Open { retry_after } if !retry_after.is_zero()) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// One beat from heart through the breaker, with bounded retries.
    pub async fn beat(&self) -> Result<serde_json::Value, PulseError> {
        let mut attempt = 0;
        loop {
            match self.breaker.call(self.attempt()).await {
                Ok(beat) => return Ok(beat),
                Err(failsafe::Error::Rejected) => return Err(self.open_error()),
                Err(failsafe::Error::Inner(e)) => {
                    if attempt >= self.config.retries || !e.retryable() {
                        return Err(e);
                    }
                    tokio::time::sleep(self.config.retry_backoff.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self) -> Result<serde_json::Value, PulseError> {
        let response = self
            .client
            .send(self.client.get(&self.beat_url))
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    PulseError::Timeout
                } else {
                    PulseError::Connect
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(PulseError::Status(status));
        }
        response.json().await.map_err(|e| {
            if e.is_timeout() {
                PulseError::Timeout
            } else {
                PulseError::Body
            }
        })
    }
}
