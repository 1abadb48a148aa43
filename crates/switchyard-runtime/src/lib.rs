//! What every service of the mesh stands on.
//!
//! * [`config`]: layered configuration (defaults, TOML file, `SWITCHYARD_` environment), validated at
//!   start-up with the failing field's path in the message.
//! * [`telemetry`]: tracing (OTLP when configured) and the Prometheus metrics every service exposes.
//! * [`registry`] and [`codec`]: the Confluent wire format against a Confluent-compatible registry.
//! * [`outbox`]: state change and outgoing events in one Postgres transaction, and the relay that
//!   publishes them in order (one active relay per service, woken after each commit, plus polling).
//! * [`inbox`]: a consumer that applies each message in one transaction keyed by `(consumer,
//!   event_id)`, stores offsets only after commit, and dead-letters poison messages.
//! * [`effects`]: the write-ahead effect ledger adapters use so no partner effect runs twice.
//! * [`retention`]: tables that grow with traffic lose expired rows in small batches.
//! * [`admin`]: the operators' API under `/admin`, behind one bearer token.
//! * [`http`], [`shutdown`], [`service`]: health/readiness/metrics endpoints, graceful shutdown, and the
//!   boot sequence a service binary calls.
//!
//! Exactly-once in effect comes from the combination: the outbox never loses a committed event (it
//! may publish one twice after a crash), and the inbox never applies one twice.

pub mod admin;
pub mod backoff;
pub mod codec;
pub mod compat;
pub mod config;
pub mod db;
pub mod effects;
pub mod headers;
pub mod http;
pub mod inbox;
pub mod kafka;
pub mod outbox;
pub mod pace;
pub mod provider;
pub mod registry;
pub mod retention;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use codec::{Codec, DecodeError};
pub use config::{ConfigError, ServiceConfig};
pub use inbox::{Consumer, Handler, HandlerError, Incoming};
pub use outbox::{Outbox, Relay};
pub use secret::Secret;
pub use shutdown::Shutdown;
pub use telemetry::Metrics;
