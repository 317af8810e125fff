//! `GET /beat`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::extract::Query;

use crate::{AppState, MAX_WORK_ITERATIONS};

#[derive(Debug, Deserialize)]
pub(crate) struct BeatParams {
    work: Option<u64>,
}

#[derive(Serialize)]
struct Beat<'a> {
    beat: u64,
    instance: &'a str,
    work_iterations: u64,
    digest: u32,
}

/// One beat: count it, do the work, say who beat.
pub(crate) async fn beat(
    State(state): State<AppState>,
    Query(params): Query<BeatParams>,
) -> Response {
    let work = match params.work {
        None => state.work_iterations,
        Some(n) if n <= MAX_WORK_ITERATIONS => n,
        Some(n) => {
            return ApiError::bad_request(format!(
                "work must be at most {MAX_WORK_ITERATIONS}, got {n}"
            ))
            .with_field("work")
            .into_response();
        }
    };
    let beat = state.beats.fetch_add(1, Ordering::Relaxed) + 1;
    state.beats_total.inc();
    // At most a few milliseconds (MAX_WORK_ITERATIONS), so it runs on the async worker.
    let digest = crate::work::beat_work(work, beat as u32);
    axum::Json(Beat {
        beat,
        instance: &state.instance,
        work_iterations: work,
        digest,
    })
    .into_response()
}
