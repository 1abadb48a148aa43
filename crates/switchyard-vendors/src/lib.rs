//! Vendor adapters.
//!
//! One trait per domain ([`kyc::KycVendor`], [`aml::AmlVendor`]) with a small surface; one folder per
//! vendor with the same files: `client.rs` (the vendor's HTTP API), `transformers.rs` (the vendor's
//! types and the exhaustive mapping of its statuses into the canonical model), `webhooks.rs` (its
//! signature scheme, where it sends webhooks) and `tests.rs` (contract tests against recorded
//! fixtures in `fixtures/<vendor>/`). Vendor types never leave their folder. Vendors are built in one
//! place: [`registry`].

pub mod adapter;
pub mod aml;
pub mod cards;
pub(crate) mod decimal;
pub mod error;
pub mod fraud;
pub mod kyc;
pub mod openbanking;
pub mod payouts;
pub mod registry;
pub mod signing;
#[cfg(test)]
pub(crate) mod testing;

pub use error::VendorError;
