//! Acknowledgements: `POST /api/v1/alerts/{fingerprint}/ack` creates an Alertmanager silence with
//! an equality matcher on every label of the alert (for `duration_minutes`, default `ack.duration`),
//! records who acknowledged, and stops escalation; `GET` shows the state read back from
//! Alertmanager (JSON, or an HTML page with a form for the link in messages).
//!
//! Without `ALERTMANAGER_URL` the ack is recorded locally only (it still stops escalation).
//!
//! An ack is a capability, not an open endpoint: `POST` needs the signed link of a notification
//! ([`crate::ack_link`]: HMAC over fingerprint, expiry and nonce with `ACK_SIGNING_KEY`), before
//! its expiry, once. The alert's labels are the ones recorded at intake, whose fingerprint is
//! recomputed from them (never taken from a payload); the silence matches every label, for at
//! most `ack.max_duration`. Cross-site requests are refused, and a form body is accepted only
//! from this service's own page (same `Origin`). An unsigned (401), tampered (403), expired (410)
//! or used (409) link creates nothing.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alertmanager::{
    Fingerprint, GettableSilence, LabelSet, Matcher, PostableSilence, SilenceState,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use service_kit::ApiError;
use service_kit::extract::{Path, Query};

use crate::ack_link::{LinkQuery, Signer, Verified};
use crate::clock::now_ms;
use crate::http_errors::{alertmanager_unavailable, database_unavailable};
use crate::metrics::Metrics;
use crate::settings::AckSettings;
use crate::store::Store;

/// What the acknowledge routes use.
pub struct Acks {
    /// `ACK_SIGNING_KEY`: verifies links; without it every ack is refused (403).
    pub(crate) signer: Option<Signer>,
    /// Silence lengths.
    pub(crate) settings: AckSettings,
    /// Alert records and used link nonces.
    pub(crate) store: Store,
    /// Silences and the state of alerts; `None`: acks stay local.
    pub(crate) alertmanager: Option<alertmanager::AlertmanagerClient>,
    /// `alert_service_acks_total`.
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acks")
            .field("signer", &self.signer)
            .field("settings", &self.settings)
            .field("alertmanager", &self.alertmanager.is_some())
            .finish_non_exhaustive()
    }
}

/// The optional body of an ack.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who acknowledges (default `alert-service`).
    pub by: Option<String>,
    /// Why (default "Acknowledged via alert-service").
    pub comment: Option<String>,
    /// How long to silence.
    pub duration_minutes: Option<u64>,
}

struct KnownAlert {
    labels: LabelSet,
    local: Option<crate::store::AlertRecord>,
}

fn parse_fingerprint(text: &str) -> Result<Fingerprint, ApiError> {
    Fingerprint::from_str(text)
        .map_err(|e| ApiError::bad_request(e.to_string()).with_field("fingerprint"))
}

async fn lookup(acks: &Acks, fp: Fingerprint) -> Result<KnownAlert, ApiError> {
    let text = fp.to_string();
    let local = acks
        .store
        .find_alert(&text)
        .await
        .map_err(database_unavailable)?;
    if let Some(rec) = &local
        && let Ok(labels) = serde_json::from_str::<LabelSet>(&rec.labels)
        && Fingerprint::of_labels(&labels) == fp
    {
        return Ok(KnownAlert { labels, local });
    }
    if let Some(am) = &acks.alertmanager {
        let alerts = am
            .alerts(&[])
            .await
            .map_err(|e| alertmanager_unavailable(&e))?;
        if let Some(a) = alerts
            .into_iter()
            .find(|a| Fingerprint::of_labels(&a.labels) == fp)
        {
            return Ok(KnownAlert {
                labels: a.labels,
                local: None,
            });
        }
    }
    Err(ApiError::not_found(format!(
        "no alert with fingerprint {text} is known here or in Alertmanager"
    )))
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<(AckRequest, bool), ApiError> {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((AckRequest::default(), false));
    }
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let text = String::from_utf8_lossy(body);
        let url = reqwest::Url::parse(&format!("http://form/?{text}"))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut req = AckRequest::default();
        for (k, v) in url.query_pairs() {
            let v = v.trim().to_owned();
            if v.is_empty() {
                continue;
            }
            match k.as_ref() {
                "by" => req.by = Some(v),
                "comment" => req.comment = Some(v),
                "duration_minutes" => {
                    req.duration_minutes = Some(v.parse().map_err(|_| {
                        ApiError::invalid_field(
                            "duration_minutes",
                            "duration_minutes must be a whole number of minutes",
                        )
                    })?)
                }
                _ => {}
            }
        }
        return Ok((req, true));
    }
    let req: AckRequest = serde_json::from_slice(body).map_err(|e| {
        let mut err = ApiError::bad_request(format!("invalid ack body: {e}"));
        for f in ["by", "comment", "duration_minutes"] {
            if e.to_string().contains(&format!("`{f}`")) {
                err = err.with_field(f);
            }
        }
        err
    })?;
    Ok((req, false))
}

fn now_s() -> i64 {
    now_ms() / 1000
}

/// The signer, or 403 when `ACK_SIGNING_KEY` is not set.
fn signer(acks: &Acks) -> Result<&Signer, ApiError> {
    acks.signer.as_ref().ok_or_else(|| {
        ApiError::forbidden(
            "not_configured",
            "acknowledgements are closed: no ACK_SIGNING_KEY is configured",
        )
    })
}

/// How long the silence lasts: `duration_minutes` of the request (1 to `ack.max_duration`), else
/// `ack.duration`.
fn silence_length(settings: &AckSettings, minutes: Option<u64>) -> Result<Duration, ApiError> {
    match minutes {
        None => Ok(settings.duration),
        Some(0) => Err(ApiError::invalid_field(
            "duration_minutes",
            "duration_minutes must be at least 1",
        )),
        Some(m) => {
            let d = Duration::from_secs(m.saturating_mul(60));
            if d > settings.max_duration {
                return Err(ApiError::invalid_field(
                    "duration_minutes",
                    format!(
                        "duration_minutes may be at most {}",
                        settings.max_duration.as_secs() / 60
                    ),
                ));
            }
            Ok(d)
        }
    }
}

/// Who acknowledges and why, with their defaults and bounds.
fn who_and_why(req: AckRequest) -> Result<(String, String), ApiError> {
    let by = req.by.unwrap_or_else(|| "alert-service".to_owned());
    let comment = req
        .comment
        .unwrap_or_else(|| "Acknowledged via alert-service".to_owned());
    if by.len() > 200 || comment.len() > 2000 {
        return Err(ApiError::invalid_field(
            "comment",
            "by is limited to 200 and comment to 2000 bytes",
        ));
    }
    Ok((by, comment))
}

impl Acks {
    /// Uses the link's nonce up: 409 when it was used before.
    async fn claim_link(&self, verified: &Verified, fp: Fingerprint) -> Result<(), ApiError> {
        let fresh = self
            .store
            .claim_ack_nonce(
                &verified.nonce,
                &fp.to_string(),
                now_ms(),
                verified.expires_at,
            )
            .await
            .map_err(database_unavailable)?;
        if !fresh {
            self.metrics.acks.with_label_values(&["replayed"]).inc();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "link_used",
                "this acknowledge link has already been used",
            ));
        }
        Ok(())
    }

    /// Creates the Alertmanager silence; when that fails nothing was created, so the link's
    /// nonce is released for another try.
    async fn silence(
        &self,
        am: &alertmanager::AlertmanagerClient,
        matchers: Vec<Matcher>,
        duration: Duration,
        by: &str,
        comment: &str,
        nonce: &str,
    ) -> Result<(String, time::OffsetDateTime), ApiError> {
        let s = PostableSilence::for_duration(
            matchers,
            time::Duration::try_from(duration).unwrap_or(time::Duration::hours(2)),
            by.to_owned(),
            comment.to_owned(),
        );
        match am.create_silence(&s).await {
            Ok(id) => Ok((id, s.ends_at)),
            Err(e) => {
                self.metrics
                    .acks
                    .with_label_values(&["alertmanager_error"])
                    .inc();
                let _ = self.store.release_ack_nonce(nonce).await;
                Err(alertmanager_unavailable(&e))
            }
        }
    }
}

/// `POST /api/v1/alerts/{fingerprint}/ack?exp=…&nonce=…&sig=…`.
pub async fn acknowledge(
    State(acks): State<Arc<Acks>>,
    Path(fingerprint): Path<String>,
    Query(link): Query<LinkQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fp = parse_fingerprint(&fingerprint)?;
    let signer = signer(&acks)?;
    service_kit::auth::same_origin(&headers)?;
    let verified = signer.verify(&fp.to_string(), &link, now_s())?;
    let (req, from_form) = parse_body(&headers, &body)?;
    if from_form && headers.get(http::header::ORIGIN).is_none() {
        return Err(ApiError::forbidden(
            "cross_site",
            "a form body is accepted only from this service's own page (no Origin was sent); send JSON",
        ));
    }
    let duration = silence_length(&acks.settings, req.duration_minutes)?;
    let (by, comment) = who_and_why(req)?;
    let known = lookup(&acks, fp).await?;
    let matchers: Vec<Matcher> = known
        .labels
        .iter()
        .map(|(k, v)| Matcher::equal(k, v))
        .collect();
    acks.claim_link(&verified, fp).await?;
    let silence = match &acks.alertmanager {
        Some(am) => Some(
            acks.silence(am, matchers, duration, &by, &comment, &verified.nonce)
                .await?,
        ),
        None => None,
    };
    let silence_id = silence.as_ref().map(|(id, _)| id.as_str());
    acks.store
        .record_ack(&fp.to_string(), now_ms(), &by, &comment, silence_id)
        .await
        .map_err(database_unavailable)?;
    acks.metrics
        .acks
        .with_label_values(&[if silence.is_some() {
            "silenced"
        } else {
            "local"
        }])
        .inc();
    tracing::info!(fingerprint = %fp, by = %by, silence = ?silence_id, "alert acknowledged");
    let body = json!({
        "fingerprint": fp.to_string(),
        "acknowledged": true,
        "by": by,
        "comment": comment,
        "labels": known.labels,
        "silence": silence.as_ref().map(|(id, ends)| json!({"id": id, "ends_at": crate::template_data::rfc3339(*ends)})),
        "note": if silence.is_none() { Some("ALERTMANAGER_URL is not set: recorded here only (stops escalation, not notifications)") } else { None },
    });
    if from_form {
        return Ok(Html(page(&fp.to_string(), &body, None)).into_response());
    }
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `GET /api/v1/alerts/{fingerprint}/ack`.
pub async fn status(
    State(acks): State<Arc<Acks>>,
    Path(fingerprint): Path<String>,
    Query(link): Query<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let fp = parse_fingerprint(&fingerprint)?;
    let known = lookup(&acks, fp).await?;
    let mut silences: Vec<GettableSilence> = Vec::new();
    let mut in_alertmanager = serde_json::Value::Null;
    if let Some(am) = &acks.alertmanager {
        let filter: Vec<Matcher> = known
            .labels
            .iter()
            .map(|(k, v)| Matcher::equal(k, v))
            .collect();
        let alerts = am
            .alerts(&filter)
            .await
            .map_err(|e| alertmanager_unavailable(&e))?;
        let mut ids: Vec<String> = Vec::new();
        if let Some(a) = alerts.iter().find(|a| a.fingerprint == fp) {
            in_alertmanager = json!({"state": a.status.state, "silenced_by": a.status.silenced_by});
            ids.extend(a.status.silenced_by.iter().cloned());
        }
        if let Some(id) = known.local.as_ref().and_then(|l| l.silence_id.clone())
            && !ids.contains(&id)
        {
            ids.push(id);
        }
        for id in ids {
            match am.silence(&id).await {
                Ok(s) => silences.push(s),
                Err(alertmanager::Error::SilenceNotFound { .. }) => {}
                Err(e) => return Err(alertmanager_unavailable(&e)),
            }
        }
    }
    let silenced = silences
        .iter()
        .any(|s| matches!(s.status.state, SilenceState::Active | SilenceState::Pending));
    let local = known.local.as_ref();
    let body = json!({
        "fingerprint": fp.to_string(),
        "labels": known.labels,
        "status": local.map(|l| l.status.clone()),
        "acknowledged": silenced || local.is_some_and(|l| l.acked_at.is_some()),
        "acked_by": local.and_then(|l| l.acked_by.clone()),
        "acked_at": local.and_then(|l| l.acked_at).and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000).ok()).map(crate::template_data::rfc3339),
        "comment": local.and_then(|l| l.ack_comment.clone()),
        "alertmanager": in_alertmanager,
        "silences": silences.iter().map(|s| json!({
            "id": s.id, "state": s.status.state, "starts_at": crate::template_data::rfc3339(s.starts_at),
            "ends_at": crate::template_data::rfc3339(s.ends_at), "created_by": s.created_by, "comment": s.comment,
        })).collect::<Vec<_>>(),
    });
    let wants_html = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        // The form is offered only on a page opened from a valid link, and posts that link.
        let form_query = acks.signer.as_ref().and_then(|signer| {
            signer.verify(&fp.to_string(), &link, now_s()).ok()?;
            Some(format!(
                "exp={}&nonce={}&sig={}",
                link.exp.as_deref()?,
                link.nonce.as_deref()?,
                link.sig.as_deref()?
            ))
        });
        return Ok(Html(page(&fp.to_string(), &body, form_query.as_deref())).into_response());
    }
    Ok(axum::Json(body).into_response())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The confirmation page: the state and, opened from a valid link (`form_query`), a form that
/// POSTs the ack with that link.
fn page(fingerprint: &str, state: &serde_json::Value, form_query: Option<&str>) -> String {
    let labels = state["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "<tr><td>{}</td><td><code>{}</code></td></tr>",
                        esc(k),
                        esc(v.as_str().unwrap_or_default())
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default();
    let acked = state["acknowledged"].as_bool().unwrap_or(false);
    let summary = if acked {
        let by = state["acked_by"]
            .as_str()
            .or(state["by"].as_str())
            .unwrap_or("someone");
        format!("<p><b>Acknowledged</b> by {}.</p>", esc(by))
    } else {
        "<p><b>Not acknowledged.</b></p>".to_owned()
    };
    let form = match form_query {
        Some(q) => format!(
            "<form method=\"post\" action=\"/api/v1/alerts/{fp}/ack?{q}\">\
<p><label>Your name <input name=\"by\" required></label></p>\
<p><label>Comment <input name=\"comment\" size=\"60\"></label></p>\
<p><label>Silence for (minutes) <input name=\"duration_minutes\" type=\"number\" min=\"1\" value=\"120\"></label></p>\
<p><button type=\"submit\">Acknowledge</button></p></form>",
            fp = esc(fingerprint),
            q = esc(q),
        ),
        None => "<p>To acknowledge, open the link of a notification (links are signed, expire and work once).</p>".to_owned(),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Acknowledge {fp}</title></head>\
<body style=\"font-family:sans-serif\"><h2>Alert {fp}</h2>{summary}<table>{labels}</table>\
{form}<pre>{json}</pre></body></html>",
        form = form,
        fp = esc(fingerprint),
        json = esc(&serde_json::to_string_pretty(state).unwrap_or_default()),
    )
}
