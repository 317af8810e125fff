//! The local adapter (no cluster): restarts a service process through the launcher's control
//! API (`POST {LAUNCHER_URL}/services/{name}/restart`, CONTRACTS.md), verifies by polling the
//! service's `/healthz` and `/readyz`, appends audit records to `audit.jsonl` and keeps guard
//! state in `state.json`, both under the state directory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use telemetry::client::HttpClient;

use crate::core::{self, ClusterSnapshot, GuardState, LOCAL_SERVICES, Labels, Target};
use crate::platform::{AdapterError, AuditRecord, Platform, StateStore, StoreError};
use crate::policy::Action;

/// Restarts local services through the launcher.
#[derive(Debug)]
pub struct LocalPlatform {
    http: HttpClient,
    launcher: String,
    token: Option<SecretString>,
    services: BTreeMap<String, String>,
    audit_file: Option<PathBuf>,
    poll: Duration,
}

impl LocalPlatform {
    /// An adapter for the launcher at `launcher_url`; services at `127.0.0.1:<port>` per
    /// CONTRACTS.md; audit records appended to `audit_file` when given. Calls go through the
    /// traced `http` client (the service's, with its default 1 s connect / 5 s timeouts).
    pub fn new(
        launcher_url: &str,
        token: Option<SecretString>,
        audit_file: Option<PathBuf>,
        http: HttpClient,
    ) -> Self {
        Self {
            http,
            launcher: launcher_url.trim_end_matches('/').to_owned(),
            token,
            services: LOCAL_SERVICES
                .iter()
                .map(|s| (s.name.to_owned(), s.local_url()))
                .collect(),
            audit_file,
            poll: Duration::from_millis(100),
        }
    }

    /// Overrides where `service` is served (tests run organs on free ports).
    #[must_use]
    pub fn with_service_url(mut self, service: &str, url: &str) -> Self {
        self.services
            .insert(service.to_owned(), url.trim_end_matches('/').to_owned());
        self
    }

    fn base(&self, service: &str) -> Result<&str, AdapterError> {
        self.services
            .get(service)
            .map(String::as_str)
            .ok_or_else(|| {
                AdapterError::new("unsupported", format!("unknown local service {service:?}"))
            })
    }

    async fn restart(&self, service: &str) -> Result<String, AdapterError> {
        self.base(service)?;
        let url = format!("{}/services/{service}/restart", self.launcher);
        let mut req = self.http.request(telemetry::client::Method::POST, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose_secret());
        }
        let resp = self.http.send(req).await.map_err(|e| {
            AdapterError::new("transport", format!("launcher at {}: {e}", self.launcher))
        })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(format!(
                "asked the launcher to restart {service} ({status}): {}",
                body.trim()
            ))
        } else {
            Err(AdapterError::new(
                if status.is_client_error() {
                    "refused"
                } else {
                    "api"
                },
                format!(
                    "the launcher answered {status} to restart {service}: {}",
                    body.trim()
                ),
            ))
        }
    }

    async fn healthy(&self, service: &str) -> Result<bool, AdapterError> {
        let base = self.base(service)?;
        for path in ["/healthz", "/readyz"] {
            let probe = self
                .http
                .get(&format!("{base}{path}"))
                .timeout(Duration::from_secs(1));
            match self.http.send(probe).await {
                Ok(r) if r.status().is_success() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl Platform for LocalPlatform {
    fn kind(&self) -> core::PlatformKind {
        core::PlatformKind::Local
    }

    fn snapshot<'a>(
        &'a self,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, AdapterError>> {
        // Local processes have no annotations, replicas or nodes: the node and blast-radius
        // guards have nothing to look at.
        Box::pin(async { Ok(ClusterSnapshot::default()) })
    }

    fn execute<'a>(
        &'a self,
        action: &'a Action,
        target: &'a Target,
        _alert: &'a Labels,
    ) -> BoxFuture<'a, Result<String, AdapterError>> {
        Box::pin(async move {
            match (action, target) {
                (Action::RestartService, Target::Service { name }) => self.restart(name).await,
                _ => Err(AdapterError::new(
                    "unsupported",
                    format!(
                        "{} on {} has no local equivalent",
                        action.name(),
                        target.key()
                    ),
                )),
            }
        })
    }

    fn verify<'a>(
        &'a self,
        _action: &'a Action,
        target: &'a Target,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            let Target::Service { name } = target else {
                return Err(AdapterError::new(
                    "unsupported",
                    "only local services can be verified locally",
                ));
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if self.healthy(name).await? {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(AdapterError::new(
                        "timeout",
                        format!(
                            "{name} did not answer /healthz and /readyz within {} s",
                            timeout.as_secs()
                        ),
                    ));
                }
                tokio::time::sleep(self.poll).await;
            }
        })
    }

    fn record<'a>(&'a self, record: &'a AuditRecord) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            let Some(path) = self.audit_file.clone() else {
                return Ok(());
            };
            let line = serde_json::to_string(record)
                .map_err(|e| AdapterError::new("api", e.to_string()))?;
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                writeln!(f, "{line}")
            })
            .await
            .map_err(|e| AdapterError::new("api", e.to_string()))?
            .map_err(|e| AdapterError::new("api", format!("audit file: {e}")))
        })
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    version: u64,
    state: GuardState,
}

/// Guard state in a JSON file, written atomically (temp file + rename, fsync) with a version
/// counter. Local mode runs one instance, so the last state read or written is kept in memory
/// and the file is read only at start; every change is still written through before `save`
/// returns.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    lock: Mutex<Option<(u64, GuardState)>>,
}

impl FileStore {
    /// The store at `dir/state.json`.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("state.json"),
            lock: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<Stored>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Other(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Other(format!("{}: {e}", self.path.display()))),
        }
    }

    fn cached(&self) -> Result<(GuardState, Option<String>), StoreError> {
        let mut cache = self
            .lock
            .lock()
            .map_err(|_| StoreError::Other("state lock poisoned".into()))?;
        if cache.is_none() {
            *cache = self.read()?.map(|s| (s.version, s.state));
        }
        Ok(match cache.as_ref() {
            Some((v, s)) => (s.clone(), Some(v.to_string())),
            None => (GuardState::default(), None),
        })
    }

    fn write(&self, state: &GuardState, expected: Option<&str>) -> Result<(), StoreError> {
        let mut cache = self
            .lock
            .lock()
            .map_err(|_| StoreError::Other("state lock poisoned".into()))?;
        if cache.is_none() {
            *cache = self.read()?.map(|s| (s.version, s.state));
        }
        let current = cache.as_ref().map(|(v, _)| *v);
        if current.map(|v| v.to_string()).as_deref() != expected {
            return Err(StoreError::Conflict);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(e.to_string()))?;
        let stored = Stored {
            version: current.unwrap_or(0) + 1,
            state: state.clone(),
        };
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| StoreError::Other(e.to_string()))?;
        serde_json::to_writer(&mut tmp, &stored).map_err(|e| StoreError::Other(e.to_string()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        tmp.persist(&self.path)
            .map_err(|e| StoreError::Other(e.to_string()))?;
        *cache = Some((stored.version, stored.state));
        Ok(())
    }
}

impl StateStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<(GuardState, Option<String>), StoreError>> {
        Box::pin(async move { self.cached() })
    }

    fn save<'a>(
        &'a self,
        state: &'a GuardState,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.write(state, version) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Timestamp;

    /// A state with one action.
    fn one_action() -> GuardState {
        let mut s = GuardState::default();
        s.actions.push(Timestamp(time::OffsetDateTime::UNIX_EPOCH));
        s
    }

    #[tokio::test]
    async fn a_fresh_store_is_empty_and_unversioned() {
        let dir = tempfile::tempdir().unwrap();
        let (s, v) = FileStore::new(dir.path()).load().await.unwrap();
        assert_eq!((s, v), (GuardState::default(), None));
    }

    #[tokio::test]
    async fn a_write_against_a_stale_version_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.save(&one_action(), None).await.unwrap();
        assert!(
            matches!(
                store.save(&one_action(), None).await,
                Err(StoreError::Conflict)
            ),
            "stale version"
        );
    }

    #[tokio::test]
    async fn the_state_survives_a_restart_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        FileStore::new(dir.path())
            .save(&one_action(), None)
            .await
            .unwrap();
        // A new process reads what the old one wrote.
        let (loaded, v) = FileStore::new(dir.path()).load().await.unwrap();
        assert_eq!(loaded, one_action());
        assert_eq!(v.as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn each_save_advances_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.save(&one_action(), None).await.unwrap();
        store.save(&one_action(), Some("1")).await.unwrap();
        let (_, v) = FileStore::new(dir.path()).load().await.unwrap();
        assert_eq!(v.as_deref(), Some("2"));
    }
}
