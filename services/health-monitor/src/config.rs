//! Configuration: environment variables ([`crate::Config`]) and the YAML file
//! (`HEALTH_MONITOR_CONFIG`, [`FileConfig`]).
//!
//! The file is parsed strictly (unknown fields are errors) and every error names the field by
//! its path, e.g. `checks[1].threshold: invalid type: string "x", expected f64`. On the first
//! load a bad file stops the service before it binds its port (exit code 2, like any bad
//! variable); later, a bad edit is logged and counted and the last good configuration stays in
//! force ([`watch_file`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::finding::{RESERVED_LABELS, Remediation, Severity};

/// The local services of `cargo xtask up` ([`topology::SERVICES`]), health-monitor itself
/// excluded.
pub fn local_services() -> impl Iterator<Item = topology::Service> {
    topology::SERVICES
        .into_iter()
        .filter(|s| *s != topology::HEALTH_MONITOR)
}

use service_kit::duration::{deserialize as de_duration, serialize as ser_duration};

/// The old whole-seconds keys, now humantime keys without the `_secs` suffix.
const RENAMED_KEYS: [(&str, &str); 1] = [("interval_secs", "interval")];

/// An old `*_secs` key at the top of the file, with the message giving the key and form to write
/// instead (`interval_secs: 15` → `interval: 15s`). Text that is not a YAML mapping is left to
/// the parser to report.
fn renamed_key(text: &str) -> Option<(&'static str, String)> {
    let serde_yaml_ng::Value::Mapping(top) = serde_yaml_ng::from_str(text).ok()? else {
        return None;
    };
    RENAMED_KEYS.iter().find_map(|(old, new)| {
        let value = match top.get(*old)? {
            serde_yaml_ng::Value::Number(n) => format!("{n}s"),
            serde_yaml_ng::Value::String(t) => t.clone(),
            _ => "<duration, e.g. 15s>".to_owned(),
        };
        Some((*old, format!("is no longer read: write {new}: {value}")))
    })
}

/// The thresholds of the Kubernetes classifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// A pod, node, Deployment, StatefulSet, DaemonSet or Service not ready for longer is a finding (default 2m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub not_ready_after: Duration,
    /// An unschedulable pod pending for longer is a finding (default 5m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub pending_after: Duration,
    /// This many restarts or more, the last within `restart_window`, is `pod-restarting` (default 3).
    pub restarts: u32,
    /// The window of `restarts` and of `oom-killed` (default 15m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub restart_window: Duration,
    /// A node cordoned for longer is `node-cordoned-long` (default 24h).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub cordoned_for: Duration,
    /// A failed pod older than this is `pod-failed-lingering` (default 1h).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub lingering_failed_after: Duration,
    /// A pod still there this long after its deletion deadline is `pod-stuck-terminating` (default 5m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub stuck_terminating_after: Duration,
    /// An HPA at its maximum for this long is `hpa-at-max-replicas` (default 5m).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub hpa_at_max_for: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            not_ready_after: Duration::from_secs(120),
            pending_after: Duration::from_secs(300),
            restarts: 3,
            restart_window: Duration::from_secs(900),
            cordoned_for: Duration::from_secs(24 * 3600),
            lingering_failed_after: Duration::from_secs(3600),
            stuck_terminating_after: Duration::from_secs(300),
            hpa_at_max_for: Duration::from_secs(300),
        }
    }
}

/// Which namespaces are watched: `include` (empty = all) minus `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceFilter {
    /// Only these (all when empty).
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
}

impl NamespaceFilter {
    /// Whether `ns` is watched.
    pub fn allows(&self, ns: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|i| i == ns))
            && !self.exclude.iter().any(|e| e == ns)
    }
}

/// Dependencies recognised in readiness messages: dependency name → words that name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DependencyRules(pub BTreeMap<String, Vec<String>>);

impl Default for DependencyRules {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Self(BTreeMap::from([(
            "database".to_owned(),
            words(&["database", "db", "postgres", "postgresql", "sqlite", "sql"]),
        )]))
    }
}

impl DependencyRules {
    /// The first dependency one of `texts` names (whole words, case-insensitive).
    pub fn find<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Option<String> {
        for text in texts {
            let lower = text.to_ascii_lowercase();
            let words: Vec<&str> = lower
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            for (dependency, keywords) in &self.0 {
                if keywords
                    .iter()
                    .any(|k| words.contains(&k.to_ascii_lowercase().as_str()))
                {
                    return Some(dependency.clone());
                }
            }
        }
        None
    }
}

/// How a PromQL check compares a sample with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `>`
    #[serde(rename = ">")]
    Greater,
    /// `>=`
    #[serde(rename = ">=")]
    GreaterOrEqual,
    /// `<`
    #[serde(rename = "<")]
    Less,
    /// `<=`
    #[serde(rename = "<=")]
    LessOrEqual,
    /// `==`
    #[serde(rename = "==")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
}

impl Comparison {
    /// Whether `value` crosses `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }
}

fn default_comparison() -> Comparison {
    Comparison::Greater
}

/// A PromQL check: fires for every series of `query` whose value crosses `threshold` for `for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromCheck {
    /// A unique name (label `check`).
    pub name: String,
    /// An instant PromQL query.
    pub query: String,
    /// The threshold.
    pub threshold: f64,
    /// `>` (default), `>=`, `<`, `<=`, `==`, `!=`.
    #[serde(default = "default_comparison")]
    pub comparison: Comparison,
    /// How long the condition must hold before the finding fires (default 0).
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_duration",
        serialize_with = "ser_duration"
    )]
    pub for_: Duration,
    /// Severity (default `warning`).
    #[serde(default)]
    pub severity: Severity,
    /// Extra labels (not the reserved ones).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One line for humans (default: the check's name and value).
    #[serde(default)]
    pub summary: Option<String>,
    /// What the healer may do (default none).
    #[serde(default)]
    pub remediation: Option<Remediation>,
    /// The dependency at fault, if the check is about one.
    #[serde(default)]
    pub dependency: Option<String>,
}

/// A local HTTP target: `/healthz` and `/readyz` under `url` are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// The service's name (label `service`).
    pub name: String,
    /// Its base URL, e.g. `http://127.0.0.1:8081`.
    pub url: String,
}

/// Local mode: what is probed and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Probe period (default 500ms).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Per-probe timeout (default 2s): long enough that a healthy service on a saturated
    /// 2-core machine (load on its request path, liveness answered outside it) still answers.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Consecutive failed probes before `service-down` (default 3): a crashed process (the
    /// connection refused at once) is still found within about 1.5 s.
    pub failures_before_down: u32,
    /// The targets (default: the local services of CONTRACTS.md but this one).
    pub targets: Vec<LocalTarget>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            failures_before_down: 3,
            targets: local_services()
                .map(|s| LocalTarget {
                    name: s.name.to_owned(),
                    url: s.local_url(),
                })
                .collect(),
        }
    }
}

/// A webhook receiver for direct delivery (used when no Alertmanager is configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The receiver's name (the payload's `receiver`).
    pub name: String,
    /// Where to POST, e.g. `http://127.0.0.1:8085/webhook/alertmanager`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    #[serde(default, skip_serializing)]
    pub bearer_token: Option<String>,
}

/// Publishing to Alertmanager or receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// How often a firing alert is re-posted to Alertmanager (default 30s); its `endsAt` is set
    /// three intervals ahead, so two lost posts do not resolve it.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub resend_interval: Duration,
    /// How often a firing alert is re-sent to a webhook receiver (Alertmanager's
    /// `repeat_interval`, default 4h).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub repeat_interval: Duration,
    /// Most undelivered alerts kept for retry; beyond it the oldest are dropped and counted (default 10000).
    pub queue_capacity: usize,
    /// Base of the `runbook_url` annotation (`#<alertname lowercase>` is appended).
    pub runbook_base_url: String,
    /// `generatorURL` of the alerts (default none).
    pub generator_url: Option<String>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            resend_interval: Duration::from_secs(30),
            repeat_interval: Duration::from_secs(4 * 3600),
            queue_capacity: 10_000,
            runbook_base_url:
                "https://github.com/organism-rs/organism/blob/main/k8s/charts/organism/RUNBOOKS.md"
                    .to_owned(),
            generator_url: None,
        }
    }
}

/// The YAML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The periodic full sweep (and PromQL check) period (default 15s; the old `interval_secs`
    /// key is refused with this form).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Namespaces to watch (empty = all).
    pub namespaces: Vec<String>,
    /// Namespaces never to watch.
    pub exclude_namespaces: Vec<String>,
    /// Whether PromQL checks run (the configured ones and the control-plane `up` check).
    pub prometheus_checks: bool,
    /// Classifier thresholds.
    pub thresholds: Thresholds,
    /// Dependency keywords.
    pub dependencies: DependencyRules,
    /// PromQL checks.
    pub checks: Vec<PromCheck>,
    /// The control-plane `up` query (when `prometheus_checks`); empty disables it.
    pub control_plane_query: String,
    /// Local mode.
    pub local: LocalConfig,
    /// Webhook receivers for direct delivery (added to `WEBHOOK_URLS`).
    pub receivers: Vec<Receiver>,
    /// Publishing.
    pub publish: PublishConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            prometheus_checks: true,
            thresholds: Thresholds::default(),
            dependencies: DependencyRules::default(),
            checks: Vec::new(),
            control_plane_query:
                r#"up{job=~"etcd|kube-scheduler|kube-controller-manager|apiserver"} == 0"#
                    .to_owned(),
            local: LocalConfig::default(),
            receivers: Vec::new(),
            publish: PublishConfig::default(),
        }
    }
}

/// A configuration file that cannot be used, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct FileError {
    /// The file.
    pub file: String,
    /// The field path, e.g. `checks[0].threshold` (`.` for the whole document).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl FileConfig {
    /// The namespace filter.
    pub fn namespace_filter(&self) -> NamespaceFilter {
        NamespaceFilter {
            include: self.namespaces.clone(),
            exclude: self.exclude_namespaces.clone(),
        }
    }

    /// The sweep period.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, FileError> {
        let err = |field: String, reason: String| FileError {
            file: file.to_owned(),
            field,
            reason,
        };
        if let Some((old, new)) = renamed_key(text) {
            return Err(err(old.to_owned(), new));
        }
        let config: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = match e.path().to_string() {
                    p if p.is_empty() => ".".to_owned(),
                    p => p,
                };
                let mut inner = e.into_inner().to_string();
                // serde_yaml_ng puts its own (shorter) path before the message: keep one.
                if let Some((prefix, rest)) = inner.split_once(": ")
                    && !prefix.contains(' ')
                    && path.starts_with(prefix)
                {
                    inner = rest.to_owned();
                }
                err(path, inner)
            })?
        };
        config.validate().map_err(|(f, r)| err(f, r))?;
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: file.clone(),
            field: ".".to_owned(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// The first field that is wrong, with why; checked after parsing, in file order.
    fn validate(&self) -> Result<(), (String, String)> {
        if self.interval.is_zero() {
            return Err(("interval".into(), "must be more than 0".into()));
        }
        self.validate_checks()?;
        self.validate_urls()?;
        self.validate_local_and_publish()
    }

    fn validate_checks(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err((format!("checks[{i}].name"), "must not be empty".into()));
            }
            if !names.insert(c.name.as_str()) {
                return Err((
                    format!("checks[{i}].name"),
                    format!("duplicate check name {:?}", c.name),
                ));
            }
            if c.query.trim().is_empty() {
                return Err((format!("checks[{i}].query"), "must not be empty".into()));
            }
            if !c.threshold.is_finite() {
                return Err((
                    format!("checks[{i}].threshold"),
                    "must be a finite number".into(),
                ));
            }
            for k in c.labels.keys() {
                if RESERVED_LABELS.contains(&k.as_str()) || k == "check" {
                    return Err((
                        format!("checks[{i}].labels.{k}"),
                        "is set by health-monitor itself".into(),
                    ));
                }
                if !is_label_name(k) {
                    return Err((
                        format!("checks[{i}].labels.{k}"),
                        "is not a valid Prometheus label name".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_urls(&self) -> Result<(), (String, String)> {
        let targets = self.local.targets.iter().enumerate();
        let targets = targets.map(|(i, t)| (format!("local.targets[{i}].url"), &t.url));
        let receivers = self.receivers.iter().enumerate();
        let receivers = receivers.map(|(i, r)| (format!("receivers[{i}].url"), &r.url));
        for (field, url) in targets.chain(receivers) {
            if !is_http_url(url) {
                return Err((
                    field,
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        Ok(())
    }

    fn validate_local_and_publish(&self) -> Result<(), (String, String)> {
        if self.local.interval.is_zero() {
            return Err(("local.interval".into(), "must be more than 0".into()));
        }
        if self.local.timeout < Duration::from_millis(50) {
            return Err((
                "local.timeout".into(),
                "must be at least 50ms (a busy machine cannot keep less)".into(),
            ));
        }
        if self.local.failures_before_down == 0 {
            return Err((
                "local.failures_before_down".into(),
                "must be at least 1".into(),
            ));
        }
        if self.publish.resend_interval.is_zero() {
            return Err((
                "publish.resend_interval".into(),
                "must be more than 0".into(),
            ));
        }
        if self.publish.queue_capacity == 0 {
            return Err(("publish.queue_capacity".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Watches `path` (polling its modification time every `period`) and publishes each new valid
/// configuration on `tx`; an invalid one is logged and counted in `failures`, and the last good
/// one stays.
pub async fn watch_file(
    path: PathBuf,
    period: Duration,
    tx: watch::Sender<std::sync::Arc<FileConfig>>,
    failures: prometheus::IntCounter,
    shutdown: CancellationToken,
) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = modified(&path);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        match FileConfig::load(&path) {
            Ok(config) => {
                tracing::info!(file = %path.display(), "configuration reloaded");
                tx.send_replace(std::sync::Arc::new(config));
            }
            Err(e) => {
                failures.inc();
                tracing::error!(error = %e, "configuration change rejected; keeping the last good configuration");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_configmap_parses() {
        let yaml = "interval: 15s\nnamespaces:\n  - organism\nprometheus_checks: true\n";
        let c = FileConfig::parse(yaml, "chart.yaml").unwrap();
        assert_eq!(c.interval(), Duration::from_secs(15));
        assert!(c.namespace_filter().allows("organism"));
        assert!(!c.namespace_filter().allows("kube-system"));
        assert!(c.prometheus_checks);
    }

    #[test]
    fn a_full_file_parses_with_humantime_durations() {
        let yaml = r#"
thresholds:
  not_ready_after: 90s
  pending_after: 10m
  restarts: 5
  cordoned_for: 2h
exclude_namespaces: [kube-system]
checks:
  - name: heart-slow
    query: 'histogram_quantile(0.99, rate(x_bucket[1m]))'
    threshold: 0.5
    comparison: ">="
    for: 1m
    severity: critical
    labels: {team: organs}
    remediation: restart-pod
local:
  interval: 250ms
  targets:
    - {name: heart, url: "http://127.0.0.1:18081"}
receivers:
  - {name: auto-healer, url: "http://127.0.0.1:8085/webhook/alertmanager", bearer_token: t}
"#;
        let c = FileConfig::parse(yaml, "f").unwrap();
        assert_eq!(c.thresholds.not_ready_after, Duration::from_secs(90));
        assert_eq!(c.thresholds.pending_after, Duration::from_secs(600));
        assert_eq!(c.thresholds.cordoned_for, Duration::from_secs(7200));
        assert_eq!(
            c.thresholds.restart_window,
            Duration::from_secs(900),
            "defaults fill the rest"
        );
        assert_eq!(c.checks[0].comparison, Comparison::GreaterOrEqual);
        assert_eq!(c.checks[0].for_, Duration::from_secs(60));
        assert_eq!(c.checks[0].severity, Severity::Critical);
        assert_eq!(c.checks[0].remediation, Some(Remediation::RestartPod));
        assert_eq!(c.local.interval, Duration::from_millis(250));
        assert_eq!(c.local.targets.len(), 1);
        assert!(!c.namespace_filter().allows("kube-system"));
        assert!(c.namespace_filter().allows("default"));
    }

    #[test]
    fn a_bare_number_of_seconds_is_refused_naming_the_new_form() {
        let e = FileConfig::parse("thresholds:\n  pending_after: 600\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("thresholds.pending_after"), "{e}");
        assert!(e.contains("write 600s"), "{e}");
    }

    #[test]
    fn the_old_interval_secs_key_is_refused_with_the_new_one() {
        let e = FileConfig::parse("interval_secs: 30\nnamespaces: [organism]\n", "hm.yaml")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "hm.yaml: interval_secs: is no longer read: write interval: 30s"
        );
    }

    #[test]
    fn interval_is_humantime() {
        let c = FileConfig::parse("interval: 1m 30s\n", "f").unwrap();
        assert_eq!(c.interval(), Duration::from_secs(90));
    }

    #[test]
    fn a_bare_number_interval_is_refused_naming_the_new_form() {
        let e = FileConfig::parse("interval: 30\n", "f").unwrap_err();
        assert_eq!(e.field, "interval");
        assert!(e.reason.contains("write 30s"), "{e}");
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            (
                "checks:\n  - name: a\n    query: up\n    threshold: high\n",
                "checks[0].threshold",
            ),
            (
                "thresholds:\n  not_ready_after: soon\n",
                "thresholds.not_ready_after",
            ),
            (
                "thresholds:\n  not_ready_afterr: 1m\n",
                "thresholds.not_ready_afterr",
            ),
            (
                "checks:\n  - {name: a, query: up, threshold: 1, comparison: '=>'}\n",
                "checks[0].comparison",
            ),
            (
                "checks:\n  - {name: a, query: up, threshold: 1}\n  - {name: a, query: up, threshold: 2}\n",
                "checks[1].name",
            ),
            (
                "checks:\n  - {name: a, query: up, threshold: 1, labels: {severity: x}}\n",
                "checks[0].labels.severity",
            ),
            (
                "local:\n  targets:\n    - {name: h, url: 'ftp://x'}\n",
                "local.targets[0].url",
            ),
            ("interval: -1\n", "interval"),
            ("interval: 0s\n", "interval"),
            ("receivers: {}\n", "receivers"),
        ];
        for (yaml, field) in cases {
            let e = FileConfig::parse(yaml, "hm.yaml").unwrap_err();
            assert_eq!(e.field, field, "{yaml}\n→ {e}");
            assert!(
                e.to_string().starts_with(&format!("hm.yaml: {field}: ")),
                "{e}"
            );
        }
        let e = FileConfig::parse("thresholds:\n  not_ready_afterr: 1m\n", "f").unwrap_err();
        assert!(e.reason.contains("not_ready_afterr"), "{e}");
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../config/health-monitor.example.yaml");
        let c = FileConfig::parse(text, "health-monitor.example.yaml").unwrap();
        assert_eq!(c.local.targets.len(), 6);
        assert_eq!(c.checks[0].for_, Duration::from_secs(120));
        assert_eq!(c.receivers.len(), 2);
        let defaults = FileConfig::default();
        assert_eq!(
            c.thresholds, defaults.thresholds,
            "the example shows the defaults"
        );
        assert_eq!(c.local, defaults.local);
        assert_eq!(c.publish, defaults.publish);
        assert_eq!(c.dependencies, defaults.dependencies);
    }

    #[test]
    fn dependency_words_match_whole_words_only() {
        let rules = DependencyRules::default();
        assert_eq!(
            rules.find(["database: connection refused"]),
            Some("database".into())
        );
        assert_eq!(
            rules.find(["Readiness probe failed: db timeout"]),
            Some("database".into())
        );
        assert_eq!(
            rules.find([
                "dbus is broken",
                "containers with unready status: [heartbeat]"
            ]),
            None
        );
    }

    #[test]
    fn comparisons() {
        assert!(Comparison::Greater.holds(2.0, 1.0));
        assert!(!Comparison::Greater.holds(1.0, 1.0));
        assert!(Comparison::LessOrEqual.holds(1.0, 1.0));
        assert!(Comparison::NotEqual.holds(0.0, 1.0));
    }
}
