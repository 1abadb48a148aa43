//! SEON-shaped fraud scoring (Fraud API v2): one flat snake_case call with an `X-API-KEY` header; a
//! `fraud_score` (0–100), a `state` (APPROVE, REVIEW, DECLINE) and the rules that applied. Amounts
//! are decimal numbers in the major unit; errors carry a code in an `error` object.

mod client;
#[cfg(test)]
mod tests;
mod transformers;

pub use client::{Seon, SeonConfig};
