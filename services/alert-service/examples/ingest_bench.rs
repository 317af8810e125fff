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
use service_kit::Context;
use testbed::fixtures::{alert, webhook};
use testbed::{HttpSink, Served};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The run's shape, from the command line.
#[derive(Debug, Clone, Copy)]
struct Shape {
    seconds: u64,
    per_message: usize,
    concurrency: usize,
}

/// What the senders counted.
#[derive(Debug, Default)]
struct Counts {
    next: AtomicU64,
    alerts_ok: AtomicU64,
    messages_ok: AtomicU64,
    errors: AtomicU64,
}

/// alert-service served on 127.0.0.1 over a SQLite outbox, delivering to `sink`.
struct Running {
    state: AppState,
    served: Served,
    _ctx: Context,
    _dir: tempfile::TempDir,
}

#[tokio::main]
async fn main() {
    let shape = Shape {
        seconds: arg(1, 10),
        per_message: arg(2, 50) as usize,
        concurrency: arg(3, 16) as usize,
    };
    let sink = HttpSink::start().await;
    let running = start_app(&sink).await;
    let url = format!("{}/webhook/alertmanager", running.served.url());
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let mut latencies = send_for(shape, &url, &counts).await;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered_during = sink.requests().len();
    let messages = counts.messages_ok.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    let drained = drain(&sink, messages).await;
    latencies.sort();
    report(shape, &counts, &latencies, elapsed);
    report_delivery(delivered_during, drained, messages, elapsed, drain_started);
    running.state.shutdown().await;
    running.served.stop().await;
}

/// alert-service in-process with a webhook channel to `sink`.
async fn start_app(sink: &HttpSink) -> Running {
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
    let served = Served::start(service_kit::assemble(&ctx, app(state.clone()))).await;
    Running {
        state,
        served,
        _ctx: ctx,
        _dir: dir,
    }
}

/// Message `n`: its own Alertmanager group of `per_message` warnings.
fn bench_message(n: u64, per_message: usize) -> Vec<u8> {
    let name = format!("Bench{n}");
    let alerts = (0..per_message).map(|j| {
        alert(&name)
            .warning()
            .namespace("organism")
            .pod(&format!("heart-{j}"))
            .summary(format!("bench alert {n}/{j}"))
            .firing()
    });
    serde_json::to_vec(&webhook("alert-service").alerts(alerts).build()).expect("json")
}

/// `shape.concurrency` senders posting distinct messages to `url` for `shape.seconds`; the
/// latencies of the accepted ones.
async fn send_for(shape: Shape, url: &str, counts: &Arc<Counts>) -> Vec<Duration> {
    let client = testbed::http_client_builder()
        .pool_max_idle_per_host(shape.concurrency)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(shape.seconds);
    let workers: Vec<_> = (0..shape.concurrency)
        .map(|_| {
            let (client, url, counts) = (client.clone(), url.to_owned(), Arc::clone(counts));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let n = counts.next.fetch_add(1, Ordering::Relaxed);
                    let body = bench_message(n, shape.per_message);
                    let t = Instant::now();
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            latencies.push(t.elapsed());
                            counts.messages_ok.fetch_add(1, Ordering::Relaxed);
                            counts
                                .alerts_ok
                                .fetch_add(shape.per_message as u64, Ordering::Relaxed);
                        }
                        _ => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    latencies
}

/// Waits (at most 2 minutes) until `sink` has a notification per accepted message; how many it has.
async fn drain(sink: &HttpSink, messages: u64) -> usize {
    let drain_started = Instant::now();
    while (sink.requests().len() as u64) < messages
        && drain_started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.requests().len()
}

#[allow(clippy::print_stderr)]
fn report(shape: Shape, counts: &Counts, latencies: &[Duration], elapsed: f64) {
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let Shape {
        seconds,
        per_message,
        concurrency,
    } = shape;
    let messages = counts.messages_ok.load(Ordering::Relaxed);
    let alerts = counts.alerts_ok.load(Ordering::Relaxed);
    eprintln!(
        "ingest_bench: {seconds} s, {per_message} alerts/message, {concurrency} concurrent senders, SQLite outbox, webhook channel delivering"
    );
    eprintln!(
        "  accepted: {messages} messages, {alerts} alerts, {} errors",
        counts.errors.load(Ordering::Relaxed)
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
}

#[allow(clippy::print_stderr)]
fn report_delivery(
    delivered_during: usize,
    drained: usize,
    messages: u64,
    elapsed: f64,
    drain_started: Instant,
) {
    eprintln!(
        "  delivery: {delivered_during} notifications delivered during the run ({:.0}/s); all {drained} of {messages} after {:.1} s more",
        delivered_during as f64 / elapsed,
        drain_started.elapsed().as_secs_f64()
    );
}
