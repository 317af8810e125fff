//! The shared skeleton of every organism service.
//!
//! A service's `main.rs` is one call to [`launch`]: typed configuration parsed before any port is
//! bound (every bad variable reported at once, exit code 2), telemetry, the service's own router
//! from `app(...)`, the standard endpoints (`/healthz`, `/readyz`, `/metrics`,
//! `/admin/log-filter`), a request body limit, a request timeout, request ids, and a graceful
//! shutdown on SIGTERM/SIGINT with a bounded drain, telemetry flushed last.
//!
//! It is also the home of the workspace's one retry delay policy, [`backoff::ExponentialBackoff`].

mod allocator;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod error;
pub mod extract;
pub mod health;
pub mod server;

pub use config::{BaseConfig, ConfigError, EnvReader};
/// The one duration syntax (humantime; bare numbers refused), for config-file fields.
pub use env_config::duration;
pub use error::ApiError;
pub use health::{Readiness, ReadyFlag};
pub use server::{Context, assemble, identity, launch, serve, shutdown_signal};
pub use tokio_util::sync::CancellationToken;
