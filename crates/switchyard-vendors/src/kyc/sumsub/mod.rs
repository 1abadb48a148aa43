//! Sumsub-shaped KYC: level-driven applicant lifecycle, every request signed (`X-App-Access-Sig` =
//! hex HMAC-SHA256 over timestamp + method + path + body), `applicantReviewed` webhooks that carry the
//! answer, signed with `x-payload-digest` (algorithm named in `x-payload-digest-alg`).

mod client;
#[cfg(test)]
mod tests;
mod transformers;
pub mod webhooks;

pub use client::{Sumsub, SumsubConfig, request_signature};
