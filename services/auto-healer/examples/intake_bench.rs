//! Intake benchmark: time from a webhook POST (a real HTTP request to the served router) to the
//! platform adapter's `execute` call, with a recording adapter in place of a cluster.
//!
//! `cargo run --release -p auto-healer --example intake_bench [-- N]` (default N = 500).
//! Each alert names a different workload so the guards let every one through (rate limit and
//! concurrency raised for the run); prints p50 / p90 / p99 / max in milliseconds.

#![allow(clippy::print_stdout)]

#[path = "../tests/support/recording.rs"]
mod recording;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmanager::{Alert, WebhookMessage};
use auto_healer::local::FileStore;
use auto_healer::platform::LeaderFlag;
use auto_healer::{Adapters, AppState, Config, app};
use recording::Recording;
use service_kit::Context;

/// The webhook's bearer token for the run (the webhook is closed without one).
const TOKEN: &str = "bench-token";

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Context::for_tests(auto_healer::SERVICE);
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        queue_capacity: 1024,
        token: Some(TOKEN.to_owned().into()),
        ..Config::default()
    };
    config.policy.guards.rate_limit_max_actions = u32::MAX;
    config.policy.guards.max_concurrent_actions = 64;
    let platform = Recording::default();
    let state = AppState::with_adapters(
        &ctx,
        config,
        Adapters {
            lease_task: None,
            platform: Arc::new(platform.clone()),
            store: Arc::new(FileStore::new(dir.path())),
            leader: Arc::new(LeaderFlag::new(true)),
        },
    )
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = service_kit::assemble(&ctx, app(state));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = testbed::http_client();
    let url = format!("http://{addr}/webhook/alertmanager");

    let mut latencies = Vec::with_capacity(n);
    let mut intake = Vec::with_capacity(n);
    for i in 0..n {
        let alert = Alert::firing([
            ("alertname", "PodCrashLooping"),
            ("namespace", "organism"),
            ("pod", &format!("w{i}-pod")),
            ("workload", &format!("w{i}")),
            ("remediation", "restart-pod"),
        ]);
        let body = serde_json::to_vec(&WebhookMessage::builder("auto-healer").alert(alert).build())
            .expect("json");
        let mut changes = platform.changes.subscribe();
        let start = Instant::now();
        let resp = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 202, "webhook answered {}", resp.status());
        intake.push(start.elapsed());
        let deadline = start + Duration::from_secs(5);
        let at = loop {
            if let Some(e) = platform.executed().get(i) {
                break e.at;
            }
            assert!(Instant::now() < deadline, "alert {i}: no action within 5 s");
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        };
        latencies.push(at.duration_since(start));
    }
    server.abort();
    report("webhook POST -> adapter execute", &mut latencies);
    report("webhook POST -> 202 response", &mut intake);
}

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]);
    println!(
        "{what}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        ms(v[v.len() - 1])
    );
}
