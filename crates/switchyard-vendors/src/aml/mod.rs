//! The AML capability: screen a person against sanctions, PEP and adverse-media lists.

pub mod mesh;
pub mod watchman;

use futures::future::BoxFuture;
use switchyard_model::events::{
    aml::{ScreeningHit, ScreeningStatus},
    common::Person,
};

use crate::{adapter::Recovery, error::VendorError};

#[derive(Debug, Clone)]
pub struct Subject {
    pub subject_id: String,
    pub idempotency_key: String,
    pub person: Person,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AmlOutcome {
    pub provider_reference: Option<String>,
    pub status: ScreeningStatus,
    pub hits: Vec<ScreeningHit>,
}

/// A screening as the partner keeps it, read back by its reference: reconciliation's view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeptScreening {
    /// Whether the partner found any hit (a sanctions, PEP or adverse-media match) for the subject.
    pub has_hits: bool,
    /// The partner's record as it answered (evidence; names left out).
    pub raw: serde_json::Value,
}

pub trait AmlVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Screens the subject (screening has no money effect; vendors may still record a customer).
    fn screen<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<AmlOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: what became of the screening for this key.
    fn recover<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Recovery<AmlOutcome>, VendorError>>;
    /// The screening the partner keeps under `provider_reference` (`Ok(None)`: it has none). None
    /// when the partner keeps nothing to read back (a stateless search).
    fn kept<'a>(
        &'a self,
        _provider_reference: &'a str,
    ) -> Option<BoxFuture<'a, Result<Option<KeptScreening>, VendorError>>> {
        None
    }
}
