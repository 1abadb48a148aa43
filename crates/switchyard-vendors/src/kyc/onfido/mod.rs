//! Onfido-shaped KYC (API v3.6): applicant → check → reports; thin `check.completed` webhooks signed
//! with `X-SHA2-Signature` (hex HMAC-SHA256 of the body); the receiver pulls the check for its result.

mod client;
#[cfg(test)]
mod tests;
mod transformers;
pub mod webhooks;

pub use client::{Onfido, OnfidoConfig};
