//! Enrichment from the Kubernetes API (Kubernetes mode): the last log lines of the alert's pod,
//! the recent Events of the pod (or workload), and the pod's owning workload.
//!
//! Each lookup is bounded by a short timeout and runs concurrently with the others; a failure is
//! noted in [`Enrichment::errors`] and never stops a delivery. RBAC used: `pods` get,
//! `pods/log` get, `events` list (namespaced, core group).

use std::time::Duration;

use alertmanager::{LabelSet, WebhookMessage};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde::{Deserialize, Serialize};

use crate::settings::EnrichmentSettings;

/// One Kubernetes Event, summarised.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventSummary {
    /// `Normal` / `Warning`.
    pub kind: String,
    /// e.g. `BackOff`.
    pub reason: String,
    /// The event's message.
    pub message: String,
    /// How often it happened.
    pub count: i32,
    /// When last (RFC 3339).
    pub last_seen: Option<String>,
}

/// What the Kubernetes API said about an alert's object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrichment {
    /// Last log lines of the pod, oldest first.
    pub logs: Vec<String>,
    /// Recent events, newest first.
    pub events: Vec<EventSummary>,
    /// Owning workload, e.g. `Deployment/heart`.
    pub owner: Option<String>,
    /// Lookups that failed (`logs: timed out after 2s`), for the reader.
    pub errors: Vec<String>,
}

impl Enrichment {
    fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.events.is_empty()
            && self.owner.is_none()
            && self.errors.is_empty()
    }
}

/// Looks things up in the Kubernetes API; without a client (local mode) it does nothing.
#[derive(Clone)]
pub struct Enricher {
    client: Option<kube::Client>,
    settings: EnrichmentSettings,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("kubernetes", &self.client.is_some())
            .field("settings", &self.settings)
            .finish()
    }
}

async fn bounded<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(format!("{what}: {} ({})", s.message, s.code)),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: timed out after {}",
            crate::duration::display(timeout)
        )),
    }
}

impl Enricher {
    /// An enricher over `client` (`None`: local mode, links only).
    pub fn new(client: Option<kube::Client>, settings: EnrichmentSettings) -> Self {
        Self { client, settings }
    }

    /// Whether a Kubernetes client is configured.
    pub fn is_enabled(&self) -> bool {
        self.client.is_some()
    }

    /// Enrichment of the first `max_alerts` firing alerts of `message`, index-aligned with
    /// `message.alerts` (empty outside Kubernetes); every lookup is bounded, failures are noted,
    /// never fatal.
    pub async fn enrich_message(&self, message: &WebhookMessage) -> Vec<Option<Enrichment>> {
        if !self.is_enabled() {
            return Vec::new();
        }
        let max = self.settings.max_alerts;
        futures::future::join_all(message.alerts.iter().enumerate().map(|(i, a)| async move {
            if i < max && a.is_firing() {
                self.enrich(&a.labels).await
            } else {
                None
            }
        }))
        .await
    }

    /// Enriches an alert with these labels (needs `namespace` and `pod`, or `namespace` and
    /// `workload`); `None` when there is nothing to look up.
    pub async fn enrich(&self, labels: &LabelSet) -> Option<Enrichment> {
        let client = self.client.as_ref()?;
        let ns = labels.get("namespace")?;
        let pod = labels.get("pod");
        let object = pod.or_else(|| labels.get("workload"))?;
        let t = self.settings.timeout;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let events: Api<Event> = Api::namespaced(client.clone(), ns);

        let logs = async {
            let Some(pod) = pod else {
                return Ok(Vec::new());
            };
            let lp = LogParams {
                tail_lines: Some(self.settings.log_lines),
                container: labels.get("container").cloned(),
                ..LogParams::default()
            };
            let text = bounded("logs", t, pods.logs(pod, &lp)).await?;
            Ok::<_, String>(text.lines().map(|l| clip(l, 500)).collect())
        };
        let recent = async {
            let lp = ListParams::default().fields(&format!("involvedObject.name={object}"));
            let list = bounded("events", t, events.list(&lp)).await?;
            let mut items: Vec<Event> = list.items;
            items.sort_by_key(|e| std::cmp::Reverse(e.last_timestamp.as_ref().map(|t| t.0)));
            Ok::<_, String>(
                items
                    .into_iter()
                    .take(self.settings.events)
                    .map(|e| EventSummary {
                        kind: e.type_.unwrap_or_default(),
                        reason: e.reason.unwrap_or_default(),
                        message: clip(&e.message.unwrap_or_default(), 500),
                        count: e.count.unwrap_or(1),
                        last_seen: e.last_timestamp.map(|t| t.0.to_string()),
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let owner = async {
            if let (Some(kind), Some(name)) = (labels.get("workload_kind"), labels.get("workload"))
            {
                return Ok(Some(format!("{kind}/{name}")));
            }
            let Some(pod) = pod else { return Ok(None) };
            let p = bounded("owner", t, pods.get(pod)).await?;
            Ok::<_, String>(
                workloads::owner_from_metadata(&p).map(|o| format!("{}/{}", o.kind, o.name)),
            )
        };
        let (logs, recent, owner) = tokio::join!(logs, recent, owner);
        let mut out = Enrichment::default();
        match logs {
            Ok(l) => out.logs = l,
            Err(e) => out.errors.push(e),
        }
        match recent {
            Ok(ev) => out.events = ev,
            Err(e) => out.errors.push(e),
        }
        match owner {
            Ok(o) => out.owner = o,
            Err(e) => out.errors.push(e),
        }
        for e in &out.errors {
            tracing::debug!(error = %e, namespace = %ns, object = %object, "enrichment lookup failed");
        }
        (!out.is_empty()).then_some(out)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmanager::label_set as labels;
    use serde_json::json;
    use testbed::kube_mock::{self, Call, get, status_body};

    fn settings(timeout_ms: u64) -> EnrichmentSettings {
        EnrichmentSettings {
            log_lines: 5,
            events: 2,
            timeout: Duration::from_millis(timeout_ms),
            max_alerts: 3,
        }
    }

    const POD: &str = "/api/v1/namespaces/organism/pods/heart-7d9c8b6f5-abcde";

    /// The three lookups of one pod, in whatever order they come, each asserted by method,
    /// path and query; `fail_events` answers the events list 403.
    fn lookups(fail_events: bool) -> Vec<Call> {
        let event = |name: &str, kind: &str, reason: &str, count: u32, at: &str| {
            json!({"metadata": {"name": name, "namespace": "organism"},
                   "involvedObject": {"kind": "Pod", "name": "heart-7d9c8b6f5-abcde"},
                   "type": kind, "reason": reason, "message": reason, "count": count,
                   "lastTimestamp": at})
        };
        let events_path = "/api/v1/namespaces/organism/events";
        let events = if fail_events {
            let mut forbidden = status_body(403, "Forbidden");
            forbidden["message"] = json!("events is forbidden");
            get(events_path, forbidden).status(403)
        } else {
            get(
                events_path,
                json!({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": [
                    event("e1", "Normal", "Pulled", 1, "2026-11-02T09:00:00Z"),
                    event("e2", "Warning", "BackOff", 7, "2026-11-02T09:10:00Z"),
                    event("e3", "Normal", "Scheduled", 1, "2026-11-02T08:00:00Z"),
                ]}),
            )
        }
        .query("fieldSelector=involvedObject.name%3Dheart-7d9c8b6f5-abcde");
        vec![
            get(format!("{POD}/log"), json!(null))
                .query("tailLines=5")
                .raw(b"one\ntwo\nthree\n".to_vec()),
            events,
            get(
                POD,
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "heart-7d9c8b6f5-abcde", "namespace": "organism",
                        "labels": {"pod-template-hash": "7d9c8b6f5"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "name": "heart-7d9c8b6f5", "uid": "u", "controller": true}]}}),
            ),
        ]
    }

    /// An enricher over a mocked API server that serves `lookups(fail_events)`.
    fn enricher_serving(fail_events: bool) -> (Enricher, tokio::task::JoinHandle<()>) {
        let (client, mut server) = kube_mock::pair();
        let verify = tokio::spawn(async move {
            server.serve_any_order(lookups(fail_events)).await;
        });
        (Enricher::new(Some(client), settings(2000)), verify)
    }

    #[tokio::test]
    async fn logs_events_and_owner_are_fetched() {
        let (enricher, verify) = enricher_serving(false);
        let e = enricher
            .enrich(&labels(&[
                ("alertname", "PodCrashLooping"),
                ("namespace", "organism"),
                ("pod", "heart-7d9c8b6f5-abcde"),
            ]))
            .await
            .unwrap();
        verify.await.unwrap();
        assert_eq!(e.logs, ["one", "two", "three"]);
        assert_eq!(e.events.len(), 2, "bounded by settings.events");
        assert_eq!(e.events[0].reason, "BackOff", "newest first");
        assert_eq!(e.events[0].count, 7);
        assert_eq!(e.owner.as_deref(), Some("Deployment/heart"));
        assert!(e.errors.is_empty(), "{:?}", e.errors);
    }

    #[tokio::test]
    async fn a_failing_lookup_is_reported_not_fatal() {
        let (enricher, verify) = enricher_serving(true);
        let e = enricher
            .enrich(&labels(&[
                ("alertname", "X"),
                ("namespace", "organism"),
                ("pod", "heart-7d9c8b6f5-abcde"),
            ]))
            .await
            .unwrap();
        verify.await.unwrap();
        assert_eq!(e.logs.len(), 3);
        assert!(e.events.is_empty());
        assert_eq!(e.errors, ["events: events is forbidden (403)"]);
    }

    /// The lookups end because their 200 ms timeout fires (each error says so); no wall-clock
    /// bound is asserted, so a loaded machine cannot fail it.
    #[tokio::test]
    async fn a_silent_api_server_is_bounded_by_the_timeout() {
        // The API server stays up but never answers.
        let (client, server) = kube_mock::pair();
        let enricher = Enricher::new(Some(client), settings(200));
        let e = enricher
            .enrich(&labels(&[
                ("alertname", "X"),
                ("namespace", "organism"),
                ("pod", "p"),
            ]))
            .await
            .unwrap();
        assert_eq!(e.errors.len(), 3, "{:?}", e.errors);
        assert!(
            e.errors.iter().all(|m| m.contains("timed out")),
            "{:?}",
            e.errors
        );
        drop(server);
    }

    #[tokio::test]
    async fn local_mode_and_missing_labels_do_nothing() {
        let enricher = Enricher::new(None, settings(100));
        assert!(
            enricher
                .enrich(&labels(&[("namespace", "n"), ("pod", "p")]))
                .await
                .is_none()
        );
        let (client, _server) = kube_mock::pair();
        let enricher = Enricher::new(Some(client), settings(100));
        assert!(
            enricher
                .enrich(&labels(&[("alertname", "NoNamespace"), ("pod", "p")]))
                .await
                .is_none()
        );
    }
}
