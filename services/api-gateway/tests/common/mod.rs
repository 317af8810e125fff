//! Real organs on 127.0.0.1:0, in this process, behind the real skeleton.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use service_kit::{Context, EnvReader};
use testbed::Served;

/// The `CHAOS_TOKEN` every test service is configured with (`/chaos` is closed without one).
pub const CHAOS_TOKEN: &str = "test-chaos";

/// A service serving on a socket (testbed's [`Served`]) until dropped.
pub struct Running {
    pub ctx: Context,
    served: Served,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Sets this service's chaos faults through its own `POST /chaos`.
    pub async fn chaos(&self, faults: serde_json::Value) {
        let resp = testbed::http_client()
            .post(format!("{}/chaos", self.url()))
            .bearer_auth(CHAOS_TOKEN)
            .json(&faults)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "POST /chaos: {}", resp.status());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
    }
}

/// Serves `routes` (assembled with the skeleton) on 127.0.0.1:0.
pub async fn serve(ctx: Context, routes: Router) -> Running {
    let app = service_kit::assemble(&ctx, routes);
    serve_assembled(ctx, app).await
}

/// Serves an already assembled `app` on 127.0.0.1:0.
pub async fn serve_assembled(ctx: Context, app: Router) -> Running {
    let served = Served::start(app).await;
    Running { ctx, served }
}

/// heart with its default configuration.
pub async fn heart() -> Running {
    let ctx = Context::for_tests(heart::SERVICE);
    let env: HashMap<&str, &str> = HashMap::new();
    let mut config = heart::Config::read(&mut EnvReader::new(&env));
    config.chaos_token = Some(CHAOS_TOKEN.into());
    let state = heart::AppState::new(&ctx, config).unwrap();
    serve(ctx, heart::app(state)).await
}

/// user-service over `database_url`.
pub async fn user_service(database_url: &str) -> Running {
    let ctx = Context::for_tests(user_service::SERVICE);
    let mut config = user_service::Config::with_database_url(database_url).unwrap();
    config.chaos_token = Some(CHAOS_TOKEN.into());
    let state = user_service::AppState::new(&ctx, config).await.unwrap();
    serve(ctx, user_service::app(state)).await
}

/// The gateway in front of these upstreams.
pub fn gateway_router(mut config: api_gateway::Config) -> (Context, Router) {
    if config.chaos_token.is_none() {
        config.chaos_token = Some(CHAOS_TOKEN.into());
    }
    let ctx = Context::for_tests(api_gateway::SERVICE);
    let state = api_gateway::AppState::new(&ctx, config).unwrap();
    let router = service_kit::assemble(&ctx, api_gateway::app(state));
    (ctx, router)
}

/// A URL where nothing listens (a port that was free a moment ago).
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}", testbed::free_port())
}
