//! Guard state in the ConfigMap `auto-healer-state` (key `state.json`), saved with optimistic
//! concurrency: a replace carries the `resourceVersion` it loaded, so a concurrent writer gets
//! 409 Conflict and reloads. Survives restarts and leader changes.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::core::GuardState;
use crate::platform::{StateStore, StoreError};

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "auto-healer-state";
/// The data key holding the JSON state.
pub const KEY: &str = "state.json";

/// Guard state in a ConfigMap.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
}

impl std::fmt::Debug for ConfigMapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStore").finish()
    }
}

impl ConfigMapStore {
    /// The store in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    async fn load_inner(&self) -> Result<(GuardState, Option<String>), StoreError> {
        match self.api.get_opt(CONFIG_MAP).await {
            Ok(None) => Ok((GuardState::default(), None)),
            Ok(Some(cm)) => {
                let version = cm.metadata.resource_version.clone();
                let state = match cm.data.as_ref().and_then(|d| d.get(KEY)) {
                    Some(text) => serde_json::from_str(text).map_err(|e| {
                        StoreError::Other(format!(
                            "ConfigMap {CONFIG_MAP} key {KEY} is not valid state: {e}"
                        ))
                    })?,
                    None => GuardState::default(),
                };
                // An existing ConfigMap without a version cannot be replaced safely.
                Ok((state, Some(version.unwrap_or_default())))
            }
            Err(e) => Err(StoreError::Other(e.to_string())),
        }
    }

    async fn save_inner(
        &self,
        state: &GuardState,
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).map_err(|e| StoreError::Other(e.to_string()))?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.to_owned()),
                resource_version: version.map(str::to_owned),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "auto-healer".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_owned(), text)])),
            ..ConfigMap::default()
        };
        let result = match version {
            None => self.api.create(&PostParams::default(), &cm).await.map(drop),
            Some(_) => self
                .api
                .replace(CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map(drop),
        };
        match result {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(StoreError::Other(e.to_string())),
        }
    }
}

impl StateStore for ConfigMapStore {
    fn load(&self) -> BoxFuture<'_, Result<(GuardState, Option<String>), StoreError>> {
        Box::pin(self.load_inner())
    }

    fn save<'a>(
        &'a self,
        state: &'a GuardState,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.save_inner(state, version))
    }
}
