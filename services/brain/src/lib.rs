//! brain — cognition: CPU-bound thinking with measurable latency; calls heart through a circuit
//! breaker.
//!
//! - `GET /think` thinks for `BRAIN_THINK` (default `10ms`), `± BRAIN_THINK_JITTER` (default
//!   `0s`), or `?ms=N` milliseconds (at most [`MAX_THINK_MS`]): iterated SipHash, real CPU work, on
//!   the blocking pool with at most one thinker per core, so the async workers stay free for
//!   probes, metrics and fast failures. Each think is timed in `brain_think_duration_seconds`.
//! - `GET /think?pulse=true` (or `GET /think/pulse`) then calls heart's `/beat` (`HEART_URL`)
//!   through [`pulse::Heart`]: a per-attempt timeout, bounded retries, and a circuit breaker
//!   (`failsafe`). While the breaker is open brain answers at once: 503
//!   `{"error":{"code":"circuit_open"}}` with `Retry-After`. Breaker state is the gauge
//!   `brain_circuit_breaker_state` (0 closed, 1 half-open, 2 open) and the attribute
//!   `brain.circuit_breaker.state` on the request span; the call to heart is traced.
//! - Load is shed early, never held: at most `BRAIN_MAX_WAITING` (default 4 per core) requests
//!   wait for a core, each at most `BRAIN_QUEUE_WAIT` (default `500ms`, so that a wait and the longest think fit
//!   in the gateway's 2 s upstream timeout); beyond either, 503
//!   `{"error":{"code":"overloaded"}}` with `Retry-After: 1` at once.
//! - `/chaos` (see the `chaos` crate) injects faults into `/think`; closed without `CHAOS_TOKEN`.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

pub mod pulse;
pub mod think;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chaos::Chaos;
use secrecy::SecretString;
use service_kit::{Context, EnvReader};
use tokio::sync::Semaphore;

pub use pulse::{BreakerState, Heart, PulseConfig};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::BRAIN.name;
/// The service's default port.
pub const PORT: u16 = topology::BRAIN.port;
/// The longest think one request may ask for (`?ms=`), and the largest `BRAIN_THINK`.
pub const MAX_THINK_MS: u64 = 1_000;

/// The service's own configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HEART_URL` (default `http://127.0.0.1:8081`).
    pub heart_url: String,
    /// `BRAIN_THINK`: how long a think takes when the request does not say (default `10ms`, at
    /// most [`MAX_THINK_MS`]).
    pub think: Duration,
    /// `BRAIN_THINK_JITTER`: each think is `think ± uniform(0..=jitter)` (default `0s`, at most
    /// [`MAX_THINK_MS`]).
    pub jitter: Duration,
    /// Timeouts, retries and breaker of the call to heart.
    pub pulse: PulseConfig,
    /// `CHAOS_TOKEN`: bearer token for `POST`/`DELETE /chaos` (closed when unset).
    pub chaos_token: Option<SecretString>,
    /// `BRAIN_MAX_WAITING`: requests that may wait for a free core (default 4 per core); one
    /// more is shed at once with a 503.
    pub max_waiting: Option<usize>,
    /// `BRAIN_QUEUE_WAIT`: the longest a request waits for a core before a 503 (default `500ms`,
    /// at most `1m`).
    pub queue_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heart_url: topology::HEART.local_url(),
            think: Duration::from_millis(10),
            jitter: Duration::ZERO,
            pulse: PulseConfig::default(),
            chaos_token: None,
            max_waiting: None,
            queue_wait: Duration::from_millis(500),
        }
    }
}

impl Config {
    /// Reads the service's own variables; problems are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let defaults = Self::default();
        let longest_think = Duration::from_millis(MAX_THINK_MS);
        Self {
            heart_url: reader.url("HEART_URL", &defaults.heart_url),
            think: reader.duration("BRAIN_THINK", defaults.think, ..=longest_think),
            jitter: reader.duration("BRAIN_THINK_JITTER", defaults.jitter, ..=longest_think),
            pulse: defaults.pulse,
            chaos_token: Chaos::read_token(reader),
            max_waiting: reader.parse_with("BRAIN_MAX_WAITING", None, |raw| {
                match raw.parse::<usize>() {
                    Ok(n) if n <= 100_000 => Ok(Some(n)),
                    _ => Err("expected a whole number from 0 to 100000".to_owned()),
                }
            }),
            queue_wait: reader.duration(
                "BRAIN_QUEUE_WAIT",
                defaults.queue_wait,
                ..=Duration::from_secs(60),
            ),
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    think: Duration,
    jitter: Duration,
    thinkers: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    max_waiting: usize,
    queue_wait: Duration,
    think_duration: prometheus::Histogram,
    heart: Heart,
    chaos: Chaos,
}

impl AppState {
    /// Builds the state, registering brain's metrics (think histogram, breaker gauge, chaos) on
    /// the context's registry (an error only on a name clash).
    pub fn new(ctx: &Context, config: Config) -> prometheus::Result<Self> {
        let think_duration = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "brain_think_duration_seconds",
                "Time spent thinking per /think request, waiting for a free core included.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        ctx.registry.register(Box::new(think_duration.clone()))?;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            think: config.think,
            jitter: config.jitter,
            thinkers: Arc::new(Semaphore::new(cores)),
            waiting: Arc::default(),
            max_waiting: config.max_waiting.unwrap_or(cores * 4),
            queue_wait: config.queue_wait,
            think_duration,
            heart: Heart::new(ctx, &config.heart_url, config.pulse)?,
            chaos: Chaos::new(ctx, config.chaos_token)?,
        })
    }

    /// The client of heart, with its breaker.
    pub fn heart(&self) -> &Heart {
        &self.heart
    }

    /// The fault switchboard of this brain.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }
}

/// The service's routes: `/think`, `/think/pulse` (under chaos) and `/chaos`.
pub fn app(state: AppState) -> Router {
    let chaos = state.chaos.clone();
    let business = Router::new()
        .route("/think", get(think::think))
        .route("/think/pulse", get(think::think_pulse))
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
        )
        .with_state(state);
    chaos.wrap(business).merge(chaos.routes())
}
