//! Per-tenant API keys: `sy_<key id>_<secret>`, sent as `Authorization: Bearer <key>`. Only the
//! SHA-256 of the secret is stored; comparison is constant-time.

use aws_lc_rs::{constant_time, digest};
use axum::http::HeaderMap;
use sqlx::PgPool;

use crate::problem::ApiError;

pub const WRITE: &str = "onboarding:write";
pub const READ: &str = "onboarding:read";
pub const PAYOUTS_WRITE: &str = "payouts:write";
pub const PAYOUTS_READ: &str = "payouts:read";
/// Releases or rejects payouts held for fraud review.
pub const PAYOUTS_REVIEW: &str = "payouts:review";
pub const FRAUD_SCORE: &str = "fraud:score";
pub const CARDS_WRITE: &str = "cards:write";
pub const CARDS_READ: &str = "cards:read";
pub const OPENBANKING_WRITE: &str = "openbanking:write";
pub const OPENBANKING_READ: &str = "openbanking:read";
/// Every scope a key may carry.
pub const SCOPES: [&str; 10] = [
    WRITE,
    READ,
    PAYOUTS_WRITE,
    PAYOUTS_READ,
    PAYOUTS_REVIEW,
    FRAUD_SCORE,
    CARDS_WRITE,
    CARDS_READ,
    OPENBANKING_WRITE,
    OPENBANKING_READ,
];

#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.to_string()))
        }
    }
}

pub fn hash(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key id of a well-formed presented key (known before any look-up).
pub fn presented_key_id(headers: &HeaderMap) -> Option<&str> {
    let key = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    let mut parts = key.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sy"), Some(id), Some(_)) => Some(id),
        _ => None,
    }
}

pub async fn authenticate(pool: &PgPool, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "send an API key as `Authorization: Bearer <key>`",
        ))?;
    let key = value
        .strip_prefix("Bearer ")
        .ok_or(ApiError::Unauthorized("use the Bearer scheme"))?;
    let mut parts = key.splitn(3, '_');
    let (Some("sy"), Some(key_id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::Unauthorized("malformed API key"));
    };
    let row: Option<(String, String, Vec<String>)> =
        sqlx::query_as("SELECT tenant_id, secret_hash, scopes FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .fetch_optional(pool)
            .await?;
    // Hash even when the key id is unknown, so timing does not tell which ids exist.
    let presented = hash(secret);
    let Some((tenant_id, stored, scopes)) = row else {
        let _ = constant_time::verify_slices_are_equal(presented.as_bytes(), presented.as_bytes());
        return Err(ApiError::Unauthorized("unknown or revoked API key"));
    };
    if constant_time::verify_slices_are_equal(presented.as_bytes(), stored.as_bytes()).is_err() {
        return Err(ApiError::Unauthorized("unknown or revoked API key"));
    }
    Ok(Caller { tenant_id, scopes })
}

/// Creates a key and returns it (the only time the secret is visible).
pub async fn create_key(
    pool: &PgPool,
    tenant: &str,
    scopes: &[String],
    label: &str,
    by: &str,
) -> Result<String, sqlx::Error> {
    let key_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    sqlx::query(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, label, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key_id)
    .bind(tenant)
    .bind(hash(&secret))
    .bind(scopes)
    .bind(label)
    .bind(by)
        .execute(pool)
        .await?;
    Ok(format!("sy_{key_id}_{secret}"))
}

/// The id of a key given whole (`sy_<id>_<secret>`), or the id itself.
pub fn key_id(key: &str) -> &str {
    let mut parts = key.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sy"), Some(id), Some(_)) => id,
        _ => key,
    }
}

/// Revokes a key at once; false when no active key has this id.
pub async fn revoke_key(pool: &PgPool, key_id: &str, by: &str) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE key_id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .bind(by)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}
