//! heart — the pulse: beats on request, with CPU work per beat that drives the autoscaler.
//!
//! - `GET /beat` counts a beat (`heart_beats_total`), does `HEART_WORK_ITERATIONS` iterations of
//!   real CPU work (or `?work=N`, at most [`MAX_WORK_ITERATIONS`]) and answers
//!   `{"beat", "instance", "work_iterations", "digest"}`. The path is kept allocation-light and
//!   logs nothing per request, so that load (`hey`) measures the service and raises its CPU.
//! - `/chaos` (see the `chaos` crate) injects faults into `/beat`.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

mod beat;
pub mod work;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::routing::get;
use chaos::Chaos;
use prometheus::IntCounter;
use secrecy::SecretString;
use service_kit::{Context, EnvReader};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::HEART.name;
/// The service's default port.
pub const PORT: u16 = topology::HEART.port;
/// Default CPU work per beat (`HEART_WORK_ITERATIONS`): a few microseconds.
pub const DEFAULT_WORK_ITERATIONS: u64 = 20_000;
/// The most work one beat may ask for (through the variable or `?work=`): a few milliseconds.
pub const MAX_WORK_ITERATIONS: u64 = 5_000_000;

/// The service's own configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HEART_WORK_ITERATIONS`: CPU work per beat when the request does not say.
    pub work_iterations: u64,
    /// `K8S_POD_NAME` / `POD_NAME`: the name answered as `instance` (else `service.instance.id`
    /// from `OTEL_RESOURCE_ATTRIBUTES`, else the host name).
    pub instance: Option<String>,
    /// `CHAOS_TOKEN`: bearer token for `POST`/`DELETE /chaos`.
    pub chaos_token: Option<SecretString>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            work_iterations: DEFAULT_WORK_ITERATIONS,
            instance: None,
            chaos_token: None,
        }
    }
}

impl Config {
    /// Reads the service's own variables; problems are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let work_iterations = reader.parse_with(
            "HEART_WORK_ITERATIONS",
            DEFAULT_WORK_ITERATIONS,
            |raw| match raw.parse::<u64>() {
                Ok(n) if n <= MAX_WORK_ITERATIONS => Ok(n),
                _ => Err(format!(
                    "expected a whole number from 0 to {MAX_WORK_ITERATIONS}"
                )),
            },
        );
        let instance = reader
            .optional("K8S_POD_NAME")
            .or_else(|| reader.optional("POD_NAME"));
        Self {
            work_iterations,
            instance,
            chaos_token: Chaos::read_token(reader),
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    work_iterations: u64,
    instance: Arc<str>,
    beats: Arc<AtomicU64>,
    beats_total: IntCounter,
    chaos: Chaos,
}

impl AppState {
    /// Builds the state, registering `heart_beats_total` and the chaos metrics on the context's
    /// registry (an error only on a name clash).
    pub fn new(ctx: &Context, config: Config) -> prometheus::Result<Self> {
        let beats_total = IntCounter::new("heart_beats_total", "Beats served by GET /beat.")?;
        ctx.registry.register(Box::new(beats_total.clone()))?;
        let instance = config
            .instance
            .or_else(|| {
                ctx.base
                    .telemetry
                    .resource_attributes
                    .iter()
                    .find(|(k, _)| k == "service.instance.id")
                    .map(|(_, v)| v.clone())
            })
            .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
            .unwrap_or_else(|| SERVICE.to_owned());
        Ok(Self {
            work_iterations: config.work_iterations,
            instance: instance.into(),
            beats: Arc::default(),
            beats_total,
            chaos: Chaos::new(ctx, config.chaos_token)?,
        })
    }

    /// The fault switchboard of this heart.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }
}

/// The service's routes: `/beat` (under chaos) and `/chaos`.
pub fn app(state: AppState) -> Router {
    let chaos = state.chaos.clone();
    let business = Router::new()
        .route("/beat", get(beat::beat))
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
        )
        .with_state(state);
    chaos.wrap(business).merge(chaos.routes())
}
