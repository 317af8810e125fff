//! Spawning heart and brain in-process on 127.0.0.1, and calling them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use brain::{Config, PulseConfig};
use service_kit::Context;
use service_kit::backoff::ExponentialBackoff;
use testbed::{Served, TestRouter};

/// A service behind the skeleton, served on a real socket by testbed's [`Served`] (which stops
/// serving when dropped).
pub struct Spawned {
    pub ctx: Context,
    served: Served,
}

impl Spawned {
    async fn serve(addr: SocketAddr, ctx: Context, routes: Router) -> Self {
        let app = service_kit::assemble(&ctx, routes);
        let served = Served::start_on(addr, app).await;
        Self { ctx, served }
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Calls this service over its socket.
    pub fn client(&self) -> TestRouter {
        self.served.client()
    }

    /// Shuts the server down and waits until it has stopped listening.
    pub async fn stop(self) {
        self.ctx.shutdown.cancel();
        self.served.stop().await;
    }
}

/// The `CHAOS_TOKEN` of the test services (`/chaos` is closed without one).
pub const CHAOS_TOKEN: &str = "test-chaos";

/// heart on `addr` (port 0 for a free one).
pub async fn spawn_heart_on(addr: SocketAddr) -> Spawned {
    let ctx = Context::for_tests(heart::SERVICE);
    let config = heart::Config {
        chaos_token: Some(CHAOS_TOKEN.into()),
        ..heart::Config::default()
    };
    let state = heart::AppState::new(&ctx, config).unwrap();
    Spawned::serve(addr, ctx, heart::app(state)).await
}

pub async fn spawn_heart() -> Spawned {
    spawn_heart_on("127.0.0.1:0".parse().unwrap()).await
}

/// brain calling heart at `heart_url`, thinking 1 ms, with `pulse` settings.
pub async fn spawn_brain(heart_url: &str, pulse: PulseConfig) -> Spawned {
    let ctx = Context::for_tests(brain::SERVICE);
    let state = brain::AppState::new(&ctx, config(heart_url, pulse)).unwrap();
    Spawned::serve(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ctx,
        brain::app(state),
    )
    .await
}

pub fn config(heart_url: &str, pulse: PulseConfig) -> Config {
    Config {
        heart_url: heart_url.to_owned(),
        think: Duration::from_millis(1),
        pulse,
        ..Config::default()
    }
}

/// Breaker settings short enough for tests.
pub fn quick_breaker() -> PulseConfig {
    PulseConfig {
        connect_timeout: Duration::from_millis(200),
        attempt_timeout: Duration::from_millis(300),
        retries: 1,
        retry_backoff: ExponentialBackoff::new(Duration::from_millis(10), Duration::from_secs(1)),
        failure_threshold: 3,
        cool_down: Duration::from_secs(1),
    }
}

/// brain's assembled router, for calls without a socket (each carrying [`CHAOS_TOKEN`]).
pub fn brain_router(mut config: Config) -> (Context, brain::AppState, TestRouter) {
    if config.chaos_token.is_none() {
        config.chaos_token = Some(CHAOS_TOKEN.into());
    }
    let ctx = Context::for_tests(brain::SERVICE);
    let state = brain::AppState::new(&ctx, config).unwrap();
    let router = service_kit::assemble(&ctx, brain::app(state.clone()));
    (ctx, state, TestRouter::new(router).with_bearer(CHAOS_TOKEN))
}
