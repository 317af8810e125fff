//! `cargo xtask scenario [NAME|all]`: the closed loop, measured.
//!
//! Starts the seven services, a real Prometheus and Alertmanager with the chart's rules (short
//! `for:` and windows), a real PostgreSQL for user-service and a real SMTP server for
//! alert-service, then injects faults through `/chaos` (or by stopping the database) and watches
//! each scenario go from symptom to alert to repair (or deliberate refusal) to notification.
//! Prints a table — scenario, fault, detected by, MTTD, action, MTTR, notifications — and writes
//! the figures to `target/scenario/results.json`. A scenario fails when one of its expectations
//! does not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::launcher::wait_http_ok;
use crate::root;
use crate::up::{self, Options, System};

const GATEWAY: u16 = 8080;
const HEART: u16 = 8081;
const BRAIN: u16 = 8082;
const USERS: u16 = 8083;
const MONITOR: u16 = 8084;
const HEALER: u16 = 8085;
const ALERTS: u16 = 8086;
const AM: u16 = 9093;

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: &[&str] = &[
    "heart-crash",
    "brain-latency",
    "gateway-errors",
    "memory-leak",
    "readiness-flap",
    "database-outage",
    "alert-storm",
];

/// What one scenario measured.
#[derive(Debug, Default, Clone)]
struct Outcome {
    name: &'static str,
    fault: String,
    detected_by: String,
    mttd: Option<Duration>,
    action: String,
    mttr: Option<Duration>,
    notifications: String,
    failures: Vec<String>,
    figures: BTreeMap<String, Value>,
}

impl Outcome {
    fn new(name: &'static str, fault: &str) -> Self {
        Self {
            name,
            fault: fault.to_owned(),
            ..Self::default()
        }
    }

    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn json(&self) -> Value {
        json!({
            "scenario": self.name,
            "fault": self.fault,
            "detected_by": self.detected_by,
            "mttd_s": self.mttd.map(|d| d.as_secs_f64()),
            "action": self.action,
            "mttr_s": self.mttr.map(|d| d.as_secs_f64()),
            "notifications": self.notifications,
            "passed": self.passed(),
            "failures": self.failures,
            "figures": self.figures,
        })
    }
}

impl Outcome {
    /// Waits for `alertname` to be active in Alertmanager, recording MTTD from `t_fault` and
    /// checking the local target (fault → alert firing < 10 s).
    async fn wait_firing(
        &mut self,
        w: &World,
        alertname: &str,
        t_fault: Instant,
        timeout: Duration,
    ) -> Option<(Value, Instant)> {
        let firing = until(timeout, Duration::from_millis(200), || async {
            w.am_alerts(alertname).await.into_iter().next()
        })
        .await;
        if let Some((_, t)) = &firing {
            self.mttd = Some(t.duration_since(t_fault));
            self.detected_by = format!("Prometheus rule {alertname}");
        }
        self.expect(
            firing.is_some(),
            format!("{alertname} did not reach Alertmanager within {timeout:?}"),
        );
        self.expect(
            self.mttd.is_some_and(|d| d < Duration::from_secs(10)),
            format!(
                "fault → alert firing took {} (target < 10 s)",
                secs(self.mttd)
            ),
        );
        firing
    }
}

/// "action (result)" of the first action the healer took, or "none".
fn first_action(decisions: &[Value]) -> String {
    decisions
        .iter()
        .find(|a| a["result"] == "acted" || a["result"] == "healed")
        .map(|a| {
            format!(
                "{} ({})",
                a["action"].as_str().unwrap_or("?"),
                a["result"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "none".into())
}

/// The world the scenarios act on.
struct World {
    http: reqwest::Client,
    smtp: testbed::SmtpSink,
    pager: testbed::HttpSink,
    postgres: testbed::Postgres,
    system: Option<System>,
    /// The auto-healer's state directory (guard state, audit file).
    healer_state: PathBuf,
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} s", d.as_secs_f64()))
        .unwrap_or_else(|| "—".into())
}

/// Polls `probe` every `every` until it yields a value or `timeout` passes.
async fn until<T, F, Fut>(timeout: Duration, every: Duration, mut probe: F) -> Option<(T, Instant)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some((v, Instant::now()));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

impl World {
    async fn get(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        r.json().await.ok()
    }

    async fn ok(&self, port: u16, path: &str) -> bool {
        self.http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn chaos(&self, port: u16, body: Value) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{port}/chaos"))
            .bearer_auth(&up::tokens().chaos)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "POST :{port}/chaos {body} -> {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn clear_chaos(&self) {
        for port in [GATEWAY, HEART, BRAIN, USERS] {
            let _ = self
                .http
                .delete(format!("http://127.0.0.1:{port}/chaos"))
                .bearer_auth(&up::tokens().chaos)
                .send()
                .await;
        }
    }

    /// Active (firing, not silenced) alerts in Alertmanager named `alertname`.
    async fn am_alerts(&self, alertname: &str) -> Vec<Value> {
        let url =
            format!("http://127.0.0.1:{AM}/api/v2/alerts?filter=alertname%3D%22{alertname}%22");
        self.get(&url)
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    async fn findings(&self) -> Vec<Value> {
        self.get(&format!("http://127.0.0.1:{MONITOR}/api/v1/findings"))
            .await
            .and_then(|v| v["findings"].as_array().cloned())
            .unwrap_or_default()
    }

    async fn actions(&self) -> Vec<Value> {
        self.get(&format!(
            "http://127.0.0.1:{HEALER}/api/v1/actions?limit=200"
        ))
        .await
        .and_then(|v| v["actions"].as_array().cloned())
        .unwrap_or_default()
    }

    /// Healer decisions about `service` made after `since` (RFC 3339 compare on `at`).
    async fn actions_about(&self, service: &str, since: &str) -> Vec<Value> {
        self.actions()
            .await
            .into_iter()
            .filter(|a| a["at"].as_str().is_some_and(|at| at >= since))
            .filter(|a| a.to_string().contains(service))
            .collect()
    }

    /// Mails mentioning `alertname`, split into (firing, resolved) counts.
    fn mails(&self, alertname: &str) -> (usize, usize) {
        let needle = format!("alertname={alertname}");
        let mut firing = 0;
        let mut resolved = 0;
        for m in self.smtp.messages() {
            if !m.text.contains(&needle) {
                continue;
            }
            if m.text.contains("== FIRING:") {
                firing += 1;
            } else if m.text.contains("== RESOLVED:") {
                resolved += 1;
            }
        }
        (firing, resolved)
    }

    fn mail_texts(&self, alertname: &str) -> Vec<String> {
        let needle = format!("alertname={alertname}");
        self.smtp
            .messages()
            .into_iter()
            .filter(|m| m.text.contains(&needle))
            .map(|m| m.text)
            .collect()
    }

    /// Alerts Alertmanager holds as active that the healer would act on (a `remediation`
    /// label), by name.
    async fn remediable_alerts(&self) -> Vec<String> {
        self.get(&format!(
            "http://127.0.0.1:{AM}/api/v2/alerts?active=true&silenced=false&inhibited=false"
        ))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"].get("remediation").is_some())
        .map(|a| {
            format!(
                "{}{{{}}}",
                a["labels"]["alertname"].as_str().unwrap_or("?"),
                a["labels"]["service"].as_str().unwrap_or("")
            )
        })
        .collect()
    }

    /// Gets ready for the next scenario, so that its outcome is its own: no fault injected,
    /// every organ ready, no alert left that the healer would act on, and a healer with no
    /// memory of earlier scenarios (guard state removed, restarted). Returns what was still
    /// firing when the wait for a quiet Alertmanager gave up (60 s).
    async fn settle(&self) -> Vec<String> {
        self.clear_chaos().await;
        for port in [HEART, BRAIN, USERS, GATEWAY] {
            let _ = wait_http_ok(port, "/readyz", Duration::from_secs(30)).await;
        }
        let quiet = until(
            Duration::from_secs(60),
            Duration::from_millis(500),
            || async { self.remediable_alerts().await.is_empty().then_some(()) },
        )
        .await;
        let left = if quiet.is_some() {
            Vec::new()
        } else {
            self.remediable_alerts().await
        };
        if let Some(system) = &self.system {
            let _ = system
                .launcher
                .stop("auto-healer", Duration::from_secs(5))
                .await;
            let _ = std::fs::remove_file(self.healer_state.join("state.json"));
            let _ = system.launcher.start("auto-healer").await;
            let _ = wait_http_ok(HEALER, "/readyz", Duration::from_secs(30)).await;
        }
        left
    }
}

fn now_rfc3339() -> String {
    // The healer writes RFC 3339 UTC with 'Z'; compare textually at second precision.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    unix_to_rfc3339(now.saturating_sub(1))
}

fn unix_to_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}")
}

/// Keeps `url` busy (one request every `every`) until the returned guard is dropped.
fn load(http: &reqwest::Client, url: String, every: Duration) -> tokio::task::JoinHandle<()> {
    let http = http.clone();
    tokio::spawn(async move {
        loop {
            let _ = http.get(&url).send().await;
            tokio::time::sleep(every).await;
        }
    })
}

async fn heart_crash(w: &World) -> Outcome {
    let mut o = Outcome::new("heart-crash", "heart: /chaos crash_after_s=1");
    let since = now_rfc3339();
    if let Err(e) = w.chaos(HEART, json!({"crash_after_s": 1})).await {
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let Some((_, t_fault)) = until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { (!w.ok(HEART, "/healthz").await).then_some(()) },
    )
    .await
    else {
        o.expect(false, "heart did not crash");
        return o;
    };
    let detected = until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            w.findings()
                .await
                .into_iter()
                .find(|f| f["finding"] == "service-down" && f["service"] == "heart")
        },
    )
    .await;
    if let Some((_, t)) = &detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "health-monitor (service-down)".into();
    }
    o.expect(
        detected.is_some(),
        "no service-down finding for heart within 10 s",
    );
    let healthy = until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { w.ok(HEART, "/readyz").await.then_some(()) },
    )
    .await;
    if let Some((_, t)) = &healthy {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.expect(healthy.is_some(), "heart not healthy again within 20 s");
    o.expect(
        o.mttr.is_some_and(|d| d < Duration::from_secs(5)),
        format!("crash → healthy took {} (target < 5 s)", secs(o.mttr)),
    );
    let acted = w.actions_about("heart", &since).await;
    o.action = first_action(&acted);
    o.expect(o.action != "none", "the healer recorded no action on heart");
    let mails = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (f, r) = w.mails("ServiceDown");
            (f >= 1 && r >= 1).then_some((f, r))
        },
    )
    .await;
    let (f, r) = w.mails("ServiceDown");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o.expect(
        mails.is_some(),
        "expected one firing and one resolved email about heart",
    );
    o
}

async fn brain_latency(w: &World) -> Outcome {
    let mut o = Outcome::new("brain-latency", "brain: /chaos latency_ms=800");
    let since = now_rfc3339();
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{BRAIN}/think?ms=1"),
        Duration::from_millis(50),
    );
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(BRAIN, json!({"latency_ms": 800})).await {
        busy.abort();
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = o
        .wait_firing(w, "BrainLatencyHigh", t_fault, Duration::from_secs(30))
        .await;
    let notified = until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let texts = w.mail_texts("BrainLatencyHigh");
            texts.into_iter().find(|t| t.contains("== FIRING:"))
        },
    )
    .await;
    if let (Some((text, t)), Some((_, t_alert))) = (&notified, &firing) {
        o.figures.insert(
            "alert_to_notification_s".into(),
            json!(t.duration_since(*t_alert).as_secs_f64()),
        );
        o.expect(
            t.duration_since(*t_alert) < Duration::from_secs(2),
            format!(
                "alert → notification took {:.1} s (target < 2 s)",
                t.duration_since(*t_alert).as_secs_f64()
            ),
        );
        o.expect(
            text.contains("Traces (Grafana Explore, Tempo)"),
            "the notification has no link to the slow traces",
        );
    }
    o.expect(notified.is_some(), "no firing email for BrainLatencyHigh");
    busy.abort();
    w.clear_chaos().await;
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{BRAIN}/think?ms=1"),
        Duration::from_millis(50),
    );
    let resolved = until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            w.am_alerts("BrainLatencyHigh")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    busy.abort();
    o.expect(
        resolved.is_some(),
        "BrainLatencyHigh did not clear within 60 s of removing the fault",
    );
    let resolved_mail = until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async { (w.mails("BrainLatencyHigh").1 >= 1).then_some(()) },
    )
    .await;
    o.expect(
        resolved_mail.is_some(),
        "no resolved email for BrainLatencyHigh",
    );
    let restarts: Vec<Value> = w
        .actions_about("brain", &since)
        .await
        .into_iter()
        .filter(|a| a["result"] == "acted" || a["result"] == "healed")
        .collect();
    o.action = if restarts.is_empty() {
        "none (latency is not fixed by restarting)".into()
    } else {
        format!("{} action(s)", restarts.len())
    };
    o.expect(restarts.is_empty(), "the healer acted on a latency alert");
    let (f, r) = w.mails("BrainLatencyHigh");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o
}

async fn gateway_errors(w: &World) -> Outcome {
    let mut o = Outcome::new("gateway-errors", "api-gateway: /chaos error_rate=1.0");
    let busy = load(
        &w.http,
        format!("http://127.0.0.1:{GATEWAY}/user/123"),
        Duration::from_millis(20),
    );
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(GATEWAY, json!({"error_rate": 1.0})).await {
        busy.abort();
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = o
        .wait_firing(w, "GatewayErrorRatioHigh", t_fault, Duration::from_secs(30))
        .await;
    // Not acknowledged: the pager (tier 2) hears about it after the escalation delay.
    let escalated = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            w.pager
                .requests()
                .into_iter()
                .find(|r| r.body_text().contains("GatewayErrorRatioHigh"))
        },
    )
    .await;
    if let (Some((_, t)), Some((_, t_alert))) = (&escalated, &firing) {
        o.figures.insert(
            "escalated_after_s".into(),
            json!(t.duration_since(*t_alert).as_secs_f64()),
        );
    }
    o.expect(
        escalated.is_some(),
        "no escalation to the pager tier within 30 s",
    );
    // Acknowledge: a silence in Alertmanager, and no more notifications.
    let fingerprint = firing
        .as_ref()
        .and_then(|(a, _)| a["fingerprint"].as_str())
        .unwrap_or_default()
        .to_owned();
    // The signed, single-use link the pager message carries (acks are capabilities).
    let ack_url = escalated
        .as_ref()
        .and_then(|(r, _)| r.json()["alerts"][0]["ack_url"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http://127.0.0.1:{ALERTS}/api/v1/alerts/{fingerprint}/ack"));
    let ack = w
        .http
        .post(ack_url)
        .json(&json!({"by": "scenario", "comment": "looking into it", "duration_minutes": 10}))
        .send()
        .await;
    let ack_ok = ack.as_ref().is_ok_and(|r| r.status().is_success());
    o.expect(ack_ok, format!("ack failed: {:?}", ack.map(|r| r.status())));
    let silenced = until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let alerts = w.am_alerts("GatewayErrorRatioHigh").await;
            alerts
                .iter()
                .any(|a| {
                    a["status"]["state"] == "suppressed"
                        && !a["status"]["silencedBy"]
                            .as_array()
                            .is_none_or(Vec::is_empty)
                })
                .then_some(())
        },
    )
    .await;
    o.expect(
        silenced.is_some(),
        "the acknowledged alert is not silenced in Alertmanager",
    );
    let before = (w.smtp.messages().len(), w.pager.requests().len());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = (w.smtp.messages().len(), w.pager.requests().len());
    let new_mail = w.mail_texts("GatewayErrorRatioHigh").len();
    o.expect(
        after.1 == before.1,
        format!(
            "the pager was notified again after the ack ({} → {})",
            before.1, after.1
        ),
    );
    o.figures.insert("emails_about_it".into(), json!(new_mail));
    busy.abort();
    w.clear_chaos().await;
    o.action = "none (errors are not fixed by restarting); escalated, then acknowledged".into();
    o.notifications = format!(
        "{} email(s), {} pager call(s), silence after ack",
        new_mail,
        w.pager
            .requests()
            .iter()
            .filter(|r| r.body_text().contains("GatewayErrorRatioHigh"))
            .count()
    );
    o
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

async fn memory_leak(w: &World) -> Outcome {
    let mut o = Outcome::new("memory-leak", "heart: /chaos leak_mb_per_s=16");
    let since = now_rfc3339();
    let Some(system) = &w.system else {
        return o;
    };
    let pid_before = system.launcher.pid("heart");
    let t_fault = Instant::now();
    if let Err(e) = w.chaos(HEART, json!({"leak_mb_per_s": 16})).await {
        o.expect(false, format!("{e:#}"));
        return o;
    }
    let firing = until(
        Duration::from_secs(40),
        Duration::from_millis(200),
        || async { w.am_alerts("ServiceMemoryLeak").await.into_iter().next() },
    )
    .await;
    let rss_at_detection = pid_before.and_then(rss_mib);
    if let Some((_, t)) = &firing {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "Prometheus rule ServiceMemoryLeak".into();
        o.figures
            .insert("rss_mib_at_detection".into(), json!(rss_at_detection));
    }
    o.expect(
        firing.is_some(),
        "ServiceMemoryLeak did not fire within 40 s",
    );
    let restarted = until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let pid = system.launcher.pid("heart");
            (pid.is_some() && pid != pid_before).then_some(pid)
        },
    )
    .await;
    o.expect(restarted.is_some(), "heart was not restarted");
    let healthy = until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { w.ok(HEART, "/readyz").await.then_some(()) },
    )
    .await;
    if let Some((_, t)) = &healthy {
        o.mttr = Some(t.duration_since(t_fault));
    }
    if let Some((Some(pid), _)) = restarted {
        o.figures
            .insert("rss_mib_after_restart".into(), json!(rss_mib(pid)));
    }
    let acted = w.actions_about("heart", &since).await;
    o.action = first_action(&acted);
    o.expect(o.action != "none", "no healer action on the leaking heart");
    let resolved_mail = until(
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async { (w.mails("ServiceMemoryLeak").1 >= 1).then_some(()) },
    )
    .await;
    o.expect(
        resolved_mail.is_some(),
        "no resolved email for ServiceMemoryLeak",
    );
    let (f, r) = w.mails("ServiceMemoryLeak");
    o.notifications = format!("{f} firing, {r} resolved (email)");
    o
}

async fn readiness_flap(w: &World) -> Outcome {
    let mut o = Outcome::new(
        "readiness-flap",
        "brain: /chaos fail_readiness=true, re-applied after every restart",
    );
    let since = now_rfc3339();
    let Some(system) = &w.system else {
        return o;
    };
    // Notifications about brain giving up that came before this scenario do not count.
    let gave_up_mails = |w: &World| {
        w.smtp
            .messages()
            .into_iter()
            .filter(|m| m.text.contains("RemediationFailed") && m.text.contains("brain"))
            .count()
    };
    let mails_before = gave_up_mails(w);
    let t_fault = Instant::now();
    let mut repairs = 0;
    let mut last_pid = system.launcher.pid("brain");
    let mut detected = None;
    // The fault persists across repairs: re-inject it each time heart comes back.
    // Generous: verification failures and the rate limit stretch the repairs out.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut escalated = None;
    while Instant::now() < deadline {
        let _ = w.chaos(BRAIN, json!({"fail_readiness": true})).await;
        if detected.is_none()
            && w.findings()
                .await
                .iter()
                .any(|f| f["finding"] == "service-not-ready" && f["service"] == "brain")
        {
            detected = Some(Instant::now());
        }
        let pid = system.launcher.pid("brain");
        if pid.is_some() && pid != last_pid {
            repairs += 1;
            last_pid = pid;
            let _ = wait_http_ok(BRAIN, "/healthz", Duration::from_secs(10)).await;
            continue;
        }
        let decisions = w.actions_about("brain", &since).await;
        if let Some(e) = decisions.iter().find(|a| {
            a["result"] == "escalated" || a["guard"].as_str().is_some_and(|g| g.contains("flap"))
        }) {
            escalated = Some(e.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(t) = detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = "health-monitor (service-not-ready)".into();
    }
    o.expect(detected.is_some(), "no service-not-ready finding for brain");
    o.expect(repairs >= 1, "brain was never restarted");
    // Every attempt counts: at most flap_max_repairs restarts, whatever their verification
    // said (the scenario policy's limit is 2).
    o.expect(
        repairs <= FLAP_MAX_REPAIRS,
        format!("brain was restarted {repairs} times (flap limit {FLAP_MAX_REPAIRS})"),
    );
    o.figures
        .insert("repairs_before_flap_stop".into(), json!(repairs));
    // What the healer made of each alert about brain, in order (why repairs did or did not count).
    let results: Vec<String> = w
        .actions_about("brain", &since)
        .await
        .iter()
        .map(|a| {
            format!(
                "{}{}",
                a["result"].as_str().unwrap_or("?"),
                a["guard"]
                    .as_str()
                    .map(|g| format!(" ({g})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    o.figures.insert("healer_results".into(), json!(results));
    o.action = match &escalated {
        Some(e) => format!(
            "{repairs} restart(s), then left alone: {} ({})",
            e["result"].as_str().unwrap_or("?"),
            e["guard"].as_str().unwrap_or("notify step")
        ),
        None => format!("{repairs} restart(s), flap stop never engaged"),
    };
    o.expect(escalated.is_some(), "flap stop did not engage within 150 s");
    w.clear_chaos().await;
    let healthy = until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { w.ok(BRAIN, "/readyz").await.then_some(()) },
    )
    .await;
    o.expect(
        healthy.is_some(),
        "brain not ready after the fault was removed",
    );
    let says_so = until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async { (gave_up_mails(w) > mails_before).then_some(()) },
    )
    .await;
    o.expect(
        says_so.is_some(),
        "no RemediationFailed notification about brain",
    );
    // Told once: later alerts about brain (Alertmanager repeats every 10 s) are left alone
    // without a second escalation.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after: Vec<Value> = w.actions_about("brain", &since).await;
    let escalations = after.iter().filter(|a| a["result"] == "escalated").count();
    o.figures.insert("escalations".into(), json!(escalations));
    o.expect(
        escalations == 1,
        format!("the healer escalated brain {escalations} times (expected once)"),
    );
    o.notifications = if says_so.is_some() {
        "RemediationFailed / flap-stop email received".into()
    } else {
        "none about the flap stop".into()
    };
    o
}

async fn database_outage(w: &mut World) -> Outcome {
    let mut o = Outcome::new("database-outage", "PostgreSQL of user-service stopped");
    let since = now_rfc3339();
    let pid_before = w
        .system
        .as_ref()
        .and_then(|s| s.launcher.pid("user-service"));
    // A user accepted before the outage must survive it.
    let created = w
        .http
        .post(format!("http://127.0.0.1:{GATEWAY}/users"))
        .json(&json!({"name": "Outage Survivor", "email": format!("survivor-{}@example.org", std::process::id())}))
        .send()
        .await;
    let location = match created {
        Ok(r) if r.status().is_success() => {
            r.json::<Value>().await.ok().and_then(|v| v["id"].as_i64())
        }
        _ => None,
    };
    o.expect(
        location.is_some(),
        "could not create a user before the outage",
    );
    let t_fault = Instant::now();
    w.postgres.stop().await;
    let detected = until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            w.findings()
                .await
                .into_iter()
                .find(|f| f["service"] == "user-service" && f["finding"] == "service-not-ready")
        },
    )
    .await;
    if let Some((f, t)) = &detected {
        o.mttd = Some(t.duration_since(t_fault));
        o.detected_by = format!(
            "health-monitor (service-not-ready, dependency={})",
            f["dependency"].as_str().unwrap_or("none")
        );
        o.expect(
            f["dependency"] == "database",
            "the finding does not name the database",
        );
        o.expect(
            f.get("remediation").is_none_or(Value::is_null),
            "a dependency finding asks for a restart",
        );
    }
    o.expect(
        detected.is_some(),
        "no not-ready finding for user-service within 15 s",
    );
    let gateway_status = w
        .http
        .get(format!("http://127.0.0.1:{GATEWAY}/user/123"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    o.figures
        .insert("gateway_status_during_outage".into(), json!(gateway_status));
    o.expect(
        gateway_status == 503,
        format!("gateway answered {gateway_status} during the outage, expected 503"),
    );
    let named = until(
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            w.smtp.messages().into_iter().find(|m| {
                m.text.contains("user-service")
                    && m.text.contains("database")
                    && m.text.contains("== FIRING:")
            })
        },
    )
    .await;
    o.expect(named.is_some(), "no notification names the database");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid_during = w
        .system
        .as_ref()
        .and_then(|s| s.launcher.pid("user-service"));
    o.expect(
        pid_during == pid_before,
        "user-service was restarted during a database outage",
    );
    let decisions = w.actions_about("user-service", &since).await;
    o.action = if pid_during == pid_before {
        match decisions.iter().find(|a| a["result"] == "skipped") {
            Some(a) => format!(
                "refused: {}",
                a["guard"].as_str().unwrap_or("no restart remediation")
            ),
            None => "none: the alert names a dependency, no restart".into(),
        }
    } else {
        "restarted user-service (wrong)".into()
    };
    w.postgres.start_again().await;
    let recovered = until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { w.ok(USERS, "/readyz").await.then_some(()) },
    )
    .await;
    if let Some((_, t)) = &recovered {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.expect(
        recovered.is_some(),
        "user-service did not recover after the database returned",
    );
    if let Some(id) = location {
        let still_there = w.ok(GATEWAY, &format!("/user/{id}")).await;
        o.expect(still_there, "the user created before the outage is gone");
    }
    o.notifications = if named.is_some() {
        "email names the database".into()
    } else {
        "none".into()
    };
    o
}

async fn alert_storm(w: &World, policy: &StormLimits) -> Outcome {
    let mut o = Outcome::new("alert-storm", "faults on every organ at once");
    // Start on a fresh second so no earlier decision counts as part of the storm.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = unix_to_rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    );
    let t_fault = Instant::now();
    for (port, body) in [
        (HEART, json!({"crash_after_s": 1})),
        (BRAIN, json!({"crash_after_s": 1})),
        (USERS, json!({"fail_readiness": true})),
        (GATEWAY, json!({"crash_after_s": 2})),
    ] {
        if let Err(e) = w.chaos(port, body).await {
            o.expect(false, format!("{e:#}"));
        }
    }
    // Watch the healer's decisions for 25 s; the first one marks detection.
    let mut first_decision = None;
    let watch_until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < watch_until {
        if first_decision.is_none()
            && w.actions()
                .await
                .iter()
                .any(|a| a["at"].as_str().is_some_and(|at| at >= since.as_str()))
        {
            first_decision = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let decisions: Vec<Value> = w
        .actions()
        .await
        .into_iter()
        .filter(|a| a["at"].as_str().is_some_and(|at| at >= since.as_str()))
        .collect();
    // One action leaves an "acted" record, then "healed" or "failed": count the actions.
    let acted: Vec<&Value> = decisions
        .iter()
        .filter(|a| a["result"] == "acted")
        .collect();
    // Refusals: skipped by a guard, or escalated to people (flap stop, steps exhausted).
    let skipped: Vec<&Value> = decisions
        .iter()
        .filter(|a| a["result"] == "skipped" || a["result"] == "escalated")
        .collect();
    let mut guards: BTreeMap<String, usize> = BTreeMap::new();
    for s in &skipped {
        *guards
            .entry(s["guard"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    o.mttd = first_decision.map(|t| t.duration_since(t_fault));
    o.detected_by = "health-monitor + Prometheus rules".into();
    o.figures.insert("decisions".into(), json!(decisions.len()));
    o.figures.insert("acted".into(), json!(acted.len()));
    o.figures.insert("skipped_by_guard".into(), json!(guards));
    o.expect(
        !decisions.is_empty(),
        "the healer recorded no decision during the storm",
    );
    o.expect(
        acted.len() <= policy.rate_limit,
        format!(
            "{} actions exceed the rate limit of {}",
            acted.len(),
            policy.rate_limit
        ),
    );
    o.expect(
        decisions.iter().all(|d| {
            d["result"] != "skipped" || d["guard"].as_str().is_some_and(|g| !g.is_empty())
        }),
        "a skipped decision does not name its guard",
    );
    o.action = format!(
        "{} acted, {} refused ({})",
        acted.len(),
        skipped.len(),
        guards
            .iter()
            .map(|(g, n)| format!("{g}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    w.clear_chaos().await;
    // Repair what the guards left broken so the run ends healthy.
    if let Some(system) = &w.system {
        for name in ["heart", "brain"] {
            if !w
                .ok(if name == "heart" { HEART } else { BRAIN }, "/healthz")
                .await
            {
                let _ = system.launcher.restart(name).await;
            }
        }
    }
    let healthy = until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let mut all = true;
            for port in [HEART, BRAIN, USERS, GATEWAY] {
                all &= w.ok(port, "/readyz").await;
            }
            all.then_some(())
        },
    )
    .await;
    if let Some((_, t)) = healthy {
        o.mttr = Some(t.duration_since(t_fault));
    }
    o.notifications = format!("{} email(s) in total so far", w.smtp.messages().len());
    o
}

/// The scenario policy's `flap_max_repairs`.
const FLAP_MAX_REPAIRS: usize = 2;

/// The healer's limits the storm scenario checks against (from the scenario policy).
struct StormLimits {
    rate_limit: usize,
}

fn scenario_policy() -> String {
    let default = std::fs::read_to_string(root().join("services/auto-healer/policy/default.yaml"))
        .unwrap_or_default();
    let mut out = String::new();
    for line in default.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let replaced = if t.starts_with("cooldown_secs:") {
            Some("cooldown_secs: 3".to_owned())
        } else if t.starts_with("rate_limit_max_actions:") {
            Some("rate_limit_max_actions: 5".to_owned())
        } else if t.starts_with("rate_limit_window_secs:") {
            Some("rate_limit_window_secs: 60".to_owned())
        } else if t.starts_with("flap_max_repairs:") {
            Some(format!("flap_max_repairs: {FLAP_MAX_REPAIRS}"))
        } else if t.starts_with("flap_window_secs:") {
            Some("flap_window_secs: 300".to_owned())
        } else if t.starts_with("verify_timeout_secs:") {
            Some("verify_timeout_secs: 15".to_owned())
        } else if t.starts_with("escalation_window_secs:") {
            Some("escalation_window_secs: 1".to_owned())
        } else {
            None
        };
        match replaced {
            Some(r) => out.push_str(&format!("{indent}{r}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn alert_service_config(smtp_port: u16, pager_url: &str, state: &Path) -> String {
    format!(
        "routes:\n  - match: {{}}\n    channels: [email, log]\n\
         smtp:\n  host: 127.0.0.1\n  port: {smtp_port}\n  tls: none\n  from: organism@localhost\n  to: [oncall@localhost]\n\
         channels:\n  log:\n    kind: log\n    path: {}\n  pager:\n    kind: webhook\n    url: {pager_url}\n\
         escalation:\n  min_severity: warning\n  check_interval: 1s\n  tiers:\n    - after: 6s\n      channels: [pager]\n\
         delivery:\n  initial_backoff: 200ms\n  poll_interval: 100ms\n",
        state.join("notifications.log").display()
    )
}

pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let debug = args.contains(&"--debug");
    let no_build = args.contains(&"--no-build");
    let selected: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&'static str> = if selected.is_empty() || selected == ["all"] {
        SCENARIOS.to_vec()
    } else {
        let mut names = Vec::new();
        for s in selected {
            match SCENARIOS.iter().find(|n| **n == s) {
                Some(n) => names.push(*n),
                None => bail!("unknown scenario {s:?}; known: {}", SCENARIOS.join(", ")),
            }
        }
        names
    };
    let state_dir = root().join("target/scenario/state");
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir)?;
    let opts = Options {
        debug,
        no_build,
        echo: std::env::var_os("SCENARIO_LOGS").is_some(),
        state_dir: state_dir.clone(),
        overrides: Vec::new(),
    };
    up::build(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(run_all(opts, names))?;
    let out = root().join("target/scenario/results.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(
            &json!({ "scenarios": results.iter().map(Outcome::json).collect::<Vec<_>>() }),
        )?,
    )?;
    print_table(&results);
    println!("\nfigures written to {}", out.display());
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!(
        "scenarios: {} passed, {} failed",
        results.len() - failed,
        failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_all(mut opts: Options, names: Vec<&'static str>) -> anyhow::Result<Vec<Outcome>> {
    let smtp = testbed::SmtpSink::start().await;
    let pager = testbed::HttpSink::start().await;
    let postgres = testbed::Postgres::start().await;
    let state = opts.state_dir.clone();
    let alert_config = state.join("alert-service.yaml");
    std::fs::write(
        &alert_config,
        alert_service_config(smtp.port(), &format!("{}/pager", pager.url()), &state),
    )?;
    let policy = state.join("auto-healer-policy.yaml");
    std::fs::write(&policy, scenario_policy())?;
    let storm = StormLimits { rate_limit: 5 };
    opts.overrides = vec![
        ("user-service".into(), "DATABASE_URL".into(), postgres.url()),
        (
            "alert-service".into(),
            "ALERT_SERVICE_CONFIG".into(),
            alert_config.display().to_string(),
        ),
        (
            "alert-service".into(),
            "GRAFANA_URL".into(),
            "http://127.0.0.1:3000".into(),
        ),
        (
            "auto-healer".into(),
            "AUTO_HEALER_POLICY".into(),
            policy.display().to_string(),
        ),
    ];
    let system = System::start(&opts)
        .await
        .context("starting the local system")?;
    let mut world = World {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
        smtp,
        pager,
        postgres,
        system: Some(system),
        healer_state: state.join("auto-healer"),
    };
    // Let Prometheus fill a whole rate window (10 s) before the first fault.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut results = Vec::new();
    for name in names {
        println!("\n--- scenario {name}");
        let left = world.settle().await;
        if !left.is_empty() {
            println!(
                "    still firing after 60 s of settling: {}",
                left.join(", ")
            );
        }
        let started = Instant::now();
        let outcome = match name {
            "heart-crash" => heart_crash(&world).await,
            "brain-latency" => brain_latency(&world).await,
            "gateway-errors" => gateway_errors(&world).await,
            "memory-leak" => memory_leak(&world).await,
            "readiness-flap" => readiness_flap(&world).await,
            "database-outage" => database_outage(&mut world).await,
            _ => alert_storm(&world, &storm).await,
        };
        let mut outcome = outcome;
        if !left.is_empty() {
            outcome
                .figures
                .insert("still_firing_at_start".into(), json!(left));
        }
        println!(
            "--- {name}: {} in {:.0} s{}",
            if outcome.passed() { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64(),
            if outcome.passed() {
                String::new()
            } else {
                format!(": {}", outcome.failures.join("; "))
            }
        );
        results.push(outcome);
    }
    if let Some(system) = world.system.take() {
        system.stop().await;
    }
    Ok(results)
}

fn print_table(results: &[Outcome]) {
    println!(
        "\n{:<16} {:<40} {:<44} {:>7} {:<48} {:>7} notifications",
        "scenario", "fault", "detected by", "MTTD", "action", "MTTR"
    );
    for r in results {
        println!(
            "{:<16} {:<40} {:<44} {:>7} {:<48} {:>7} {}{}",
            r.name,
            truncate(&r.fault, 40),
            truncate(&r.detected_by, 44),
            secs(r.mttd),
            truncate(&r.action, 48),
            secs(r.mttr),
            r.notifications,
            if r.passed() {
                String::new()
            } else {
                format!("  FAILED: {}", r.failures.join("; "))
            }
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(unix_to_rfc3339(0), "1970-01-01T00:00:00");
        assert_eq!(unix_to_rfc3339(1_795_324_647), "2026-11-22T05:17:27");
    }

    #[test]
    fn the_scenario_policy_shortens_the_guards() {
        let p = scenario_policy();
        assert!(p.contains("cooldown_secs: 3"));
        assert!(p.contains("flap_max_repairs: 2"));
    }
}
