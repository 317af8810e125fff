//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics
//! (`k8s.io/client-go/tools/leaderelection`):
//!
//! - **Expiry is judged from local time.** A contender remembers the Lease record it last saw
//!   and the local (monotonic) instant it saw it *change*; the lease is expired when that
//!   record has not changed for `leaseDurationSeconds` of our own time. The holder's
//!   `renewTime` is never compared with our clock, so skewed clocks neither steal a live lease
//!   nor keep a dead one.
//! - **Optimistic concurrency.** Every write carries the `resourceVersion` it read; when two
//!   contenders race, the API server lets exactly one win (409 for the other).
//! - **Renew deadline.** The leader renews every retry period; when no renewal succeeded within
//!   the renew deadline it stops acting (before the lease can expire for the others).
//! - **Release on shutdown.** A leader that stops writes the record with an empty holder and a
//!   1 s duration, so the next contender takes over at once (a rolling update hands over
//!   without waiting out the lease).
//!
//! Our own code rather than a crate: `kube-leader-election` 0.44 is built on kube 4 (this
//! workspace is on kube 5), and `kube-lease-manager` 0.13 judges expiry as the holder's
//! `renewTime` + duration against the local wall clock (`LeaseState::sync`), which is what
//! this module must not do.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::micro_time;
use crate::platform::{LeaderFlag, Leadership};

/// The Lease's default name.
pub const LEASE_NAME: &str = "auto-healer";

/// The Lease record as far as election goes (client-go's `LeaderElectionRecord`).
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: String,
    duration_secs: i32,
    acquire: Option<MicroTime>,
    renew: Option<MicroTime>,
    transitions: i32,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            duration_secs: spec.lease_duration_seconds.unwrap_or(0),
            acquire: spec.acquire_time.clone(),
            renew: spec.renew_time.clone(),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    fn spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(self.duration_secs),
            acquire_time: self.acquire.clone(),
            renew_time: self.renew.clone(),
            lease_transitions: Some(self.transitions),
            ..LeaseSpec::default()
        }
    }
}

/// What this contender last saw.
#[derive(Debug, Clone)]
struct Observed {
    record: Record,
    /// The local instant the record was last seen to change.
    at: Instant,
    resource_version: Option<String>,
}

/// One contender for a Lease.
pub struct LeaseElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    observed: Option<Observed>,
}

impl std::fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl LeaseElector {
    /// A contender `identity` for Lease `name` in `namespace`, holding it for `duration`; renew
    /// deadline 2/3 and retry period 2/15 of it (client-go's 15 s / 10 s / 2 s).
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
            renew_deadline: duration * 2 / 3,
            retry_period: (duration * 2 / 15).max(Duration::from_millis(100)),
            observed: None,
        }
    }

    /// Whether the record last seen names this instance as holder.
    pub fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| o.record.holder == self.identity)
    }

    fn observe(&mut self, lease: &Lease, local: Instant) {
        let record = Record::of(&lease.spec.clone().unwrap_or_default());
        let changed = self.observed.as_ref().is_none_or(|o| o.record != record);
        let at = match &self.observed {
            Some(o) if !changed => o.at,
            _ => local,
        };
        self.observed = Some(Observed {
            record,
            at,
            resource_version: lease.metadata.resource_version.clone(),
        });
    }

    fn lease(&self, record: &Record, resource_version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(record.spec()),
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: creates the Lease if absent, renews it if
    /// held, takes it over when its record has not changed for its duration of *local* time
    /// (`local`), or when it was released. `wall` is only written (`acquireTime`,
    /// `renewTime`), never compared. Returns whether this instance holds the lease now.
    pub async fn try_acquire_or_renew(
        &mut self,
        wall: OffsetDateTime,
        local: Instant,
    ) -> Result<bool, kube::Error> {
        let pp = PostParams::default();
        let mine = Record {
            holder: self.identity.clone(),
            duration_secs: self.duration.as_secs().max(1) as i32,
            acquire: Some(micro_time(wall)),
            renew: Some(micro_time(wall)),
            transitions: 0,
        };
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return match self.api.create(&pp, &self.lease(&mine, None)).await {
                Ok(created) => {
                    self.observe(&created, local);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease, local);
        let observed = self.observed.clone().expect("just observed");
        let old = &observed.record;
        let held_for = Duration::from_secs(u64::try_from(old.duration_secs).unwrap_or(0));
        let valid = local < observed.at + held_for;
        if !old.holder.is_empty() && valid && old.holder != self.identity {
            return Ok(false);
        }
        let mut next = mine;
        if old.holder == self.identity {
            next.acquire = old.acquire.clone();
            next.transitions = old.transitions;
        } else {
            next.transitions = old.transitions + 1;
        }
        match self
            .api
            .replace(
                &self.name,
                &pp,
                &self.lease(&next, observed.resource_version.clone()),
            )
            .await
        {
            Ok(updated) => {
                self.observe(&updated, local);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// client-go's `release`: when this instance holds the lease, writes the record with an
    /// empty holder and a 1 s duration so another contender can take over at once. Returns
    /// whether a release was written.
    pub async fn release(&mut self, wall: OffsetDateTime) -> Result<bool, kube::Error> {
        let Some(observed) = self.observed.clone().filter(|_| self.is_leader()) else {
            return Ok(false);
        };
        let released = Record {
            holder: String::new(),
            duration_secs: 1,
            acquire: Some(micro_time(wall)),
            renew: Some(micro_time(wall)),
            transitions: observed.record.transitions,
        };
        let updated = self
            .api
            .replace(
                &self.name,
                &PostParams::default(),
                &self.lease(&released, observed.resource_version.clone()),
            )
            .await?;
        self.observed = Some(Observed {
            record: Record::of(&updated.spec.clone().unwrap_or_default()),
            at: Instant::now(),
            resource_version: updated.metadata.resource_version.clone(),
        });
        Ok(true)
    }

    /// Runs rounds every retry period until `shutdown`, keeping `flag` current: leader after a
    /// successful acquire or renew, not leader when the lease is held elsewhere or no renewal
    /// succeeded within the renew deadline. On shutdown, stops acting first, then releases the
    /// lease.
    pub async fn run(mut self, flag: LeaderFlag, shutdown: CancellationToken) {
        let mut last_renew: Option<Instant> = None;
        loop {
            let round = tokio::time::timeout(
                self.renew_deadline,
                self.try_acquire_or_renew(OffsetDateTime::now_utc(), Instant::now()),
            )
            .await;
            let leader = match round {
                Ok(Ok(true)) => {
                    last_renew = Some(Instant::now());
                    true
                }
                Ok(Ok(false)) => false,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, lease = %self.name, "lease round failed");
                    flag.is_leader()
                        && last_renew.is_some_and(|t| t.elapsed() < self.renew_deadline)
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "lease round timed out");
                    flag.is_leader()
                        && last_renew.is_some_and(|t| t.elapsed() < self.renew_deadline)
                }
            };
            if leader != flag.is_leader() {
                tracing::info!(identity = %self.identity, leader, lease = %self.name, "leadership changed");
            }
            flag.set(leader);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.retry_period) => {}
            }
        }
        flag.set(false);
        match tokio::time::timeout(
            Duration::from_secs(3),
            self.release(OffsetDateTime::now_utc()),
        )
        .await
        {
            Ok(Ok(true)) => {
                tracing::info!(identity = %self.identity, lease = %self.name, "lease released")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %self.name, "cannot release the lease")
            }
            Err(_) => tracing::warn!(lease = %self.name, "releasing the lease timed out"),
        }
    }
}
