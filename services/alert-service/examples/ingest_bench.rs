//! Webhook ingest benchmark: alert-service in-process on 127.0.0.1 with a SQLite outbox and a
//! webhook channel to a local HTTP sink, so delivery runs while intake is measured.
//!
//! ```text
//! cargo run --release -p alert-service --example ingest_bench -- [SECONDS] [ALERTS_PER_MESSAGE] [CONCURRENCY]
//! ```
//! Defaults: 10 s, 50 alerts per message, 16 concurrent senders. Every message is a distinct
//! Alertmanager group (no deduplication helps). Reports alerts/s, messages/s, latency
//! percentiles, and how many notifications were delivered during and after the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alert_service::{AppState, Config, app};
use alertmanager::{Alert, WebhookMessage};
use service_kit::Context;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
#[allow(clippy::print_stderr)]
async fn main() {
    let seconds = arg(1, 10);
    let per_message = arg(2, 50) as usize;
    let concurrency = arg(3, 16) as usize;

    let sink = testbed::HttpSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = "routes:\n  - channels: [hook]\nchannels:\n  hook:\n    kind: webhook\n    url_env: HOOK_URL\ndelivery:\n  concurrency: 16\n  poll_interval: 100ms\n";
    let hook = format!("{}/hook", sink.url());
    let env: HashMap<&str, &str> = [("HOOK_URL", hook.as_str())].into_iter().collect();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = Config::for_tests(yaml, &env, &db).expect("config");
    let ctx = Context::for_tests(alert_service::SERVICE);
    let state = AppState::with_kube(&ctx, config, None)
        .await
        .expect("state");
    let router = service_kit::assemble(&ctx, app(state.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhook/alertmanager",
        listener.local_addr().expect("addr")
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });

    let next = Arc::new(AtomicU64::new(0));
    let alerts_ok = Arc::new(AtomicU64::new(0));
    let messages_ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let client = testbed::http_client_builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, alerts_ok, messages_ok, errors, client, url) = (
            next.clone(),
            alerts_ok.clone(),
            messages_ok.clone(),
            errors.clone(),
            client.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let name = format!("Bench{n}");
                let alerts = (0..per_message).map(|j| {
                    Alert::firing([
                        ("alertname", name.as_str()),
                        ("severity", "warning"),
                        ("namespace", "organism"),
                        ("pod", &format!("heart-{j}")),
                    ])
                    .with_annotation("summary", format!("bench alert {n}/{j}"))
                });
                let msg = WebhookMessage::builder("alert-service")
                    .group_by(["alertname"])
                    .alerts(alerts)
                    .build();
                let body = serde_json::to_vec(&msg).expect("json");
                let t = Instant::now();
                match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 202 => {
                        latencies.push(t.elapsed());
                        messages_ok.fetch_add(1, Ordering::Relaxed);
                        alerts_ok.fetch_add(per_message as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered_during = sink.requests().len();
    let messages = messages_ok.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while (sink.requests().len() as u64) < messages
        && drain_started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = sink.requests().len();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let alerts = alerts_ok.load(Ordering::Relaxed);
    eprintln!(
        "ingest_bench: {seconds} s, {per_message} alerts/message, {concurrency} concurrent senders, SQLite outbox, webhook channel delivering"
    );
    eprintln!(
        "  accepted: {messages} messages, {alerts} alerts, {} errors",
        errors.load(Ordering::Relaxed)
    );
    eprintln!(
        "  ingest:   {:.0} alerts/s, {:.0} messages/s",
        alerts as f64 / elapsed,
        messages as f64 / elapsed
    );
    eprintln!(
        "  latency:  p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    eprintln!(
        "  delivery: {delivered_during} notifications delivered during the run ({:.0}/s); all {drained} of {messages} after {:.1} s more",
        delivered_during as f64 / elapsed,
        drain_started.elapsed().as_secs_f64()
    );
    state.shutdown().await;
    server.abort();
}
