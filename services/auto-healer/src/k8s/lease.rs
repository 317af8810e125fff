//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Our own small implementation over the Lease API rather than the `kube-leader-election`
//! crate: that crate (0.44) is built on kube 4 and this workspace is on kube 5, and the
//! algorithm is short. Every write carries the `resourceVersion` it read (optimistic
//! concurrency), so when two instances race for an expired or absent Lease the API server lets
//! exactly one win (the other gets 409 Conflict or 409 AlreadyExists) — the same rule
//! client-go's `leaderelection` relies on.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::micro_time;
use crate::platform::LeaderFlag;

/// The Lease's default name.
pub const LEASE_NAME: &str = "auto-healer";

/// One contender for a Lease.
#[derive(Clone)]
pub struct LeaseElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl std::fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

fn to_time(t: &k8s_openapi::jiff::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl LeaseElector {
    /// A contender `identity` for Lease `name` in `namespace`, holding it for `duration`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn spec(&self, now: OffsetDateTime, acquired: OffsetDateTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(micro_time(acquired)),
            renew_time: Some(micro_time(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: creates the Lease if absent, renews it if held, takes it over if expired.
    /// Returns whether this instance holds it now.
    pub async fn try_acquire_or_renew(&self, now: OffsetDateTime) -> Result<bool, kube::Error> {
        let pp = PostParams::default();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&pp, &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let new_spec = if holder == self.identity {
            let acquired = spec
                .acquire_time
                .as_ref()
                .map(|t| to_time(&t.0))
                .unwrap_or(now);
            self.spec(now, acquired, spec.lease_transitions.unwrap_or(0))
        } else {
            let renewed = spec.renew_time.as_ref().map(|t| to_time(&t.0));
            let held_for =
                time::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let expired = holder.is_empty() || renewed.is_none_or(|r| r + held_for < now);
            if !expired {
                return Ok(false);
            }
            self.spec(now, now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        let updated = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: lease.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(new_spec),
        };
        match self.api.replace(&self.name, &pp, &updated).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs rounds every third of the lease duration until `shutdown`, keeping `flag` current.
    /// Leadership is dropped when a renewal has not succeeded within the lease duration.
    pub async fn run(self, flag: LeaderFlag, shutdown: CancellationToken) {
        let period = self.duration / 3;
        let mut last_ok: Option<tokio::time::Instant> = None;
        loop {
            match self.try_acquire_or_renew(OffsetDateTime::now_utc()).await {
                Ok(leader) => {
                    if leader != crate::platform::Leadership::is_leader(&flag) {
                        tracing::info!(identity = %self.identity, leader, lease = %self.name, "leadership changed");
                    }
                    flag.set(leader);
                    last_ok = leader.then(tokio::time::Instant::now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "lease round failed");
                    if last_ok.is_none_or(|t| t.elapsed() >= self.duration) {
                        flag.set(false);
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        flag.set(false);
    }
}
