//! The durable state: the outbox of notifications and the record of alerts, in SQLite (a file)
//! or PostgreSQL, through sqlx's `Any` driver with SQL both understand.
//!
//! Outbox rows carry an idempotency key (`UNIQUE`): a re-delivered webhook, a second replica or
//! two escalation checkers produce one row. A worker claims due rows by setting a lease (owner +
//! expiry) in one `UPDATE`; a crashed claimer's rows become due again when the lease expires.
//! Times are Unix milliseconds.

use std::collections::BTreeMap;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};

/// A store error (the database is unreachable or rejected a statement).
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] sqlx::Error);

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS outbox (
        id TEXT PRIMARY KEY,
        idem_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        channel TEXT NOT NULL,
        group_key TEXT NOT NULL,
        status TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at)",
    "CREATE TABLE IF NOT EXISTS alerts (
        fingerprint TEXT NOT NULL,
        starts_at BIGINT NOT NULL,
        alertname TEXT NOT NULL,
        severity TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        group_key TEXT NOT NULL,
        channels TEXT NOT NULL,
        status TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        receipts BIGINT NOT NULL,
        resolved_at BIGINT,
        acked_at BIGINT,
        acked_by TEXT,
        ack_comment TEXT,
        silence_id TEXT,
        escalation_level BIGINT NOT NULL,
        PRIMARY KEY (fingerprint, starts_at)
    )",
    "CREATE INDEX IF NOT EXISTS alerts_open ON alerts (status, acked_at, first_seen)",
    "CREATE INDEX IF NOT EXISTS alerts_seen ON alerts (last_seen)",
    // Nonces of acknowledge links already used (single use, across restarts and replicas).
    "CREATE TABLE IF NOT EXISTS ack_nonces (
        nonce TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        used_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
];

/// An alert as received, to record.
#[derive(Debug, Clone)]
pub struct AlertUpsert {
    /// Label-set fingerprint (hex).
    pub fingerprint: String,
    /// `startsAt`, ms.
    pub starts_at: i64,
    /// `alertname`.
    pub alertname: String,
    /// `severity` label.
    pub severity: String,
    /// Labels as JSON.
    pub labels: String,
    /// Annotations as JSON.
    pub annotations: String,
    /// Alertmanager group key.
    pub group_key: String,
    /// Channels it was routed to (JSON array).
    pub channels: String,
    /// `firing` / `resolved`.
    pub status: String,
    /// `endsAt` of a resolved alert, ms.
    pub resolved_at: Option<i64>,
}

/// An outbox row to add.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// Idempotency key.
    pub idem_key: String,
    /// `notification`, `escalation`, `digest`.
    pub kind: &'static str,
    /// Channel name.
    pub channel: String,
    /// Alertmanager group key (or a digest/escalation id).
    pub group_key: String,
    /// `firing` / `resolved` / `digest`.
    pub status: String,
    /// The payload (JSON).
    pub payload: String,
    /// A row with the same key created before this time (ms) and no longer pending is sent
    /// again (Alertmanager's repeat); `i64::MIN` = never.
    pub renotify_before: i64,
}

/// What adding a row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row.
    New(String),
    /// An old, delivered row with the same key was queued again (outside the dedup window).
    Again(String),
    /// A duplicate inside the dedup window (or still pending): nothing queued.
    Duplicate,
}

/// A claimed outbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// Row id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Channel.
    pub channel: String,
    /// Payload.
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i64,
}

/// A recorded alert (a row of `alerts`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRecord {
    /// Fingerprint.
    pub fingerprint: String,
    /// `startsAt`, ms.
    pub starts_at: i64,
    /// Labels (JSON).
    pub labels: String,
    /// Annotations (JSON).
    pub annotations: String,
    /// Group key.
    pub group_key: String,
    /// Channels (JSON array).
    pub channels: String,
    /// `firing` / `resolved`.
    pub status: String,
    /// First received, ms.
    pub first_seen: i64,
    /// Resolved, ms.
    pub resolved_at: Option<i64>,
    /// Acknowledged, ms.
    pub acked_at: Option<i64>,
    /// By whom.
    pub acked_by: Option<String>,
    /// Ack comment.
    pub ack_comment: Option<String>,
    /// The Alertmanager silence of the ack.
    pub silence_id: Option<String>,
    /// Escalation tiers done.
    pub escalation_level: i64,
}

/// Counts for the digest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportCounts {
    /// Alerts first received in the window.
    pub fired: i64,
    /// Resolved in the window.
    pub resolved: i64,
    /// Acknowledged in the window.
    pub acknowledged: i64,
    /// Escalated, first received in the window.
    pub escalated: i64,
    /// Mean ms from start to ack.
    pub mean_ack_ms: Option<f64>,
    /// Mean ms from start to resolution.
    pub mean_resolve_ms: Option<f64>,
    /// (alertname, notifications, alerts), noisiest first.
    pub noisiest: Vec<(String, i64, i64)>,
    /// Rows sent in the window.
    pub sent: i64,
    /// Rows dead in the window.
    pub dead: i64,
    /// Rows pending now.
    pub pending: i64,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

/// An outbox row as [`Store::recent_rows`] shows it.
#[derive(sqlx::FromRow, serde::Serialize)]
struct OutboxRow {
    id: String,
    kind: String,
    channel: String,
    group_key: String,
    status: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const ALERT_COLUMNS: &str = "fingerprint, starts_at, labels, annotations, group_key, channels, status, first_seen, resolved_at, acked_at, acked_by, ack_comment, silence_id, escalation_level";

impl Store {
    /// Connects to `url` (`sqlite://path` — created if missing — or `postgres://...`) and
    /// creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 10 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records `alerts` and adds `rows`, in one transaction.
    pub async fn ingest(
        &self,
        now: i64,
        alerts: &[AlertUpsert],
        rows: &[NewRow],
    ) -> Result<Vec<Enqueued>> {
        let mut tx = self.pool.begin().await?;
        for chunk in alerts.chunks(40) {
            let mut sql = String::from(
                "INSERT INTO alerts (fingerprint, starts_at, alertname, severity, labels, annotations, group_key, channels, status, resolved_at, first_seen, last_seen, receipts, escalation_level) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 10;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $1, 1, 0)",
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11
                ));
            }
            sql.push_str(
                " ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                    last_seen = excluded.last_seen,
                    receipts = alerts.receipts + 1,
                    status = CASE WHEN alerts.resolved_at IS NOT NULL THEN 'resolved' ELSE excluded.status END,
                    resolved_at = COALESCE(alerts.resolved_at, excluded.resolved_at),
                    annotations = excluded.annotations,
                    group_key = excluded.group_key,
                    channels = excluded.channels",
            );
            let mut q = sqlx::query(&sql).bind(now);
            for a in chunk {
                q = q
                    .bind(&a.fingerprint)
                    .bind(a.starts_at)
                    .bind(&a.alertname)
                    .bind(&a.severity)
                    .bind(&a.labels)
                    .bind(&a.annotations)
                    .bind(&a.group_key)
                    .bind(&a.channels)
                    .bind(&a.status)
                    .bind(a.resolved_at);
            }
            q.execute(&mut *tx).await?;
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Self::insert_row(&mut tx, now, row).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Adds rows (escalations, digests) outside an intake.
    pub async fn enqueue(&self, now: i64, rows: &[NewRow]) -> Result<Vec<Enqueued>> {
        self.ingest(now, &[], rows).await
    }

    async fn insert_row(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        now: i64,
        row: &NewRow,
    ) -> Result<Enqueued> {
        let id = uuid::Uuid::new_v4().to_string();
        let returned: Option<String> = sqlx::query_scalar(
            "INSERT INTO outbox (id, idem_key, kind, channel, group_key, status, payload, state, attempts, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8)
             ON CONFLICT (idem_key) DO UPDATE SET
                state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, payload = excluded.payload,
                created_at = excluded.created_at, updated_at = excluded.updated_at, last_error = NULL,
                lease_owner = NULL, lease_until = NULL
             WHERE outbox.state <> 'pending' AND outbox.created_at < $9
             RETURNING id",
        )
        .bind(&id)
        .bind(&row.idem_key)
        .bind(row.kind)
        .bind(&row.channel)
        .bind(&row.group_key)
        .bind(&row.status)
        .bind(&row.payload)
        .bind(now)
        .bind(row.renotify_before)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(match returned {
            None => Enqueued::Duplicate,
            Some(r) if r == id => Enqueued::New(r),
            Some(r) => Enqueued::Again(r),
        })
    }

    /// Claims up to `limit` due rows for `owner` until `now + lease_ms`.
    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        Ok(sqlx::query_as(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM outbox
                          WHERE state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                          ORDER BY next_attempt_at LIMIT $4)
               AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3)
             RETURNING id, kind, channel, payload, attempts",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks a claimed row sent; `false` if the lease was lost meanwhile.
    pub async fn mark_sent(&self, id: &str, owner: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET state = 'sent', lease_owner = NULL, lease_until = NULL, last_error = NULL, updated_at = $1
             WHERE id = $2 AND lease_owner = $3",
        )
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a failed attempt: due again at `next_at`, or `dead`.
    pub async fn mark_failed(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        next_at: i64,
        dead: bool,
        error: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $4
             WHERE id = $5 AND lease_owner = $6",
        )
        .bind(if dead { "dead" } else { "pending" })
        .bind(next_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Rows waiting to be sent.
    pub async fn depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Rows by state.
    pub async fn outbox_counts(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// The most recent rows (newest first): (id, kind, channel, state, attempts, last_error).
    pub async fn recent_rows(&self, limit: i64) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query_as(
            "SELECT id, kind, channel, group_key, status, state, attempts, last_error, created_at, updated_at FROM outbox ORDER BY updated_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row: OutboxRow| serde_json::json!(row))
            .collect())
    }

    /// The latest record of an alert.
    pub async fn find_alert(&self, fingerprint: &str) -> Result<Option<AlertRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = $1 ORDER BY starts_at DESC LIMIT 1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks an acknowledge link's `nonce` used; `false` when it already was (a replay). Forgets
    /// nonces whose links expired before `now_s` (they cannot verify any more).
    pub async fn claim_ack_nonce(
        &self,
        nonce: &str,
        fingerprint: &str,
        now_ms: i64,
        expires_at_s: i64,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM ack_nonces WHERE expires_at < $1")
            .bind(now_ms / 1000 - 60)
            .execute(&self.pool)
            .await?;
        let r = sqlx::query(
            "INSERT INTO ack_nonces (nonce, fingerprint, used_at, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(fingerprint)
        .bind(now_ms)
        .bind(expires_at_s)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives a claimed nonce back (the ack it was claimed for changed nothing).
    pub async fn release_ack_nonce(&self, nonce: &str) -> Result<()> {
        sqlx::query("DELETE FROM ack_nonces WHERE nonce = $1")
            .bind(nonce)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an acknowledgement on the alert's open (and latest) records.
    pub async fn record_ack(
        &self,
        fingerprint: &str,
        now: i64,
        by: &str,
        comment: &str,
        silence_id: Option<&str>,
    ) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE alerts SET acked_at = COALESCE(acked_at, $1), acked_by = $2, ack_comment = $3, silence_id = COALESCE($4, silence_id)
             WHERE fingerprint = $5
               AND (resolved_at IS NULL OR starts_at = (SELECT MAX(starts_at) FROM alerts WHERE fingerprint = $5))",
        )
        .bind(now)
        .bind(by)
        .bind(comment)
        .bind(silence_id)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Firing, unacknowledged alerts of these severities first received at or before
    /// `seen_before`, with fewer than `max_level` escalations.
    pub async fn escalation_candidates(
        &self,
        severities: &[&str],
        seen_before: i64,
        max_level: i64,
    ) -> Result<Vec<AlertRecord>> {
        if severities.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..severities.len())
            .map(|i| format!("${}", i + 3))
            .collect();
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts
             WHERE status = 'firing' AND acked_at IS NULL AND first_seen <= $1 AND escalation_level < $2
               AND severity IN ({}) ORDER BY first_seen LIMIT 500",
            marks.join(", ")
        );
        let mut q = sqlx::query_as(&sql).bind(seen_before).bind(max_level);
        for s in severities {
            q = q.bind(*s);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Raises an alert's escalation level; `false` if it already was at least `level`.
    pub async fn set_escalation_level(
        &self,
        fingerprint: &str,
        starts_at: i64,
        level: i64,
    ) -> Result<bool> {
        let r = sqlx::query("UPDATE alerts SET escalation_level = $1 WHERE fingerprint = $2 AND starts_at = $3 AND escalation_level < $1")
            .bind(level)
            .bind(fingerprint)
            .bind(starts_at)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks an alert resolved (Alertmanager no longer has it).
    pub async fn mark_resolved(&self, fingerprint: &str, starts_at: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = COALESCE(resolved_at, $1) WHERE fingerprint = $2 AND starts_at = $3")
            .bind(now)
            .bind(fingerprint)
            .bind(starts_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The one value `sql` selects over the window `[from, to)` (bound as `$1` and `$2`).
    async fn in_window<O>(&self, sql: &'static str, from: i64, to: i64) -> Result<O>
    where
        O: Send + Unpin,
        (O,): for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        Ok(sqlx::query_scalar::<_, O>(sql)
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The digest's counts for `[from, to)`.
    pub async fn report(&self, from: i64, to: i64) -> Result<ReportCounts> {
        let fired = self
            .in_window(
                "SELECT COUNT(*) FROM alerts WHERE first_seen >= $1 AND first_seen < $2",
                from,
                to,
            )
            .await?;
        let resolved = self
            .in_window(
                "SELECT COUNT(*) FROM alerts WHERE resolved_at >= $1 AND resolved_at < $2",
                from,
                to,
            )
            .await?;
        let acknowledged = self
            .in_window(
                "SELECT COUNT(*) FROM alerts WHERE acked_at >= $1 AND acked_at < $2",
                from,
                to,
            )
            .await?;
        let escalated = self.in_window("SELECT COUNT(*) FROM alerts WHERE escalation_level > 0 AND first_seen >= $1 AND first_seen < $2", from, to).await?;
        let sent = self.in_window("SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND updated_at >= $1 AND updated_at < $2", from, to).await?;
        let dead = self.in_window("SELECT COUNT(*) FROM outbox WHERE state = 'dead' AND updated_at >= $1 AND updated_at < $2", from, to).await?;
        let mean_ack_ms = self.in_window("SELECT CAST(AVG(acked_at - starts_at) AS DOUBLE PRECISION) FROM alerts WHERE acked_at >= $1 AND acked_at < $2", from, to).await?;
        let mean_resolve_ms = self.in_window("SELECT CAST(AVG(resolved_at - starts_at) AS DOUBLE PRECISION) FROM alerts WHERE resolved_at >= $1 AND resolved_at < $2", from, to).await?;
        let noisiest = sqlx::query_as(
            "SELECT alertname, CAST(SUM(receipts) AS BIGINT) AS n, COUNT(*) AS c FROM alerts
             WHERE last_seen >= $1 AND first_seen < $2 GROUP BY alertname ORDER BY n DESC, alertname LIMIT 5",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(ReportCounts {
            fired,
            resolved,
            acknowledged,
            escalated,
            mean_ack_ms,
            mean_resolve_ms,
            noisiest,
            sent,
            dead,
            pending: self.depth().await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::connect(&url).await.unwrap(), dir)
    }

    fn row(key: &str, renotify_before: i64) -> NewRow {
        NewRow {
            idem_key: key.into(),
            kind: "notification",
            channel: "log".into(),
            group_key: "g".into(),
            status: "firing".into(),
            payload: "{}".into(),
            renotify_before,
        }
    }

    #[tokio::test]
    async fn recent_rows_show_every_outbox_column_by_name() {
        let (s, _d) = store().await;
        s.enqueue(1000, &[row("k", i64::MIN)]).await.unwrap();
        let c = s.claim("a", 2000, 10_000, 10).await.unwrap();
        assert!(
            s.mark_failed(&c[0].id, "a", 2001, 9000, false, "refused")
                .await
                .unwrap()
        );
        let rows = s.recent_rows(10).await.unwrap();
        assert_eq!(
            rows,
            [serde_json::json!({
                "id": c[0].id, "kind": "notification", "channel": "log", "group_key": "g",
                "status": "firing", "state": "pending", "attempts": 1, "last_error": "refused",
                "created_at": 1000, "updated_at": 2001,
            })]
        );
        assert_eq!(
            s.outbox_counts().await.unwrap(),
            BTreeMap::from([("pending".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn idempotency_key_dedups_within_the_window_and_requeues_after() {
        let (s, _d) = store().await;
        let r = s.enqueue(1000, &[row("k", i64::MIN)]).await.unwrap();
        assert!(matches!(r[0], Enqueued::New(_)));
        // Pending: always a duplicate.
        assert_eq!(
            s.enqueue(1001, &[row("k", 5000)]).await.unwrap()[0],
            Enqueued::Duplicate
        );
        let c = s.claim("a", 2000, 10_000, 10).await.unwrap();
        assert_eq!(c.len(), 1);
        assert!(s.mark_sent(&c[0].id, "a", 2001).await.unwrap());
        // Sent, created at 1000: inside the window (cutoff 900) a duplicate, outside (1500) again.
        assert_eq!(
            s.enqueue(3000, &[row("k", 900)]).await.unwrap()[0],
            Enqueued::Duplicate
        );
        assert_eq!(
            s.enqueue(3000, &[row("k", 1500)]).await.unwrap()[0],
            Enqueued::Again(c[0].id.clone())
        );
        assert_eq!(s.depth().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn leases_keep_two_claimers_apart_and_expire() {
        let (s, _d) = store().await;
        s.enqueue(0, &[row("a", i64::MIN), row("b", i64::MIN)])
            .await
            .unwrap();
        let first = s.claim("one", 10, 1000, 10).await.unwrap();
        assert_eq!(first.len(), 2);
        assert!(
            s.claim("two", 20, 1000, 10).await.unwrap().is_empty(),
            "leased rows are not claimed twice"
        );
        // "one" crashes; after the lease, "two" gets them (attempts counted).
        let second = s.claim("two", 1011, 1000, 10).await.unwrap();
        assert_eq!(second.len(), 2);
        assert!(second.iter().all(|c| c.attempts == 2));
        // The old claimer cannot record a result any more.
        assert!(!s.mark_sent(&first[0].id, "one", 1012).await.unwrap());
        assert!(
            s.mark_failed(&second[0].id, "two", 1012, 5000, false, "down")
                .await
                .unwrap()
        );
        assert!(
            s.mark_failed(&second[1].id, "two", 1012, 0, true, "gone")
                .await
                .unwrap()
        );
        assert!(
            s.claim("two", 4999, 1000, 10).await.unwrap().is_empty(),
            "not due before its backoff"
        );
        assert_eq!(
            s.claim("two", 5000, 1000, 10).await.unwrap().len(),
            1,
            "dead rows are never claimed"
        );
        let counts = s.outbox_counts().await.unwrap();
        assert_eq!(counts.get("dead"), Some(&1));
    }

    #[tokio::test]
    async fn concurrent_claimers_on_one_file_never_share_a_row() {
        let (s, d) = store().await;
        let rows: Vec<NewRow> = (0..200).map(|i| row(&format!("k{i}"), i64::MIN)).collect();
        s.enqueue(0, &rows).await.unwrap();
        let url = format!("sqlite://{}", d.path().join("t.db").display());
        let other = Store::connect(&url).await.unwrap();
        let mut tasks = Vec::new();
        for (i, st) in [s.clone(), other.clone(), s.clone(), other.clone()]
            .into_iter()
            .enumerate()
        {
            tasks.push(tokio::spawn(async move {
                let owner = format!("w{i}");
                let mut got = Vec::new();
                loop {
                    let c = st.claim(&owner, 10, 60_000, 7).await.unwrap();
                    if c.is_empty() {
                        break;
                    }
                    got.extend(c.into_iter().map(|c| c.id));
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(n, 200);
        assert_eq!(all.len(), 200, "a row was claimed twice");
    }
}
