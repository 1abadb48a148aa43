//! The cards adapter's parts: the real-time authorization decision ([`authorize`]) and where its
//! decisions, holds, reversals and clearings are kept ([`store`]). The processors' APIs, the
//! card lifecycle and the authorization endpoints build on these (issue 12).

pub mod authorize;
pub mod store;

#[cfg(test)]
mod store_tests;
