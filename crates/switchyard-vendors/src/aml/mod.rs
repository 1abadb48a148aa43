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

pub trait AmlVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Screens the subject (screening has no money effect; vendors may still record a customer).
    fn screen<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<AmlOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: what became of the screening for this key.
    fn recover<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Recovery<AmlOutcome>, VendorError>>;
}
