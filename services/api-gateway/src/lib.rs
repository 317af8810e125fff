//! api-gateway — the public front door: routes users, pulse and thought requests to the organs,
//! so that one port reaches everything.
//!
//! | gateway | upstream |
//! |---|---|
//! | `GET /user/{id}` | user-service `GET /users/{id}` |
//! | `GET`, `POST /users` (query string and body passed on) | user-service `/users` |
//! | `GET`, `PUT`, `DELETE /users/{id}` | user-service `/users/{id}` |
//! | `GET /beat` | heart `/beat` |
//! | `GET /think?…` | brain `/think?…` |
//! | `GET /upstreams` | every upstream's `/readyz`, reported as JSON |
//!
//! - Upstream answers (status, JSON body, `Location`, `Retry-After`) pass through unchanged: a
//!   404 stays a 404 and is traced as an answer, not an error.
//! - Each upstream has its own traced client with `UPSTREAM_TIMEOUT`; an upstream that is down
//!   answers a fast 502 (`upstream_unreachable`), one that is too slow a 504
//!   (`upstream_timeout`), each a JSON error naming the upstream.
//! - At most `GATEWAY_MAX_CONCURRENCY` proxied requests are in flight; beyond that requests are
//!   shed at once with a 503 JSON (`overloaded`, `Retry-After: 1`) instead of queueing. Each
//!   upstream also has its own limit (`BRAIN_MAX_CONCURRENCY`, ...; 503 `upstream_busy`), so
//!   slow `/think` calls cannot take the capacity `/user/{id}` needs. Liveness (`/healthz`) is
//!   outside every limit.
//! - A failing upstream is logged at most once a second (with the count of suppressed lines).
//! - `traceparent` goes upstream from the gateway's client span; `x-request-id` (set by the
//!   skeleton when absent) is forwarded.
//! - The gateway's `/readyz` does not depend on the upstreams (a gateway that is not ready for
//!   every upstream outage would take the whole front door down); their state is in
//!   `GET /upstreams`.
//! - Chaos faults (`/chaos`, `CHAOS_TOKEN`; closed without it) apply to the proxied routes.

pub mod config;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use service_kit::{ApiError, Context};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};

pub use config::Config;
pub use proxy::Upstream;

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::API_GATEWAY.name;
/// The service's default port.
pub const PORT: u16 = topology::API_GATEWAY.port;

/// The upstreams, by role.
#[derive(Debug)]
pub struct Upstreams {
    /// user-service.
    pub users: Upstream,
    /// heart.
    pub heart: Upstream,
    /// brain.
    pub brain: Upstream,
}

impl Upstreams {
    /// All of them, in a stable order.
    pub fn all(&self) -> [&Upstream; 3] {
        [&self.users, &self.heart, &self.brain]
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    upstreams: Arc<Upstreams>,
    max_concurrency: usize,
    chaos: chaos::Chaos,
}

impl AppState {
    /// Builds one traced client per upstream (with the configured timeout) and the chaos
    /// switchboard, registering its metrics on the context's registry.
    pub fn new(ctx: &Context, config: Config) -> prometheus::Result<Self> {
        let upstream = |name: &'static str, base: &str, limit: usize| {
            let connect = config.upstream_timeout.min(Duration::from_secs(1));
            let client = ctx.http_client_with_timeouts(connect, config.upstream_timeout);
            Upstream::new(name, base, client, config.upstream_timeout, limit)
        };
        let limits = config.upstream_concurrency;
        let upstreams = Upstreams {
            users: upstream("user-service", &config.user_service_url, limits.users),
            heart: upstream("heart", &config.heart_url, limits.heart),
            brain: upstream("brain", &config.brain_url, limits.brain),
        };
        Ok(Self {
            upstreams: Arc::new(upstreams),
            max_concurrency: config.max_concurrency,
            chaos: chaos::Chaos::new(ctx, config.chaos_token)?,
        })
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The fault switchboard behind `/chaos`.
    pub fn chaos(&self) -> &chaos::Chaos {
        &self.chaos
    }
}

/// The service's routes: the proxied routes behind the load shedder (chaos faults applied),
/// `/chaos` and `/`.
pub fn app(state: AppState) -> Router {
    let chaos = state.chaos.clone();
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(state.max_concurrency));
    let business = proxy::router().with_state(state);
    chaos
        .wrap(business)
        .layer(shed)
        .merge(chaos.routes())
        .route(
            "/",
            service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
        )
}

/// The answer when the concurrency limit is reached (the only error the shed stack makes).
async fn overloaded(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the gateway is at its concurrency limit; retry shortly",
        )
        .into_response();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        response
    } else {
        ApiError::internal(error).into_response()
    }
}
