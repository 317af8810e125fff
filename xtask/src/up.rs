//! `cargo xtask up`: all seven services on 127.0.0.1 (built with the `dev` profile, quick to
//! compile from cold; `--release` for optimised binaries), plus Prometheus (9090) with the
//! chart's rules and Alertmanager (9093), installed first when missing (`--no-install` skips that
//! and runs without whichever is absent). Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::SecretString;
use std::sync::OnceLock;
use topology::{SERVICES, Service};

use crate::cargo::{self, Profile};
use crate::launcher::{self, Launcher, Spec};
use crate::root;

/// Where the launcher's control API listens ([`topology::LAUNCHER`]).
pub const CONTROL_ADDR: &str = "127.0.0.1:8090";
const PROMETHEUS_PORT: u16 = topology::PROMETHEUS.port;
const ALERTMANAGER_PORT: u16 = topology::ALERTMANAGER.port;

/// The credentials of a local run: generated fresh for every run (never committed), written to
/// `.organism/tokens.env` (mode 0600) for people and tools, and handed to each service.
#[derive(Clone)]
pub struct Tokens {
    /// `CHAOS_TOKEN` of heart, brain, user-service and api-gateway (`POST`/`DELETE /chaos`).
    pub chaos: String,
    /// `ADMIN_TOKEN` of every service (`PUT /admin/log-filter`).
    pub admin: String,
    /// `ALERT_SERVICE_TOKEN`: alert-service's webhook.
    pub alert_service: String,
    /// `AUTO_HEALER_TOKEN`: the auto-healer's webhook.
    pub auto_healer: String,
    /// `LAUNCHER_TOKEN`: the launcher's control API (`:8090`).
    pub launcher: String,
    /// `ACK_SIGNING_KEY`: the key alert-service signs acknowledge links with.
    pub ack_key: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens([redacted])")
    }
}

/// 32 random bytes from the operating system, as 64 hex digits.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static TOKENS: OnceLock<Tokens> = OnceLock::new();

/// This run's tokens (generated on first use; the same for the whole process). Tools acting on
/// the running system (scenarios, the probe suite) take their credentials from here.
pub fn tokens() -> &'static Tokens {
    TOKENS.get_or_init(Tokens::generate)
}

impl Tokens {
    /// Fresh random tokens.
    pub fn generate() -> Self {
        Self {
            chaos: random_token(),
            admin: random_token(),
            alert_service: random_token(),
            auto_healer: random_token(),
            launcher: random_token(),
            ack_key: random_token(),
        }
    }

    /// `VAR=value` lines, as written to `tokens.env`.
    pub fn env_file(&self) -> String {
        format!(
            "# organism: credentials of this `cargo xtask up` run (regenerated every run).\n\
             # Use: set -a; . .organism/tokens.env; set +a\n\
             CHAOS_TOKEN={}\nADMIN_TOKEN={}\nALERT_SERVICE_TOKEN={}\nAUTO_HEALER_TOKEN={}\n\
             LAUNCHER_TOKEN={}\nACK_SIGNING_KEY={}\n",
            self.chaos,
            self.admin,
            self.alert_service,
            self.auto_healer,
            self.launcher,
            self.ack_key
        )
    }

    /// The credentials `name` runs with.
    pub fn env_for(&self, name: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("ADMIN_TOKEN", self.admin.clone())];
        match name {
            "heart" | "brain" | "user-service" | "api-gateway" => {
                env.push(("CHAOS_TOKEN", self.chaos.clone()));
            }
            "alert-service" => {
                env.push(("ALERT_SERVICE_TOKEN", self.alert_service.clone()));
                env.push(("ACK_SIGNING_KEY", self.ack_key.clone()));
            }
            "auto-healer" => {
                env.push(("AUTO_HEALER_TOKEN", self.auto_healer.clone()));
                env.push(("LAUNCHER_TOKEN", self.launcher.clone()));
            }
            _ => {}
        }
        env
    }
}

/// Writes `text` to `path`, readable by its owner only (0600), replacing what was there.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The profile to build and run (`dev` unless `--release`).
    pub profile: Profile,
    /// Skip `cargo build`.
    pub no_build: bool,
    /// Echo service logs.
    pub echo: bool,
    /// State directory (databases, Prometheus/Alertmanager data, configs).
    pub state_dir: PathBuf,
    /// Extra environment per service: (service, variable, value), applied last.
    pub overrides: Vec<(String, String, String)>,
}

impl Options {
    /// The options of a tool that runs the system for itself (scenarios, the probe suite): the
    /// profile and `--no-build` from `args`, a fresh state directory `target/<tool>/state`,
    /// service logs echoed when the variable `echo_var` is set.
    pub fn for_tool(args: &[&str], tool: &str, echo_var: &str) -> anyhow::Result<Self> {
        let state_dir = root().join("target").join(tool).join("state");
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir)?;
        Ok(Self {
            profile: Profile::from_args(args),
            no_build: args.contains(&"--no-build"),
            echo: std::env::var_os(echo_var).is_some(),
            state_dir,
            overrides: Vec::new(),
        })
    }
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
        profile: Profile::from_args(args),
        no_build: args.contains(&"--no-build"),
        echo: !args.contains(&"--quiet"),
        state_dir: root().join(".organism"),
        overrides: Vec::new(),
    };
    let smoke = args.contains(&"--smoke");
    if !args.contains(&"--no-install") {
        install_alerting()?;
    }
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

/// Builds the seven binaries with the options' profile.
pub fn build(opts: &Options) -> anyhow::Result<()> {
    if opts.no_build {
        return Ok(());
    }
    println!("building services ({} profile)…", opts.profile.name());
    let bins: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
    cargo::build(opts.profile, &bins)
}

/// The binary of `name` for these options.
pub fn binary(opts: &Options, name: &str) -> PathBuf {
    cargo::binary(opts.profile, name)
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
        ("SHUTDOWN_TIMEOUT", "5s".to_owned()),
    ];
    env.extend(tokens().env_for(name));
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
                // Direct delivery: the receivers (with their tokens) are in a private file.
                None => env.push((
                    "HEALTH_MONITOR_CONFIG",
                    state.join("health-monitor.yaml").display().to_string(),
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
    for Service { name, port } in &SERVICES {
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

/// The health-monitor's file in a run without Alertmanager: findings go straight to
/// alert-service and the auto-healer, with their tokens.
pub fn health_monitor_config() -> String {
    format!(
        "receivers:\n  - name: alert-service\n    url: {}/webhook/alertmanager\n    bearer_token: {}\n  \
         - name: auto-healer\n    url: {}/webhook/alertmanager\n    bearer_token: {}\n",
        url(8086),
        tokens().alert_service,
        url(8085),
        tokens().auto_healer
    )
}

/// Alertmanager routing for a local run: everything to alert-service, remediable alerts also to
/// the auto-healer (each webhook with its bearer token) — the same tree as the cluster's values. An alert that outlives a repair is
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
         - url: {}/webhook/alertmanager\n        send_resolved: true\n        \
         http_config:\n          authorization:\n            credentials: {}\n  \
         - name: auto-healer\n    webhook_configs:\n      \
         - url: {}/webhook/alertmanager\n        send_resolved: true\n        \
         http_config:\n          authorization:\n            credentials: {}\n",
        url(8086),
        tokens().alert_service,
        url(8085),
        tokens().auto_healer,
    )
}

/// Installs Prometheus and Alertmanager when either is missing, with the installer
/// `cargo xtask test` uses (`ci/install-test-deps.sh --up`: Debian's packages, through sudo when
/// not root), so that a fresh machine runs the whole loop.
fn install_alerting() -> anyhow::Result<()> {
    if which("prometheus") && which("prometheus-alertmanager") {
        return Ok(());
    }
    println!("installing Prometheus and Alertmanager (ci/install-test-deps.sh --up)…");
    let status = Command::new("bash")
        .args(["ci/install-test-deps.sh", "--up"])
        .current_dir(root())
        .status()
        .context("running ci/install-test-deps.sh")?;
    if !status.success() {
        bail!(
            "installing Prometheus and Alertmanager failed ({status}); \
             install the Debian packages prometheus and prometheus-alertmanager, \
             or run without alerting: cargo xtask up --no-install"
        );
    }
    Ok(())
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
    /// Where this run's credentials are (`tokens.env`, mode 0600).
    pub tokens_file: PathBuf,
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
        start_control_api(&launcher, state).await?;
        let alertmanager = which("prometheus-alertmanager");
        if alertmanager {
            start_alertmanager(&launcher, state).await?;
        }
        let prometheus = which("prometheus");
        if prometheus {
            start_prometheus(&launcher, state, alertmanager).await?;
        }
        start_services(&launcher, opts, prometheus, alertmanager).await?;
        let system = Self {
            launcher,
            tokens_file: state.join("tokens.env"),
            prometheus,
            alertmanager,
        };
        system.wait_ready().await?;
        let reaper = system.launcher.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                reaper.reap();
            }
        });
        Ok(system)
    }

    /// Waits until every service, Prometheus and Alertmanager answer their readiness probes.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        for Service { name, port } in &SERVICES {
            launcher::wait_http_ok(*port, "/readyz", Duration::from_secs(30))
                .await
                .with_context(|| format!("{name} did not become ready"))?;
        }
        if self.prometheus {
            launcher::wait_http_ok(PROMETHEUS_PORT, "/-/ready", Duration::from_secs(30)).await?;
        }
        if self.alertmanager {
            launcher::wait_http_ok(ALERTMANAGER_PORT, "/-/ready", Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Stops every process.
    pub async fn stop(self) {
        self.launcher.stop_all().await;
    }
}

/// Writes this run's private files and starts the launcher's control API on [`CONTROL_ADDR`].
async fn start_control_api(launcher: &Launcher, state: &Path) -> anyhow::Result<()> {
    let tokens = tokens();
    write_private(&state.join("tokens.env"), &tokens.env_file())?;
    write_private(&state.join("health-monitor.yaml"), &health_monitor_config())?;
    let control: SocketAddr = CONTROL_ADDR.parse()?;
    let token = SecretString::from(tokens.launcher.clone());
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
    Ok(())
}

/// Alertmanager with the local routes ([`alertmanager_config`]).
async fn start_alertmanager(launcher: &Launcher, state: &Path) -> anyhow::Result<()> {
    let dir = state.join("alertmanager");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("alertmanager.yml");
    write_private(&config, &alertmanager_config())?;
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
    Ok(())
}

/// Prometheus with the chart's rules shortened ([`local_rules`]), scraping every service and
/// alerting through Alertmanager when there is one.
async fn start_prometheus(
    launcher: &Launcher,
    state: &Path,
    alertmanager: bool,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// The seven services, each with its local environment and the options' overrides.
async fn start_services(
    launcher: &Launcher,
    opts: &Options,
    prometheus: bool,
    alertmanager: bool,
) -> anyhow::Result<()> {
    let state = &opts.state_dir;
    for Service { name, port } in &SERVICES {
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
    Ok(())
}

fn print_welcome(system: &System) {
    let mut lines = vec![String::new(), "organism is up:".to_owned()];
    for Service { name, port } in &SERVICES {
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
        "  {:<15} http://{CONTROL_ADDR}/services  (bearer LAUNCHER_TOKEN)",
        "launcher"
    ));
    lines.push(String::new());
    lines.push(format!(
        "credentials of this run (new every run, mode 0600): {}",
        system.tokens_file.display()
    ));
    lines.push("  load them into your shell:  set -a; . .organism/tokens.env; set +a".into());
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
            "  curl -s -XPOST localhost:8081/chaos -H \"authorization: Bearer $CHAOS_TOKEN\" \\",
            "       -H 'content-type: application/json' -d '{\"crash_after_s\":1}'",
            "  curl -s -XPUT localhost:8080/admin/log-filter -H \"authorization: Bearer $ADMIN_TOKEN\" -d 'info,api_gateway=debug'",
            "  curl -s localhost:8090/services -H \"authorization: Bearer $LAUNCHER_TOKEN\"",
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
        .bearer_auth(&tokens().launcher)
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
    fn the_control_api_listens_on_the_launchers_port() {
        assert_eq!(CONTROL_ADDR, topology::LAUNCHER.local_addr());
    }

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
        assert!(config.contains(&format!("credentials: {}", tokens().alert_service)));
        assert!(config.contains(&format!("credentials: {}", tokens().auto_healer)));
    }

    #[test]
    fn every_run_has_its_own_private_tokens() {
        let a = Tokens::generate();
        let b = Tokens::generate();
        let all = [
            &a.chaos,
            &a.admin,
            &a.alert_service,
            &a.auto_healer,
            &a.launcher,
            &a.ack_key,
        ];
        for t in all {
            assert_eq!(t.len(), 64);
            assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(all.iter().filter(|o| **o == t).count(), 1, "distinct");
        }
        assert_ne!(a.chaos, b.chaos, "fresh every run");
        assert!(!format!("{a:?}").contains(&a.chaos), "Debug redacts");
        let names = |s: &str| -> Vec<&str> { a.env_for(s).iter().map(|(k, _)| *k).collect() };
        assert_eq!(names("heart"), ["ADMIN_TOKEN", "CHAOS_TOKEN"]);
        assert_eq!(
            names("alert-service"),
            ["ADMIN_TOKEN", "ALERT_SERVICE_TOKEN", "ACK_SIGNING_KEY"]
        );
        assert_eq!(
            names("auto-healer"),
            ["ADMIN_TOKEN", "AUTO_HEALER_TOKEN", "LAUNCHER_TOKEN"]
        );

        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("organism-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.env");
        write_private(&path, &a.env_file()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("LAUNCHER_TOKEN={}", a.launcher)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
