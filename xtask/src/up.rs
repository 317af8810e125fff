//! `cargo xtask up`: all seven services on 127.0.0.1, plus Prometheus (9090) and Alertmanager
//! (9093) with the chart's rules when they are installed. Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::SecretString;

use crate::launcher::{self, Launcher, SERVICES, Spec};
use crate::root;

/// Where the launcher's control API listens.
pub const CONTROL_ADDR: &str = "127.0.0.1:8090";
const PROMETHEUS_PORT: u16 = 9090;
const ALERTMANAGER_PORT: u16 = 9093;

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Use debug binaries (faster to build, slower to run).
    pub debug: bool,
    /// Skip `cargo build`.
    pub no_build: bool,
    /// Echo service logs.
    pub echo: bool,
    /// State directory (databases, Prometheus/Alertmanager data, configs).
    pub state_dir: PathBuf,
    /// Extra environment per service: (service, variable, value), applied last.
    pub overrides: Vec<(String, String, String)>,
}

pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    if args.contains(&"--from-chart") {
        let rest: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| *a != "--from-chart")
            .collect();
        return crate::from_chart::run(&[&["up"][..], &rest].concat());
    }
    let opts = Options {
        debug: args.contains(&"--debug"),
        no_build: args.contains(&"--no-build"),
        echo: !args.contains(&"--quiet"),
        state_dir: root().join(".organism"),
        overrides: Vec::new(),
    };
    let smoke = args.contains(&"--smoke");
    build(&opts)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let system = System::start(&opts).await?;
        let outcome = if smoke {
            smoke_test().await
        } else {
            print_welcome(&system);
            wait_for_ctrl_c(&system.launcher).await;
            Ok(())
        };
        println!("stopping everything…");
        system.stop().await;
        outcome.map(|()| ExitCode::SUCCESS)
    })
}

/// Builds the seven binaries (release unless `debug`).
pub fn build(opts: &Options) -> anyhow::Result<()> {
    if opts.no_build {
        return Ok(());
    }
    let mut cmd = Command::new("cargo");
    cmd.arg("build").current_dir(root());
    if !opts.debug {
        cmd.arg("--release");
    }
    for (name, _) in SERVICES {
        cmd.args(["-p", name]);
    }
    println!(
        "building services ({})…",
        if opts.debug { "debug" } else { "release" }
    );
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    Ok(())
}

/// The binary of `name` for these options.
pub fn binary(opts: &Options, name: &str) -> PathBuf {
    root()
        .join("target")
        .join(if opts.debug { "debug" } else { "release" })
        .join(name)
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The environment of each service in a local run.
pub fn service_env(
    name: &str,
    port: u16,
    state: &Path,
    prometheus: bool,
    alertmanager: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("OTEL_SERVICE_NAME", name.to_owned()),
        ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ];
    let am = alertmanager.then(|| url(ALERTMANAGER_PORT));
    match name {
        "api-gateway" => {
            env.push(("USER_SERVICE_URL", url(8083)));
            env.push(("HEART_URL", url(8081)));
            env.push(("BRAIN_URL", url(8082)));
        }
        "brain" => env.push(("HEART_URL", url(8081))),
        "user-service" => env.push((
            "DATABASE_URL",
            format!("sqlite://{}", state.join("users.db").display()),
        )),
        "health-monitor" => {
            env.push(("HEALTH_MONITOR_MODE", "local".to_owned()));
            if prometheus {
                env.push(("PROMETHEUS_URL", url(PROMETHEUS_PORT)));
            }
            match &am {
                Some(am) => env.push(("ALERTMANAGER_URL", am.clone())),
                None => env.push((
                    "WEBHOOK_URLS",
                    format!(
                        "{}/webhook/alertmanager,{}/webhook/alertmanager",
                        url(8086),
                        url(8085)
                    ),
                )),
            }
        }
        "auto-healer" => {
            env.push(("AUTO_HEALER_MODE", "local".to_owned()));
            env.push(("LAUNCHER_URL", format!("http://{CONTROL_ADDR}")));
            env.push((
                "AUTO_HEALER_STATE_DIR",
                state.join("auto-healer").display().to_string(),
            ));
            if let Some(am) = &am {
                env.push(("ALERTMANAGER_URL", am.clone()));
            }
        }
        "alert-service" => {
            env.push((
                "ALERT_SERVICE_DB",
                format!("sqlite://{}", state.join("alert-service.db").display()),
            ));
            env.push(("PUBLIC_URL", url(8086)));
            env.push(("AUTO_HEALER_URL", url(8085)));
            if let Some(am) = &am {
                env.push(("ALERTMANAGER_URL", am.clone()));
            }
        }
        _ => {}
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The chart's rule file, with `for:` and range windows shortened for a local run (1 s scrapes).
pub fn local_rules() -> anyhow::Result<String> {
    let path = root().join("k8s/charts/organism/files/prometheus-rules.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("for: ")
            && rest.trim().ends_with(['m', 's', 'h'])
        {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: 3s\n"));
            continue;
        }
        let mut l = line.to_owned();
        for window in ["[1m]", "[2m]", "[3m]", "[5m]", "[10m]", "[15m]"] {
            l = l.replace(window, "[10s]");
        }
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

fn prometheus_config(rules: &Path, alertmanager: bool) -> String {
    let mut jobs = String::new();
    for (name, port) in SERVICES {
        jobs.push_str(&format!(
            "  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    let alerting = if alertmanager {
        format!(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{ALERTMANAGER_PORT}']\n"
        )
    } else {
        String::new()
    };
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 800ms\n\
         rule_files:\n  - {}\n{alerting}scrape_configs:\n{jobs}",
        rules.display()
    )
}

/// Alertmanager routing for a local run: everything to alert-service, remediable alerts also to
/// the auto-healer — the same tree as the cluster's values. An alert that outlives a repair is
/// re-delivered to the healer every 10 s, so it sees the repair did not hold (escalation, flap
/// stop); people are not re-notified (alert-service's own repeat handling applies).
pub fn alertmanager_config() -> String {
    format!(
        "route:\n  receiver: alert-service\n  group_by: [alertname, service, namespace]\n  \
         group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 1h\n  routes:\n    \
         - receiver: auto-healer\n      matchers: ['remediation=~\".+\"']\n      continue: true\n      \
         repeat_interval: 10s\n    \
         - receiver: alert-service\n\
         receivers:\n  - name: alert-service\n    webhook_configs:\n      \
         - url: {}/webhook/alertmanager\n        send_resolved: true\n  \
         - name: auto-healer\n    webhook_configs:\n      \
         - url: {}/webhook/alertmanager\n        send_resolved: true\n",
        url(8086),
        url(8085)
    )
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A running local system.
pub struct System {
    /// The process manager.
    pub launcher: Launcher,
    prometheus: bool,
    alertmanager: bool,
}

impl System {
    /// Starts Prometheus and Alertmanager (when installed), the control API and the services, and
    /// waits until every service is ready.
    pub async fn start(opts: &Options) -> anyhow::Result<Self> {
        let state = &opts.state_dir;
        std::fs::create_dir_all(state)?;
        let launcher = Launcher::default();

        let control: SocketAddr = CONTROL_ADDR.parse()?;
        let token = std::env::var("LAUNCHER_TOKEN").ok().map(SecretString::from);
        let probe = tokio::net::TcpListener::bind(control).await;
        drop(probe.with_context(|| {
            format!("{CONTROL_ADDR} is busy: is another `cargo xtask up` running?")
        })?);
        let control_launcher = launcher.clone();
        tokio::spawn(async move {
            if let Err(e) = launcher::serve_control(control_launcher, control, token).await {
                eprintln!("launcher control API stopped: {e:#}");
            }
        });

        let alertmanager = which("prometheus-alertmanager");
        if alertmanager {
            let dir = state.join("alertmanager");
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("alertmanager.yml");
            std::fs::write(&config, alertmanager_config())?;
            launcher
                .add(Spec {
                    name: "alertmanager".into(),
                    program: "prometheus-alertmanager".into(),
                    args: vec![
                        format!("--config.file={}", config.display()),
                        format!("--storage.path={}", dir.join("data").display()),
                        format!("--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}"),
                        "--cluster.listen-address=".into(),
                    ],
                    env: vec![],
                    port: Some(ALERTMANAGER_PORT),
                    echo: false,
                })
                .await?;
        }
        let prometheus = which("prometheus");
        if prometheus {
            let dir = state.join("prometheus");
            std::fs::create_dir_all(&dir)?;
            let rules = dir.join("rules.yaml");
            std::fs::write(&rules, local_rules()?)?;
            let config = dir.join("prometheus.yml");
            std::fs::write(&config, prometheus_config(&rules, alertmanager))?;
            launcher
                .add(Spec {
                    name: "prometheus".into(),
                    program: "prometheus".into(),
                    args: vec![
                        format!("--config.file={}", config.display()),
                        format!("--storage.tsdb.path={}", dir.join("data").display()),
                        format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"),
                        "--rules.alert.resend-delay=1s".into(),
                        "--web.enable-lifecycle".into(),
                    ],
                    env: vec![],
                    port: Some(PROMETHEUS_PORT),
                    echo: false,
                })
                .await?;
        }

        for (name, port) in SERVICES {
            let program = binary(opts, name);
            if !program.exists() {
                bail!(
                    "{} is missing: build it first (drop --no-build)",
                    program.display()
                );
            }
            launcher
                .add(Spec {
                    name: (*name).to_owned(),
                    program,
                    args: vec![],
                    env: {
                        let mut env = service_env(name, *port, state, prometheus, alertmanager);
                        for (service, key, value) in &opts.overrides {
                            if service == name {
                                env.retain(|(k, _)| k != key);
                                env.push((key.clone(), value.clone()));
                            }
                        }
                        env
                    },
                    port: Some(*port),
                    echo: opts.echo,
                })
                .await?;
        }
        let system = Self {
            launcher,
            prometheus,
            alertmanager,
        };
        for (name, port) in SERVICES {
            launcher::wait_http_ok(*port, "/readyz", Duration::from_secs(30))
                .await
                .with_context(|| format!("{name} did not become ready"))?;
        }
        if prometheus {
            launcher::wait_http_ok(PROMETHEUS_PORT, "/-/ready", Duration::from_secs(30)).await?;
        }
        if alertmanager {
            launcher::wait_http_ok(ALERTMANAGER_PORT, "/-/ready", Duration::from_secs(30)).await?;
        }
        let reaper = system.launcher.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                reaper.reap();
            }
        });
        Ok(system)
    }

    /// Stops every process.
    pub async fn stop(self) {
        self.launcher.stop_all().await;
    }
}

fn print_welcome(system: &System) {
    let mut lines = vec![String::new(), "organism is up:".to_owned()];
    for (name, port) in SERVICES {
        lines.push(format!("  {name:<15} http://127.0.0.1:{port}"));
    }
    if system.prometheus {
        lines.push(format!(
            "  {:<15} http://127.0.0.1:{PROMETHEUS_PORT}  (alerts: /alerts)",
            "prometheus"
        ));
    } else {
        lines.push(
            "  prometheus      not installed (apt-get install prometheus) — metrics rules off"
                .into(),
        );
    }
    if system.alertmanager {
        lines.push(format!(
            "  {:<15} http://127.0.0.1:{ALERTMANAGER_PORT}",
            "alertmanager"
        ));
    } else {
        lines.push(
            "  alertmanager    not installed (apt-get install prometheus-alertmanager)".into(),
        );
    }
    lines.push(format!(
        "  {:<15} http://{CONTROL_ADDR}/services",
        "launcher"
    ));
    lines.extend(
        [
            "",
            "try:",
            "  curl -s localhost:8080/user/123",
            "  curl -s localhost:8080/beat",
            "  curl -s 'localhost:8080/think?pulse=true'",
            "  curl -s -XPOST localhost:8080/users -H 'content-type: application/json' \\",
            "       -d '{\"name\":\"Grace Hopper\",\"email\":\"grace@example.org\"}'",
            "  hey -z 10s -c 20 http://127.0.0.1:8080/beat",
            "  curl -s -XPOST localhost:8081/chaos -H 'content-type: application/json' -d '{\"crash_after_s\":1}'",
            "  curl -s localhost:8084/api/v1/findings     # what the health-monitor sees",
            "  curl -s localhost:8085/api/v1/actions      # what the auto-healer did",
            "",
            "Ctrl-C stops everything.",
        ]
        .map(str::to_owned),
    );
    println!("{}", lines.join("\n"));
}

async fn wait_for_ctrl_c(_launcher: &Launcher) {
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves `/user/123` through the gateway and checks the control API, then returns.
async fn smoke_test() -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let r = client.get("http://127.0.0.1:8080/user/123").send().await?;
    let status = r.status();
    let body = r.text().await?;
    println!("smoke: GET :8080/user/123 -> {status} {body}");
    if !status.is_success() || !body.contains("123") {
        bail!("the gateway did not serve user 123");
    }
    let r = client
        .get(format!("http://{CONTROL_ADDR}/services"))
        .send()
        .await?;
    let services: serde_json::Value = r.json().await?;
    let running = services["services"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["state"] == "running").count())
        .unwrap_or(0);
    println!("smoke: {running} processes running under the launcher");
    if running < SERVICES.len() {
        bail!(
            "expected all {} services running: {services}",
            SERVICES.len()
        );
    }
    println!("smoke: passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_rules_keep_every_alert_and_shorten_durations() {
        let original =
            std::fs::read_to_string(root().join("k8s/charts/organism/files/prometheus-rules.yaml"))
                .unwrap();
        let local = local_rules().unwrap();
        assert_eq!(
            original.matches("- alert:").count(),
            local.matches("- alert:").count()
        );
        assert!(!local.contains("for: 1m") && !local.contains("[2m]"));
        assert!(local.contains("for: 3s"));
    }

    #[test]
    fn alertmanager_routes_remediable_alerts_to_both_receivers() {
        let config = alertmanager_config();
        assert!(config.contains("continue: true"));
        assert!(config.contains("127.0.0.1:8085/webhook/alertmanager"));
        assert!(config.contains("127.0.0.1:8086/webhook/alertmanager"));
    }
}
