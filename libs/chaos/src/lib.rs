//! Fault injection for the organ services, switched at runtime through `/chaos`.
//!
//! Modelled on the failure flags of the OpenTelemetry demo (flagd): every fault is off by default
//! and is turned on or off while the service runs, without a restart.
//!
//! | field            | effect                                                                  |
//! |------------------|-------------------------------------------------------------------------|
//! | `error_rate`     | that share (0..=1) of business requests answer 500 `{"error":{"code":"chaos"}}` |
//! | `latency_ms`     | added delay before each business request (≤ 60 000)                      |
//! | `hang`           | business requests never answer (until the skeleton's request timeout)    |
//! | `crash_after_s`  | the process exits with status 1 after that many seconds (≤ 3600; `null` cancels) |
//! | `leak_mb_per_s`  | a background task allocates, writes and keeps that many MiB per second (≤ 256) |
//! | `fail_readiness` | `/readyz` fails, naming the check `chaos`                                |
//!
//! - `GET /chaos` answers the faults in force; `POST /chaos` changes the fields it names (a JSON
//!   object, every field optional, unknown fields rejected) and answers the new state;
//!   `DELETE /chaos` turns every fault off and frees leaked memory. POST and DELETE need
//!   `Authorization: Bearer <CHAOS_TOKEN>`; with no token configured they are closed (403
//!   `not_configured`), never open. Cross-site browser requests are refused (403 `cross_site`).
//! - Each fault is the gauge `chaos_fault_active{fault="error_rate|latency|hang|crash|leak|fail_readiness"}`
//!   (0/1), and every change is logged.
//! - [`Chaos::wrap`] applies the request faults to the routes it is given only, so `/healthz`,
//!   `/readyz`, `/metrics` and `/chaos` itself keep answering. When no request fault is on, the
//!   wrapper costs two atomic loads and no allocation.
//!
//! ```no_run
//! # async fn demo(ctx: service_kit::Context, business: axum::Router) -> prometheus::Result<axum::Router> {
//! let chaos = chaos::Chaos::new(&ctx, None)?;
//! let routes = chaos.wrap(business).merge(chaos.routes());
//! Ok(service_kit::assemble(&ctx, routes))
//! # }
//! ```

mod leak;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::{BoxFuture, Either};
use http::{HeaderMap, StatusCode};
use prometheus::{IntGaugeVec, Opts};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use service_kit::extract::Json;
use service_kit::{ApiError, CancellationToken, Context, EnvReader, ReadyFlag};
use tower::{Layer, Service};

use crate::leak::Leak;

/// The largest `latency_ms` accepted.
pub const MAX_LATENCY_MS: u64 = 60_000;
/// The largest `crash_after_s` accepted.
pub const MAX_CRASH_AFTER_S: u64 = 3_600;
/// The largest `leak_mb_per_s` accepted.
pub const MAX_LEAK_MB_PER_S: u64 = 256;
/// The environment variable holding the bearer token for `POST`/`DELETE /chaos`.
pub const TOKEN_VAR: &str = "CHAOS_TOKEN";
/// The `fault` label values of `chaos_fault_active`, in a stable order.
pub const FAULTS: [&str; 6] = [
    "error_rate",
    "latency",
    "hang",
    "crash",
    "leak",
    "fail_readiness",
];

/// The faults in force; the body of `GET /chaos` (under `faults`) and the shape `POST` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Faults {
    /// Share of business requests answered with a 500 (0..=1).
    pub error_rate: f64,
    /// Delay added to every business request, in milliseconds.
    pub latency_ms: u64,
    /// Business requests never answer.
    pub hang: bool,
    /// The process exits after this many seconds, counted from when it was set.
    pub crash_after_s: Option<u64>,
    /// MiB allocated, written and kept per second.
    pub leak_mb_per_s: u64,
    /// `/readyz` fails.
    pub fail_readiness: bool,
}

impl Faults {
    /// Whether `fault` (one of [`FAULTS`]) is on.
    pub fn is_active(&self, fault: &str) -> bool {
        match fault {
            "error_rate" => self.error_rate > 0.0,
            "latency" => self.latency_ms > 0,
            "hang" => self.hang,
            "crash" => self.crash_after_s.is_some(),
            "leak" => self.leak_mb_per_s > 0,
            "fail_readiness" => self.fail_readiness,
            _ => false,
        }
    }

    /// The names of the faults that are on.
    pub fn active(&self) -> Vec<&'static str> {
        FAULTS.into_iter().filter(|f| self.is_active(f)).collect()
    }
}

/// A `POST /chaos` body: each field present is changed, each absent one is left as it is.
/// Only a JSON object is accepted (serde's derive would also take an array of values in field
/// order, which no caller means).
#[derive(Debug, Clone, Default)]
pub struct FaultsUpdate {
    /// New `error_rate`.
    pub error_rate: Option<f64>,
    /// New `latency_ms`.
    pub latency_ms: Option<u64>,
    /// New `hang`.
    pub hang: Option<bool>,
    /// `Some(Some(n))` arms the crash timer, `Some(None)` (JSON `null`) disarms it.
    pub crash_after_s: Option<Option<u64>>,
    /// New `leak_mb_per_s`.
    pub leak_mb_per_s: Option<u64>,
    /// New `fail_readiness`.
    pub fail_readiness: Option<bool>,
}

/// The derived field-by-field reading of [`FaultsUpdate`], reached through maps only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsUpdateFields {
    #[serde(default)]
    error_rate: Option<f64>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    hang: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    crash_after_s: Option<Option<u64>>,
    #[serde(default)]
    leak_mb_per_s: Option<u64>,
    #[serde(default)]
    fail_readiness: Option<bool>,
}

impl<'de> Deserialize<'de> for FaultsUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = FaultsUpdateFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of faults")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                FaultsUpdateFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        let f = d.deserialize_map(ObjectOnly)?;
        Ok(Self {
            error_rate: f.error_rate,
            latency_ms: f.latency_ms,
            hang: f.hang,
            crash_after_s: f.crash_after_s,
            leak_mb_per_s: f.leak_mb_per_s,
            fail_readiness: f.fail_readiness,
        })
    }
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, through `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

impl FaultsUpdate {
    /// Checks every bound; the first violation names its field (422).
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(r) = self.error_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(ApiError::invalid_field(
                "error_rate",
                format!("error_rate must be between 0 and 1, got {r}"),
            ));
        }
        if let Some(ms) = self.latency_ms
            && ms > MAX_LATENCY_MS
        {
            return Err(ApiError::invalid_field(
                "latency_ms",
                format!("latency_ms must be at most {MAX_LATENCY_MS}, got {ms}"),
            ));
        }
        if let Some(Some(s)) = self.crash_after_s
            && s > MAX_CRASH_AFTER_S
        {
            return Err(ApiError::invalid_field(
                "crash_after_s",
                format!("crash_after_s must be at most {MAX_CRASH_AFTER_S}, got {s}"),
            ));
        }
        if let Some(mb) = self.leak_mb_per_s
            && mb > MAX_LEAK_MB_PER_S
        {
            return Err(ApiError::invalid_field(
                "leak_mb_per_s",
                format!("leak_mb_per_s must be at most {MAX_LEAK_MB_PER_S}, got {mb}"),
            ));
        }
        Ok(())
    }

    fn apply(&self, faults: &mut Faults) {
        if let Some(v) = self.error_rate {
            faults.error_rate = v;
        }
        if let Some(v) = self.latency_ms {
            faults.latency_ms = v;
        }
        if let Some(v) = self.hang {
            faults.hang = v;
        }
        if let Some(v) = self.crash_after_s {
            faults.crash_after_s = v;
        }
        if let Some(v) = self.leak_mb_per_s {
            faults.leak_mb_per_s = v;
        }
        if let Some(v) = self.fail_readiness {
            faults.fail_readiness = v;
        }
    }
}

/// What happens when the crash timer fires; the process exit outside tests.
type ExitFn = Arc<dyn Fn() + Send + Sync>;

/// Fault injection for one service; cheap to clone (all clones share the faults).
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Switchboard>,
}

impl std::fmt::Debug for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos")
            .field("faults", &*self.inner.lock())
            .field("token", &self.inner.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The faults of one service and what they act on, shared by every clone of [`Chaos`] and by
/// its layer.
struct Switchboard {
    token: Option<SecretString>,
    /// The authoritative state; changed under this lock, then published to the atomics below.
    faults: Mutex<Faults>,
    /// Whether any request fault (error rate, latency, hang) is on: the fast-path check.
    request_faults: AtomicBool,
    /// `error_rate` as f64 bits.
    error_rate: AtomicU64,
    latency_ms: AtomicU64,
    hang: AtomicBool,
    gauge: IntGaugeVec,
    ready: ReadyFlag,
    shutdown: CancellationToken,
    crash_timer: Mutex<Option<CancellationToken>>,
    leak: Leak,
    exit: ExitFn,
}

impl Switchboard {
    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Chaos {
    /// Creates the fault switchboard of the service behind `ctx`: registers
    /// `chaos_fault_active{fault}` on `ctx.registry` and the readiness check `chaos` on
    /// `ctx.readiness`. `token` (see [`Chaos::read_token`]) guards `POST`/`DELETE /chaos`; with
    /// `None` they are closed (403). Reads nothing from the environment.
    pub fn new(ctx: &Context, token: Option<SecretString>) -> prometheus::Result<Self> {
        Self::with_exit(ctx, token, Arc::new(|| std::process::exit(1)))
    }

    fn with_exit(
        ctx: &Context,
        token: Option<SecretString>,
        exit: ExitFn,
    ) -> prometheus::Result<Self> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "chaos_fault_active",
                "Whether an injected chaos fault is active (1) or not (0), by fault.",
            ),
            &["fault"],
        )?;
        ctx.registry.register(Box::new(gauge.clone()))?;
        for fault in FAULTS {
            gauge.with_label_values(&[fault]).set(0);
        }
        let ready = ctx
            .readiness
            .flag("chaos", "the chaos fault fail_readiness is active");
        Ok(Self {
            inner: Arc::new(Switchboard {
                token,
                faults: Mutex::new(Faults::default()),
                request_faults: AtomicBool::new(false),
                error_rate: AtomicU64::new(0f64.to_bits()),
                latency_ms: AtomicU64::new(0),
                hang: AtomicBool::new(false),
                gauge,
                ready,
                shutdown: ctx.shutdown.clone(),
                crash_timer: Mutex::new(None),
                leak: Leak::new(ctx.shutdown.clone()),
                exit,
            }),
        })
    }

    /// Reads `CHAOS_TOKEN` (unset or empty: `POST`/`DELETE /chaos` are closed).
    pub fn read_token(reader: &mut EnvReader<'_>) -> Option<SecretString> {
        reader.secret(TOKEN_VAR)
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.inner.lock()
    }

    /// Bytes held by the leak fault right now.
    pub fn leaked_bytes(&self) -> u64 {
        self.inner.leak.held_bytes()
    }

    /// `GET`, `POST` and `DELETE /chaos`.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(
                "/chaos",
                get(get_chaos).post(post_chaos).delete(delete_chaos),
            )
            .with_state(self.clone())
    }

    /// Applies the request faults (error rate, latency, hang) to every route of `business`.
    /// Merge the standard and `/chaos` routes after wrapping, so that they are not affected.
    pub fn wrap(&self, business: Router) -> Router {
        business.layer(ChaosLayer(self.inner.clone()))
    }

    /// Changes the faults named in `update` (validated first) and answers the new state.
    pub fn update(&self, update: &FaultsUpdate) -> Result<Faults, ApiError> {
        update.validate()?;
        let mut faults = self.inner.lock();
        let before = *faults;
        update.apply(&mut faults);
        let after = *faults;
        self.publish(before, after);
        drop(faults);
        Ok(after)
    }

    /// Turns every fault off, disarms the crash timer and frees leaked memory.
    pub fn clear(&self) -> Faults {
        let mut faults = self.inner.lock();
        let before = *faults;
        *faults = Faults::default();
        self.publish(before, Faults::default());
        drop(faults);
        self.inner.leak.free();
        Faults::default()
    }

    /// Makes `after` take effect (called with the state lock held, so changes are serialised).
    fn publish(&self, before: Faults, after: Faults) {
        let inner = &self.inner;
        inner
            .error_rate
            .store(after.error_rate.to_bits(), Ordering::Relaxed);
        inner.latency_ms.store(after.latency_ms, Ordering::Relaxed);
        inner.hang.store(after.hang, Ordering::Relaxed);
        inner.request_faults.store(
            after.error_rate > 0.0 || after.latency_ms > 0 || after.hang,
            Ordering::Release,
        );
        if after.fail_readiness {
            inner.ready.set_down();
        } else {
            inner.ready.set_up();
        }
        if before.crash_after_s != after.crash_after_s {
            self.arm_crash(after.crash_after_s);
        }
        if before.leak_mb_per_s != after.leak_mb_per_s {
            inner.leak.set_rate(after.leak_mb_per_s);
        }
        for fault in FAULTS {
            inner
                .gauge
                .with_label_values(&[fault])
                .set(i64::from(after.is_active(fault)));
        }
        if before != after {
            let active = after.active();
            if active.is_empty() {
                tracing::info!(faults = ?after, "chaos: every fault is off");
            } else {
                tracing::warn!(faults = ?after, active = ?active, "chaos: faults changed");
            }
        }
    }

    fn arm_crash(&self, after: Option<u64>) {
        let mut timer = self
            .inner
            .crash_timer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = timer.take() {
            previous.cancel();
        }
        let Some(secs) = after else { return };
        let cancel = self.inner.shutdown.child_token();
        *timer = Some(cancel.clone());
        let exit = self.inner.exit.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(secs)) => {
                    tracing::error!(crash_after_s = secs, "chaos: crash fault fired; exiting with status 1");
                    exit();
                }
            }
        });
    }
}

/// `GET /chaos` body.
#[derive(Debug, Serialize)]
struct StateBody {
    faults: Faults,
    active: Vec<&'static str>,
    leaked_bytes: u64,
}

impl StateBody {
    fn of(chaos: &Chaos, faults: Faults) -> axum::Json<Self> {
        axum::Json(Self {
            active: faults.active(),
            faults,
            leaked_bytes: chaos.leaked_bytes(),
        })
    }
}

async fn get_chaos(State(chaos): State<Chaos>) -> axum::Json<StateBody> {
    let faults = chaos.faults();
    StateBody::of(&chaos, faults)
}

fn guard(chaos: &Chaos, headers: &HeaderMap) -> Result<(), ApiError> {
    service_kit::auth::require_token(headers, chaos.inner.token.as_ref(), TOKEN_VAR)?;
    service_kit::auth::same_origin(headers)
}

async fn post_chaos(
    State(chaos): State<Chaos>,
    headers: HeaderMap,
    body: Result<Json<FaultsUpdate>, ApiError>,
) -> Result<axum::Json<StateBody>, ApiError> {
    // The token is checked before the body is looked at, so a caller without one learns nothing.
    guard(&chaos, &headers)?;
    let Json(update) = body?;
    let faults = chaos.update(&update)?;
    Ok(StateBody::of(&chaos, faults))
}

async fn delete_chaos(
    State(chaos): State<Chaos>,
    headers: HeaderMap,
) -> Result<axum::Json<StateBody>, ApiError> {
    guard(&chaos, &headers)?;
    let faults = chaos.clear();
    Ok(StateBody::of(&chaos, faults))
}

#[derive(Clone)]
struct ChaosLayer(Arc<Switchboard>);

impl<S> Layer<S> for ChaosLayer {
    type Service = ChaosService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService {
            inner,
            chaos: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct ChaosService<S> {
    inner: S,
    chaos: Arc<Switchboard>,
}

impl<S> Service<Request> for ChaosService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !self.chaos.request_faults.load(Ordering::Acquire) {
            return Either::Left(self.inner.call(req));
        }
        // Take the service that was polled ready, leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let chaos = self.chaos.clone();
        Either::Right(Box::pin(async move {
            if chaos.hang.load(Ordering::Relaxed) {
                // Never answers; the skeleton's request timeout (or shutdown) ends it.
                chaos.shutdown.cancelled().await;
                return Ok(
                    ApiError::unavailable("the service is shutting down", Some(1)).into_response(),
                );
            }
            let latency = chaos.latency_ms.load(Ordering::Relaxed);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            let rate = f64::from_bits(chaos.error_rate.load(Ordering::Relaxed));
            if rate > 0.0 && rand::random::<f64>() < rate {
                return Ok(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "chaos",
                    "injected fault: error_rate",
                )
                .into_response());
            }
            inner.call(req).await
        }))
    }
}

#[cfg(test)]
mod tests;
