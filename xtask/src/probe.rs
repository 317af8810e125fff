//! `cargo xtask probe`: the attack and load cases of issue 17, against a real local system.
//!
//! Starts everything as `cargo xtask up` does (fresh tokens, Prometheus and Alertmanager when
//! installed), alert-service delivering to a local HTTP sink (so that the probe holds a real,
//! signed acknowledge link), then checks that nobody without a credential can steer the
//! organism and that load alone cannot make it hurt itself:
//!
//! | case | expectation |
//! |---|---|
//! | forged webhooks | auto-healer and alert-service refuse no token, a wrong token, `text/plain`, a foreign `Origin`; nothing restarts |
//! | forged acks | unsigned 401, tampered or another alert's link 403, cross-site 403, form without `Origin` 403; the real link works once, its replay 409 |
//! | closed by default | `/chaos` and `PUT /admin/log-filter` without a token 401; an empty filter 400 |
//! | launcher | no token 401, a foreign `Host` 403, a cross-site form post 403/415; nothing restarts |
//! | malformed HTTP | every service answers a malformed request line or header 400, and 200 headers 431, with a JSON error body (hyper's own answers, reshaped) |
//! | slowloris | 50 connections sending a header byte a second are closed by the header-read timeout while `/user/123` serves |
//! | oversize | `Content-Length: 100000000000` answered 413 JSON at once; a 64 KB `x-request-id` is not echoed |
//! | load-restart | `hey -z 15s -c 200 'http://127.0.0.1:8080/think?ms=1000'`: no finding, no restart, no healer action, `/user/123` within its SLO |
//!
//! The `/user/123` SLO under that load: at least 99% answered 200 and the 95th percentile at
//! most 1 s (a saturated 2-core machine keeps it; the gateway's upstream timeout is 2 s).
//!
//! Figures go to `target/probe/results.json`. `--skip-load` leaves out the load case.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::launcher::wait_http_ok;
use crate::root;
use crate::up::{self, Options, System, tokens};

const GATEWAY: u16 = topology::API_GATEWAY.port;
const HEART: u16 = topology::HEART.port;
const USERS: u16 = topology::USER_SERVICE.port;
const HEALTH: u16 = topology::HEALTH_MONITOR.port;
const HEALER: u16 = topology::AUTO_HEALER.port;
const ALERTS: u16 = topology::ALERT_SERVICE.port;
const LAUNCHER: u16 = topology::LAUNCHER.port;

/// The load of the load-restart case, as documented in issue 17.
const LOAD_SECS: u64 = 15;
const LOAD_CONCURRENCY: usize = 200;

/// One case: what was checked, whether it held, and what was measured.
struct Case {
    name: &'static str,
    failures: Vec<String>,
    figures: serde_json::Map<String, Value>,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            failures: Vec::new(),
            figures: serde_json::Map::new(),
        }
    }

    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    fn figure(&mut self, key: &str, value: Value) {
        self.figures.insert(key.to_owned(), value);
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

struct Probe {
    http: reqwest::Client,
    sink: testbed::HttpSink,
}

impl Probe {
    /// Status and JSON body (Null when not JSON) of a request.
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Restart counts of every process under the launcher.
    async fn restarts(&self) -> Value {
        let (_, body) = self
            .send(
                self.http
                    .get(url(LAUNCHER, "/services"))
                    .bearer_auth(&tokens().launcher),
            )
            .await;
        let mut out = serde_json::Map::new();
        for s in body["services"].as_array().into_iter().flatten() {
            out.insert(
                s["name"].as_str().unwrap_or("?").to_owned(),
                json!({"restarts": s["restarts"], "state": s["state"]}),
            );
        }
        Value::Object(out)
    }

    async fn healer_actions(&self) -> usize {
        let (_, body) = self
            .send(self.http.get(url(HEALER, "/api/v1/actions")))
            .await;
        body["actions"].as_array().map_or(0, Vec::len)
    }

    async fn findings(&self) -> Vec<Value> {
        let (_, body) = self
            .send(self.http.get(url(HEALTH, "/api/v1/findings")))
            .await;
        body["findings"].as_array().cloned().unwrap_or_default()
    }
}

/// A webhook message Alertmanager could have sent, asking to restart brain.
fn forged_alert(alertname: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "auto-healer",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "remediation": "restart-pod", "service": "brain", "severity": "critical"},
            "annotations": {"summary": "forged"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "0123456789abcdef"
        }]
    })
}

async fn forged_webhooks(p: &Probe) -> Case {
    let mut c = Case::new("forged-webhook");
    let before = p.restarts().await;
    let actions_before = p.healer_actions().await;
    let body = forged_alert("Forged").to_string();
    for (port, token, var) in [
        (HEALER, tokens().auto_healer.as_str(), "auto-healer"),
        (ALERTS, tokens().alert_service.as_str(), "alert-service"),
    ] {
        let post = || {
            p.http
                .post(url(port, "/webhook/alertmanager"))
                .body(body.clone())
        };
        let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
            (
                "no token",
                post().header("content-type", "application/json"),
                401,
            ),
            (
                "wrong token",
                post()
                    .header("content-type", "application/json")
                    .bearer_auth("guessed"),
                401,
            ),
            (
                "text/plain body",
                post()
                    .header("content-type", "text/plain")
                    .bearer_auth(token),
                415,
            ),
            (
                "foreign Origin",
                post()
                    .header("content-type", "application/json")
                    .header("origin", "http://evil.example")
                    .bearer_auth(token),
                403,
            ),
            (
                "cross-site text/plain without a token",
                post()
                    .header("content-type", "text/plain")
                    .header("origin", "http://evil.example"),
                401,
            ),
        ];
        for (what, req, want) in cases {
            let (status, body) = p.send(req).await;
            c.expect(
                status == want && body["error"]["code"].is_string(),
                format!("{var} webhook, {what}: {status} {body} (want {want} JSON)"),
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = p.restarts().await;
    c.expect(
        before == after,
        format!("something restarted: {before} -> {after}"),
    );
    let actions_after = p.healer_actions().await;
    c.expect(
        actions_before == actions_after,
        format!("the healer acted: {actions_before} -> {actions_after} actions"),
    );
    c
}

async fn forged_acks(p: &Probe) -> Case {
    let mut c = Case::new("forged-ack");
    // A real alert, through the real webhook with its token; its notification carries the link.
    let real = forged_alert("ProbeAckTarget");
    let Some(link) = real_ack_link(p, &mut c, &real).await else {
        c.expect(false, "no notification with an ack link reached the sink");
        return c;
    };
    let Some((base, query)) = link.split_once('?') else {
        c.expect(false, format!("the ack link is not signed: {link}"));
        return c;
    };
    let fp = base
        .trim_end_matches("/ack")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    c.expect(
        fp != "0123456789abcdef",
        "the payload's fingerprint was trusted",
    );
    for (what, req, want) in forgeries(p, &link, base, query) {
        let (status, body) = p.send(req).await;
        c.expect(
            status == want && body["error"]["code"].is_string(),
            format!("ack {what}: {status} {body} (want {want} JSON)"),
        );
    }
    check_real_link_works_once(p, &mut c, &link, &real).await;
    c
}

/// Sends `real` through alert-service's webhook with its token; returns the ack link its
/// notification carries to the sink (waiting up to 20 s).
async fn real_ack_link(p: &Probe, c: &mut Case, real: &Value) -> Option<String> {
    let (status, body) = p
        .send(
            p.http
                .post(url(ALERTS, "/webhook/alertmanager"))
                .bearer_auth(&tokens().alert_service)
                .json(real),
        )
        .await;
    c.expect(status == 202, format!("the real webhook: {status} {body}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut link = None;
    while link.is_none() && Instant::now() < deadline {
        link = p.sink.requests().iter().find_map(|r| {
            r.json()["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "ProbeAckTarget")?["ack_url"]
                .as_str()
                .map(str::to_owned)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    link
}

/// Forged uses of the signed ack link `link` (`base?query`), with the status each must get.
fn forgeries(
    p: &Probe,
    link: &str,
    base: &str,
    query: &str,
) -> Vec<(&'static str, reqwest::RequestBuilder, u16)> {
    let tampered_sig = link.replace("&sig=", "&sig=0");
    let later_exp = {
        let exp: i64 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("exp="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        link.replace(
            &format!("exp={exp}"),
            &format!("exp={}", exp + 86_400 * 365),
        )
    };
    let other_alert = format!(
        "{}/api/v1/alerts/00000000000000ff/ack?{query}",
        url(ALERTS, "")
    );
    let ack = json!({"by": "mallory", "comment": "forged", "duration_minutes": 10080});
    vec![
        ("unsigned", p.http.post(base).json(&ack), 401),
        (
            "tampered signature",
            p.http.post(&tampered_sig).json(&ack),
            403,
        ),
        ("extended expiry", p.http.post(&later_exp).json(&ack), 403),
        (
            "another alert's link",
            p.http.post(&other_alert).json(&ack),
            403,
        ),
        (
            "cross-site",
            p.http
                .post(link)
                .header("origin", "http://evil.example")
                .json(&ack),
            403,
        ),
        (
            "form body without Origin",
            p.http
                .post(link)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("by=mallory&duration_minutes=10080"),
            403,
        ),
        (
            "longer silence than allowed",
            p.http.post(link).json(&ack),
            422,
        ),
    ]
}

/// The real link silences the alert's full label set once; its replay is refused.
async fn check_real_link_works_once(p: &Probe, c: &mut Case, link: &str, real: &Value) {
    let (status, body) = p
        .send(
            p.http
                .post(link)
                .json(&json!({"by": "probe", "duration_minutes": 5})),
        )
        .await;
    c.expect(status == 201, format!("the real link: {status} {body}"));
    if let Some(matchers) = body["labels"].as_object() {
        c.figure("silence_matchers", json!(matchers.len()));
        c.expect(
            matchers.len()
                == real["alerts"][0]["labels"]
                    .as_object()
                    .map_or(0, |m| m.len()),
            format!("the silence does not match the alert's full label set: {body}"),
        );
    }
    let (status, body) = p
        .send(p.http.post(link).json(&json!({"by": "replay"})))
        .await;
    c.expect(
        status == 409,
        format!("the replayed link: {status} {body} (want 409)"),
    );
}

async fn closed_by_default(p: &Probe) -> Case {
    let mut c = Case::new("closed-by-default");
    for port in [GATEWAY, HEART] {
        let (status, body) = p
            .send(
                p.http
                    .post(url(port, "/chaos"))
                    .json(&json!({"crash_after_s": 1})),
            )
            .await;
        c.expect(
            status == 401,
            format!(":{port} POST /chaos without a token: {status} {body}"),
        );
        let (status, body) = p
            .send(p.http.put(url(port, "/admin/log-filter")).body(""))
            .await;
        c.expect(
            status == 401,
            format!(":{port} PUT /admin/log-filter without a token: {status} {body}"),
        );
        let (status, body) = p
            .send(
                p.http
                    .put(url(port, "/admin/log-filter"))
                    .bearer_auth(&tokens().admin)
                    .body(""),
            )
            .await;
        c.expect(
            status == 400 && body["error"]["field"] == "filter",
            format!(":{port} empty log filter: {status} {body}"),
        );
    }
    c
}

async fn launcher_cross_site(p: &Probe) -> Case {
    let mut c = Case::new("launcher-cross-site");
    let before = p.restarts().await;
    let restart = url(LAUNCHER, "/services/brain/restart");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("no token", p.http.post(&restart), 401),
        (
            "cross-site form post",
            p.http
                .post(&restart)
                .header("origin", "http://evil.example")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("x=1"),
            403,
        ),
        (
            "text/plain with the token",
            p.http
                .post(&restart)
                .bearer_auth(&tokens().launcher)
                .header("content-type", "text/plain")
                .body("x"),
            415,
        ),
        (
            "foreign Host (DNS rebinding) with the token",
            p.http
                .post(&restart)
                .bearer_auth(&tokens().launcher)
                .header("host", "evil.example:8090"),
            403,
        ),
        (
            "listing without the token",
            p.http.get(url(LAUNCHER, "/services")),
            401,
        ),
    ];
    for (what, req, want) in cases {
        let (status, body) = p.send(req).await;
        c.expect(
            status == want,
            format!("launcher {what}: {status} {body} (want {want})"),
        );
    }
    let after = p.restarts().await;
    c.expect(
        before == after,
        format!("something restarted: {before} -> {after}"),
    );
    c
}

async fn slowloris(p: &Probe) -> Case {
    let mut c = Case::new("slowloris");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", GATEWAY)).await else {
                return None;
            };
            let opened = Instant::now();
            let line = b"GET /user/123 HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";
            for b in line.iter().chain(std::iter::repeat(&b'a')) {
                if s.write_all(&[*b]).await.is_err() {
                    return Some(opened.elapsed());
                }
                if opened.elapsed() > Duration::from_secs(40) {
                    return None;
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
                    Ok(Ok(_)) => return Some(opened.elapsed()),
                    Err(_) => {}
                }
            }
            None
        }));
    }
    // Meanwhile the front door serves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let (status, _) = p.send(p.http.get(url(GATEWAY, "/user/123"))).await;
    c.figure("user_123_during_ms", json!(t.elapsed().as_millis()));
    c.expect(
        status == 200,
        format!("/user/123 during slowloris: {status}"),
    );
    let mut closed = Vec::new();
    for t in tasks {
        if let Ok(Some(d)) = t.await {
            closed.push(d.as_secs_f64());
        }
    }
    c.figure("closed", json!(closed.len()));
    let longest = closed.iter().copied().fold(0.0, f64::max);
    c.figure("longest_held_s", json!(longest));
    c.expect(
        closed.len() == 50,
        format!(
            "{} of 50 slow connections were never closed",
            50 - closed.len()
        ),
    );
    c.expect(
        longest <= 20.0,
        format!("a slow connection was held {longest:.1} s"),
    );
    c.figure("took_s", json!(start.elapsed().as_secs_f64()));
    c
}

async fn oversize(p: &Probe) -> Case {
    let mut c = Case::new("oversize");
    let start = Instant::now();
    let reply = async {
        let mut s = TcpStream::connect(("127.0.0.1", USERS)).await.ok()?;
        s.write_all(
            b"POST /users HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\n\r\n{",
        )
        .await
        .ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    .await
    .unwrap_or_default();
    let took = start.elapsed();
    c.figure("answered_in_ms", json!(took.as_millis()));
    c.expect(
        reply.starts_with("HTTP/1.1 413") && reply.contains("payload_too_large"),
        format!("oversize Content-Length: {:?}", reply.lines().next()),
    );
    c.expect(took < Duration::from_secs(3), format!("413 took {took:?}"));
    let long = "r".repeat(64 * 1024);
    match p
        .http
        .get(url(GATEWAY, "/beat"))
        .header("x-request-id", &long)
        .send()
        .await
    {
        Ok(r) => {
            let echoed = r
                .headers()
                .get("x-request-id")
                .map_or(0, |v| v.as_bytes().len());
            c.figure("request_id_echoed_bytes", json!(echoed));
            c.expect(
                echoed <= 128,
                format!("a 64 KB request id was echoed ({echoed} bytes)"),
            );
        }
        Err(e) => c.expect(false, format!("GET /beat with a long request id: {e}")),
    }
    c
}

/// Sends `request` raw on a fresh connection to `port`; the answer as text ("" when none came).
async fn raw_exchange(port: u16, request: &[u8]) -> String {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Requests hyper refuses before any router sees them (a malformed request line or header, too
/// many headers) still get a JSON error body naming the problem, from every service.
async fn malformed(_: &Probe) -> Case {
    let mut c = Case::new("malformed-http");
    let mut many_headers = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_vec();
    for i in 0..200 {
        many_headers.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"\r\n");
    let requests: [(&str, &[u8], &str, &str); 3] = [
        (
            "request line",
            b"GET /healthz HTTP/1.1 extra\r\nhost: 127.0.0.1\r\n\r\n",
            "400",
            "bad_request",
        ),
        (
            "header",
            b"GET /healthz HTTP/1.1\r\nho st: x\r\n\r\n",
            "400",
            "bad_request",
        ),
        ("200 headers", &many_headers, "431", "headers_too_large"),
    ];
    let mut answered = 0;
    for service in topology::SERVICES {
        for (what, request, status, code) in requests {
            let reply = raw_exchange(service.port, request).await;
            let body = reply
                .split_once("\r\n\r\n")
                .and_then(|(_, b)| serde_json::from_str::<Value>(b).ok());
            let ok = reply.starts_with(&format!("HTTP/1.1 {status}"))
                && body.is_some_and(|b| b["error"]["code"] == code);
            c.expect(
                ok,
                format!(
                    "{} answered a malformed {what} with {:?}",
                    service.name,
                    reply.lines().next().unwrap_or("nothing")
                ),
            );
            answered += usize::from(ok);
        }
    }
    c.figure("json_answers", json!(answered));
    c
}

/// `hey` when installed (as documented), else the same load from here.
async fn drive_load(target: &str) -> anyhow::Result<Value> {
    let have_hey = std::process::Command::new("sh")
        .args(["-c", "command -v hey"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have_hey {
        let out = tokio::process::Command::new("hey")
            .args([
                "-z",
                &format!("{LOAD_SECS}s"),
                "-c",
                &LOAD_CONCURRENCY.to_string(),
                "-t",
                "5",
                target,
            ])
            .output()
            .await
            .context("running hey")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let codes: Vec<String> = text
            .lines()
            .skip_while(|l| !l.contains("Status code distribution"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect();
        let rps = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .map(|v| v.trim().to_owned());
        return Ok(json!({"tool": "hey", "requests_per_s": rps, "status_codes": codes}));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(LOAD_CONCURRENCY)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECS);
    let mut tasks = Vec::new();
    for _ in 0..LOAD_CONCURRENCY {
        let client = client.clone();
        let target = target.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let _ = client.get(&target).send().await.map(|r| r.status());
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    Ok(json!({"tool": "reqwest", "requests": total}))
}

/// `/user/123` and the health-monitor's findings, sampled every 200 ms during a load.
#[derive(Default)]
struct Samples {
    /// Seconds per `/user/123` request, in the order made.
    latencies: Vec<f64>,
    /// How many answered 200.
    ok: usize,
    statuses: std::collections::BTreeMap<u16, usize>,
    /// "finding object" of every finding seen, once each.
    findings: Vec<String>,
}

impl Samples {
    /// Samples for the load's duration and 10 s more.
    async fn during_load(p: &Probe) -> Self {
        let mut samples = Self::default();
        let start = Instant::now();
        let sampler = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| p.http.clone());
        while start.elapsed() < Duration::from_secs(LOAD_SECS + 10) {
            let t = Instant::now();
            let status = sampler
                .get(url(GATEWAY, "/user/123"))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            samples.latencies.push(t.elapsed().as_secs_f64());
            *samples.statuses.entry(status).or_default() += 1;
            if status == 200 {
                samples.ok += 1;
            }
            for f in p.findings().await {
                let key = format!(
                    "{} {}",
                    f["finding"].as_str().unwrap_or("?"),
                    f["object"]["name"].as_str().unwrap_or("?")
                );
                if !samples.findings.contains(&key) {
                    samples.findings.push(key);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        samples
    }

    /// `/user/123` within its SLO (99% answered 200, p95 ≤ 1 s) and no finding.
    fn check(mut self, c: &mut Case) {
        let Self {
            latencies,
            ok,
            statuses,
            findings,
        } = &mut self;
        latencies.sort_by(f64::total_cmp);
        let p95 = latencies
            .get((latencies.len() * 95 / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::MAX);
        let share = *ok as f64 / latencies.len().max(1) as f64;
        c.figure("user_123_samples", json!(latencies.len()));
        c.figure("user_123_ok_share", json!(share));
        c.figure("user_123_p95_s", json!(p95));
        c.figure("user_123_statuses", json!(statuses));
        c.figure("findings", json!(findings));
        c.expect(
            share >= 0.99,
            format!(
                "/user/123 answered 200 for only {:.1}% of samples: {statuses:?}",
                share * 100.0
            ),
        );
        c.expect(p95 <= 1.0, format!("/user/123 p95 {p95:.3} s > 1 s"));
        c.expect(
            findings.is_empty(),
            format!("load produced findings: {findings:?}"),
        );
    }
}

async fn load_restart(p: &Probe) -> Case {
    let mut c = Case::new("load-restart");
    let before = p.restarts().await;
    let actions_before = p.healer_actions().await;
    let target = url(GATEWAY, "/think?ms=1000");
    let load = tokio::spawn(async move { drive_load(&target).await });
    let samples = Samples::during_load(p).await;
    match load.await {
        Ok(Ok(summary)) => c.figure("load", summary),
        Ok(Err(e)) => c.expect(false, format!("the load did not run: {e:#}")),
        Err(e) => c.expect(false, format!("the load task failed: {e}")),
    }
    samples.check(&mut c);
    // Let any alert that load caused reach the healer before looking.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = p.restarts().await;
    c.expect(
        before == after,
        format!("load restarted something: {before} -> {after}"),
    );
    let actions_after = p.healer_actions().await;
    c.figure("healer_actions", json!(actions_after - actions_before));
    c.expect(
        actions_before == actions_after,
        format!("the healer acted under load: {actions_before} -> {actions_after}"),
    );
    c
}

fn alert_service_config(sink: &str, state: &Path) -> String {
    format!(
        "routes:\n  - match: {{}}\n    channels: [hook, log]\n\
         channels:\n  log:\n    kind: log\n    path: {}\n  hook:\n    kind: webhook\n    url: {sink}/hook\n\
         delivery:\n  initial_backoff: 200ms\n  poll_interval: 100ms\n",
        state.join("notifications.log").display()
    )
}

/// Starts the system with alert-service delivering to an HTTP sink, and runs every case.
async fn run_cases(mut opts: Options, skip_load: bool) -> anyhow::Result<Vec<Case>> {
    let state_dir = opts.state_dir.clone();
    let sink = testbed::HttpSink::start().await;
    let config = state_dir.join("alert-service.yaml");
    std::fs::write(&config, alert_service_config(&sink.url(), &state_dir))?;
    opts.overrides = vec![(
        "alert-service".into(),
        "ALERT_SERVICE_CONFIG".into(),
        config.display().to_string(),
    )];
    let system = System::start(&opts)
        .await
        .context("starting the local system")?;
    let probe = Probe {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        sink,
    };
    let mut cases = vec![
        forged_webhooks(&probe).await,
        forged_acks(&probe).await,
        closed_by_default(&probe).await,
        launcher_cross_site(&probe).await,
        oversize(&probe).await,
        malformed(&probe).await,
        slowloris(&probe).await,
    ];
    if !skip_load {
        for port in [GATEWAY, USERS] {
            let _ = wait_http_ok(port, "/readyz", Duration::from_secs(30)).await;
        }
        cases.push(load_restart(&probe).await);
    }
    system.stop().await;
    Ok(cases)
}

/// Runs the probe suite.
pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let skip_load = args.contains(&"--skip-load");
    let opts = Options::for_tool(args, "probe", "PROBE_LOGS")?;
    up::build(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cases = rt.block_on(run_cases(opts, skip_load))?;
    report(&cases)
}

/// Writes `target/probe/results.json` and prints each case; success when every case held.
fn report(cases: &[Case]) -> anyhow::Result<ExitCode> {
    let out = root().join("target/probe/results.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({"cases": cases.iter().map(|c| json!({
            "name": c.name, "passed": c.passed(), "failures": c.failures, "figures": c.figures,
        })).collect::<Vec<_>>()}))?,
    )?;
    println!("\nprobe results:");
    for c in cases {
        println!(
            "  {:<22} {}",
            c.name,
            if c.passed() { "ok" } else { "FAILED" }
        );
        for f in &c.failures {
            println!("      - {f}");
        }
        if !c.figures.is_empty() {
            println!("      {}", Value::Object(c.figures.clone()));
        }
    }
    println!("figures written to {}", out.display());
    let failed = cases.iter().filter(|c| !c.passed()).count();
    println!("probe: {} passed, {} failed", cases.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
