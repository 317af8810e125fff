//! The plain values the routing file configures: channel kinds and targets, and the settings of
//! delivery, escalation, digest, acknowledgements and enrichment. A leaf: it imports nothing of
//! the crate but the severity order ([`crate::routing::Severity`]), so every module that reads a
//! setting can depend on it without depending on the loader ([`crate::config`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::routing::Severity;

/// Where Grafana is and which datasources the Explore links open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrafanaLinks {
    /// Base URL, no trailing slash.
    pub url: String,
    /// Loki datasource uid (`GRAFANA_LOKI_UID`, default `loki`).
    pub loki_uid: String,
    /// Tempo datasource uid (`GRAFANA_TEMPO_UID`, default `tempo`).
    pub tempo_uid: String,
}

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A line of text to stdout or a file.
    Log,
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A Microsoft Teams Workflows webhook (Adaptive Card).
    Teams,
    /// SMTP (text + HTML).
    Email,
    /// Generic JSON POST.
    Webhook,
}

impl ChannelKind {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Log => "log",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

/// How to talk TLS to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection, upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS (local relays, mailpit, tests).
    None,
}

/// A configured channel.
#[derive(Clone)]
pub struct ChannelConfig {
    /// Its name (routes refer to it).
    pub name: String,
    /// Its kind.
    pub kind: ChannelKind,
    /// Where it sends.
    pub target: ChannelTarget,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .finish()
    }
}

/// Where a channel sends.
#[derive(Clone)]
pub enum ChannelTarget {
    /// `None` = stdout.
    Log(Option<PathBuf>),
    /// Slack, Teams, webhook: the URL (a secret: it carries the token).
    Http(SecretString),
    /// SMTP.
    Email(EmailTarget),
}

impl fmt::Debug for ChannelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelTarget::Log(p) => f.debug_tuple("Log").field(p).finish(),
            ChannelTarget::Http(_) => f.write_str("Http([redacted])"),
            ChannelTarget::Email(e) => f.debug_tuple("Email").field(e).finish(),
        }
    }
}

/// An SMTP destination.
#[derive(Clone)]
pub struct EmailTarget {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// `From`.
    pub from: String,
    /// `To` (at least one).
    pub to: Vec<String>,
    /// `SMTP_USERNAME`.
    pub username: Option<String>,
    /// `SMTP_PASSWORD`.
    pub password: Option<SecretString>,
    /// Connection and command timeout.
    pub timeout: Duration,
}

impl fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Outbox delivery tuning (`delivery:` in the file).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts before a row is `dead` (default 8).
    pub max_attempts: u32,
    /// First retry delay (default 2 s), doubled per attempt, with jitter.
    pub initial_backoff: Duration,
    /// Longest retry delay (default 5 min).
    pub max_backoff: Duration,
    /// How long a claim holds a row (default 60 s); a crashed claimer's rows are retried after it.
    pub lease: Duration,
    /// How often an idle worker looks for due rows (default 1 s; intake also wakes it).
    pub poll_interval: Duration,
    /// Rows sent at once (default 8).
    pub concurrency: usize,
    /// An identical notification (same group, status, channel and alerts) within this window is
    /// a duplicate and is not sent again (default 10 min). Alertmanager's repeats after it are.
    pub dedup_window: Duration,
    /// The longest one send may take (default 10 s).
    pub send_timeout: Duration,
}

/// One escalation tier.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Delay after the alert was first received.
    pub after: Duration,
    /// Channels; empty = the channels the alert was routed to.
    pub channels: Vec<String>,
}

/// `escalation:` in the file.
#[derive(Debug, Clone)]
pub struct EscalationSettings {
    /// Alerts at or above this severity escalate (default `critical`).
    pub min_severity: Severity,
    /// How often to look (default 5 s).
    pub check_interval: Duration,
    /// Tiers, by increasing delay.
    pub tiers: Vec<Tier>,
}

/// `digest:` in the file.
#[derive(Debug, Clone)]
pub struct DigestSettings {
    /// Period of the digest.
    pub interval: Duration,
    /// Where it goes.
    pub channels: Vec<String>,
}

/// `ack:` in the file.
#[derive(Debug, Clone)]
pub struct AckSettings {
    /// Silence length when the request does not say (default 2 h).
    pub duration: Duration,
    /// Longest silence an ack may ask for (default 1 d).
    pub max_duration: Duration,
    /// How long a signed acknowledge link stays valid (default 1 d).
    pub link_ttl: Duration,
}

/// `enrichment:` in the file (Kubernetes mode only).
#[derive(Debug, Clone)]
pub struct EnrichmentSettings {
    /// Log lines of the pod (default 20).
    pub log_lines: i64,
    /// Recent events of the object (default 10).
    pub events: usize,
    /// Bound of each lookup (default 2 s).
    pub timeout: Duration,
    /// Alerts per message that are enriched (default 3).
    pub max_alerts: usize,
}
