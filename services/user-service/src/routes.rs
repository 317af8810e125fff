//! `/users`: list (cursor-paginated), create, read, replace, delete.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{Json, Path, Query};

use crate::AppState;
use crate::db::{RETRY_AFTER_SECS, StoreError};
use crate::model::{Page, User, UserInput};

/// Users per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 100;

/// The routes of the users resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user).put(replace_user).delete(delete_user),
        )
}

/// The `{id}` path parameter (a struct, so a bad value is reported with its name).
#[derive(Debug, Deserialize)]
struct UserId {
    id: i64,
}

/// `GET /users?limit=&cursor=`: `cursor` is the `next_cursor` of the previous page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<i64>,
}

fn store_error(e: StoreError, state: &AppState) -> ApiError {
    match e {
        StoreError::Unavailable(reason) => {
            tracing::debug!(reason = %reason, "database unavailable");
            ApiError::unavailable(
                format!(
                    "the database ({}) is unavailable; retry later",
                    state.db.system()
                ),
                Some(RETRY_AFTER_SECS),
            )
        }
        StoreError::DuplicateEmail => {
            ApiError::conflict("a user with this email already exists").with_field("email")
        }
        StoreError::Internal(e) => ApiError::internal(e),
    }
}

fn no_such_user(id: i64) -> ApiError {
    ApiError::not_found(format!("no user with id {id}"))
}

async fn get_user(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
) -> Result<Json<User>, ApiError> {
    match state.db.get(id).await {
        Ok(Some(user)) => Ok(Json(user)),
        Ok(None) => Err(no_such_user(id)),
        Err(e) => Err(store_error(e, &state)),
    }
}

async fn list_users(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(
            ApiError::bad_request(format!("limit must be from 1 to {MAX_LIMIT}"))
                .with_field("limit"),
        );
    }
    let after = query.cursor.unwrap_or(0);
    // One more than asked for tells whether there is a next page.
    let mut items = state
        .db
        .list(after, limit + 1)
        .await
        .map_err(|e| store_error(e, &state))?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|u| u.id)
    } else {
        None
    };
    let next = next_cursor.map(|c| format!("/users?limit={limit}&cursor={c}"));
    Ok(Json(Page {
        items,
        next_cursor,
        next,
    }))
}

async fn create_user(
    State(state): State<AppState>,
    Json(input): Json<UserInput>,
) -> Result<Response, ApiError> {
    let valid = input.validate()?;
    let user = state
        .db
        .create(&valid)
        .await
        .map_err(|e| store_error(e, &state))?;
    let location =
        HeaderValue::from_str(&format!("/users/{}", user.id)).map_err(ApiError::internal)?;
    tracing::info!(user.id = user.id, "user created");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user),
    )
        .into_response())
}

async fn replace_user(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
    Json(input): Json<UserInput>,
) -> Result<Json<User>, ApiError> {
    let valid = input.validate()?;
    match state.db.update(id, &valid).await {
        Ok(Some(user)) => Ok(Json(user)),
        Ok(None) => Err(no_such_user(id)),
        Err(e) => Err(store_error(e, &state)),
    }
}

async fn delete_user(
    State(state): State<AppState>,
    Path(UserId { id }): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    match state.db.delete(id).await {
        Ok(true) => {
            tracing::info!(user.id = id, "user deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(no_such_user(id)),
        Err(e) => Err(store_error(e, &state)),
    }
}
