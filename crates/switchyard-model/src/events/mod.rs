//! Typed events of the canonical model: Rust mirrors of the Avro records services work with. Field
//! names and enum symbols match the `.avsc` files exactly (the round-trip tests hold them together).

pub mod aml;
pub mod cards;
pub mod common;
pub mod fraud;
pub mod kyc;
pub mod onboarding;
pub mod openbanking;
pub mod payouts;
pub mod reconciliation;

use serde::{Serialize, de::DeserializeOwned};

use crate::{Envelope, EventRecord, SchemaError};

/// A typed event: its record's full name, the topic it travels on, and its envelope.
pub trait Event: Serialize + DeserializeOwned {
    const RECORD: &'static str;
    const TOPIC: &'static str;
    fn envelope(&self) -> &Envelope;
}

impl EventRecord {
    /// The generic record of a typed event.
    pub fn of<E: Event>(event: &E) -> Result<Self, SchemaError> {
        EventRecord::from_typed(E::RECORD, event)
    }

    /// The typed event, if this record is one.
    pub fn as_event<E: Event>(&self) -> Option<Result<E, SchemaError>> {
        (self.record == E::RECORD).then(|| self.to_typed::<E>())
    }
}

macro_rules! event {
    ($ty:ty, $record:literal, $topic:literal) => {
        impl $crate::events::Event for $ty {
            const RECORD: &'static str = $record;
            const TOPIC: &'static str = $topic;
            fn envelope(&self) -> &$crate::Envelope {
                &self.envelope
            }
        }
    };
}
pub(crate) use event;
