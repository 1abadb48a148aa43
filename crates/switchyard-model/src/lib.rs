//! The canonical model of the mesh: topic names, the event envelope, the Avro schemas (one value schema
//! per topic, a union of that topic's event records) and the Confluent wire format.
//!
//! Nothing in here knows about a vendor. Adapters translate vendor payloads into these records.

pub mod envelope;
pub mod events;
pub mod money;
pub mod redact;
pub mod schemas;
pub mod topics;
pub mod wire;

pub use envelope::{Envelope, EventRecord};
pub use schemas::{SchemaCatalog, SchemaError, TopicSchema};
pub use topics::{Domain, TopicKind};
