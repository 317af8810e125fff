//! The auto-healer's configuration, read from the environment before any port is bound.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `AUTO_HEALER_POLICY` | shipped `policy/default.yaml` | policy YAML file (re-read every 2 s; an invalid change keeps the old policy) |
//! | `AUTO_HEALER_TOKEN` | **required** | bearer token for the webhook (JSON only, same-origin) |
//! | `AUTO_HEALER_DRY_RUN` | the policy's `guards.dry_run` | decide and record, never mutate |
//! | `AUTO_HEALER_MODE` | `auto` | `kubernetes`, `local`, or `auto` (Kubernetes when in a cluster or a kubeconfig exists) |
//! | `ALERTMANAGER_URL` | unset | where RemediationFailed alerts go |
//! | `LAUNCHER_URL` | `http://127.0.0.1:8090` | local launcher control API |
//! | `LAUNCHER_TOKEN` | unset | its bearer token |
//! | `AUTO_HEALER_STATE_DIR` | `organism-state/auto-healer` | local guard state and audit file |
//! | `AUTO_HEALER_NAMESPACE` | `POD_NAMESPACE`/`K8S_NAMESPACE_NAME`, else `organism` | where the Lease and state ConfigMap live |
//! | `AUTO_HEALER_LEASE_NAME` | `auto-healer` | the leader-election Lease |
//! | `AUTO_HEALER_LEASE` | `15s` | lease duration (at least `3s`) |
//! | `AUTO_HEALER_QUEUE_CAPACITY` | 256 | alerts waiting; a full queue answers 503 |
//! | `AUTO_HEALER_MAX_BODY_BYTES` | 1048576 | largest webhook body (413 beyond) |

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::EnvReader;

use crate::policy::Policy;

/// Where actions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformChoice {
    /// Kubernetes when in a cluster or a kubeconfig exists, else local.
    Auto,
    /// The Kubernetes API.
    Kubernetes,
    /// The local launcher.
    Local,
}

/// The service's own configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy (already validated).
    pub policy: Policy,
    /// Where the policy came from (a path or `builtin`).
    pub policy_source: String,
    /// Webhook bearer token.
    pub token: Option<SecretString>,
    /// Dry run, when set by the environment (overrides the policy).
    pub dry_run: Option<bool>,
    /// Where actions go.
    pub mode: PlatformChoice,
    /// Alertmanager for RemediationFailed.
    pub alertmanager_url: Option<String>,
    /// Local launcher control API.
    pub launcher_url: String,
    /// Its token.
    pub launcher_token: Option<SecretString>,
    /// Local state directory.
    pub state_dir: PathBuf,
    /// Namespace of the Lease and the state ConfigMap.
    pub namespace: String,
    /// This instance's name (pod name or host name).
    pub identity: String,
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease duration.
    pub lease_duration: Duration,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Largest webhook body.
    pub max_body: usize,
    /// How many recent decisions `GET /api/v1/actions` keeps.
    pub history: usize,
    /// How often the policy file is checked for changes (reloaded when it changed).
    pub policy_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default_policy(),
            policy_source: "builtin".into(),
            token: None,
            dry_run: None,
            mode: PlatformChoice::Local,
            alertmanager_url: None,
            launcher_url: "http://127.0.0.1:8090".into(),
            launcher_token: None,
            state_dir: PathBuf::from("organism-state/auto-healer"),
            namespace: "organism".into(),
            identity: "auto-healer".into(),
            lease_name: crate::k8s::lease::LEASE_NAME.into(),
            lease_duration: Duration::from_secs(15),
            queue_capacity: 256,
            max_body: 1024 * 1024,
            history: 200,
            policy_poll: Duration::from_secs(2),
        }
    }
}

impl PlatformChoice {
    /// `auto`, `kubernetes` (or `kube`, `k8s`) or `local`, in any case.
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(PlatformChoice::Auto),
            "kubernetes" | "kube" | "k8s" => Ok(PlatformChoice::Kubernetes),
            "local" => Ok(PlatformChoice::Local),
            _ => Err("expected auto, kubernetes or local".to_owned()),
        }
    }
}

/// The policy `AUTO_HEALER_POLICY` names and where it came from, or the shipped one; a file
/// that cannot be read or is invalid is recorded on `reader` (with the field path).
fn read_policy(reader: &mut EnvReader<'_>) -> (Policy, String) {
    let Some(path) = reader.optional("AUTO_HEALER_POLICY") else {
        let d = Config::default();
        return (d.policy, d.policy_source);
    };
    let policy = match std::fs::read_to_string(&path) {
        Ok(text) => Policy::from_yaml(&text).map_err(|e| format!("{path}: {e}")),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    };
    let policy = policy.unwrap_or_else(|message| {
        reader.error("AUTO_HEALER_POLICY", message);
        Policy::default_policy()
    });
    (policy, path)
}

impl Config {
    /// Reads the service's own variables; problems (including every policy error, with its
    /// field path) are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let d = Self::default();
        let (policy, policy_source) = read_policy(reader);
        let dry_run = reader
            .optional("AUTO_HEALER_DRY_RUN")
            .map(|_| reader.bool("AUTO_HEALER_DRY_RUN", false));
        let mode = reader.parse_with(
            "AUTO_HEALER_MODE",
            PlatformChoice::Auto,
            PlatformChoice::parse,
        );
        let namespace = reader
            .optional("AUTO_HEALER_NAMESPACE")
            .or_else(|| reader.optional("POD_NAMESPACE"))
            .or_else(|| reader.optional("K8S_NAMESPACE_NAME"))
            .unwrap_or(d.namespace);
        let identity = reader
            .optional("POD_NAME")
            .or_else(|| reader.optional("K8S_POD_NAME"))
            .or_else(|| reader.optional("HOSTNAME"))
            .unwrap_or_else(|| format!("auto-healer-{}", std::process::id()));
        let lease_duration = reader.duration(
            "AUTO_HEALER_LEASE",
            d.lease_duration,
            Duration::from_secs(3)..,
        );
        let queue_capacity = reader.parse("AUTO_HEALER_QUEUE_CAPACITY", d.queue_capacity);
        if queue_capacity == 0 {
            reader.error("AUTO_HEALER_QUEUE_CAPACITY", "must be at least 1");
        }
        Self {
            policy,
            policy_source,
            token: reader.secret("AUTO_HEALER_TOKEN").or_else(|| {
                reader.error(
                    "AUTO_HEALER_TOKEN",
                    "required: the webhook restarts workloads and is never open",
                );
                None
            }),
            dry_run,
            mode,
            alertmanager_url: reader.optional_url("ALERTMANAGER_URL"),
            launcher_url: reader.url("LAUNCHER_URL", &d.launcher_url),
            launcher_token: reader.secret("LAUNCHER_TOKEN"),
            state_dir: reader
                .optional("AUTO_HEALER_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or(d.state_dir),
            namespace,
            identity,
            lease_name: reader.string("AUTO_HEALER_LEASE_NAME", &d.lease_name),
            lease_duration,
            queue_capacity: queue_capacity.max(1),
            max_body: reader.parse("AUTO_HEALER_MAX_BODY_BYTES", d.max_body),
            history: d.history,
            policy_poll: d.policy_poll,
        }
    }

    /// Whether dry run is on (environment first, then the policy).
    pub fn dry_run(&self) -> bool {
        self.dry_run.unwrap_or(self.policy.guards.dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A policy file naming an action kind that does not exist.
    fn bad_policy_file() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: explode}]\n",
        )
        .unwrap();
        let path = path.to_string_lossy().to_string();
        (dir, path)
    }

    /// What reading `vars` reports, as text (empty when nothing is wrong).
    fn problems(vars: &[(&str, &str)]) -> String {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        let mut reader = EnvReader::new(&env);
        let _ = Config::read(&mut reader);
        reader
            .finish()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// The configuration `vars` give, which must be valid.
    fn config(vars: &[(&str, &str)]) -> Config {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        let mut reader = EnvReader::new(&env);
        let c = Config::read(&mut reader);
        reader.finish().unwrap();
        c
    }

    #[test]
    fn a_bad_policy_file_is_reported_once_with_its_field_path() {
        let (_dir, path) = bad_policy_file();
        let text = problems(&[("AUTO_HEALER_POLICY", &path), ("AUTO_HEALER_TOKEN", "t")]);
        assert!(
            text.contains("rules[0].actions[0].kind: unknown variant `explode`"),
            "{text}"
        );
        assert_eq!(
            text.matches("rules[0].actions[0].kind").count(),
            1,
            "path named once: {text}"
        );
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let (_dir, path) = bad_policy_file();
        let text = problems(&[
            ("AUTO_HEALER_POLICY", path.as_str()),
            ("AUTO_HEALER_DRY_RUN", "maybe"),
            ("AUTO_HEALER_MODE", "cloud"),
        ]);
        for variable in [
            "AUTO_HEALER_POLICY",
            "AUTO_HEALER_DRY_RUN",
            "AUTO_HEALER_MODE",
            "AUTO_HEALER_TOKEN",
        ] {
            assert!(text.contains(variable), "{variable} missing from: {text}");
        }
    }

    #[test]
    fn the_token_is_required() {
        let text = problems(&[]);
        assert!(text.contains("AUTO_HEALER_TOKEN"), "{text}");
    }

    #[test]
    fn dry_run_set_by_the_environment_overrides_the_policy() {
        let c = config(&[("AUTO_HEALER_DRY_RUN", "true"), ("AUTO_HEALER_TOKEN", "t")]);
        assert!(!c.policy.guards.dry_run);
        assert!(c.dry_run());
    }

    #[test]
    fn the_namespace_falls_back_to_the_pods_own() {
        let c = config(&[
            ("POD_NAMESPACE", "organism-test"),
            ("AUTO_HEALER_TOKEN", "t"),
        ]);
        assert_eq!(c.namespace, "organism-test");
    }

    #[test]
    fn by_default_the_mode_is_auto_and_the_policy_is_the_shipped_one() {
        let c = config(&[("AUTO_HEALER_TOKEN", "t")]);
        assert_eq!(c.mode, PlatformChoice::Auto);
        assert_eq!(c.policy_source, "builtin");
    }
}
