//! The users table over PostgreSQL or SQLite, with the database's health tracked in the open.
//!
//! - The pool connects lazily: the service starts while PostgreSQL is down and becomes ready
//!   when it comes up (a background monitor migrates, then probes).
//! - While the database is known to be down, operations fail at once with
//!   [`StoreError::Unavailable`] instead of queueing; every operation is bounded by the acquire
//!   and query timeouts. An operation that finds the database gone marks it down and wakes the
//!   monitor, which marks it up again as soon as a probe succeeds.
//! - Every operation is a client span (`db.system`, `db.operation`, `db.collection.name`, …) and
//!   an observation of `user_service_db_query_duration_seconds{db_operation}`;
//!   `user_service_db_up` is 1 while the database answers.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntGauge, Registry};
use service_kit::CancellationToken;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::config::{Config, DatabaseConfig};
use crate::model::{User, ValidUser};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How often the monitor probes a database that is up.
const PROBE_INTERVAL_UP: Duration = Duration::from_secs(1);
/// How often the monitor probes a database that is down (recovery is noticed this fast).
const PROBE_INTERVAL_DOWN: Duration = Duration::from_millis(250);
/// Seconds a client is told to wait (`Retry-After`) while the database is down.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Query latency buckets in seconds: 100 µs to 2.5 s.
const QUERY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What can go wrong with a users operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or is known to be down, or did not answer in time).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Another user already has this e-mail address.
    #[error("a user with this email already exists")]
    DuplicateEmail,
    /// Anything else: a bug or a broken schema.
    #[error("database error: {0}")]
    Internal(sqlx::Error),
}

impl StoreError {
    /// A bounded label for spans and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::DuplicateEmail => "duplicate_email",
            Self::Internal(_) => "internal",
        }
    }
}

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metrics (the service's or chaos') could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The embedded SQLite database could not be opened or migrated.
    #[error("opening {target}: {source}")]
    Open {
        /// The database, described without secrets.
        target: String,
        /// Why.
        source: StoreError,
    },
}

/// The operations, as `db.operation.name` and the `db_operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Select,
    Insert,
    Update,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// The span name: `{db.operation.name} {db.collection.name}`.
    fn span_name(self) -> &'static str {
        match self {
            Self::Select => "SELECT users",
            Self::Insert => "INSERT users",
            Self::Update => "UPDATE users",
            Self::Delete => "DELETE users",
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs the same expression against whichever pool is configured.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

#[derive(Debug)]
struct Health {
    up: AtomicBool,
    migrated: AtomicBool,
    reason: Mutex<String>,
    wake: Notify,
    gauge: IntGauge,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    system: &'static str,
    namespace: String,
    server: Option<(String, u16)>,
    target: String,
    query_timeout: Duration,
    duration: HistogramVec,
    health: Health,
}

/// The users store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl Database {
    /// Builds the (lazy) pool and registers the database metrics on `registry`. Nothing is
    /// connected yet: see [`Database::initialize`] and [`Database::spawn_monitor`].
    pub fn open(config: &Config, registry: &Registry) -> Result<Self, StartError> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "user_service_db_query_duration_seconds",
                "Duration of user-service database operations (connection acquisition included), by operation.",
            )
            .buckets(QUERY_BUCKETS.to_vec()),
            &["db_operation"],
        )?;
        let gauge = IntGauge::new(
            "user_service_db_up",
            "Whether the user-service database answers (1) or not (0).",
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(gauge.clone()))?;
        for op in [
            Operation::Select,
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
        ] {
            let _ = duration.with_label_values(&[op.name()]);
        }

        let pool = match &config.database {
            DatabaseConfig::Postgres(options) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .min_connections(0)
                    .acquire_timeout(config.acquire_timeout)
                    .idle_timeout(Duration::from_secs(300))
                    .connect_lazy_with(options.clone()),
            ),
            DatabaseConfig::Sqlite(options) => Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    // A connection to a local file does not go stale: skip the ping per acquire
                    // (a round trip to the connection's worker thread on the hot path).
                    .test_before_acquire(false)
                    .idle_timeout(None)
                    .connect_lazy_with(options.clone()),
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                system: config.database.system(),
                namespace: config.database.namespace(),
                server: config.database.server(),
                target: config.database.to_string(),
                query_timeout: config.query_timeout,
                duration,
                health: Health {
                    up: AtomicBool::new(false),
                    migrated: AtomicBool::new(false),
                    reason: Mutex::new("not connected yet".to_owned()),
                    wake: Notify::new(),
                    gauge,
                },
            }),
        })
    }

    /// First contact: applies the migrations. An embedded SQLite file that cannot be opened is an
    /// error; an unreachable PostgreSQL is not (the service starts not-ready and the monitor
    /// keeps trying).
    pub async fn initialize(&self) -> Result<(), StartError> {
        match self.probe().await {
            Ok(()) => Ok(()),
            Err(e) => match self.inner.pool {
                Pool::Sqlite(_) => Err(StartError::Open {
                    target: self.inner.target.clone(),
                    source: e,
                }),
                Pool::Postgres(_) => {
                    tracing::warn!(
                        database = %self.inner.target,
                        error = %e,
                        "database unreachable at start; serving 503 until it answers"
                    );
                    Ok(())
                }
            },
        }
    }

    /// Probes the database until `shutdown`: every second while up, every 250 ms while down or
    /// right away when an operation finds it gone.
    pub fn spawn_monitor(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                let interval = if db.is_up() {
                    PROBE_INTERVAL_UP
                } else {
                    PROBE_INTERVAL_DOWN
                };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(interval) => {},
                    () = db.inner.health.wake.notified() => {},
                }
                let _ = db.probe().await;
            }
        })
    }

    /// Whether the database answered the last probe or operation.
    pub fn is_up(&self) -> bool {
        self.inner.health.up.load(Ordering::Acquire)
    }

    /// `Ok` while ready; otherwise why not, naming the database (for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_up() {
            Ok(())
        } else {
            let reason = self
                .inner
                .health
                .reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default();
            Err(format!("{} is unreachable: {reason}", self.inner.target))
        }
    }

    /// The `db.system` value of this database.
    pub fn system(&self) -> &'static str {
        self.inner.system
    }

    /// The database, described without secrets.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        on_pool!(&self.inner.pool, |p| p.close().await);
    }

    /// Migrates if not done yet, else runs `SELECT 1`, bounded by the query timeout; records the
    /// outcome.
    async fn probe(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let work = async {
            if !inner.health.migrated.load(Ordering::Acquire) {
                let result = match &inner.pool {
                    Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
                    Pool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await,
                };
                result.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => e,
                    other => sqlx::Error::Migrate(Box::new(other)),
                })?;
                inner.health.migrated.store(true, Ordering::Release);
                tracing::info!(database = %inner.target, "database migrations applied");
            }
            on_pool!(&inner.pool, |p| sqlx::query("SELECT 1")
                .execute(p)
                .await
                .map(|_| ()))
        };
        // Migrations may take longer than a query on a first start.
        let limit = inner.query_timeout.max(Duration::from_secs(10));
        let result = match tokio::time::timeout(limit, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(match classify(e) {
                StoreError::Internal(e) => StoreError::Unavailable(e.to_string()),
                other => other,
            }),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                limit.as_millis()
            ))),
        };
        match &result {
            Ok(()) => self.mark_up(),
            Err(e) => self.mark_down(e),
        }
        result
    }

    fn mark_up(&self) {
        let health = &self.inner.health;
        health.gauge.set(1);
        if !health.up.swap(true, Ordering::AcqRel) {
            tracing::info!(database = %self.inner.target, "database reachable");
        }
    }

    fn mark_down(&self, error: &StoreError) {
        let health = &self.inner.health;
        let reason = match error {
            StoreError::Unavailable(reason) => reason.clone(),
            other => other.to_string(),
        };
        if let Ok(mut r) = health.reason.lock() {
            *r = reason.clone();
        }
        health.gauge.set(0);
        if health.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(database = %self.inner.target, reason = %reason, "database unreachable");
            health.wake.notify_one();
        }
    }

    /// Runs one operation inside its span, timed, bounded and classified.
    async fn run<T, F>(&self, op: Operation, sql: &'static str, work: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let inner = &self.inner;
        let span = tracing::info_span!(
            "db operation",
            otel.name = op.span_name(),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = inner.system,
            db.system.name = inner.system,
            db.operation = op.name(),
            db.operation.name = op.name(),
            db.collection.name = "users",
            db.namespace = %inner.namespace,
            db.query.text = sql,
            server.address = Empty,
            server.port = Empty,
            error.type = Empty,
        );
        if let Some((host, port)) = &inner.server {
            span.record("server.address", host.as_str());
            span.record("server.port", *port);
        }
        let attempted = self.is_up();
        let result = if attempted {
            let start = Instant::now();
            let outcome = tokio::time::timeout(inner.query_timeout, work)
                .instrument(span.clone())
                .await;
            inner
                .duration
                .with_label_values(&[op.name()])
                .observe(start.elapsed().as_secs_f64());
            match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(classify(e)),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    inner.query_timeout.as_millis()
                ))),
            }
        } else {
            Err(StoreError::Unavailable(
                self.readiness().err().unwrap_or_default(),
            ))
        };
        if let Err(e) = &result {
            span.record("error.type", e.kind());
            if !matches!(e, StoreError::DuplicateEmail) {
                span.record("otel.status_code", "ERROR");
            }
            if attempted && matches!(e, StoreError::Unavailable(_)) {
                self.mark_down(e);
            }
        }
        result
    }

    /// The user with `id`, if any.
    pub async fn get(&self, id: i64) -> Result<Option<User>, StoreError> {
        const SQL: &str = "SELECT id, name, email, created_at, updated_at FROM users WHERE id = $1";
        self.run(Operation::Select, SQL, async {
            on_pool!(&self.inner.pool, |p| {
                sqlx::query_as::<_, User>(SQL)
                    .bind(id)
                    .fetch_optional(p)
                    .await
            })
        })
        .await
    }

    /// Up to `limit` users with ids above `after`, in id order.
    pub async fn list(&self, after: i64, limit: u32) -> Result<Vec<User>, StoreError> {
        const SQL: &str = "SELECT id, name, email, created_at, updated_at FROM users WHERE id > $1 ORDER BY id LIMIT $2";
        self.run(Operation::Select, SQL, async {
            on_pool!(&self.inner.pool, |p| {
                sqlx::query_as::<_, User>(SQL)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await
            })
        })
        .await
    }

    /// Stores a new user and returns it as stored.
    pub async fn create(&self, user: &ValidUser) -> Result<User, StoreError> {
        const SQL: &str = "INSERT INTO users (name, email, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id, name, email, created_at, updated_at";
        let now = now();
        self.run(Operation::Insert, SQL, async {
            on_pool!(&self.inner.pool, |p| {
                sqlx::query_as::<_, User>(SQL)
                    .bind(&user.name)
                    .bind(&user.email)
                    .bind(now)
                    .fetch_one(p)
                    .await
            })
        })
        .await
    }

    /// Replaces the name and e-mail of user `id`; `None` when there is no such user.
    pub async fn update(&self, id: i64, user: &ValidUser) -> Result<Option<User>, StoreError> {
        const SQL: &str = "UPDATE users SET name = $1, email = $2, updated_at = $3 WHERE id = $4 RETURNING id, name, email, created_at, updated_at";
        let now = now();
        self.run(Operation::Update, SQL, async {
            on_pool!(&self.inner.pool, |p| {
                sqlx::query_as::<_, User>(SQL)
                    .bind(&user.name)
                    .bind(&user.email)
                    .bind(now)
                    .bind(id)
                    .fetch_optional(p)
                    .await
            })
        })
        .await
    }

    /// Deletes user `id`; whether there was one.
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM users WHERE id = $1";
        self.run(Operation::Delete, SQL, async {
            on_pool!(&self.inner.pool, |p| {
                sqlx::query(SQL)
                    .bind(id)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected() > 0)
            })
        })
        .await
    }
}

/// Now, to the microsecond (what PostgreSQL keeps), so both backends store the same value.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Sorts a driver error into what the caller can act on.
fn classify(error: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &error {
        E::PoolTimedOut => {
            StoreError::Unavailable("no connection within the acquire timeout".to_owned())
        }
        E::PoolClosed => StoreError::Unavailable("the connection pool is closed".to_owned()),
        E::Io(e) => StoreError::Unavailable(format!("i/o error: {e}")),
        E::Tls(e) => StoreError::Unavailable(format!("tls error: {e}")),
        E::Protocol(e) => StoreError::Unavailable(format!("protocol error: {e}")),
        E::WorkerCrashed => StoreError::Unavailable("the connection worker crashed".to_owned()),
        E::Database(db) if db.is_unique_violation() => StoreError::DuplicateEmail,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), shutdown / cannot connect now (57P),
            // insufficient resources (53). SQLite: BUSY (5) and LOCKED (6), extended codes too.
            let sqlite_busy = code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            if code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || sqlite_busy
            {
                StoreError::Unavailable(format!("database error {code}: {}", db.message()))
            } else {
                StoreError::Internal(error)
            }
        }
        _ => StoreError::Internal(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_bugs_are_internal() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(refused), StoreError::Unavailable(_)));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            StoreError::Internal(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::ColumnNotFound("x".into())),
            StoreError::Internal(_)
        ));
    }

    #[test]
    fn timestamps_keep_microseconds() {
        assert_eq!(now().nanosecond() % 1_000, 0);
    }

    #[test]
    fn operation_names_follow_semantic_conventions() {
        for op in [
            Operation::Select,
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
        ] {
            assert_eq!(op.span_name(), format!("{} users", op.name()));
        }
    }
}
