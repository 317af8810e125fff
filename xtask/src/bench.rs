//! `cargo xtask bench`: release builds of the organs and of a bare axum hello-world, run side by
//! side on this machine and loaded with `hey`; prints req/s, p50, p99 and the ratio to the bare
//! baseline, idle RSS and start-to-ready of each service, and writes the figures as JSON.
//!
//! heart runs "as shipped": metrics, spans and logs exported over OTLP/gRPC to an in-process
//! receiver, logs at the default level; then with 10% of traces sampled, and with no collector.
//! The receiver reads each export request down to its spans and counts them without decoding
//! their bytes: on a real deployment the collector has CPU of its own, here it shares the two
//! cores with the service being measured and with `hey`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::launcher::{self, Launcher, Spec};
use crate::root;

/// Ports of the benchmark run (away from `cargo xtask up`'s).
const BARE: u16 = 18099;
const GATEWAY: u16 = 18080;
const HEART: u16 = 18081;
const BRAIN: u16 = 18082;
const USERS: u16 = 18083;
const HEART_SAMPLED: u16 = 18084;
const HEART_NO_COLLECTOR: u16 = 18085;
/// Interleaved rounds of the throughput loads (`--rounds`).
const ROUNDS: usize = 5;

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn average(loads: Vec<Load>) -> Load {
    let n = loads.len().max(1) as f64;
    Load {
        rps: loads.iter().map(|l| l.rps).sum::<f64>() / n,
        p50_ms: loads.iter().map(|l| l.p50_ms).sum::<f64>() / n,
        p99_ms: loads.iter().map(|l| l.p99_ms).sum::<f64>() / n,
        errors: loads.iter().map(|l| l.errors).sum(),
        total: loads.iter().map(|l| l.total).sum(),
    }
}

/// One `hey` result.
#[derive(Debug, Clone, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    total: u64,
}

fn parse_hey(out: &str) -> Load {
    let mut load = Load::default();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50% in ") {
            load.p50_ms = secs_ms(v);
        } else if let Some(v) = l.strip_prefix("99% in ") {
            load.p99_ms = secs_ms(v);
        } else if let Some(rest) = l.strip_prefix('[')
            && let Some((code, count)) = rest.split_once(']')
        {
            let n: u64 = count
                .trim()
                .trim_end_matches("responses")
                .trim()
                .parse()
                .unwrap_or(0);
            load.total += n;
            if !code.starts_with('2') {
                load.errors += n;
            }
        }
    }
    load
}

fn secs_ms(v: &str) -> f64 {
    v.trim()
        .trim_end_matches("secs")
        .trim()
        .parse::<f64>()
        .map(|s| s * 1000.0)
        .unwrap_or(f64::NAN)
}

fn hey(
    url: &str,
    secs: u64,
    concurrency: u32,
    qps_per_worker: Option<u32>,
) -> anyhow::Result<Load> {
    let mut cmd = Command::new("hey");
    cmd.args(["-z", &format!("{secs}s"), "-c", &concurrency.to_string()]);
    if let Some(q) = qps_per_worker {
        cmd.args(["-q", &q.to_string()]);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running hey (apt-get install hey; cargo xtask test installs it)")?;
    if !out.status.success() {
        bail!("hey failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_hey(&String::from_utf8_lossy(&out.stdout)))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn release(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let secs: u64 = args
        .iter()
        .position(|a| *a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rounds: usize = args
        .iter()
        .position(|a| *a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(ROUNDS);
    let out: PathBuf = args
        .iter()
        .position(|a| *a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench/results.json"));

    println!("building release binaries…");
    let services = [
        "-p",
        "heart",
        "-p",
        "brain",
        "-p",
        "api-gateway",
        "-p",
        "user-service",
    ];
    let baseline = ["-p", "xtask", "--bin", "bare-hello"];
    for targets in [&services[..], &baseline[..]] {
        let status = Command::new("cargo")
            .args(["build", "--release"])
            .args(targets)
            .current_dir(root())
            .status()?;
        if !status.success() {
            bail!("cargo build --release {} failed", targets.join(" "));
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(measure(secs, rounds))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("\nfigures written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

async fn measure(secs: u64, rounds: usize) -> anyhow::Result<Value> {
    let sink = otlp_sink::OtlpSink::start_counting().await?;
    let endpoint = sink.endpoint();
    let state = tempdir()?;
    let launcher = Launcher::default();
    let otlp = |name: &str, port: u16| -> Vec<(String, String)> {
        vec![
            ("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")),
            ("OTEL_SERVICE_NAME".into(), name.into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ]
    };
    let mut specs = vec![
        (
            "bare-hello",
            BARE,
            vec![("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{BARE}"))],
        ),
        ("heart", HEART, otlp("heart", HEART)),
        ("heart-sampled", HEART_SAMPLED, {
            let mut e = otlp("heart", HEART_SAMPLED);
            e.push((
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ));
            e.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.1".into()));
            e
        }),
        (
            "heart-no-collector",
            HEART_NO_COLLECTOR,
            vec![
                (
                    "LISTEN_ADDR".into(),
                    format!("127.0.0.1:{HEART_NO_COLLECTOR}"),
                ),
                ("OTEL_SERVICE_NAME".into(), "heart".into()),
            ],
        ),
        ("brain", BRAIN, {
            let mut e = otlp("brain", BRAIN);
            e.push(("HEART_URL".into(), format!("http://127.0.0.1:{HEART}")));
            e
        }),
        ("user-service", USERS, {
            let mut e = otlp("user-service", USERS);
            e.push((
                "DATABASE_URL".into(),
                format!("sqlite://{}/users.db", state.display()),
            ));
            e
        }),
        ("api-gateway", GATEWAY, {
            let mut e = otlp("api-gateway", GATEWAY);
            e.push((
                "USER_SERVICE_URL".into(),
                format!("http://127.0.0.1:{USERS}"),
            ));
            e.push(("HEART_URL".into(), format!("http://127.0.0.1:{HEART}")));
            e.push(("BRAIN_URL".into(), format!("http://127.0.0.1:{BRAIN}")));
            e
        }),
    ];
    let mut startup = serde_json::Map::new();
    let mut idle_rss = serde_json::Map::new();
    for (name, port, env) in specs.drain(..) {
        let spawned = Instant::now();
        launcher
            .add(Spec {
                name: name.to_owned(),
                // The heart variants run the same binary with other telemetry settings.
                program: release(if name.starts_with("heart") {
                    "heart"
                } else {
                    name
                }),
                args: vec![],
                env,
                port: Some(port),
                echo: false,
            })
            .await?;
        launcher::wait_http_ok(port, "/readyz", Duration::from_secs(20)).await?;
        let ready = spawned.elapsed();
        startup.insert(name.into(), json!(ready.as_secs_f64() * 1000.0));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in [
        "bare-hello",
        "heart",
        "brain",
        "user-service",
        "api-gateway",
    ] {
        if let Some(pid) = launcher.pid(name) {
            idle_rss.insert(
                name.into(),
                json!(rss_kib(pid).unwrap_or(0) as f64 / 1024.0),
            );
        }
    }

    let run = |label: &str, url: String, c: u32, q: Option<u32>| -> anyhow::Result<Load> {
        println!(
            "hey {label}: {url} for {secs} s, {c} connections{}",
            q.map(|q| format!(", {} req/s", q * c)).unwrap_or_default()
        );
        // Let the previous run's exporters drain their queues first: their CPU is not this run's.
        std::thread::sleep(Duration::from_secs(3));
        hey(&url, secs, c, q)
    };
    // Warm up every path once.
    for url in [
        format!("http://127.0.0.1:{BARE}/"),
        format!("http://127.0.0.1:{HEART}/beat"),
        format!("http://127.0.0.1:{GATEWAY}/user/123"),
    ] {
        let _ = hey(&url, 1, 10, None);
    }
    // The machine's speed drifts between runs: measure the throughput loads in interleaved
    // rounds (bare, then each heart variant) and average, so each ratio compares neighbours.
    let throughput = [
        ("bare", format!("http://127.0.0.1:{BARE}/")),
        ("heart", format!("http://127.0.0.1:{HEART}/beat")),
        (
            "heart (10% sampled)",
            format!("http://127.0.0.1:{HEART_SAMPLED}/beat"),
        ),
        (
            "heart (no collector)",
            format!("http://127.0.0.1:{HEART_NO_COLLECTOR}/beat"),
        ),
    ];
    let mut measured: Vec<Vec<Load>> = Vec::new();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut loads = Vec::new();
        for (label, url) in &throughput {
            loads.push(run(label, url.clone(), 50, None)?);
        }
        measured.push(loads);
    }
    let mean = |i: usize| average(measured.iter().map(|r| r[i].clone()).collect());
    // Each round's ratio compares neighbours in time; the median of the rounds is reported
    // (one round disturbed by the machine does not move it), with every round in the JSON.
    let round_ratios = |i: usize| -> Vec<f64> {
        measured
            .iter()
            .map(|r| r[i].rps / r[0].rps.max(1.0))
            .collect()
    };
    let ratio = |i: usize| median(round_ratios(i));
    let (bare, heart, heart_sampled, heart_quiet) = (mean(0), mean(1), mean(2), mean(3));
    let ratios = [1.0, ratio(1), ratio(2), ratio(3)];
    let brain = run("brain", format!("http://127.0.0.1:{BRAIN}/think"), 10, None)?;
    let gateway = run(
        "gateway",
        format!("http://127.0.0.1:{GATEWAY}/user/123"),
        10,
        Some(50),
    )?;
    let received = sink.span_count();
    launcher.stop_all().await;
    let _ = std::fs::remove_dir_all(&state);

    let row = |name: &str, l: &Load, ratio: Option<f64>| {
        json!({
            "name": name, "rps": l.rps, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms,
            "errors": l.errors, "requests": l.total,
            "ratio_to_bare": ratio.unwrap_or(if bare.rps > 0.0 { l.rps / bare.rps } else { 0.0 }),
        })
    };
    let spread = |i: usize| {
        let r = round_ratios(i);
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi, r)
    };
    let loads = vec![
        row("bare axum hello-world", &bare, Some(ratios[0])),
        row(
            "heart /beat (every trace exported over OTLP)",
            &heart,
            Some(ratios[1]),
        ),
        row(
            "heart /beat (10% of traces exported)",
            &heart_sampled,
            Some(ratios[2]),
        ),
        row(
            "heart /beat (spans made, no collector)",
            &heart_quiet,
            Some(ratios[3]),
        ),
        row("brain /think", &brain, None),
        row("api-gateway /user/123 @500 req/s", &gateway, None),
    ];
    println!(
        "\n{:<44} {:>10} {:>9} {:>9} {:>8} {:>7}",
        "load", "req/s", "p50 ms", "p99 ms", "vs bare", "errors"
    );
    for l in &loads {
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2} {:>8.2} {:>7}",
            l["name"].as_str().unwrap_or_default(),
            l["rps"].as_f64().unwrap_or_default(),
            l["p50_ms"].as_f64().unwrap_or_default(),
            l["p99_ms"].as_f64().unwrap_or_default(),
            l["ratio_to_bare"].as_f64().unwrap_or_default(),
            l["errors"],
        );
    }
    println!(
        "\n{:<16} {:>14} {:>14}",
        "service", "start→ready ms", "idle RSS MiB"
    );
    for (name, ms) in &startup {
        let rss = idle_rss
            .get(name)
            .and_then(Value::as_f64)
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<18} {:>14.1} {:>14}",
            name,
            ms.as_f64().unwrap_or_default(),
            rss
        );
    }
    println!("\nspans received by the local OTLP sink during the run: {received}");
    let (lo, hi, heart_rounds) = spread(1);
    println!(
        "heart vs bare in each of {} rounds: {}",
        heart_rounds.len(),
        heart_rounds
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "targets: heart ≥ 0.85 of bare → {:.2} (median of rounds, {lo:.2}–{hi:.2}); \
         gateway p99 < 5 ms at 500 req/s → {:.2} ms",
        ratios[1], gateway.p99_ms
    );
    Ok(json!({
        "seconds_per_load": secs,
        "rounds": rounds,
        "ratio_to_bare_per_round": {
            "heart": spread(1).2,
            "heart_sampled": spread(2).2,
            "heart_no_collector": spread(3).2,
        },
        "loads": loads,
        "start_to_ready_ms": startup,
        "idle_rss_mib": idle_rss,
        "otlp_spans_received": received,
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
    }))
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("organism-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![0.9, 0.7, 0.8]), 0.8);
        assert!((median(vec![0.9, 0.7, 0.8, 1.0]) - 0.85).abs() < 1e-12);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn hey_output_is_parsed() {
        let out = "Summary:\n  Total:\t10.0020 secs\n  Requests/sec:\t12345.6789\n\n\
            Latency distribution:\n  10% in 0.0010 secs\n  50% in 0.0021 secs\n  99% in 0.0150 secs\n\n\
            Status code distribution:\n  [200]\t1000 responses\n  [503]\t5 responses\n";
        let l = parse_hey(out);
        assert!((l.rps - 12345.6789).abs() < 1e-6);
        assert!((l.p50_ms - 2.1).abs() < 1e-9);
        assert!((l.p99_ms - 15.0).abs() < 1e-9);
        assert_eq!(l.total, 1005);
        assert_eq!(l.errors, 5);
    }
}
