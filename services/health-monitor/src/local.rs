//! Local mode: probes services' `/healthz` and `/readyz` over HTTP.
//!
//! [`classify_probe`] is the pure part (an outcome → a finding); [`run_prober`] is the adapter
//! that probes every target each `local.interval` (500 ms by default) with `local.timeout`
//! (default 2 s, which a saturated 2-core machine keeps). A
//! service answering nothing (or 5xx) on `/healthz` for `failures_before_down` probes in a row
//! is `service-down` (remediation `restart-pod`, which the local auto-healer turns into a
//! launcher restart); one answering `/readyz` with 503 is `service-not-ready`, naming the
//! failing checks, and when a failing check is a dependency (`database`), that dependency with
//! no restart remediation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::board::{CurrentFindings, Source};
use crate::config::{DependencyRules, FileConfig, LocalTarget};
use crate::finding::{Finding, FindingKind, ObjectRef, Remediation, Severity};
use crate::metrics::Metrics;

/// What one probe round of a target saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// `/healthz` failed: the reason (connection refused, timeout, HTTP 500, ...).
    Down(String),
    /// Alive; `/readyz` answered this status and body (or failed with the reason).
    Alive(Result<(u16, String), String>),
}

#[derive(Debug, Deserialize)]
struct ReadyBody {
    #[serde(default)]
    failing: Vec<FailingCheck>,
}

#[derive(Debug, Deserialize)]
struct FailingCheck {
    check: String,
    #[serde(default)]
    reason: String,
}

/// The failing checks of a service-kit `/readyz` answer (`{"status":"not ready","failing":
/// [{"check":..,"reason":..}]}`) as `(check, reason)`; empty when the body is not that.
pub fn failing_checks(body: &str) -> Vec<(String, String)> {
    serde_json::from_str::<ReadyBody>(body)
        .map(|b| b.failing.into_iter().map(|c| (c.check, c.reason)).collect())
        .unwrap_or_default()
}

fn object(target: &LocalTarget) -> ObjectRef {
    ObjectRef::new("Process", None, &target.name)
}

/// The finding for `target` after `failures` consecutive bad outcomes ending in `outcome`;
/// `None` when healthy or not yet bad for long enough.
pub fn classify_probe(
    target: &LocalTarget,
    outcome: &ProbeOutcome,
    failures: u32,
    failures_before: u32,
    dependencies: &DependencyRules,
) -> Option<Finding> {
    if failures < failures_before.max(1) {
        return None;
    }
    let name = &target.name;
    match outcome {
        ProbeOutcome::Down(why) => Some(
            Finding::new(
                FindingKind::ServiceDown,
                Severity::Critical,
                object(target),
                format!("{name} is down"),
                format!(
                    "{}/healthz: {why}; the service does not answer its liveness probe.",
                    target.url
                ),
            )
            .with_remediation(Some(Remediation::RestartPod))
            .with_service(Some(name.clone())),
        ),
        ProbeOutcome::Alive(Ok((200..=299, _))) => None,
        ProbeOutcome::Alive(Ok((status, body))) => {
            Some(not_ready(target, *status, body, dependencies))
        }
        ProbeOutcome::Alive(Err(why)) => Some(
            Finding::new(
                FindingKind::ServiceNotReady,
                Severity::Warning,
                object(target),
                format!("{name} is not ready"),
                format!("{}/readyz: {why}", target.url),
            )
            .with_service(Some(name.clone())),
        ),
    }
}

/// `service-not-ready` for a `/readyz` that answered `status` with `body`: the failing checks
/// named (the first as label `check`), and the dependency among them, if any.
fn not_ready(
    target: &LocalTarget,
    status: u16,
    body: &str,
    dependencies: &DependencyRules,
) -> Finding {
    let failing = serde_json::from_str::<ReadyBody>(body)
        .map(|b| b.failing)
        .unwrap_or_default();
    let checks: Vec<String> = failing
        .iter()
        .map(|c| {
            if c.reason.is_empty() {
                c.check.clone()
            } else {
                format!("{} ({})", c.check, c.reason)
            }
        })
        .collect();
    let dependency = dependencies
        .find(failing.iter().map(|c| c.check.as_str()))
        .or_else(|| {
            failing
                .iter()
                .find(|c| dependencies.0.contains_key(&c.check))
                .map(|c| c.check.clone())
        });
    let detail = if checks.is_empty() {
        format!("{}/readyz answered {status}: {}", target.url, body.trim())
    } else {
        format!(
            "{}/readyz answered {status}; failing: {}.",
            target.url,
            checks.join(", ")
        )
    };
    let name = &target.name;
    let mut f = Finding::new(
        FindingKind::ServiceNotReady,
        Severity::Warning,
        object(target),
        format!("{name} is not ready"),
        detail,
    )
    .with_remediation(Some(Remediation::RestartPod))
    .with_dependency(dependency)
    .with_service(Some(name.clone()));
    if let Some(first) = failing.first() {
        f.labels.insert("check".to_owned(), first.check.clone());
    }
    f
}

/// Probes `target` once: `/healthz`, then (when alive) `/readyz`.
pub async fn probe(
    http: &telemetry::client::HttpClient,
    target: &LocalTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let base = target.url.trim_end_matches('/');
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let resp = http
                .send(http.get(&url).timeout(timeout))
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        format!("no answer within {timeout:?}")
                    } else if e.is_connect() {
                        "connection refused".to_owned()
                    } else {
                        format!("request failed: {e}")
                    }
                })?;
            let status = resp.status().as_u16();
            let body = tokio::time::timeout(timeout, resp.text())
                .await
                .map_err(|_| "body timed out".to_owned())?
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        }
    };
    match get("/healthz").await {
        Err(why) => ProbeOutcome::Down(why),
        Ok((status, _)) if status >= 500 => ProbeOutcome::Down(format!("HTTP {status}")),
        Ok(_) => ProbeOutcome::Alive(get("/readyz").await),
    }
}

/// Probes the configured targets every `local.interval` until `shutdown`, keeping the
/// [`Source::Local`] findings on `board` current.
pub async fn run_prober(
    http: telemetry::client::HttpClient,
    mut config: watch::Receiver<Arc<FileConfig>>,
    board: CurrentFindings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut failures: HashMap<String, u32> = HashMap::new();
    loop {
        let cfg = config.borrow_and_update().clone();
        let local = &cfg.local;
        board.set_population(Source::Local, local.targets.len());
        let outcomes = futures::future::join_all(local.targets.iter().map(|t| {
            let http = &http;
            async move { (t, probe(http, t, local.timeout).await) }
        }))
        .await;
        let mut findings = HashMap::new();
        for (target, outcome) in outcomes {
            let healthy = matches!(&outcome, ProbeOutcome::Alive(Ok((200..=299, _))));
            let count = failures.entry(target.name.clone()).or_insert(0);
            *count = if healthy { 0 } else { count.saturating_add(1) };
            let result = match &outcome {
                ProbeOutcome::Down(_) => "down",
                _ if healthy => "ready",
                _ => "not_ready",
            };
            metrics
                .probes
                .with_label_values(&[&target.name, result])
                .inc();
            let finding = classify_probe(
                target,
                &outcome,
                *count,
                local.failures_before_down,
                &cfg.dependencies,
            );
            findings.insert(target.name.clone(), finding.into_iter().collect());
        }
        failures.retain(|k, _| local.targets.iter().any(|t| &t.name == k));
        board.replace(Source::Local, findings);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(local.interval) => {}
            _ = config.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LocalTarget {
        LocalTarget {
            name: "user-service".into(),
            url: topology::USER_SERVICE.local_url(),
        }
    }

    #[test]
    fn down_after_enough_failures_with_restart() {
        let deps = DependencyRules::default();
        let out = ProbeOutcome::Down("connection refused".into());
        assert_eq!(classify_probe(&target(), &out, 1, 2, &deps), None);
        let f = classify_probe(&target(), &out, 2, 2, &deps).unwrap();
        assert_eq!(f.finding, FindingKind::ServiceDown);
        assert_eq!(f.remediation, Some(Remediation::RestartPod));
        let labels = f.alert_labels();
        assert_eq!(labels["service"], "user-service");
        assert_eq!(labels["alertname"], "ServiceDown");
        assert!(!labels.contains_key("pod"));
    }

    #[test]
    fn not_ready_names_the_database_and_offers_no_restart() {
        let body = r#"{"status":"not ready","failing":[{"check":"database","reason":"connection refused"}],"checks":{"database":"failing"}}"#;
        let out = ProbeOutcome::Alive(Ok((503, body.into())));
        let f = classify_probe(&target(), &out, 2, 2, &DependencyRules::default()).unwrap();
        assert_eq!(f.finding, FindingKind::ServiceNotReady);
        assert_eq!(f.dependency.as_deref(), Some("database"));
        assert_eq!(f.remediation, None);
        assert!(
            f.description.contains("database (connection refused)"),
            "{}",
            f.description
        );
        assert_eq!(f.alert_labels()["check"], "database");
    }

    #[test]
    fn not_ready_without_a_dependency_may_restart() {
        let body = r#"{"status":"not ready","failing":[{"check":"chaos","reason":"fail_readiness fault"}]}"#;
        let out = ProbeOutcome::Alive(Ok((503, body.into())));
        let f = classify_probe(&target(), &out, 3, 2, &DependencyRules::default()).unwrap();
        assert_eq!(f.dependency, None);
        assert_eq!(f.remediation, Some(Remediation::RestartPod));
    }

    #[test]
    fn a_ready_answer_is_no_finding_whatever_came_before() {
        let ok = ProbeOutcome::Alive(Ok((200, "{}".into())));
        assert_eq!(
            classify_probe(&target(), &ok, 5, 2, &DependencyRules::default()),
            None
        );
    }
}
