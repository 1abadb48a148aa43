//! A client for the Confluent schema-registry API (as served by Apicurio's `ccompat` API or Confluent).
//! Schemas fetched by id are cached for the life of the process: ids are immutable.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use apache_avro::Schema;
use serde::Deserialize;
use serde_json::json;
use thiserror::Error;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Error)]
pub enum RegistryError {
    /// The registry has no schema with this id: the message can never be decoded here.
    #[error("schema id {0} is unknown to the registry")]
    UnknownId(u32),
    /// The registry refused a schema (for example as incompatible with the subject's latest version).
    #[error("registry rejected the schema for {subject}: {message}")]
    Rejected { subject: String, message: String },
    /// The registry holds a schema for this id that is not valid Avro.
    #[error("schema id {id} is not valid Avro: {reason}")]
    InvalidSchema { id: u32, reason: String },
    /// Network error or 5xx: try again later; never a reason to dead-letter a message.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct CompatResponse {
    is_compatible: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    /// The Confluent API's own code, e.g. 40403 "schema not found".
    #[serde(default)]
    error_code: i64,
}

/// The Confluent API's code for "schema not found". Only this 404 means the id is unknown: any other
/// 404 (a wrong base URL, a proxy) is the registry being unreachable as configured, and must not
/// dead-letter every message.
const SCHEMA_NOT_FOUND: i64 = 40403;

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    by_id: Arc<RwLock<HashMap<u32, Arc<Schema>>>>,
}

impl RegistryClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        Ok(RegistryClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            by_id: Arc::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// POSTs an Avro schema to `path` and reads a `T` from a success, classifying failures.
    /// `Ok(None)` is a 404.
    async fn post_schema<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        subject: &str,
        schema: &str,
    ) -> Result<Option<T>, RegistryError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", CONTENT_TYPE)
            .json(&json!({ "schemaType": "AVRO", "schema": schema }))
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if status.is_success() {
            return resp
                .json()
                .await
                .map(Some)
                .map_err(|e| RegistryError::Unavailable(e.to_string()));
        }
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        if status.is_server_error() {
            return Err(RegistryError::Unavailable(format!("{status}: {}", body.message)));
        }
        Err(RegistryError::Rejected {
            subject: subject.to_string(),
            message: format!("{status}: {}", body.message),
        })
    }

    /// Registers `schema` under `subject` (idempotent: the same schema returns the same id).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body: Option<IdResponse> = self
            .post_schema(&format!("/subjects/{subject}/versions"), subject, schema)
            .await?;
        body.map(|b| b.id).ok_or_else(|| RegistryError::Rejected {
            subject: subject.to_string(),
            message: "404 from the registry on registration".to_string(),
        })
    }

    /// Is `schema` compatible with the latest version of `subject`, under the registry's rule?
    /// A subject with no versions accepts anything.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let path = format!("/compatibility/subjects/{subject}/versions/latest");
        let body: Option<CompatResponse> = self.post_schema(&path, subject, schema).await?;
        Ok(body.is_none_or(|b| b.is_compatible))
    }

    /// Deletes a subject and all its versions, soft then permanently (for scratch subjects).
    pub async fn delete_subject(&self, subject: &str) -> Result<(), RegistryError> {
        for suffix in ["", "?permanent=true"] {
            let url = format!("{}/subjects/{subject}{suffix}", self.base);
            let resp = self
                .http
                .delete(url)
                .send()
                .await
                .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
            if resp.status().is_server_error() {
                return Err(RegistryError::Unavailable(format!(
                    "DELETE {subject}: {}",
                    resp.status()
                )));
            }
        }
        Ok(())
    }

    /// The writer schema of `id`, from the cache or the registry.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.by_id.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status.as_u16() == 404 {
            let body: ErrorBody = resp.json().await.unwrap_or_default();
            if body.error_code == SCHEMA_NOT_FOUND {
                return Err(RegistryError::UnknownId(id));
            }
            return Err(RegistryError::Unavailable(format!(
                "GET schema {id}: 404 without the registry's schema-not-found code (is the registry URL right?)"
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Unavailable(format!("GET schema {id}: {status}")));
        }
        let body: SchemaResponse = resp
            .json()
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let schema = Schema::parse_str(&body.schema).map_err(|e| RegistryError::InvalidSchema {
            id,
            reason: e.to_string(),
        })?;
        let schema = Arc::new(schema);
        if let Ok(mut m) = self.by_id.write() {
            m.insert(id, schema.clone());
        }
        Ok(schema)
    }
}
