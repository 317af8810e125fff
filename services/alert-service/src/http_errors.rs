//! The 5xx answers of the handlers: a body that names the dependency and nothing of its error
//! (no database or client text reaches a caller), with the cause logged once, here, inside the
//! request's span (the telemetry layer records an `error` field of an error event on the trace
//! as an exception and marks the span failed).

use std::fmt::Display;

use service_kit::ApiError;

/// 503: the alert database (outbox, alert records, ack nonces) cannot be read or written.
pub(crate) fn database_unavailable(cause: impl Display) -> ApiError {
    tracing::error!(error = %cause, dependency = "database", "alert database request failed");
    ApiError::unavailable("the alert database is unavailable; retry later", Some(5))
}

/// 503: Alertmanager could not be asked; nothing was changed.
pub(crate) fn alertmanager_unavailable(cause: &alertmanager::Error) -> ApiError {
    tracing::error!(
        error = %cause,
        error.type = cause.metric_label(),
        dependency = "alertmanager",
        "Alertmanager request failed"
    );
    ApiError::unavailable(
        "Alertmanager is unavailable; nothing was changed, retry later",
        Some(10),
    )
}
