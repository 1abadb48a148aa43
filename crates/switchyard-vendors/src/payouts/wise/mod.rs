//! Wise-shaped payouts: a quote, a recipient account, a transfer created with our
//! `customerTransactionId` (a re-send with the same id returns the same transfer), then funding from
//! the balance (a second funding is refused with `transfer.invalid-state`). Transfer states run
//! incoming_payment_waiting → processing → funds_converted → outgoing_payment_sent, or on to
//! bounced_back → cancelled → funds_refunded, and may roll back.

mod client;
#[cfg(test)]
mod tests;
mod transformers;
pub mod webhooks;

pub use client::{Wise, WiseConfig};
