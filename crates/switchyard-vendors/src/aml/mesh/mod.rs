//! ComplyAdvantage-Mesh-shaped screening: a login token, a synchronous create-and-screen workflow,
//! then cases → alerts → risks for the details of a match.

mod client;
#[cfg(test)]
mod tests;
mod transformers;

pub use client::{Mesh, MeshConfig};
