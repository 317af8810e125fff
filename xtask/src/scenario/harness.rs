//! What every scenario uses: the world it acts on (the running system, the SMTP and pager
//! sinks, PostgreSQL), polling, and the outcome it records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::launcher::wait_http_ok;
use crate::up::{self, System};

pub(super) const GATEWAY: u16 = topology::API_GATEWAY.port;
pub(super) const HEART: u16 = topology::HEART.port;
pub(super) const BRAIN: u16 = topology::BRAIN.port;
pub(super) const USERS: u16 = topology::USER_SERVICE.port;
const MONITOR: u16 = topology::HEALTH_MONITOR.port;
const HEALER: u16 = topology::AUTO_HEALER.port;
pub(super) const ALERTS: u16 = topology::ALERT_SERVICE.port;
const AM: u16 = topology::ALERTMANAGER.port;

/// What one scenario measured.
#[derive(Debug, Default, Clone)]
pub(super) struct Outcome {
    pub(super) name: &'static str,
    pub(super) fault: String,
    pub(super) detected_by: String,
    pub(super) mttd: Option<Duration>,
    pub(super) action: String,
    pub(super) mttr: Option<Duration>,
    pub(super) notifications: String,
    pub(super) failures: Vec<String>,
    pub(super) figures: BTreeMap<String, Value>,
}

impl Outcome {
    pub(super) fn new(name: &'static str, fault: &str) -> Self {
        Self {
            name,
            fault: fault.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    pub(super) fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub(super) fn json(&self) -> Value {
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
    pub(super) async fn wait_firing(
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
pub(super) fn first_action(decisions: &[Value]) -> String {
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
pub(super) struct World {
    pub(super) http: reqwest::Client,
    pub(super) smtp: testbed::SmtpSink,
    pub(super) pager: testbed::HttpSink,
    pub(super) postgres: testbed::Postgres,
    pub(super) system: Option<System>,
    /// The auto-healer's state directory (guard state, audit file).
    pub(super) healer_state: PathBuf,
}

pub(super) fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} s", d.as_secs_f64()))
        .unwrap_or_else(|| "—".into())
}

/// Polls `probe` every `every` until it yields a value or `timeout` passes.
pub(super) async fn until<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Option<(T, Instant)>
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
    pub(super) async fn get(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        r.json().await.ok()
    }

    pub(super) async fn ok(&self, port: u16, path: &str) -> bool {
        self.http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Polls `port`'s `/readyz` every `every` until it answers 2xx: when it did, or `None`
    /// after `timeout`.
    pub(super) async fn ready_again(
        &self,
        port: u16,
        timeout: Duration,
        every: Duration,
    ) -> Option<Instant> {
        until(timeout, every, || async {
            self.ok(port, "/readyz").await.then_some(())
        })
        .await
        .map(|(_, t)| t)
    }

    pub(super) async fn chaos(&self, port: u16, body: Value) -> anyhow::Result<()> {
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

    pub(super) async fn clear_chaos(&self) {
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
    pub(super) async fn am_alerts(&self, alertname: &str) -> Vec<Value> {
        let url =
            format!("http://127.0.0.1:{AM}/api/v2/alerts?filter=alertname%3D%22{alertname}%22");
        self.get(&url)
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub(super) async fn findings(&self) -> Vec<Value> {
        self.get(&format!("http://127.0.0.1:{MONITOR}/api/v1/findings"))
            .await
            .and_then(|v| v["findings"].as_array().cloned())
            .unwrap_or_default()
    }

    pub(super) async fn actions(&self) -> Vec<Value> {
        self.get(&format!(
            "http://127.0.0.1:{HEALER}/api/v1/actions?limit=200"
        ))
        .await
        .and_then(|v| v["actions"].as_array().cloned())
        .unwrap_or_default()
    }

    /// Healer decisions about `service` made after `since` (RFC 3339 compare on `at`).
    pub(super) async fn actions_about(&self, service: &str, since: &str) -> Vec<Value> {
        self.actions()
            .await
            .into_iter()
            .filter(|a| a["at"].as_str().is_some_and(|at| at >= since))
            .filter(|a| a.to_string().contains(service))
            .collect()
    }

    /// Mails mentioning `alertname`, split into (firing, resolved) counts.
    pub(super) fn mails(&self, alertname: &str) -> (usize, usize) {
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

    pub(super) fn mail_texts(&self, alertname: &str) -> Vec<String> {
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
    pub(super) async fn remediable_alerts(&self) -> Vec<String> {
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
    pub(super) async fn settle(&self) -> Vec<String> {
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

pub(super) fn now_rfc3339() -> String {
    // The healer writes RFC 3339 UTC with 'Z'; compare textually at second precision.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    unix_to_rfc3339(now.saturating_sub(1))
}

pub(super) fn unix_to_rfc3339(secs: u64) -> String {
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
pub(super) fn load(
    http: &reqwest::Client,
    url: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let http = http.clone();
    tokio::spawn(async move {
        loop {
            let _ = http.get(&url).send().await;
            tokio::time::sleep(every).await;
        }
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(unix_to_rfc3339(0), "1970-01-01T00:00:00");
        assert_eq!(unix_to_rfc3339(1_795_324_647), "2026-11-22T05:17:27");
    }
}
