//! user-service — the users resource over a real database.
//!
//! `GET /users/{id}`, `GET /users?limit=&cursor=` (cursor-paginated, `limit` 1..=100, default 20;
//! answers `{items, next_cursor, next}`), `POST /users` (201 + `Location`), `PUT /users/{id}`
//! (replaces name and email), `DELETE /users/{id}` (204). Users are `{id, name, email,
//! created_at, updated_at}`; bad input is a 400/422 JSON error naming the field, a duplicate
//! e-mail a 409, an unknown id a 404.
//!
//! Storage is PostgreSQL when `DATABASE_URL` is `postgres://…`, else an embedded SQLite file
//! (default `sqlite://organism-users.db`, created if missing, WAL mode). Migrations (one set per
//! backend, under `migrations/`) run at start and seed a few users once (id 123 is Ada
//! Lovelace). The service starts while PostgreSQL is down: `/readyz` fails naming the database
//! and requests get a fast 503 with `Retry-After` until it answers again (see [`db`]).
//!
//! Fault injection (`/chaos`, see the `chaos` crate) applies to the `/users` routes only.
//!
//! `app(state)` builds the service's routes; the shared skeleton (`service-kit`) adds health,
//! readiness, metrics, limits and shutdown around them.

pub mod config;
pub mod db;
pub mod model;
pub mod routes;

use axum::Router;
use service_kit::Context;

pub use config::Config;
pub use db::{Database, StartError};

/// The service's name: crate, binary, chart key and `service.name`.
pub const SERVICE: &str = topology::USER_SERVICE.name;
/// The service's default port.
pub const PORT: u16 = topology::USER_SERVICE.port;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    db: Database,
    chaos: chaos::Chaos,
}

impl AppState {
    /// Opens the database (migrating it when it answers), registers the service's metrics and
    /// the `database` readiness check on the context, and starts the database monitor (stopped
    /// by the context's shutdown token).
    ///
    /// Fails when the metrics cannot be registered or an embedded SQLite file cannot be opened;
    /// an unreachable PostgreSQL is not an error (the service starts not-ready).
    pub async fn new(ctx: &Context, config: Config) -> Result<Self, StartError> {
        let chaos = chaos::Chaos::new(ctx, config.chaos_token.clone())?;
        let db = Database::open(&config, &ctx.registry)?;
        db.initialize().await?;
        let probe = db.clone();
        ctx.readiness.add("database", move || {
            let result = probe.readiness();
            Box::pin(async move { result })
        });
        db.spawn_monitor(ctx.shutdown.clone());
        Ok(Self { db, chaos })
    }

    /// The users store.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The fault switchboard behind `/chaos`.
    pub fn chaos(&self) -> &chaos::Chaos {
        &self.chaos
    }
}

/// The service's routes: `/users` (with the chaos faults applied), `/chaos` and `/`.
pub fn app(state: AppState) -> Router {
    let chaos = state.chaos.clone();
    let business = routes::router().with_state(state);
    chaos.wrap(business).merge(chaos.routes()).route(
        "/",
        service_kit::identity(SERVICE, env!("CARGO_PKG_VERSION")),
    )
}
