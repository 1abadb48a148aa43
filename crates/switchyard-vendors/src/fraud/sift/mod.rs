//! Sift-shaped fraud scoring (Events API v205): a `$transaction` event with `return_score=true` and
//! the `payment_abuse` abuse type; the amount in micros; a 0–1 score per abuse type with reasons, and
//! the decision of a workflow when one ran. Errors carry an integer `status` in the body (0 = OK).

mod client;
#[cfg(test)]
mod tests;
mod transformers;

pub use client::{Sift, SiftConfig};
