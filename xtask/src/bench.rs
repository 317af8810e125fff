//! `cargo xtask bench`: release builds of the organs, of a bare axum hello-world and of a
//! hello-world instrumented by the book (`book-hello`: tower-http `TraceLayer`,
//! `tracing-opentelemetry`, `opentelemetry-otlp` batch export, a Prometheus histogram per route),
//! run side by side on this machine and loaded with `wrk` (one thread: on two cores it leaves the
//! other core to the server and is not the bottleneck, unlike `hey`).
//!
//! For each load it prints req/s, p50, p99 and the server's CPU per request: the process's
//! utime+stime (`/proc/PID/stat`, export threads included) over the requests served, which does
//! not depend on the load generator. heart `/beat?work=0` runs as shipped: every request traced
//! (`always_on`), logged (one line per request, JSON on stdout and over OTLP logs) and exported
//! over OTLP/gRPC to an in-process receiver (`otlp-sink`, counting; its CPU is the bench
//! process's, as a collector's is its own). The throughput loads run in interleaved rounds; the
//! ratios are medians of the per-round ratios, with their spread.
//!
//! Services write their stdout to /dev/null here (the write is still made and counted).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::cargo::{self, Profile};
use crate::launcher;

/// Ports of the benchmark run (away from `cargo xtask up`'s).
const BARE: u16 = 18099;
const BOOK: u16 = 18098;
const GATEWAY: u16 = 18080;
const HEART: u16 = 18081;
const BRAIN: u16 = 18082;
const USERS: u16 = 18083;
const HEART_SAMPLED: u16 = 18084;
const HEART_NO_COLLECTOR: u16 = 18085;
/// Interleaved rounds of the throughput loads (`--rounds`).
const ROUNDS: usize = 5;
/// Connections of the throughput loads (one wrk thread).
const CONNECTIONS: u32 = 32;
/// The targets of heart's CPU per request: at most this many times bare's, and the by-the-book
/// peer's.
const TARGET_VS_BARE: f64 = 2.0;
const TARGET_VS_BOOK: f64 = 0.6;

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

/// The smallest and largest of `values`.
fn spread(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// One load's result.
#[derive(Debug, Clone, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    total: u64,
    /// Server CPU (user + system) per request served, in microseconds.
    cpu_us: f64,
}

fn average(loads: &[Load]) -> Load {
    let n = loads.len().max(1) as f64;
    Load {
        rps: loads.iter().map(|l| l.rps).sum::<f64>() / n,
        p50_ms: loads.iter().map(|l| l.p50_ms).sum::<f64>() / n,
        p99_ms: loads.iter().map(|l| l.p99_ms).sum::<f64>() / n,
        errors: loads.iter().map(|l| l.errors).sum(),
        total: loads.iter().map(|l| l.total).sum(),
        cpu_us: median(loads.iter().map(|l| l.cpu_us).collect()),
    }
}

/// A wrk duration (`290.00us`, `1.02ms`, `1.50s`, `2.00m`) in milliseconds.
fn wrk_ms(v: &str) -> f64 {
    let v = v.trim();
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (v, f64::NAN)
    };
    num.trim().parse::<f64>().map_or(f64::NAN, |x| x * factor)
}

/// Parses `wrk --latency` output.
fn parse_wrk(out: &str) -> Load {
    let mut load = Load::default();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            load.p50_ms = wrk_ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            load.p99_ms = wrk_ms(v);
        } else if let Some((n, _)) = l.split_once(" requests in ") {
            load.total = n.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            load.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            load.errors += v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    load
}

fn wrk(url: &str, secs: u64, connections: u32) -> anyhow::Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk (apt-get install wrk; ci/install-test-deps.sh installs it)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_wrk(&String::from_utf8_lossy(&out.stdout)))
}

/// One `hey` result (rate-limited loads, where hey's ceiling is not reached).
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

fn hey_at_rate(
    url: &str,
    secs: u64,
    concurrency: u32,
    qps_per_worker: u32,
) -> anyhow::Result<Load> {
    let out = Command::new("hey")
        .args([
            "-z",
            &format!("{secs}s"),
            "-c",
            &concurrency.to_string(),
            "-q",
            &qps_per_worker.to_string(),
            url,
        ])
        .output()
        .context("running hey (apt-get install hey; ci/install-test-deps.sh installs it)")?;
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

/// utime + stime of a process (all its threads), in clock ticks, from the text of
/// `/proc/PID/stat`.
fn cpu_ticks_of(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    cpu_ticks_of(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn release(name: &str) -> PathBuf {
    cargo::binary(Profile::Release, name)
}

/// A server process of the bench; killed when dropped.
struct Server {
    name: &'static str,
    _child: tokio::process::Child,
    pid: u32,
}

async fn spawn(
    name: &'static str,
    program: &str,
    port: u16,
    env: Vec<(String, String)>,
) -> anyhow::Result<(Server, f64)> {
    let started = Instant::now();
    let child = tokio::process::Command::new(release(program))
        .envs(env)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name} ({})", release(program).display()))?;
    let pid = child.id().context("no pid")?;
    launcher::wait_http_ok(port, "/readyz", Duration::from_secs(20)).await?;
    Ok((
        Server {
            name,
            _child: child,
            pid,
        },
        started.elapsed().as_secs_f64() * 1000.0,
    ))
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
        .unwrap_or_else(|| cargo::target_dir().join("bench/results.json"));

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
    let baselines = ["-p", "bench-baselines"];
    for targets in [&services[..], &baselines[..]] {
        cargo::build_targets(Profile::Release, targets)?;
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

type Env = Vec<(String, String)>;

/// The servers of the bench: (name, binary, port, environment).
fn server_specs(
    endpoint: &str,
    state: &std::path::Path,
) -> Vec<(&'static str, &'static str, u16, Env)> {
    let otlp = |name: &str| -> Env {
        vec![
            ("OTEL_SERVICE_NAME".into(), name.into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.to_owned()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
            ("OTEL_TRACES_SAMPLER".into(), "always_on".into()),
        ]
    };
    vec![
        ("bare", "bare-hello", BARE, vec![]),
        ("book", "book-hello", BOOK, {
            let mut e = otlp("book-hello");
            e.truncate(3);
            e
        }),
        ("heart", "heart", HEART, otlp("heart")),
        ("heart-sampled", "heart", HEART_SAMPLED, {
            let mut e = otlp("heart");
            e.pop();
            e.push(("OTEL_TRACES_SAMPLER".into(), "traceidratio".into()));
            e.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.1".into()));
            e
        }),
        (
            "heart-no-collector",
            "heart",
            HEART_NO_COLLECTOR,
            vec![("OTEL_SERVICE_NAME".into(), "heart".into())],
        ),
        ("brain", "brain", BRAIN, {
            let mut e = otlp("brain");
            e.push(("HEART_URL".into(), format!("http://127.0.0.1:{HEART}")));
            e
        }),
        ("user-service", "user-service", USERS, {
            let mut e = otlp("user-service");
            e.push((
                "DATABASE_URL".into(),
                format!("sqlite://{}/users.db", state.display()),
            ));
            e
        }),
        ("api-gateway", "api-gateway", GATEWAY, {
            let mut e = otlp("api-gateway");
            e.push((
                "USER_SERVICE_URL".into(),
                format!("http://127.0.0.1:{USERS}"),
            ));
            e.push(("HEART_URL".into(), format!("http://127.0.0.1:{HEART}")));
            e.push(("BRAIN_URL".into(), format!("http://127.0.0.1:{BRAIN}")));
            e
        }),
    ]
}

/// The running servers, with how long each took to become ready and its idle memory.
struct Fleet {
    servers: Vec<Server>,
    /// Start → ready, ms, by server name.
    startup: serde_json::Map<String, Value>,
    /// Resident memory 1 s after every server is ready, MiB, by server name.
    idle_rss: serde_json::Map<String, Value>,
}

impl Fleet {
    async fn start(endpoint: &str, state: &std::path::Path) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        let mut startup = serde_json::Map::new();
        for (name, program, port, env) in server_specs(endpoint, state) {
            let (server, ms) = spawn(name, program, port, env).await?;
            startup.insert(name.into(), json!(ms));
            servers.push(server);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut idle_rss = serde_json::Map::new();
        for s in &servers {
            idle_rss.insert(
                s.name.into(),
                json!(rss_kib(s.pid).unwrap_or(0) as f64 / 1024.0),
            );
        }
        Ok(Self {
            servers,
            startup,
            idle_rss,
        })
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.servers.iter().find(|s| s.name == name).map(|s| s.pid)
    }
}

/// Runs loads against the fleet and reads the server's CPU around each.
struct Meter<'a> {
    fleet: &'a Fleet,
    secs: u64,
    /// Clock ticks per second (`getconf CLK_TCK`).
    tick: f64,
}

impl Meter<'_> {
    /// One load: wrk against `url`, the server's CPU read around it. The reading after waits for
    /// the batch processors' next export (500 ms schedule), so the export of this load's spans
    /// is counted in it.
    fn load(&self, label: &str, url: &str, server: &str, c: u32) -> anyhow::Result<Load> {
        let secs = self.secs;
        println!("wrk {label}: {url} for {secs} s, {c} connections");
        let pid = self
            .fleet
            .pid(server)
            .with_context(|| format!("no server {server}"))?;
        // Let the previous run's exporters drain their queues first: their CPU is not this run's.
        std::thread::sleep(Duration::from_secs(2));
        let before = cpu_ticks(pid)?;
        let mut l = wrk(url, secs, c)?;
        std::thread::sleep(Duration::from_millis(1500));
        let after = cpu_ticks(pid)?;
        l.cpu_us = (after - before) as f64 / self.tick * 1e6 / (l.total.max(1) as f64);
        Ok(l)
    }
}

/// Warms up every path once.
fn warm_up() {
    for url in [
        format!("http://127.0.0.1:{BARE}/"),
        format!("http://127.0.0.1:{BOOK}/"),
        format!("http://127.0.0.1:{HEART}/beat?work=0"),
        format!("http://127.0.0.1:{GATEWAY}/user/123"),
    ] {
        let _ = wrk(&url, 1, 8);
    }
}

/// The throughput loads, in the order of a round: (label, port, server, path). The first two
/// are the baselines the ratios divide by; the third is the target's subject.
const THROUGHPUT: [(&str, u16, &str, &str); 5] = [
    ("bare axum hello-world", BARE, "bare", "/"),
    ("by-the-book axum hello-world", BOOK, "book", "/"),
    (
        "heart /beat?work=0: every request traced, logged, exported (gRPC)",
        HEART,
        "heart",
        "/beat?work=0",
    ),
    (
        "heart /beat?work=0: 10% of traces sampled, every request logged",
        HEART_SAMPLED,
        "heart-sampled",
        "/beat?work=0",
    ),
    (
        "heart /beat?work=0: no collector (spans made, log lines on stdout)",
        HEART_NO_COLLECTOR,
        "heart-no-collector",
        "/beat?work=0",
    ),
];
/// Indexes into [`THROUGHPUT`].
const BARE_LOAD: usize = 0;
const BOOK_LOAD: usize = 1;
const HEART_LOAD: usize = 2;

/// The throughput loads of every round: `rounds[round][load]`, loads as in [`THROUGHPUT`].
struct Rounds(Vec<Vec<Load>>);

impl Rounds {
    /// The machine's speed drifts: measure in interleaved rounds (bare, book, then each heart
    /// variant), so each ratio compares neighbours in time.
    fn measure(meter: &Meter<'_>, rounds: usize) -> anyhow::Result<Self> {
        let mut measured: Vec<Vec<Load>> = Vec::new();
        for round in 1..=rounds {
            println!("round {round} of {rounds}");
            let mut loads = Vec::new();
            for (label, port, server, path) in &THROUGHPUT {
                loads.push(meter.load(
                    label,
                    &format!("http://127.0.0.1:{port}{path}"),
                    server,
                    CONNECTIONS,
                )?);
            }
            let r = &loads;
            println!(
                "  CPU/request µs: bare {:.1}, book {:.1}, heart {:.1} → heart/bare {:.2}, heart/book {:.2}",
                r[BARE_LOAD].cpu_us,
                r[BOOK_LOAD].cpu_us,
                r[HEART_LOAD].cpu_us,
                r[HEART_LOAD].cpu_us / r[BARE_LOAD].cpu_us,
                r[HEART_LOAD].cpu_us / r[BOOK_LOAD].cpu_us
            );
            measured.push(loads);
        }
        Ok(Self(measured))
    }

    /// CPU per request of load `i` over that of load `base`, per round.
    fn cpu_ratio(&self, i: usize, base: usize) -> Vec<f64> {
        self.0
            .iter()
            .map(|r| r[i].cpu_us / r[base].cpu_us.max(f64::MIN_POSITIVE))
            .collect()
    }

    /// Requests per second of load `i` over bare's, per round.
    fn rps_vs_bare(&self, i: usize) -> Vec<f64> {
        self.0
            .iter()
            .map(|r| r[i].rps / r[BARE_LOAD].rps.max(1.0))
            .collect()
    }

    /// One report row per throughput load: means over the rounds, medians of the ratios.
    fn rows(&self) -> Vec<Value> {
        let mut rows = Vec::new();
        for (i, (label, ..)) in THROUGHPUT.iter().enumerate() {
            let mean = average(&self.0.iter().map(|r| r[i].clone()).collect::<Vec<_>>());
            let vs_bare = self.cpu_ratio(i, BARE_LOAD);
            let vs_book = self.cpu_ratio(i, BOOK_LOAD);
            let rps_vs_bare = self.rps_vs_bare(i);
            rows.push(json!({
                "name": label, "rps": mean.rps, "p50_ms": mean.p50_ms, "p99_ms": mean.p99_ms,
                "errors": mean.errors, "requests": mean.total, "cpu_us_per_request": mean.cpu_us,
                "cpu_vs_bare": median(vs_bare.clone()), "cpu_vs_bare_per_round": vs_bare,
                "cpu_vs_book": median(vs_book.clone()), "cpu_vs_book_per_round": vs_book,
                "rps_vs_bare": median(rps_vs_bare.clone()), "rps_vs_bare_per_round": rps_vs_bare,
            }));
        }
        rows
    }
}

/// A report row of a single load.
fn single_row(label: &str, l: &Load) -> Value {
    json!({
        "name": label, "rps": l.rps, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms,
        "errors": l.errors, "requests": l.total,
        "cpu_us_per_request": if l.cpu_us > 0.0 { json!(l.cpu_us) } else { Value::Null },
    })
}

/// The loads table.
fn print_loads(rows: &[Value]) {
    println!(
        "\n{:<68} {:>9} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6}",
        "load", "req/s", "p50 ms", "p99 ms", "CPU µs/r", "vs bare", "vs book", "errors"
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "{:<68} {:>9.0} {:>7.2} {:>7.2} {:>8} {:>7} {:>7} {:>6}",
            r["name"].as_str().unwrap_or_default(),
            r["rps"].as_f64().unwrap_or_default(),
            r["p50_ms"].as_f64().unwrap_or_default(),
            r["p99_ms"].as_f64().unwrap_or_default(),
            f("cpu_us_per_request"),
            f("cpu_vs_bare"),
            f("cpu_vs_book"),
            r["errors"],
        );
    }
}

/// Start → ready and idle memory of each server.
fn print_startup(
    startup: &serde_json::Map<String, Value>,
    idle_rss: &serde_json::Map<String, Value>,
) {
    println!(
        "\n{:<20} {:>14} {:>14}",
        "server", "start→ready ms", "idle RSS MiB"
    );
    for (name, ms) in startup {
        let rss = idle_rss
            .get(name)
            .and_then(Value::as_f64)
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:>14.1} {:>14}",
            name,
            ms.as_f64().unwrap_or_default(),
            rss
        );
    }
}

/// Heart's CPU per request against the targets: the per-round ratios and their medians.
struct Targets {
    vs_bare: Vec<f64>,
    vs_book: Vec<f64>,
    m_bare: f64,
    m_book: f64,
}

impl Targets {
    fn of(rounds: &Rounds) -> Self {
        let vs_bare = rounds.cpu_ratio(HEART_LOAD, BARE_LOAD);
        let vs_book = rounds.cpu_ratio(HEART_LOAD, BOOK_LOAD);
        let (m_bare, m_book) = (median(vs_bare.clone()), median(vs_book.clone()));
        Self {
            vs_bare,
            vs_book,
            m_bare,
            m_book,
        }
    }

    fn print(&self, rounds: usize, gateway: &Load) {
        let (bare_lo, bare_hi) = spread(&self.vs_bare);
        let (book_lo, book_hi) = spread(&self.vs_book);
        let (m_bare, m_book) = (self.m_bare, self.m_book);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "targets (heart /beat?work=0, every request traced, logged and exported over gRPC; CPU per \
             request, median of {rounds} rounds):\n  ≤ {TARGET_VS_BARE:.1}× bare: {m_bare:.2}× \
             (rounds {bare_lo:.2}–{bare_hi:.2}) {}\n  ≤ {TARGET_VS_BOOK:.1}× by-the-book: {m_book:.2}× \
             (rounds {book_lo:.2}–{book_hi:.2}) {}\n  gateway p99 at 500 req/s: {:.2} ms",
            verdict(m_bare <= TARGET_VS_BARE),
            verdict(m_book <= TARGET_VS_BOOK),
            gateway.p99_ms
        );
    }
}

/// Starts every server, runs the loads, prints the tables and returns the report.
async fn measure(secs: u64, rounds: usize) -> anyhow::Result<Value> {
    let sink = otlp_sink::OtlpSink::start_counting().await?;
    let state = tempdir()?;
    let fleet = Fleet::start(&sink.endpoint(), &state).await?;
    let meter = Meter {
        fleet: &fleet,
        secs,
        tick: clock_ticks_per_sec(),
    };
    warm_up();
    let measured = Rounds::measure(&meter, rounds)?;
    let brain = meter.load(
        "brain /think",
        &format!("http://127.0.0.1:{BRAIN}/think"),
        "brain",
        10,
    )?;
    println!("hey gateway: /user/123 at 500 req/s for {secs} s");
    std::thread::sleep(Duration::from_secs(2));
    let gateway = hey_at_rate(
        &format!("http://127.0.0.1:{GATEWAY}/user/123"),
        secs,
        10,
        50,
    )?;
    let received = sink.span_count();
    let received_logs = sink.log_count();
    let Fleet {
        servers,
        startup,
        idle_rss,
    } = fleet;
    drop(servers);
    let _ = std::fs::remove_dir_all(&state);

    let mut rows = measured.rows();
    rows.push(single_row("brain /think (calls heart)", &brain));
    rows.push(single_row(
        "api-gateway /user/123 @500 req/s (hey)",
        &gateway,
    ));
    print_loads(&rows);
    print_startup(&startup, &idle_rss);
    println!(
        "\nreceived by the local OTLP sink during the run: {received} spans, {received_logs} log records"
    );
    let targets = Targets::of(&measured);
    targets.print(rounds, &gateway);
    Ok(json!({
        "seconds_per_load": secs,
        "rounds": rounds,
        "load_generator": format!("wrk -t1 -c{CONNECTIONS} --latency"),
        "targets": {
            "heart_cpu_vs_bare": { "target": TARGET_VS_BARE, "median": targets.m_bare, "per_round": targets.vs_bare },
            "heart_cpu_vs_book": { "target": TARGET_VS_BOOK, "median": targets.m_book, "per_round": targets.vs_book },
        },
        "loads": rows,
        "start_to_ready_ms": startup,
        "idle_rss_mib": idle_rss,
        "otlp_spans_received": received,
        "otlp_logs_received": received_logs,
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
    fn wrk_output_is_parsed() {
        let out = "Running 10s test @ http://127.0.0.1:18099/\n  1 threads and 32 connections\n\
            \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
            \x20   Latency   315.10us  100.00us   5.00ms   90.00%\n\
            \x20 Latency Distribution\n     50%  290.00us\n     75%  350.00us\n\
            \x20    90%  420.00us\n     99%    1.02ms\n\
            \x20 987654 requests in 10.00s, 120.00MB read\n\
            \x20 Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 5\nRequests/sec:  98765.43\nTransfer/sec:     12.00MB\n";
        let l = parse_wrk(out);
        assert!((l.rps - 98765.43).abs() < 1e-6);
        assert!((l.p50_ms - 0.29).abs() < 1e-9);
        assert!((l.p99_ms - 1.02).abs() < 1e-9);
        assert_eq!(l.total, 987_654);
        assert_eq!(l.errors, 8);
        assert!((wrk_ms("1.50s") - 1500.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        // A command name with a space and a parenthesis, as /proc allows.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 269 0 0 20 0 \
            3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(cpu_ticks_of(stat), Some(1000));
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
