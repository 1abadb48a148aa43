//! Errors as `application/problem+json` (RFC 9457), mapped to HTTP statuses in one place.

use axum::{
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized(&'static str),
    Forbidden(String),
    /// What was not found (`onboarding`, `payout`...).
    NotFound(&'static str),
    /// The request conflicts with the resource's state (409).
    Conflict(String),
    BadRequest(String),
    Validation(Vec<(String, String)>),
    UnsupportedMediaType,
    IdempotencyMismatch,
    IdempotencyInFlight,
    /// `what`: which limit (the tenant's, the key's, failed authentications from the address).
    RateLimited {
        retry_after_s: u64,
        what: &'static str,
    },
    Unavailable(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, "Unauthorized", (*why).to_string()),
            ApiError::Forbidden(scope) => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("this API key lacks the `{scope}` scope"),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "Not Found", format!("no such {what}")),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, "Conflict", why.clone()),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad Request", why.clone()),
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Validation failed",
                errors
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "send the body as application/json".to_string(),
            ),
            ApiError::IdempotencyMismatch => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key reused",
                "this Idempotency-Key was already used with a different request body".to_string(),
            ),
            ApiError::IdempotencyInFlight => (
                StatusCode::CONFLICT,
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry shortly".to_string(),
            ),
            ApiError::RateLimited { what, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                format!("{what}; retry after the Retry-After delay"),
            ),
            ApiError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", why.clone()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        ApiError::Unavailable("storage is unavailable; retry later".to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = self.parts();
        let mut body = json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail});
        if let ApiError::Validation(errors) = &self {
            body["errors"] = errors.iter().map(|(f, m)| json!({"field": f, "message": m})).collect();
        }
        let mut resp = (status, [("content-type", "application/problem+json")], body.to_string()).into_response();
        if let ApiError::RateLimited { retry_after_s, .. } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}
