//! A real Prometheus server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};

use crate::process::{self, ReadyServer, args};

/// What a [`Prometheus`] scrapes and evaluates.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// `(job, "127.0.0.1:port")` pairs; `/metrics` is scraped. Targets of one job share a
    /// scrape config.
    pub scrape_targets: Vec<(String, String)>,
    /// Rule files to load (files as they are, or contents written to the temp dir).
    pub rule_files: Vec<RuleFile>,
    /// Alertmanager to send alerts to, e.g. `http://127.0.0.1:9093` (from [`crate::Alertmanager::url`]).
    pub alertmanager: Option<String>,
    /// Default 1 s.
    pub scrape_interval: Duration,
    /// Default 1 s.
    pub evaluation_interval: Duration,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        Self {
            scrape_targets: Vec::new(),
            rule_files: Vec::new(),
            alertmanager: None,
            scrape_interval: Duration::from_secs(1),
            evaluation_interval: Duration::from_secs(1),
        }
    }
}

/// A Prometheus rule file.
#[derive(Debug, Clone)]
pub enum RuleFile {
    /// An existing file (e.g. `k8s/charts/organism/files/prometheus-rules.yaml`).
    Path(PathBuf),
    /// YAML text, written to the server's temp dir.
    Contents(String),
}

impl RuleFile {
    /// A rule file with this YAML text.
    pub fn contents(yaml: impl Into<String>) -> Self {
        RuleFile::Contents(yaml.into())
    }
}

impl From<PathBuf> for RuleFile {
    fn from(path: PathBuf) -> Self {
        RuleFile::Path(path)
    }
}

impl From<&Path> for RuleFile {
    fn from(path: &Path) -> Self {
        RuleFile::Path(path.to_path_buf())
    }
}

pub use prometheus_api::{QueryError, Sample};

/// A Prometheus server on 127.0.0.1 (binary `prometheus`), killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    server: ReadyServer,
}

impl Prometheus {
    /// Writes the config, starts Prometheus with `--rules.alert.resend-delay=1s` and
    /// `--web.enable-lifecycle`, and waits for `/-/ready`.
    pub async fn start(options: PrometheusOptions) -> Self {
        let dir = process::temp_dir("prometheus");
        let server = ReadyServer::start("prometheus", "prometheus", dir, |dir, port| {
            let config_path = dir.join("prometheus.yml");
            std::fs::write(&config_path, config_yaml(&options, dir, port))
                .expect("write prometheus.yml");
            args([
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                format!("--web.external-url=http://127.0.0.1:{port}/"),
                "--rules.alert.resend-delay=1s".to_owned(),
                "--web.enable-lifecycle".to_owned(),
            ])
        })
        .await;
        Self { server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The generated `prometheus.yml`.
    pub fn config_path(&self) -> PathBuf {
        self.server.dir().join("prometheus.yml")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// Sends an instant query (`GET /api/v1/query`); the URL (for messages) and the response.
    async fn send_query(&self, promql: &str) -> Result<(String, reqwest::Response), QueryError> {
        let url = format!("{}{}", self.url(), prometheus_api::QUERY_PATH);
        let response = self
            .server
            .client()
            .get(&url)
            .query(&[("query", promql)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| QueryError::Unreachable(format!("GET {url}: {e}")))?;
        Ok((url, response))
    }

    /// An instant query, decoded by [`prometheus_api`]: one [`Sample`] per series of a vector
    /// result, or one sample without labels for a scalar.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        let (url, response) = self.send_query(promql).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| QueryError::Unreachable(format!("GET {url}: {e}")))?;
        prometheus_api::parse_query_response(&body)
    }

    /// An instant query, returning the response's `data` object as is.
    pub async fn query_raw(&self, promql: &str) -> Result<Value, QueryError> {
        let (url, response) = self.send_query(promql).await?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            QueryError::Decode(format!("GET {url}: {status}, body is not JSON: {e}"))
        })?;
        if body["status"] != "success" {
            return Err(QueryError::Rejected(format!(
                "query {promql:?} failed ({status}): {body}"
            )));
        }
        Ok(body["data"].clone())
    }

    /// `GET /api/v1/alerts`: the alerts the rules currently hold (pending and firing).
    pub async fn alerts(&self) -> Result<Value, QueryError> {
        let url = format!("{}/api/v1/alerts", self.url());
        let body: Value = self
            .server
            .client()
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| QueryError::Unreachable(format!("GET {url}: {e}")))?
            .json()
            .await
            .map_err(|e| QueryError::Decode(format!("GET {url}: {e}")))?;
        Ok(body["data"]["alerts"].clone())
    }

    /// `POST /-/reload`: re-reads the config and rule files (e.g. after changing a rule file).
    pub async fn reload(&self) {
        self.server.reload().await;
    }
}

/// `1s`, `250ms`: Prometheus duration syntax.
pub(crate) fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn config_yaml(options: &PrometheusOptions, dir: &Path, port: u16) -> String {
    let rule_files: Vec<String> = options
        .rule_files
        .iter()
        .enumerate()
        .map(|(i, rule)| match rule {
            RuleFile::Path(path) => std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
            RuleFile::Contents(yaml) => {
                let path = dir.join(format!("rules-{i}.yml"));
                std::fs::write(&path, yaml).expect("write rule file");
                path.display().to_string()
            }
        })
        .collect();

    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    for (job, target) in &options.scrape_targets {
        match jobs.iter_mut().find(|(j, _)| j == job) {
            Some((_, targets)) => targets.push(target.clone()),
            None => jobs.push((job.clone(), vec![target.clone()])),
        }
    }
    let mut scrape_configs: Vec<Value> = jobs
        .into_iter()
        .map(|(job, targets)| json!({"job_name": job, "static_configs": [{"targets": targets}]}))
        .collect();
    // Prometheus scrapes itself too: handy to check the server is alive and evaluating.
    scrape_configs.push(json!({
        "job_name": "testbed-prometheus",
        "static_configs": [{"targets": [format!("127.0.0.1:{port}")]}]
    }));

    let mut config = json!({
        "global": {
            "scrape_interval": duration_text(options.scrape_interval),
            "scrape_timeout": duration_text(options.scrape_interval),
            "evaluation_interval": duration_text(options.evaluation_interval),
        },
        "rule_files": rule_files,
        "scrape_configs": scrape_configs,
    });
    if let Some(am) = &options.alertmanager {
        let url = Url::parse(am).unwrap_or_else(|e| panic!("alertmanager URL {am:?}: {e}"));
        let host = url.host_str().expect("alertmanager URL has a host");
        let port = url
            .port_or_known_default()
            .expect("alertmanager URL has a port");
        config["alerting"] = json!({
            "alertmanagers": [{
                "scheme": url.scheme(),
                "path_prefix": url.path(),
                "api_version": "v2",
                "timeout": "5s",
                "static_configs": [{"targets": [format!("{host}:{port}")]}],
            }]
        });
    }
    serde_yaml_ng::to_string(&config).expect("serialize prometheus.yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_groups_targets_by_job_and_points_at_the_alertmanager() {
        let dir = tempfile::tempdir().unwrap();
        let options = PrometheusOptions {
            scrape_targets: vec![
                ("heart".into(), "127.0.0.1:8081".into()),
                ("brain".into(), "127.0.0.1:8082".into()),
                ("heart".into(), "127.0.0.1:9081".into()),
            ],
            rule_files: vec![RuleFile::contents("groups: []\n")],
            alertmanager: Some("http://127.0.0.1:9093/am".into()),
            scrape_interval: Duration::from_millis(500),
            ..PrometheusOptions::default()
        };
        let yaml = config_yaml(&options, dir.path(), 9090);
        let v: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(v["global"]["scrape_interval"], "500ms");
        assert_eq!(v["global"]["evaluation_interval"], "1s");
        assert_eq!(v["scrape_configs"][0]["job_name"], "heart");
        assert_eq!(
            v["scrape_configs"][0]["static_configs"][0]["targets"],
            json!(["127.0.0.1:8081", "127.0.0.1:9081"])
        );
        assert_eq!(v["scrape_configs"][1]["job_name"], "brain");
        let am = &v["alerting"]["alertmanagers"][0];
        assert_eq!(am["path_prefix"], "/am");
        assert_eq!(am["static_configs"][0]["targets"][0], "127.0.0.1:9093");
        let rule_path = v["rule_files"][0].as_str().unwrap();
        assert_eq!(std::fs::read_to_string(rule_path).unwrap(), "groups: []\n");
    }
}
