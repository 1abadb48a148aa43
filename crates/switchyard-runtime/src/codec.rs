//! Typed produce/consume: the model's topic schemas, registered ids and the Confluent wire format.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use switchyard_model::{EventRecord, SchemaCatalog, SchemaError, topics::value_subject, wire};
use thiserror::Error;

use crate::registry::{RegistryClient, RegistryError};

/// Why a consumed message could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes can never be decoded here: dead-letter the message with this reason.
    #[error("{reason}: {detail}")]
    Poison { reason: &'static str, detail: String },
    /// The registry could not be asked: retry, never dead-letter.
    #[error("registry unavailable while decoding: {0}")]
    Unavailable(String),
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Encodes and decodes the model's events in Confluent wire format.
#[derive(Clone)]
pub struct Codec {
    catalog: Arc<SchemaCatalog>,
    registry: RegistryClient,
    /// Topic → the id its schema is registered under (for producing).
    ids: Arc<RwLock<HashMap<String, u32>>>,
    /// Topic name → model topic whose schema it carries (tests bind fresh topics to model schemas).
    aliases: Arc<RwLock<HashMap<String, String>>>,
}

impl Codec {
    pub fn new(catalog: SchemaCatalog, registry: RegistryClient) -> Self {
        Codec {
            catalog: Arc::new(catalog),
            registry,
            ids: Arc::default(),
            aliases: Arc::default(),
        }
    }

    pub fn catalog(&self) -> &SchemaCatalog {
        &self.catalog
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    fn model_topic(&self, topic: &str) -> String {
        self.aliases
            .read()
            .ok()
            .and_then(|a| a.get(topic).cloned())
            .unwrap_or_else(|| topic.to_string())
    }

    /// Registers the schema of every model topic under `<topic>-value`.
    pub async fn register_all(&self) -> Result<(), EncodeError> {
        for topic in self.catalog.topics() {
            self.register(topic, topic).await?;
        }
        Ok(())
    }

    /// Registers the schema of model topic `model` under `<topic>-value` and produces/consumes
    /// `topic` with it (used to give a fresh topic, e.g. in tests, a model schema).
    pub async fn register(&self, topic: &str, model: &str) -> Result<u32, EncodeError> {
        let schema = self.catalog.get(model)?;
        let id = self.registry.register(&value_subject(topic), &schema.text).await?;
        if let Ok(mut ids) = self.ids.write() {
            ids.insert(topic.to_string(), id);
        }
        if topic != model
            && let Ok(mut a) = self.aliases.write()
        {
            a.insert(topic.to_string(), model.to_string());
        }
        Ok(id)
    }

    /// Encodes `event` for `topic`: magic byte, schema id, Avro datum.
    pub async fn encode(&self, topic: &str, event: &EventRecord) -> Result<Vec<u8>, EncodeError> {
        let known = self.ids.read().ok().and_then(|ids| ids.get(topic).copied());
        let model = self.model_topic(topic);
        let id = match known {
            Some(id) => id,
            None => self.register(topic, &model).await?,
        };
        let datum = self.catalog.get(&model)?.encode(event)?;
        Ok(wire::frame(id, &datum))
    }

    /// Decodes a payload consumed from `topic`.
    pub async fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<(u32, EventRecord), DecodeError> {
        let poison = |reason: &'static str, detail: String| DecodeError::Poison { reason, detail };
        let payload = payload.ok_or_else(|| poison("undecodable", "message has no value".into()))?;
        let (id, datum) = wire::split(payload).map_err(|e| poison("undecodable", e.to_string()))?;
        let writer = match self.registry.schema_by_id(id).await {
            Ok(s) => s,
            Err(RegistryError::UnknownId(id)) => {
                return Err(poison(
                    "unknown_schema",
                    format!("schema id {id} is not in the registry"),
                ));
            }
            Err(e @ RegistryError::InvalidSchema { .. }) => return Err(poison("unknown_schema", e.to_string())),
            Err(e) => return Err(DecodeError::Unavailable(e.to_string())),
        };
        let model = self.model_topic(topic);
        let reader = self
            .catalog
            .get(&model)
            .map_err(|e| poison("invalid_event", e.to_string()))?;
        let event = reader
            .decode(&writer, datum)
            .map_err(|e| poison("undecodable", e.to_string()))?;
        Ok((id, event))
    }
}
