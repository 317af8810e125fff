//! alert-service — the voice: enriches, routes and delivers notifications.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

use axum::Router;
use axum::routing::get;
use service_kit::{Context, EnvReader};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = "alert-service";
/// The service's default port.
pub const PORT: u16 = 8086;

/// The service's own configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {}

impl Config {
    /// Reads the service's own variables; problems are recorded on `reader`.
    pub fn read(_reader: &mut EnvReader<'_>) -> Self {
        Self {}
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    #[allow(dead_code)]
    config: Config,
}

impl AppState {
    /// Builds the state, registering the service's metrics on the context's registry.
    pub fn new(_ctx: &Context, config: Config) -> Self {
        Self { config }
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { axum::Json(serde_json::json!({"service": SERVICE, "version": env!("CARGO_PKG_VERSION")})) }))
        .with_state(state)
}
