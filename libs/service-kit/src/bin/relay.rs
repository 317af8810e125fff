//! A two-hop demo service used by the skeleton's process tests: `/relay` calls the next
//! service's `/hello/{name}` through the traced client, logging inside the request.
//!
//! `NEXT_URL=http://127.0.0.1:PORT cargo run -p service-kit --bin relay`

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use service_kit::extract::{Path, Query};
use service_kit::{ApiError, Context, EnvReader};
use telemetry::client::HttpClient;

#[derive(Clone)]
struct Relay {
    next: Option<String>,
    client: HttpClient,
}

#[derive(Deserialize)]
struct Slow {
    ms: u64,
}

async fn hello(Path(name): Path<String>) -> axum::Json<serde_json::Value> {
    tracing::info!(name = %name, "greeting");
    axum::Json(serde_json::json!({ "hello": name }))
}

async fn relay(State(relay): State<Relay>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let next = relay
        .next
        .as_deref()
        .ok_or_else(|| ApiError::not_found("no NEXT_URL configured"))?;
    tracing::info!(next = %next, "relaying");
    let response = relay
        .client
        .send(relay.client.get(&format!("{next}/hello/relay")))
        .await
        .map_err(|e| ApiError::unavailable(format!("next hop: {e}"), Some(1)))?;
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| ApiError::unavailable(format!("next hop body: {e}"), Some(1)))?;
    Ok(axum::Json(serde_json::json!({ "relayed": body })))
}

async fn slow(Query(q): Query<Slow>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(q.ms.min(10_000))).await;
    "done"
}

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::launch(
        "relay",
        0,
        env!("CARGO_PKG_VERSION"),
        |reader: &mut EnvReader<'_>| reader.optional_url("NEXT_URL"),
        |ctx: Context, next| async move {
            let state = Relay {
                next,
                client: ctx.http_client(),
            };
            Ok::<_, std::convert::Infallible>(
                Router::new()
                    .route("/hello/{name}", get(hello))
                    .route("/relay", get(relay))
                    .route("/slow", get(slow))
                    .with_state(state),
            )
        },
    )
    .await
}
