//! PromQL checks against the Prometheus HTTP API (`GET /api/v1/query`), in both modes.
//!
//! [`PromClient`] is the adapter; [`CheckState::evaluate`] is the pure part: samples + the
//! check + the clock → findings, remembering since when each series crosses the threshold so a
//! check with `for: 1m` fires only after a minute (as a Prometheus rule's `for` does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::board::{CurrentFindings, Source};
use crate::classify::control_plane_finding;
use crate::config::{FileConfig, PromCheck, local_services};
use crate::finding::{Finding, FindingKind, ObjectRef, RESERVED_LABELS};
use crate::metrics::Metrics;

pub use prometheus_api::{QueryError, Sample, parse_query_response};

/// A client for a Prometheus HTTP API.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: telemetry::client::HttpClient,
}

impl PromClient {
    /// A client for the Prometheus at `base` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base: &str, http: telemetry::client::HttpClient) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// An instant query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let url = format!("{}{}", self.base, prometheus_api::QUERY_PATH);
        let req = self
            .http
            .get(&url)
            .query(&[("query", promql)])
            .timeout(Duration::from_secs(5));
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        if status.is_server_error() && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            return Err(QueryError::Unreachable(format!("HTTP {status}")));
        }
        parse_query_response(&body)
    }

    /// `GET /-/ready`.
    pub async fn ready(&self) -> Result<(), String> {
        let url = format!("{}/-/ready", self.base);
        match self
            .http
            .send(self.http.get(&url).timeout(Duration::from_secs(1)))
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("Prometheus answered {}", r.status())),
            Err(e) => Err(format!("Prometheus unreachable: {e}")),
        }
    }
}

/// Since when each series of each check crosses its threshold (Unix milliseconds).
#[derive(Debug, Clone, Default)]
pub struct CheckState {
    pending: HashMap<(String, String), i64>,
}

fn series_key(metric: &BTreeMap<String, String>) -> String {
    alertmanager::webhook::label_set_string(metric)
}

impl CheckState {
    /// The findings of `check` given this query result at `now_ms` (Unix milliseconds);
    /// updates the pending times.
    pub fn evaluate(&mut self, check: &PromCheck, samples: &[Sample], now_ms: i64) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in samples {
            if !check.comparison.holds(s.value, check.threshold) {
                continue;
            }
            let key = (check.name.clone(), series_key(&s.metric));
            seen.insert(key.clone());
            let since = *self.pending.entry(key).or_insert(now_ms);
            if now_ms - since < check.for_.as_millis() as i64 {
                continue;
            }
            out.push(metric_finding(check, s, since.div_euclid(1000)));
        }
        self.pending
            .retain(|k, _| k.0 != check.name || seen.contains(k));
        out
    }

    /// Forgets checks that are no longer configured.
    pub fn retain_checks(&mut self, names: &[&str]) {
        self.pending.retain(|k, _| names.contains(&k.0.as_str()));
    }
}

fn metric_finding(check: &PromCheck, s: &Sample, since: i64) -> Finding {
    let m = &s.metric;
    let mut object = ObjectRef::new(
        "Metric",
        m.get("namespace").map(String::as_str),
        &check.name,
    );
    object.node = m.get("node").cloned();
    if let Some(pod) = m.get("pod") {
        object.kind = "Pod".into();
        object.name = pod.clone();
    }
    let service = m
        .get("service")
        .or_else(|| m.get("job"))
        .filter(|j| local_services().any(|s| s.name == *j) || *j == crate::SERVICE)
        .cloned();
    let summary = check.summary.clone().unwrap_or_else(|| {
        format!(
            "Check {} is {} {} {}",
            check.name,
            s.value,
            check.comparison.as_str(),
            check.threshold
        )
    });
    let mut f = Finding::new(
        FindingKind::MetricCheck,
        check.severity,
        object,
        summary,
        format!(
            "{} = {} ({} {}{}) for series {}.",
            check.query,
            s.value,
            check.comparison.as_str(),
            check.threshold,
            if check.for_.is_zero() {
                String::new()
            } else {
                format!(" for {}", humantime::format_duration(check.for_))
            },
            series_key(m)
        ),
    )
    .with_remediation(check.remediation)
    .with_dependency(check.dependency.clone())
    .with_service(service)
    .with_since(Some(since));
    for (k, v) in m {
        if k != "__name__" && !RESERVED_LABELS.contains(&k.as_str()) {
            f.labels.insert(k.clone(), v.clone());
        }
    }
    f.labels.extend(check.labels.clone());
    f.labels.insert("check".to_owned(), check.name.clone());
    f
}

/// Control-plane findings from the `up == 0` query's samples (one per job).
pub fn control_plane_from_up(samples: &[Sample]) -> Vec<Finding> {
    samples
        .iter()
        .map(|s| {
            let job = s.metric.get("job").map(String::as_str).unwrap_or("unknown");
            let instance = s.metric.get("instance").map(String::as_str).unwrap_or("");
            control_plane_finding(job, "Prometheus", &format!("up == 0 for {job} {instance}"))
        })
        .collect()
}

/// Runs the configured checks (and the control-plane `up` query) every sweep interval until
/// `shutdown`, keeping [`Source::Prometheus`] findings on `board` current. A failed query keeps
/// that check's previous findings (no flapping while Prometheus restarts).
pub async fn run_checks(
    client: PromClient,
    mut config: watch::Receiver<Arc<FileConfig>>,
    board: CurrentFindings,
    metrics: Metrics,
    shutdown: CancellationToken,
    period_override: Option<Duration>,
) {
    let mut state = CheckState::default();
    let mut last: HashMap<String, Vec<Finding>> = HashMap::new();
    loop {
        let cfg = config.borrow_and_update().clone();
        let period = period_override.unwrap_or_else(|| cfg.interval());
        if cfg.prometheus_checks {
            let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            let names: Vec<&str> = cfg.checks.iter().map(|c| c.name.as_str()).collect();
            state.retain_checks(&names);
            last.retain(|k, _| k == "control-plane" || names.contains(&k.as_str()));
            for check in &cfg.checks {
                match client.query(&check.query).await {
                    Ok(samples) => {
                        metrics.prom_queries.with_label_values(&["ok"]).inc();
                        last.insert(check.name.clone(), state.evaluate(check, &samples, now));
                    }
                    Err(e) => {
                        metrics.prom_queries.with_label_values(&["error"]).inc();
                        tracing::warn!(check = %check.name, error = %e, "PromQL check failed");
                    }
                }
            }
            if !cfg.control_plane_query.is_empty() {
                match client.query(&cfg.control_plane_query).await {
                    Ok(samples) => {
                        metrics.prom_queries.with_label_values(&["ok"]).inc();
                        last.insert("control-plane".to_owned(), control_plane_from_up(&samples));
                    }
                    Err(e) => {
                        metrics.prom_queries.with_label_values(&["error"]).inc();
                        tracing::debug!(error = %e, "control-plane up query failed");
                    }
                }
            }
        } else {
            last.clear();
        }
        board.set_population(Source::Prometheus, cfg.checks.len());
        board.replace(Source::Prometheus, last.clone());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
            _ = config.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Comparison;
    use crate::finding::{Remediation, Severity};

    fn check(for_secs: u64) -> PromCheck {
        PromCheck {
            name: "queue-deep".into(),
            query: "queue_depth".into(),
            threshold: 10.0,
            comparison: Comparison::Greater,
            for_: Duration::from_secs(for_secs),
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".into(), "organs".into())]),
            summary: None,
            remediation: Some(Remediation::RestartPod),
            dependency: None,
        }
    }

    fn sample(value: f64) -> Sample {
        Sample::new(
            [
                ("__name__", "queue_depth"),
                ("job", "heart"),
                ("instance", "127.0.0.1:8081"),
            ],
            value,
        )
    }

    #[test]
    fn fires_after_for_and_clears_when_back() {
        let mut st = CheckState::default();
        let c = check(60);
        assert!(
            st.evaluate(&c, &[sample(11.0)], 1_000_000).is_empty(),
            "pending, not firing"
        );
        assert!(st.evaluate(&c, &[sample(12.0)], 1_059_999).is_empty());
        let f = st.evaluate(&c, &[sample(12.0)], 1_060_000);
        assert_eq!(f.len(), 1);
        let l = f[0].alert_labels();
        assert_eq!(l["alertname"], "MetricCheck");
        assert_eq!(l["check"], "queue-deep");
        assert_eq!(l["team"], "organs");
        assert_eq!(l["service"], "heart");
        assert_eq!(l["job"], "heart");
        assert_eq!(l["severity"], "critical");
        assert_eq!(l["remediation"], "restart-pod");
        assert!(!l.contains_key("__name__"));
        assert!(st.evaluate(&c, &[sample(3.0)], 1_070_000).is_empty());
        assert!(
            st.evaluate(&c, &[sample(11.0)], 1_080_000).is_empty(),
            "pending restarts from zero"
        );
    }
}
