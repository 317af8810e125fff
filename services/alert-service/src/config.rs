//! Configuration: environment variables ([`Config::read`]) and the routing file
//! (`ALERT_SERVICE_CONFIG`, YAML, parsed and checked by [`Settings::parse`]).
//!
//! Every problem in the file is reported at load time, naming its place: `routes[1].match_re.pod`,
//! `channels.slack.templates.message: line 3: ...`, `escalation.tiers[0].channels`. Secrets
//! (webhook URLs, SMTP password) come from the environment and are never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::EnvReader;
use service_kit::config::Env;

use crate::duration::DurationText;
use crate::routing::{RouteSpec, Routes, Severity};
use crate::templates::Templates;

pub use crate::settings::{
    AckSettings, ChannelConfig, ChannelKind, ChannelTarget, DeliverySettings, DigestSettings,
    EmailTarget, EnrichmentSettings, EscalationSettings, GrafanaLinks, Tier, TlsMode,
};

/// The configuration shipped in the binary: everything goes to the `log` channel (stdout).
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.yaml");

/// Channel names that exist without being declared: `log` (stdout), `email` (when the file has a
/// top-level `smtp`), `slack` (when `SLACK_WEBHOOK_URL` is set), `teams` (`TEAMS_WEBHOOK_URL`).
pub const BUILTIN_CHANNELS: [&str; 4] = ["log", "email", "slack", "teams"];

/// Everything alert-service reads from its environment.
#[derive(Clone)]
pub struct Config {
    /// The parsed routing file.
    pub settings: Arc<Settings>,
    /// `ALERT_SERVICE_TOKEN`: bearer token for the webhook; closed (403) when unset.
    pub token: Option<SecretString>,
    /// `ACK_SIGNING_KEY` (at least 32 characters): signs acknowledge links; without it every
    /// ack is refused (403).
    pub ack_signer: Option<crate::ack_link::Signer>,
    /// `ALERT_SERVICE_DB`: `sqlite://...` (default `sqlite://alert-service.db`) or `postgres://...`.
    pub database_url: SecretString,
    /// `ALERTMANAGER_URL`: for silences (acks) and the state of alerts; none = acks stay local.
    pub alertmanager_url: Option<String>,
    /// `AUTO_HEALER_URL`: whose `/api/v1/actions` the digest summarises.
    pub auto_healer_url: Option<String>,
    /// `PUBLIC_URL`: how people reach this service (acknowledge links); default
    /// `http://127.0.0.1:8086`.
    pub public_url: String,
    /// `GRAFANA_URL` (+ `GRAFANA_LOKI_UID`, `GRAFANA_TEMPO_UID`): Explore links in messages.
    pub grafana: Option<GrafanaLinks>,
    /// `ALERT_SERVICE_KUBERNETES` (`auto`/`true`/`false`): enrich from the Kubernetes API;
    /// `auto` (default) = when running in a cluster (`KUBERNETES_SERVICE_HOST` set).
    pub kubernetes: bool,
    /// This replica's name (`K8S_POD_NAME`/`POD_NAME`, or a random id): the outbox lease owner.
    pub instance: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("settings", &self.settings)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("ack_signer", &self.ack_signer)
            .field("database_url", &"[redacted]")
            .field("alertmanager_url", &self.alertmanager_url)
            .field("auto_healer_url", &self.auto_healer_url)
            .field("public_url", &self.public_url)
            .field("grafana", &self.grafana)
            .field("kubernetes", &self.kubernetes)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Config {
    /// Reads the service's variables and its routing file; problems are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let env = reader.env();
        let (source, origin) = match reader.optional("ALERT_SERVICE_CONFIG") {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => (text, path),
                Err(e) => {
                    reader.error("ALERT_SERVICE_CONFIG", format!("cannot read {path}: {e}"));
                    (DEFAULT_CONFIG.to_owned(), "(built-in)".to_owned())
                }
            },
            None => (DEFAULT_CONFIG.to_owned(), "(built-in)".to_owned()),
        };
        let settings = match Settings::parse(&source, env) {
            Ok(s) => s,
            Err(errors) => {
                reader.error(
                    "ALERT_SERVICE_CONFIG",
                    format!(
                        "{origin}: {} problem(s):\n    {}",
                        errors.len(),
                        errors.join("\n    ")
                    ),
                );
                Settings::parse(DEFAULT_CONFIG, env).expect("the built-in configuration is valid")
            }
        };
        for w in &settings.warnings {
            tracing::warn!(warning = %w, "alert-service configuration");
        }
        let token = reader.secret("ALERT_SERVICE_TOKEN");
        let ack_signer = reader.secret("ACK_SIGNING_KEY").and_then(|key| {
            crate::ack_link::Signer::new(key, settings.ack.link_ttl)
                .map_err(|e| reader.error("ACK_SIGNING_KEY", e))
                .ok()
        });
        let database_url = reader.string("ALERT_SERVICE_DB", "sqlite://alert-service.db");
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            reader.error(
                "ALERT_SERVICE_DB",
                "expected a sqlite://... or postgres://... URL",
            );
        }
        let alertmanager_url = reader.optional_url("ALERTMANAGER_URL");
        let auto_healer_url = reader.optional_url("AUTO_HEALER_URL");
        let public_url = reader.url("PUBLIC_URL", &topology::ALERT_SERVICE.local_url());
        let grafana = reader.optional_url("GRAFANA_URL").map(|url| GrafanaLinks {
            url,
            loki_uid: reader.string("GRAFANA_LOKI_UID", "loki"),
            tempo_uid: reader.string("GRAFANA_TEMPO_UID", "tempo"),
        });
        let in_cluster = reader.optional("KUBERNETES_SERVICE_HOST").is_some();
        let kubernetes = reader.parse_with("ALERT_SERVICE_KUBERNETES", in_cluster, |raw| match raw
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" => Ok(in_cluster),
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("expected auto, true or false".to_owned()),
        });
        let instance = reader
            .optional("K8S_POD_NAME")
            .or_else(|| reader.optional("POD_NAME"))
            .unwrap_or_else(|| format!("alert-service-{}", uuid::Uuid::new_v4().simple()));
        Self {
            settings: Arc::new(settings),
            token,
            ack_signer,
            database_url: SecretString::from(database_url),
            alertmanager_url,
            auto_healer_url,
            public_url,
            grafana,
            kubernetes,
            instance,
        }
    }

    /// A configuration for tests: `yaml` as the routing file, secrets looked up in `env`, the
    /// outbox in `database_url`, everything else unset.
    pub fn for_tests(yaml: &str, env: &dyn Env, database_url: &str) -> Result<Self, Vec<String>> {
        Ok(Self {
            settings: Arc::new(Settings::parse(yaml, env)?),
            token: None,
            ack_signer: None,
            database_url: SecretString::from(database_url.to_owned()),
            alertmanager_url: None,
            auto_healer_url: None,
            public_url: "http://127.0.0.1:8086".to_owned(),
            grafana: None,
            kubernetes: false,
            instance: format!("test-{}", uuid::Uuid::new_v4().simple()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    default_channels: Vec<String>,
    #[serde(default)]
    channels: BTreeMap<String, ChannelSpec>,
    #[serde(default)]
    smtp: Option<SmtpSpec>,
    #[serde(default)]
    escalation: Option<EscalationSpec>,
    /// One tier after this long (humantime), the alert's own channels.
    #[serde(default)]
    escalation_after: Option<DurationText>,
    /// The old whole-seconds key: read only to refuse it with the new form.
    #[serde(default)]
    escalation_after_secs: Option<DurationText>,
    #[serde(default)]
    digest: Option<DigestSpec>,
    #[serde(default)]
    delivery: DeliverySpec,
    #[serde(default)]
    ack: AckSpec,
    #[serde(default)]
    enrichment: EnrichmentSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSpec {
    kind: ChannelKind,
    /// log: a file to append to (`-` or absent = stdout).
    #[serde(default)]
    path: Option<String>,
    /// webhook: the URL (not secret); slack/teams/webhook: `url_env` names the variable instead.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    /// email
    #[serde(default)]
    smtp: Option<SmtpSpec>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    templates: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSpec {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls: Option<TlsMode>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationSpec {
    #[serde(default)]
    min_severity: Option<Severity>,
    #[serde(default)]
    check_interval: Option<DurationText>,
    tiers: Vec<TierSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierSpec {
    after: DurationText,
    #[serde(default)]
    channels: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestSpec {
    interval: DurationText,
    channels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverySpec {
    max_attempts: Option<u32>,
    initial_backoff: Option<DurationText>,
    max_backoff: Option<DurationText>,
    lease: Option<DurationText>,
    poll_interval: Option<DurationText>,
    concurrency: Option<usize>,
    dedup_window: Option<DurationText>,
    send_timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckSpec {
    duration: Option<DurationText>,
    max_duration: Option<DurationText>,
    link_ttl: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrichmentSpec {
    log_lines: Option<i64>,
    events: Option<usize>,
    timeout: Option<DurationText>,
    max_alerts: Option<usize>,
}

/// The parsed, checked routing file.
pub struct Settings {
    /// Routes to channels.
    pub routes: Arc<Routes>,
    /// Channels by name.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Every channel's compiled templates.
    pub templates: Arc<Templates>,
    /// Outbox tuning.
    pub delivery: DeliverySettings,
    /// Escalation, if configured.
    pub escalation: Option<EscalationSettings>,
    /// Digest, if configured.
    pub digest: Option<DigestSettings>,
    /// Acks.
    pub ack: AckSettings,
    /// Enrichment.
    pub enrichment: EnrichmentSettings,
    /// Things that work but may not be meant (a built-in channel without its secret).
    pub warnings: Vec<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("routes", &self.routes)
            .field("channels", &self.channels)
            .field("delivery", &self.delivery)
            .field("escalation", &self.escalation)
            .field("digest", &self.digest)
            .field("ack", &self.ack)
            .field("enrichment", &self.enrichment)
            .finish_non_exhaustive()
    }
}

struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, place: impl fmt::Display, what: impl fmt::Display) {
        self.0.push(format!("{place}: {what}"));
    }

    fn duration(
        &mut self,
        place: &str,
        value: Option<&DurationText>,
        default: Duration,
    ) -> Duration {
        match value.map(DurationText::parse) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.push(place, e);
                default
            }
        }
    }
}

impl Settings {
    /// Parses and checks a routing file; secrets (`url_env`, `SMTP_*`, `SLACK_WEBHOOK_URL`,
    /// `TEAMS_WEBHOOK_URL`) are read from `env`. Every problem is returned, each naming its place.
    pub fn parse(yaml: &str, env: &dyn Env) -> Result<Self, Vec<String>> {
        let file: FileConfig = if yaml.trim().is_empty() {
            serde_yaml_ng::from_str("{}")
        } else {
            serde_yaml_ng::from_str(yaml)
        }
        .map_err(|e| vec![format!("invalid YAML: {e}")])?;
        let mut errors = Errors(Vec::new());
        let mut declared = DeclaredChannels::read(&file, env, &mut errors);
        declared.add_builtins(&file, env, &mut errors);

        let mut route_specs = file.routes;
        for (i, r) in route_specs.iter_mut().enumerate() {
            r.channels =
                declared.check_refs(&format!("routes[{i}].channels"), &r.channels, &mut errors);
        }
        let default_channels =
            declared.check_refs("default_channels", &file.default_channels, &mut errors);
        let routes = Routes::compile(route_specs, default_channels)
            .map_err(|es| errors.0.extend(es))
            .ok();
        if let Some(old) = &file.escalation_after_secs {
            errors.push("escalation_after_secs", renamed("escalation_after", old));
        }
        let escalation = escalation_settings(
            file.escalation,
            file.escalation_after.as_ref(),
            &mut declared,
            &mut errors,
        );
        let digest = file
            .digest
            .map(|d| digest_settings(&d, &mut declared, &mut errors));
        let delivery = delivery_settings(&file.delivery, &mut errors);
        let ack = ack_settings(&file.ack, &mut errors);
        let enrichment = enrichment_settings(&file.enrichment, &mut errors);

        let kinds: BTreeMap<String, ChannelKind> = declared
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), c.kind))
            .collect();
        let templates = Templates::compile(&kinds, &declared.template_overrides)
            .map_err(|es| errors.0.extend(es))
            .ok();

        match (errors.0.is_empty(), routes, templates) {
            (true, Some(routes), Some(templates)) => Ok(Settings {
                routes: Arc::new(routes),
                channels: declared.channels,
                templates: Arc::new(templates),
                delivery,
                escalation,
                digest,
                ack,
                enrichment,
                warnings: declared.warnings,
            }),
            _ => Err(errors.0),
        }
    }
}

/// The channels of a file (declared and built in), the ones built in but disabled, and the
/// warnings about references to those.
struct DeclaredChannels {
    channels: BTreeMap<String, ChannelConfig>,
    template_overrides: BTreeMap<String, BTreeMap<String, String>>,
    /// Built-in channels that are off, with why.
    disabled: Vec<(&'static str, &'static str)>,
    warnings: Vec<String>,
}

impl DeclaredChannels {
    /// The channels the file declares.
    fn read(file: &FileConfig, env: &dyn Env, errors: &mut Errors) -> Self {
        let mut channels = BTreeMap::new();
        let mut template_overrides = BTreeMap::new();
        for (name, spec) in &file.channels {
            if let Some(ch) = channel(name, spec, file.smtp.as_ref(), env, errors) {
                channels.insert(name.clone(), ch);
            }
            template_overrides.insert(name.clone(), spec.templates.clone());
        }
        Self {
            channels,
            template_overrides,
            disabled: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Adds the built-in channels the file does not declare: `log` always, `email` with a
    /// top-level `smtp:`, `slack`/`teams` when their URL variable is set (else disabled).
    fn add_builtins(&mut self, file: &FileConfig, env: &dyn Env, errors: &mut Errors) {
        let channels = &mut self.channels;
        channels
            .entry("log".to_owned())
            .or_insert_with(|| ChannelConfig {
                name: "log".to_owned(),
                kind: ChannelKind::Log,
                target: ChannelTarget::Log(None),
            });
        if !channels.contains_key("email") && !file.channels.contains_key("email") {
            match &file.smtp {
                Some(smtp) => {
                    if let Some(t) = email_target("smtp", Some(smtp), None, &[], env, errors) {
                        channels.insert(
                            "email".to_owned(),
                            ChannelConfig {
                                name: "email".to_owned(),
                                kind: ChannelKind::Email,
                                target: ChannelTarget::Email(t),
                            },
                        );
                    }
                }
                None => self.disabled.push(("email", "no top-level smtp: section")),
            }
        }
        for (name, kind, var, unset) in [
            (
                "slack",
                ChannelKind::Slack,
                "SLACK_WEBHOOK_URL",
                "SLACK_WEBHOOK_URL is not set",
            ),
            (
                "teams",
                ChannelKind::Teams,
                "TEAMS_WEBHOOK_URL",
                "TEAMS_WEBHOOK_URL is not set",
            ),
        ] {
            if channels.contains_key(name) || file.channels.contains_key(name) {
                continue;
            }
            let Some(url) = env.var(var) else {
                self.disabled.push((name, unset));
                continue;
            };
            if let Err(e) = check_url(&url) {
                errors.push(format!("{var} (channel {name})"), e);
            }
            channels.insert(
                name.to_owned(),
                ChannelConfig {
                    name: name.to_owned(),
                    kind,
                    target: ChannelTarget::Http(SecretString::from(url)),
                },
            );
        }
    }

    /// The names a route, tier or digest mentions that exist; a built-in one without its secret
    /// is skipped with a warning (so a chart without a Slack secret still starts), any other
    /// unknown name is an error at `place`.
    fn check_refs(&mut self, place: &str, names: &[String], errors: &mut Errors) -> Vec<String> {
        let mut kept = Vec::new();
        for n in names {
            if self.channels.contains_key(n) {
                kept.push(n.clone());
            } else if let Some((_, why)) = self.disabled.iter().find(|(d, _)| d == n) {
                self.warnings.push(format!(
                    "{place}: channel {n:?} is disabled ({why}); skipped"
                ));
            } else {
                let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                errors.push(
                    place,
                    format!("unknown channel {n:?} (known: {})", known.join(", ")),
                );
            }
        }
        kept
    }
}

/// The message for an old `*_secs` key: it is not read, and this is what to write instead.
fn renamed(new_key: &str, old: &DurationText) -> String {
    let value = match old {
        DurationText::Number(n) => format!("{n}s"),
        DurationText::Text(t) => t.clone(),
    };
    format!("is no longer read: write {new_key}: {value}")
}

/// `escalation:` (tiers) or the shorthand `escalation_after:` (one tier, the alert's own
/// channels), not both.
fn escalation_settings(
    spec: Option<EscalationSpec>,
    after: Option<&DurationText>,
    declared: &mut DeclaredChannels,
    errors: &mut Errors,
) -> Option<EscalationSettings> {
    let escalation = match (spec, after) {
        (Some(_), Some(_)) => {
            errors.push(
                "escalation_after",
                "use either escalation: or escalation_after:, not both",
            );
            return None;
        }
        (None, None) => return None,
        (None, Some(after)) => EscalationSettings {
            min_severity: Severity::Critical,
            check_interval: Duration::from_secs(5),
            tiers: vec![Tier {
                after: errors.duration("escalation_after", Some(after), Duration::ZERO),
                channels: Vec::new(),
            }],
        },
        (Some(spec), None) => EscalationSettings {
            min_severity: spec.min_severity.unwrap_or(Severity::Critical),
            check_interval: errors.duration(
                "escalation.check_interval",
                spec.check_interval.as_ref(),
                Duration::from_secs(5),
            ),
            tiers: tiers(&spec.tiers, declared, errors),
        },
    };
    if escalation.check_interval.is_zero() {
        errors.push("escalation.check_interval", "must be more than 0");
    }
    Some(escalation)
}

/// `escalation.tiers`: at least one, by increasing delay.
fn tiers(specs: &[TierSpec], declared: &mut DeclaredChannels, errors: &mut Errors) -> Vec<Tier> {
    let mut tiers: Vec<Tier> = Vec::new();
    for (i, t) in specs.iter().enumerate() {
        let place = format!("escalation.tiers[{i}]");
        let after = errors.duration(&format!("{place}.after"), Some(&t.after), Duration::ZERO);
        if tiers.last().is_some_and(|prev| after <= prev.after) {
            errors.push(
                format!("{place}.after"),
                "tiers must have increasing delays",
            );
        }
        let channels = declared.check_refs(&format!("{place}.channels"), &t.channels, errors);
        tiers.push(Tier { after, channels });
    }
    if tiers.is_empty() {
        errors.push("escalation.tiers", "at least one tier is needed");
    }
    tiers
}

fn digest_settings(
    spec: &DigestSpec,
    declared: &mut DeclaredChannels,
    errors: &mut Errors,
) -> DigestSettings {
    let interval = errors.duration(
        "digest.interval",
        Some(&spec.interval),
        Duration::from_secs(86400),
    );
    if interval < Duration::from_secs(1) {
        errors.push("digest.interval", "must be at least 1s");
    }
    DigestSettings {
        interval,
        channels: declared.check_refs("digest.channels", &spec.channels, errors),
    }
}

fn delivery_settings(dl: &DeliverySpec, errors: &mut Errors) -> DeliverySettings {
    let mut duration = |name: &str, value: &Option<DurationText>, default_secs: u64| {
        errors.duration(
            &format!("delivery.{name}"),
            value.as_ref(),
            Duration::from_secs(default_secs),
        )
    };
    let delivery = DeliverySettings {
        max_attempts: dl.max_attempts.unwrap_or(8).max(1),
        initial_backoff: duration("initial_backoff", &dl.initial_backoff, 2),
        max_backoff: duration("max_backoff", &dl.max_backoff, 300),
        lease: duration("lease", &dl.lease, 60),
        poll_interval: duration("poll_interval", &dl.poll_interval, 1),
        concurrency: dl.concurrency.unwrap_or(8).max(1),
        dedup_window: duration("dedup_window", &dl.dedup_window, 600),
        send_timeout: duration("send_timeout", &dl.send_timeout, 10),
    };
    if delivery.lease <= delivery.send_timeout {
        errors.push(
            "delivery.lease",
            "must be longer than delivery.send_timeout",
        );
    }
    if delivery.poll_interval.is_zero() {
        errors.push("delivery.poll_interval", "must be more than 0");
    }
    delivery
}

fn ack_settings(spec: &AckSpec, errors: &mut Errors) -> AckSettings {
    let ack = AckSettings {
        duration: errors.duration(
            "ack.duration",
            spec.duration.as_ref(),
            Duration::from_secs(7200),
        ),
        max_duration: errors.duration(
            "ack.max_duration",
            spec.max_duration.as_ref(),
            Duration::from_secs(86400),
        ),
        link_ttl: errors.duration(
            "ack.link_ttl",
            spec.link_ttl.as_ref(),
            Duration::from_secs(86400),
        ),
    };
    if ack.duration > ack.max_duration {
        errors.push("ack.duration", "must not be longer than ack.max_duration");
    }
    if ack.link_ttl.is_zero() {
        errors.push("ack.link_ttl", "must be more than 0");
    }
    ack
}

fn enrichment_settings(en: &EnrichmentSpec, errors: &mut Errors) -> EnrichmentSettings {
    EnrichmentSettings {
        log_lines: en.log_lines.unwrap_or(20).clamp(1, 500),
        events: en.events.unwrap_or(10).clamp(1, 100),
        timeout: errors.duration(
            "enrichment.timeout",
            en.timeout.as_ref(),
            Duration::from_secs(2),
        ),
        max_alerts: en.max_alerts.unwrap_or(3),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err("expected an http:// or https:// URL".to_owned()),
        // Never echo the value: webhook URLs carry their token.
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

fn channel(
    name: &str,
    spec: &ChannelSpec,
    smtp: Option<&SmtpSpec>,
    env: &dyn Env,
    errors: &mut Errors,
) -> Option<ChannelConfig> {
    let place = format!("channels.{name}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errors.push(
            &place,
            "a channel name may only hold letters, digits, '-' and '_'",
        );
    }
    let target = match spec.kind {
        ChannelKind::Log => ChannelTarget::Log(match spec.path.as_deref() {
            None | Some("-") | Some("stdout") => None,
            Some(p) => Some(PathBuf::from(p)),
        }),
        ChannelKind::Slack | ChannelKind::Teams | ChannelKind::Webhook => {
            ChannelTarget::Http(SecretString::from(webhook_url(&place, spec, env, errors)?))
        }
        ChannelKind::Email => ChannelTarget::Email(email_target(
            &place,
            spec.smtp.as_ref().or(smtp),
            spec.from.as_deref(),
            &spec.to,
            env,
            errors,
        )?),
    };
    if spec.kind != ChannelKind::Email
        && (spec.smtp.is_some() || spec.from.is_some() || !spec.to.is_empty())
    {
        errors.push(
            &place,
            format!(
                "smtp/from/to only apply to email channels, this one is {}",
                spec.kind.as_str()
            ),
        );
    }
    Some(ChannelConfig {
        name: name.to_owned(),
        kind: spec.kind,
        target,
    })
}

/// The URL of a Slack, Teams or webhook channel: `url`, or the variable `url_env` names (Slack
/// and Teams default to `SLACK_WEBHOOK_URL` / `TEAMS_WEBHOOK_URL`). Never echoed: it carries the
/// token.
fn webhook_url(
    place: &str,
    spec: &ChannelSpec,
    env: &dyn Env,
    errors: &mut Errors,
) -> Option<String> {
    let default_env = match spec.kind {
        ChannelKind::Slack => Some("SLACK_WEBHOOK_URL"),
        ChannelKind::Teams => Some("TEAMS_WEBHOOK_URL"),
        _ => None,
    };
    let url = match (&spec.url, &spec.url_env) {
        (Some(_), Some(_)) => {
            errors.push(place, "set url or url_env, not both");
            return None;
        }
        (Some(u), None) => u.clone(),
        (None, var) => {
            let Some(var) = var.as_deref().or(default_env) else {
                errors.push(place, "a webhook channel needs url or url_env");
                return None;
            };
            let Some(u) = env.var(var) else {
                errors.push(format!("{place}.url_env"), format!("{var} is not set"));
                return None;
            };
            u
        }
    };
    if let Err(e) = check_url(&url) {
        errors.push(format!("{place}.url"), e);
        return None;
    }
    Some(url)
}

fn email_target(
    place: &str,
    smtp: Option<&SmtpSpec>,
    from: Option<&str>,
    to: &[String],
    env: &dyn Env,
    errors: &mut Errors,
) -> Option<EmailTarget> {
    let Some(smtp) = smtp else {
        errors.push(
            place,
            "an email channel needs smtp: (here or at the top level)",
        );
        return None;
    };
    let from = from
        .or(smtp.from.as_deref())
        .unwrap_or("alert-service@localhost")
        .to_owned();
    let to: Vec<String> = if to.is_empty() {
        smtp.to.clone()
    } else {
        to.to_vec()
    };
    let before = errors.0.len();
    if lettre::message::Mailbox::from_str(&from).is_err() {
        errors.push(
            format!("{place}.from"),
            format!("{from:?} is not an email address"),
        );
    }
    if to.is_empty() {
        errors.push(format!("{place}.to"), "at least one recipient is needed");
    }
    for (i, addr) in to.iter().enumerate() {
        if lettre::message::Mailbox::from_str(addr).is_err() {
            errors.push(
                format!("{place}.to[{i}]"),
                format!("{addr:?} is not an email address"),
            );
        }
    }
    let tls = smtp.tls.unwrap_or(match smtp.port {
        Some(465) => TlsMode::Tls,
        Some(587) => TlsMode::Starttls,
        _ => TlsMode::None,
    });
    let port = smtp.port.unwrap_or(match tls {
        TlsMode::Tls => 465,
        TlsMode::Starttls => 587,
        TlsMode::None => 25,
    });
    let timeout = errors.duration(
        &format!("{place}.smtp.timeout"),
        smtp.timeout.as_ref(),
        Duration::from_secs(10),
    );
    (errors.0.len() == before).then(|| EmailTarget {
        host: smtp.host.clone(),
        port,
        tls,
        from,
        to,
        username: env.var("SMTP_USERNAME"),
        password: env.var("SMTP_PASSWORD").map(SecretString::from),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(yaml: &str) -> Result<Settings, Vec<String>> {
        let env: HashMap<&str, &str> = [("HOOK_URL", "http://127.0.0.1:1/hook")]
            .into_iter()
            .collect();
        Settings::parse(yaml, &env)
    }

    #[test]
    fn builtin_default_routes_everything_to_log() {
        let s = parse(DEFAULT_CONFIG).unwrap();
        assert!(s.channels.contains_key("log"));
        let labels = [("alertname".to_owned(), "X".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(s.routes.channels_for(&labels), vec!["log".to_owned()]);
    }

    #[test]
    fn the_charts_config_shape_loads() {
        // k8s/charts/organism/values.yaml, alert-service.config.data
        let yaml = r#"
smtp:
  host: mailpit.monitoring.svc
  port: 1025
  from: organism@localhost
  to:
    - oncall@localhost
routes:
  - match:
      severity: critical
    channels: [email, slack]
  - match: {}
    channels: [email]
escalation_after: 15m
"#;
        let s = parse(yaml).unwrap();
        assert_eq!(s.channels["email"].kind, ChannelKind::Email);
        assert!(!s.channels.contains_key("slack"));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("routes[0].channels") && w.contains("slack")),
            "{:?}",
            s.warnings
        );
        assert_eq!(
            s.escalation.as_ref().unwrap().tiers[0].after,
            Duration::from_secs(900)
        );
    }

    #[test]
    fn every_problem_is_named_by_its_place() {
        let yaml = r#"
routes:
  - match_re: {pod: "heart-[" }
    channels: [log]
  - channels: [pager]
channels:
  hook:
    kind: webhook
    url_env: NOT_SET
  mail:
    kind: email
    smtp: {host: localhost, port: 2525}
    to: ["not an address"]
delivery:
  lease: 300
"#;
        let errors = parse(yaml).unwrap_err();
        let text = errors.join("\n");
        for needle in [
            "routes[0].match_re.pod",
            "routes[1].channels: unknown channel \"pager\"",
            "channels.hook.url_env: NOT_SET is not set",
            "channels.mail.to[0]",
            "delivery.lease: a bare number is not a duration any more: write 300s",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }

    #[test]
    fn the_old_escalation_after_secs_key_is_refused_with_the_new_one() {
        let errors = parse("escalation_after_secs: 300\n").unwrap_err();
        assert_eq!(
            errors,
            vec![
                "escalation_after_secs: is no longer read: write escalation_after: 300s".to_owned()
            ]
        );
    }

    #[test]
    fn escalation_after_takes_humantime_and_refuses_a_bare_number() {
        let s = parse("escalation_after: 1h 30m\n").unwrap();
        assert_eq!(
            s.escalation.as_ref().unwrap().tiers[0].after,
            Duration::from_secs(5400)
        );
        let errors = parse("escalation_after: 90\n").unwrap_err();
        assert!(
            errors[0].starts_with(
                "escalation_after: a bare number is not a duration any more: write 90s"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = parse("routes:\n  - matchers: {a: b}\n    channels: [log]\n").unwrap_err();
        assert!(e[0].contains("unknown field `matchers`"), "{e:?}");
    }

    #[test]
    fn bad_yaml_is_rejected() {
        let e = parse("routes: [").unwrap_err();
        assert!(e[0].starts_with("invalid YAML"), "{e:?}");
    }

    #[test]
    fn a_webhook_url_is_not_printed_in_debug_output() {
        let env: HashMap<&str, &str> = [(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/SECRETTOKEN",
        )]
        .into_iter()
        .collect();
        let s = Settings::parse("routes: [{channels: [slack]}]", &env).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("SECRETTOKEN"), "{printed}");
    }

    #[test]
    fn a_bad_webhook_url_is_named_by_its_variable_not_its_value() {
        let env: HashMap<&str, &str> = [("SLACK_WEBHOOK_URL", "hooks.slack.com/SECRETTOKEN")]
            .into_iter()
            .collect();
        let e = Settings::parse("routes: [{channels: [slack]}]", &env)
            .unwrap_err()
            .join("\n");
        assert!(
            !e.contains("SECRETTOKEN") && e.contains("SLACK_WEBHOOK_URL"),
            "{e}"
        );
    }
}
