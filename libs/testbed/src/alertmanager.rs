//! A real Alertmanager server and a config builder for webhook receivers.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{self, ReadyServer, args};
use crate::prometheus::duration_text;

/// A single-node Alertmanager on 127.0.0.1 (binary `prometheus-alertmanager`, gossip disabled),
/// killed on drop.
#[derive(Debug)]
pub struct Alertmanager {
    server: ReadyServer,
}

impl Alertmanager {
    /// Starts Alertmanager with this `alertmanager.yml` and waits for `/-/ready`. Its external
    /// URL is its own `http://127.0.0.1:PORT`.
    pub async fn start(config_yaml: &str) -> Self {
        let dir = process::temp_dir("alertmanager");
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config_yaml).expect("write alertmanager.yml");
        let server = ReadyServer::start(
            "alertmanager",
            "prometheus-alertmanager",
            dir,
            |dir, port| {
                args([
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    format!("--web.external-url=http://127.0.0.1:{port}"),
                    "--cluster.listen-address=".to_owned(),
                ])
            },
        )
        .await;
        Self { server }
    }

    /// `http://127.0.0.1:PORT` (also its external URL, the `externalURL` of its webhooks).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The config file in use.
    pub fn config_path(&self) -> PathBuf {
        self.server.dir().join("alertmanager.yml")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// Replaces the config and `POST /-/reload`s it; panics if Alertmanager rejects it.
    pub async fn reload(&self, config_yaml: &str) {
        std::fs::write(self.config_path(), config_yaml).expect("write alertmanager.yml");
        self.server.reload().await;
    }

    /// An API client of this server; see [`alertmanager_client`].
    pub fn client(&self) -> alertmanager::AlertmanagerClient {
        alertmanager_client(self.url())
    }
}

/// An API client of the Alertmanager at `url` (a real one, or a dead or silent address), with
/// client metrics registered nowhere.
pub fn alertmanager_client(url: impl AsRef<str>) -> alertmanager::AlertmanagerClient {
    let http = telemetry::client::HttpClient::new(telemetry::client::ClientMetrics::unregistered());
    alertmanager::AlertmanagerClient::new(url, http).expect("an http:// Alertmanager URL")
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceiver {
    /// Receiver name (the payload's `receiver`).
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    /// `max_alerts` (0 = all).
    pub max_alerts: u32,
}

/// An `alertmanager.yml` whose receivers are webhooks, with `group_wait: 1s` and
/// `group_interval: 1s` so notifications arrive within seconds.
///
/// With one receiver the root route sends to it; with several, each gets a child route matching
/// every alert (`continue: true`), so every receiver sees every alert.
///
/// ```
/// use std::time::Duration;
/// let yaml = testbed::AlertmanagerConfig::new()
///     .webhook("alert-service", "http://127.0.0.1:8086/webhook/alertmanager")
///     .repeat_interval(Duration::from_secs(3600))
///     .to_yaml();
/// assert!(yaml.contains("group_wait: 1s"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// The receivers.
    pub receivers: Vec<WebhookReceiver>,
    /// Default `["alertname"]`.
    pub group_by: Vec<String>,
    /// Default 1 s.
    pub group_wait: Duration,
    /// Default 1 s.
    pub group_interval: Duration,
    /// Default 1 h.
    pub repeat_interval: Duration,
    /// Default `true`.
    pub send_resolved: bool,
    /// How long an alert posted without `endsAt` stays firing (Alertmanager's default 5 m).
    pub resolve_timeout: Duration,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            receivers: Vec::new(),
            group_by: vec!["alertname".to_owned()],
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(3600),
            send_resolved: true,
            resolve_timeout: Duration::from_secs(300),
        }
    }
}

impl AlertmanagerConfig {
    /// No receivers yet; defaults as documented on the fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a webhook receiver.
    #[must_use]
    pub fn webhook(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.receivers.push(WebhookReceiver {
            name: name.into(),
            url: url.into(),
            bearer_token: None,
            max_alerts: 0,
        });
        self
    }

    /// Adds a webhook receiver that sends `Authorization: Bearer <token>`.
    #[must_use]
    pub fn webhook_with_token(
        mut self,
        name: impl Into<String>,
        url: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        self.receivers.push(WebhookReceiver {
            name: name.into(),
            url: url.into(),
            bearer_token: Some(token.into()),
            max_alerts: 0,
        });
        self
    }

    /// Sets `repeat_interval`.
    #[must_use]
    pub fn repeat_interval(mut self, interval: Duration) -> Self {
        self.repeat_interval = interval;
        self
    }

    /// Sets `group_by`.
    #[must_use]
    pub fn group_by<S: Into<String>>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.group_by = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `send_resolved` on every receiver.
    #[must_use]
    pub fn send_resolved(mut self, send: bool) -> Self {
        self.send_resolved = send;
        self
    }

    /// Sets `resolve_timeout`.
    #[must_use]
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.resolve_timeout = timeout;
        self
    }

    /// The YAML text.
    ///
    /// # Panics
    /// When there is no receiver.
    pub fn to_yaml(&self) -> String {
        assert!(
            !self.receivers.is_empty(),
            "AlertmanagerConfig needs at least one receiver"
        );
        let receivers: Vec<Value> = self
            .receivers
            .iter()
            .map(|r| {
                let mut webhook = json!({
                    "url": r.url,
                    "send_resolved": self.send_resolved,
                    "max_alerts": r.max_alerts,
                });
                if let Some(token) = &r.bearer_token {
                    webhook["http_config"] =
                        json!({"authorization": {"type": "Bearer", "credentials": token}});
                }
                json!({"name": r.name, "webhook_configs": [webhook]})
            })
            .collect();
        let mut route = json!({
            "receiver": self.receivers[0].name,
            "group_by": self.group_by,
            "group_wait": duration_text(self.group_wait),
            "group_interval": duration_text(self.group_interval),
            "repeat_interval": duration_text(self.repeat_interval),
        });
        if self.receivers.len() > 1 {
            route["routes"] = self
                .receivers
                .iter()
                .map(|r| json!({"receiver": r.name, "continue": true}))
                .collect();
        }
        let config = json!({
            "global": {"resolve_timeout": duration_text(self.resolve_timeout)},
            "route": route,
            "receivers": receivers,
        });
        serde_yaml_ng::to_string(&config).expect("serialize alertmanager.yml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_receiver_is_the_root_route() {
        let yaml = AlertmanagerConfig::new()
            .webhook("sink", "http://127.0.0.1:1/hook")
            .repeat_interval(Duration::from_secs(2))
            .to_yaml();
        let v: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(v["route"]["receiver"], "sink");
        assert_eq!(v["route"]["group_wait"], "1s");
        assert_eq!(v["route"]["group_interval"], "1s");
        assert_eq!(v["route"]["repeat_interval"], "2s");
        assert!(v["route"].get("routes").is_none());
        assert_eq!(
            v["receivers"][0]["webhook_configs"][0]["url"],
            "http://127.0.0.1:1/hook"
        );
    }

    #[test]
    fn several_receivers_each_get_every_alert() {
        let yaml = AlertmanagerConfig::new()
            .webhook("a", "http://127.0.0.1:1/a")
            .webhook_with_token("b", "http://127.0.0.1:1/b", "s3cret")
            .to_yaml();
        let v: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            v["route"]["routes"][1],
            json!({"receiver": "b", "continue": true})
        );
        assert_eq!(
            v["receivers"][1]["webhook_configs"][0]["http_config"]["authorization"]["credentials"],
            "s3cret"
        );
    }
}
