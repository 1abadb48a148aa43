//! The envelope every event carries, and a schema-agnostic event record.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::schemas::SchemaError;

/// Identity, timing, tenancy, flow and causality of an event (`com.switchyard.common.Envelope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Avro `string` with `logicalType: uuid` (serialized as text, as every Confluent client does).
    #[serde(with = "uuid_as_text")]
    pub event_id: Uuid,
    /// Full name of the event record, e.g. `com.switchyard.kyc.VerifyIdentity`.
    pub event_type: String,
    /// Milliseconds since the Unix epoch (Avro `timestamp-millis`).
    pub occurred_at: i64,
    pub tenant_id: String,
    pub flow_id: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub producer: String,
}

impl Envelope {
    /// A new envelope for an event of `event_type`, stamped now with a time-ordered (v7) event id.
    pub fn new(
        event_type: impl Into<String>,
        tenant_id: impl Into<String>,
        flow_id: impl Into<String>,
        producer: impl Into<String>,
    ) -> Self {
        let flow_id = flow_id.into();
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            occurred_at: chrono::Utc::now().timestamp_millis(),
            tenant_id: tenant_id.into(),
            correlation_id: flow_id.clone(),
            flow_id,
            causation_id: None,
            idempotency_key: None,
            producer: producer.into(),
        }
    }

    /// An envelope for an event caused by `cause`: same tenant, flow and correlation.
    pub fn caused_by(cause: &Envelope, event_type: impl Into<String>, producer: impl Into<String>) -> Self {
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            occurred_at: chrono::Utc::now().timestamp_millis(),
            tenant_id: cause.tenant_id.clone(),
            flow_id: cause.flow_id.clone(),
            correlation_id: cause.correlation_id.clone(),
            causation_id: Some(cause.event_id.to_string()),
            idempotency_key: None,
            producer: producer.into(),
        }
    }
}

/// One event as the runtime moves it: which record of the topic's union it is, its envelope, and the
/// whole record as an Avro value (envelope included). Typed code converts with [`EventRecord::to_typed`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Full record name, e.g. `com.switchyard.kyc.VerifyIdentity`.
    pub record: String,
    pub envelope: Envelope,
    pub value: Value,
}

impl EventRecord {
    /// Builds a record from a typed event. Its `envelope` field must be the envelope; the envelope's
    /// `event_type` is set to the record name.
    pub fn from_typed<T: Serialize>(record: &str, event: &T) -> Result<Self, SchemaError> {
        let value = apache_avro::to_value(event).map_err(|e| SchemaError::Encode {
            record: record.to_string(),
            reason: crate::redact::redact_values(&e.to_string()),
        })?;
        Self::from_value(record, value)
    }

    /// Builds a record from an Avro record value that has an `envelope` field.
    pub fn from_value(record: &str, value: Value) -> Result<Self, SchemaError> {
        let envelope = envelope_of(&value).map_err(|reason| SchemaError::Encode {
            record: record.to_string(),
            reason,
        })?;
        if envelope.event_type != record {
            return Err(SchemaError::Encode {
                record: record.to_string(),
                reason: format!(
                    "envelope.event_type is {:?}, expected the record name",
                    envelope.event_type
                ),
            });
        }
        Ok(EventRecord {
            record: record.to_string(),
            envelope,
            value,
        })
    }

    /// The record as a typed event.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, SchemaError> {
        apache_avro::from_value(&self.value).map_err(|e| SchemaError::Decode {
            reason: format!(
                "{} does not fit the requested type: {}",
                self.record,
                crate::redact::redact_values(&e.to_string())
            ),
        })
    }
}

/// Extracts and decodes the `envelope` field of an Avro record value.
pub(crate) fn envelope_of(value: &Value) -> Result<Envelope, String> {
    let Value::Record(fields) = value else {
        return Err("event is not an Avro record".to_string());
    };
    let env = fields
        .iter()
        .find_map(|(name, v)| (name == "envelope").then_some(v))
        .ok_or_else(|| "event record has no envelope field".to_string())?;
    apache_avro::from_value::<Envelope>(env)
        .map_err(|e| format!("invalid envelope: {}", crate::redact::redact_values(&e.to_string())))
}

/// Avro's `uuid` logical type annotates a string; serde's compact form of `Uuid` would be bytes.
mod uuid_as_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(D::Error::custom)
    }
}
