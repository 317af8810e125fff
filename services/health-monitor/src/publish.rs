//! Publishing findings as alerts.
//!
//! With an Alertmanager (`ALERTMANAGER_URL`), every current finding is posted to
//! `POST /api/v2/alerts` when it appears and again every `resend_interval`, with `endsAt` three
//! intervals ahead (so Alertmanager keeps it firing across two lost posts, and ends it by itself
//! if health-monitor dies); when a finding clears, it is posted once more with `endsAt` = now.
//! Without one, the same alerts go straight to the configured webhook receivers as Alertmanager
//! webhook v4 messages (one alert per message, grouped by all labels so each has its own
//! `groupKey`): firing when it appears and every `repeat_interval`, resolved once when it clears.
//!
//! Failed deliveries are retried with exponential backoff (1 s doubling to 30 s). Everything not
//! yet delivered lives in a bounded table: when it is full, the oldest resolved-but-undelivered
//! alert is dropped (or, failing that, the new one is not taken) and
//! `health_monitor_publish_dropped_total` counts it. Two replicas posting the same findings are
//! harmless: Alertmanager identifies alerts by their labels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertmanager::{Alert, AlertmanagerClient, LabelSet, PostableAlert, WebhookMessage};
use futures::StreamExt;
use service_kit::ReadyFlag;
use service_kit::backoff::ExponentialBackoff;
use time::OffsetDateTime;

use crate::config::{PublishConfig, Receiver};
use crate::finding::Finding;
use crate::metrics::Metrics;

/// Where alerts go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// An Alertmanager's API v2.
    Alertmanager(AlertmanagerClient),
    /// Webhook receivers, directly.
    Webhooks {
        /// The client (with its timeout).
        http: telemetry::client::HttpClient,
        /// The receivers.
        receivers: Vec<Receiver>,
    },
    /// Nowhere: findings are only served on the API and metrics.
    Nowhere,
}

impl Sink {
    fn label(&self) -> &'static str {
        match self {
            Sink::Alertmanager(_) => "alertmanager",
            Sink::Webhooks { .. } => "webhook",
            Sink::Nowhere => "none",
        }
    }

    fn destinations(&self) -> usize {
        match self {
            Sink::Alertmanager(_) => 1,
            Sink::Webhooks { receivers, .. } => receivers.len(),
            Sink::Nowhere => 0,
        }
    }
}

/// The largest batch posted to Alertmanager in one request.
const BATCH: usize = 500;
/// Concurrent webhook deliveries.
const WEBHOOK_CONCURRENCY: usize = 8;

/// One webhook message due to one receiver (destination `dest` of alert `key`).
struct WebhookJob {
    key: String,
    dest: usize,
    resolved: bool,
    receiver: Receiver,
    message: WebhookMessage,
}

/// Posts `message` to `receiver`; the failure reason is a metric label.
async fn post_webhook(
    http: &telemetry::client::HttpClient,
    receiver: &Receiver,
    message: &WebhookMessage,
) -> Result<(), &'static str> {
    let mut req = http
        .request(telemetry::client::Method::POST, &receiver.url)
        .json(message);
    if let Some(token) = &receiver.bearer_token {
        req = req.bearer_auth(token);
    }
    match http.send(req).await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) if resp.status().is_server_error() => Err("http_5xx"),
        Ok(_) => Err("http_4xx"),
        Err(e) if e.is_timeout() => Err("timeout"),
        Err(e) if e.is_connect() => Err("connect"),
        Err(_) => Err("transport"),
    }
}

#[derive(Debug, Clone)]
struct Dest {
    last_sent: Option<Instant>,
    resolved_sent: bool,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Dest {
    fn new() -> Self {
        Self {
            last_sent: None,
            resolved_sent: false,
            failures: 0,
            next_attempt: None,
        }
    }

    fn due(&self, now: Instant, resolved: bool, every: Duration) -> bool {
        if self.next_attempt.is_some_and(|t| t > now) {
            return false;
        }
        if resolved {
            return !self.resolved_sent;
        }
        self.last_sent
            .is_none_or(|t| now.duration_since(t) >= every)
    }

    fn pending(&self, resolved: bool) -> bool {
        if resolved {
            !self.resolved_sent
        } else {
            self.last_sent.is_none()
        }
    }

    fn failed(&mut self, now: Instant) {
        // The workspace's one backoff: 1 s doubling to 30 s (the cap used to stop at 16 s,
        // short of what this module said).
        const RETRY: ExponentialBackoff =
            ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(30));
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now + RETRY.delay(self.failures - 1));
    }

    fn sent(&mut self, now: Instant, resolved: bool) {
        self.failures = 0;
        self.next_attempt = None;
        self.last_sent = Some(now);
        if resolved {
            self.resolved_sent = true;
        }
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    seq: u64,
    labels: LabelSet,
    annotations: LabelSet,
    starts_at: OffsetDateTime,
    resolved_at: Option<OffsetDateTime>,
    dests: Vec<Dest>,
}

/// Turns the current findings into alert deliveries; call [`Publisher::tick`] periodically.
#[derive(Debug)]
pub struct Publisher {
    sink: Sink,
    config: PublishConfig,
    tracked: HashMap<String, Tracked>,
    seq: u64,
    metrics: Metrics,
    ready: Option<ReadyFlag>,
}

impl Publisher {
    /// A publisher to `sink`; `ready` (if any) goes down while deliveries fail.
    pub fn new(
        sink: Sink,
        config: PublishConfig,
        metrics: Metrics,
        ready: Option<ReadyFlag>,
    ) -> Self {
        Self {
            sink,
            config,
            tracked: HashMap::new(),
            seq: 0,
            metrics,
            ready,
        }
    }

    /// Applies a new configuration (intervals, capacity, runbook base).
    pub fn set_config(&mut self, config: PublishConfig) {
        self.config = config;
    }

    /// How many alerts wait for (re)delivery.
    pub fn pending(&self) -> usize {
        self.tracked
            .values()
            .filter(|t| t.dests.iter().any(|d| d.pending(t.resolved_at.is_some())))
            .count()
    }

    /// Syncs with `findings` (the complete current set) and delivers what is due.
    pub async fn tick(&mut self, findings: &[Finding]) {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        self.sync(findings, wall);
        match self.sink.clone() {
            Sink::Alertmanager(client) => self.deliver_alertmanager(&client, now, wall).await,
            Sink::Webhooks { http, receivers } => {
                self.deliver_webhooks(&http, &receivers, now).await
            }
            Sink::Nowhere => {
                self.tracked.retain(|_, t| t.resolved_at.is_none());
            }
        }
        self.tracked
            .retain(|_, t| t.resolved_at.is_none() || t.dests.iter().any(|d| !d.resolved_sent));
        self.metrics.queue_depth.set(self.pending() as i64);
    }

    fn sync(&mut self, findings: &[Finding], wall: OffsetDateTime) {
        let destinations = self.sink.destinations();
        let keyed: Vec<(String, &Finding)> = findings.iter().map(|f| (f.key(), f)).collect();
        let current: std::collections::HashSet<&str> =
            keyed.iter().map(|(k, _)| k.as_str()).collect();
        for (key, t) in &mut self.tracked {
            if t.resolved_at.is_none() && !current.contains(key.as_str()) {
                t.resolved_at = Some(wall);
            }
        }
        for (key, f) in keyed {
            let annotations = f.annotations(&self.config.runbook_base_url);
            if let Some(t) = self.tracked.get_mut(&key) {
                t.annotations = annotations;
                if t.resolved_at.is_some() {
                    // It came back: a new firing episode.
                    t.resolved_at = None;
                    t.starts_at = wall;
                    t.dests = vec![Dest::new(); destinations];
                }
                continue;
            }
            if self.tracked.len() >= self.config.queue_capacity && !self.evict_one() {
                self.metrics.publish_dropped.inc();
                continue;
            }
            let starts_at = f
                .since
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .filter(|s| *s <= wall)
                .unwrap_or(wall);
            self.seq += 1;
            self.tracked.insert(
                key,
                Tracked {
                    seq: self.seq,
                    labels: f.alert_labels(),
                    annotations,
                    starts_at,
                    resolved_at: None,
                    dests: vec![Dest::new(); destinations],
                },
            );
        }
    }

    /// Drops the oldest resolved alert not yet delivered; whether one was dropped.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .tracked
            .iter()
            .filter(|(_, t)| t.resolved_at.is_some())
            .min_by_key(|(_, t)| t.seq)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.tracked.remove(&k);
                self.metrics.publish_dropped.inc();
                true
            }
            None => false,
        }
    }

    fn postable(&self, t: &Tracked, wall: OffsetDateTime) -> PostableAlert {
        let ends_at = match t.resolved_at {
            Some(r) => r,
            None => wall + self.config.resend_interval * 3,
        };
        let mut alert = PostableAlert {
            labels: t.labels.clone(),
            annotations: t.annotations.clone(),
            starts_at: Some(t.starts_at),
            ends_at: Some(ends_at),
            generator_url: None,
        };
        if let Some(url) = &self.config.generator_url {
            alert.generator_url = Some(url.clone());
        }
        alert
    }

    async fn deliver_alertmanager(
        &mut self,
        client: &AlertmanagerClient,
        now: Instant,
        wall: OffsetDateTime,
    ) {
        let every = self.config.resend_interval;
        let mut due: Vec<(u64, String)> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.dests[0].due(now, t.resolved_at.is_some(), every))
            .map(|(k, t)| (t.seq, k.clone()))
            .collect();
        due.sort();
        for chunk in due.chunks(BATCH) {
            let alerts: Vec<PostableAlert> = chunk
                .iter()
                .filter_map(|(_, k)| self.tracked.get(k))
                .map(|t| self.postable(t, wall))
                .collect();
            match client.post_alerts(&alerts).await {
                Ok(()) => {
                    if let Some(r) = &self.ready {
                        r.set_up();
                    }
                    for (_, k) in chunk {
                        if let Some(t) = self.tracked.get_mut(k) {
                            let resolved = t.resolved_at.is_some();
                            t.dests[0].sent(now, resolved);
                            let status = if resolved { "resolved" } else { "firing" };
                            self.metrics
                                .published
                                .with_label_values(&["alertmanager", status])
                                .inc();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, alerts = alerts.len(), "posting alerts to Alertmanager failed; will retry");
                    if let Some(r) = &self.ready {
                        r.set_down();
                    }
                    self.metrics
                        .publish_failures
                        .with_label_values(&["alertmanager", e.metric_label()])
                        .inc();
                    for (_, k) in &due {
                        if let Some(t) = self.tracked.get_mut(k) {
                            t.dests[0].failed(now);
                        }
                    }
                    return;
                }
            }
        }
    }

    async fn deliver_webhooks(
        &mut self,
        http: &telemetry::client::HttpClient,
        receivers: &[Receiver],
        now: Instant,
    ) {
        let jobs = self.due_webhooks(receivers, now);
        let results: Vec<_> = futures::stream::iter(jobs.into_iter().map(|job| {
            let http = http.clone();
            async move {
                let outcome = post_webhook(&http, &job.receiver, &job.message).await;
                (job, outcome)
            }
        }))
        .buffer_unordered(WEBHOOK_CONCURRENCY)
        .collect()
        .await;
        self.record_webhook_results(results, now);
    }

    /// One message per (alert, receiver) that is due now.
    fn due_webhooks(&self, receivers: &[Receiver], now: Instant) -> Vec<WebhookJob> {
        let every = self.config.repeat_interval;
        let generator_url = self.config.generator_url.clone().unwrap_or_default();
        let mut jobs = Vec::new();
        for (key, t) in &self.tracked {
            let resolved = t.resolved_at.is_some();
            for (i, d) in t.dests.iter().enumerate() {
                if !d.due(now, resolved, every) {
                    continue;
                }
                let Some(receiver) = receivers.get(i) else {
                    continue;
                };
                let alert = Alert::new(
                    t.labels.clone(),
                    t.annotations.clone(),
                    t.starts_at,
                    t.resolved_at,
                    generator_url.clone(),
                );
                let message = WebhookMessage::builder(receiver.name.clone())
                    .group_by_all()
                    .external_url(generator_url.clone())
                    .alert(alert)
                    .build();
                jobs.push(WebhookJob {
                    key: key.clone(),
                    dest: i,
                    resolved,
                    receiver: receiver.clone(),
                    message,
                });
            }
        }
        jobs
    }

    /// Marks each delivery sent or failed, counts it, and sets the readiness flag: down when
    /// any attempt failed, up when all succeeded (unchanged when none was due).
    fn record_webhook_results(
        &mut self,
        results: Vec<(WebhookJob, Result<(), &'static str>)>,
        now: Instant,
    ) {
        let attempted = !results.is_empty();
        let mut any_failed = false;
        for (job, outcome) in results {
            let Some(t) = self.tracked.get_mut(&job.key) else {
                continue;
            };
            match outcome {
                Ok(()) => {
                    t.dests[job.dest].sent(now, job.resolved);
                    let status = if job.resolved { "resolved" } else { "firing" };
                    self.metrics
                        .published
                        .with_label_values(&["webhook", status])
                        .inc();
                }
                Err(reason) => {
                    any_failed = true;
                    t.dests[job.dest].failed(now);
                    self.metrics
                        .publish_failures
                        .with_label_values(&["webhook", reason])
                        .inc();
                    let receiver = &job.receiver.name;
                    tracing::warn!(receiver = %receiver, reason, "webhook delivery failed; will retry");
                }
            }
        }
        if let (Some(r), true) = (&self.ready, attempted) {
            if any_failed {
                r.set_down();
            } else {
                r.set_up();
            }
        }
    }

    /// The sink's metric label (`alertmanager`, `webhook`, `none`).
    pub fn sink_label(&self) -> &'static str {
        self.sink.label()
    }
}
