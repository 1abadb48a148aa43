//! Stripe-shaped payouts (Connect): the beneficiary's bank account as an external account of the
//! connected account, then one payout object, form-encoded, with an `Idempotency-Key` that Stripe
//! remembers for 24 hours only (a re-send after that executes again). So an earlier attempt is
//! always looked up first, by the payout's metadata (search), and never settled by a re-send.
//! Statuses: pending → in_transit → paid | failed | canceled; a paid payout may later fail.

mod client;
#[cfg(test)]
mod tests;
mod transformers;
pub mod webhooks;

pub use client::{Stripe, StripeConfig};
