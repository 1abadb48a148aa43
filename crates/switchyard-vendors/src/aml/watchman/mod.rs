//! Watchman-shaped screening (open-source, self-hosted, v2): one unauthenticated synchronous search
//! returning entities with a 0–1 match score; the caller applies its own thresholds.

mod client;
#[cfg(test)]
mod tests;
mod transformers;

pub use client::{Watchman, WatchmanConfig};
