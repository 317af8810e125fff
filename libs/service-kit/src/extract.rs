//! Extractors whose rejections are [`ApiError`]s: bad input always gets a 4xx JSON body that
//! names what is wrong.

use axum::extract::{FromRequest, FromRequestParts, MatchedPath};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body in, JSON body out; a rejected body becomes a 400/413/415/422 [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a parameter of the wrong type becomes a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                let error = ApiError::from(rejection);
                if error.field().is_some() {
                    return Err(error);
                }
                // A lone parameter is reported without its name: take it from the route.
                let template = parts.extensions.get::<MatchedPath>().map(|p| p.as_str());
                let names: Vec<&str> = template
                    .into_iter()
                    .flat_map(|t| t.split('/'))
                    .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                Err(match names.as_slice() {
                    [name] => {
                        let name = name.trim_start_matches('*');
                        ApiError::bad_request(error.message().replacen(
                            "path parameter",
                            &format!("path parameter `{name}`"),
                            1,
                        ))
                        .with_field(name)
                    }
                    _ => error,
                })
            }
        }
    }
}

/// Query parameters; a bad one becomes a 400 naming it.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
