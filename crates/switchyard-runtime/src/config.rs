//! Layered service configuration: built-in defaults, then an optional TOML file (`SWITCHYARD_CONFIG`
//! or `--config`), then environment variables `SWITCHYARD_<SECTION>__<FIELD>` (for example
//! `SWITCHYARD_DATABASE__URL`). Validated once at start-up; every error names the field's path.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;
use thiserror::Error;

use crate::secret::Secret;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceConfig {
    /// The service's name: consumer group prefix, metrics label, `producer` in envelopes.
    pub service: String,
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub database: DatabaseConfig,
    pub outbox: OutboxConfig,
    pub inbox: InboxConfig,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    /// The operators' API (`/admin/...`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Per-table retention overrides, `<rule>_hours = N` (see each service's documented rules);
    /// an unknown rule is refused at start-up.
    #[serde(default)]
    pub retention: std::collections::HashMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct AdminConfig {
    /// The bearer token `/admin/...` routes require (from a secret: `SWITCHYARD_ADMIN__TOKEN`).
    /// Empty: the admin API is off (its routes answer 503).
    #[serde(default)]
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Where `/healthz`, `/readyz`, `/metrics` (and a service's own API) listen.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Partitions for topics this service creates if they are missing.
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// Create the model's topics (and their `.dlq`) at start-up when missing.
    pub ensure_topics: bool,
    /// Static group membership (`group.instance.id`): a stable name per instance, so a restarted
    /// instance takes its partitions back at once instead of waiting out the dead member's session.
    /// Empty: dynamic membership. Two live instances must never share one name.
    #[serde(default)]
    pub group_instance_id: String,
    /// Messages a consumer works on at once (different keys in parallel, one key in order).
    pub max_in_flight: usize,
    /// The same per partition; the partition is paused at the bound.
    pub max_in_flight_per_partition: usize,
    /// Messages (of different keys) applied together in one transaction when they are ready at
    /// the same time, for handlers that call nobody (1: one transaction per message).
    pub max_batch: usize,
    /// Messages parked while they wait for their turn at a rate-limited partner: they hold none of
    /// `max_in_flight`, so other partners' traffic keeps flowing (0: a waiting message keeps its
    /// place). Each costs its message's memory; the partition's offset stays below it until done.
    pub max_parked: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegistryConfig {
    /// Base URL a Confluent client is given, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub url: String,
    pub timeout_ms: u64,
    /// Register the model's schemas at start-up (idempotent).
    pub register_schemas: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    pub url: Secret,
    /// Pool size; 0 (the default) sizes it from the consumer's concurrency: two connections per
    /// message in flight (a transaction, and an adapter's effect lock held across a partner call)
    /// plus four (the relay, retention, the HTTP API).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxConfig {
    /// Fallback poll when no NOTIFY arrives (nothing is ever stranded longer than this).
    pub poll_interval_ms: u64,
    pub batch_size: i64,
    /// Published rows older than this are pruned.
    pub retention_hours: u64,
    /// Failed delivery rounds (while other rows got through) before a row is set aside.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboxConfig {
    /// Inbox rows (processed event ids) are kept this long, then pruned.
    pub retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownConfig {
    /// After SIGTERM, in-flight work has this long to finish before the process exits anyway.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`; traces are not exported when empty.
    pub otlp_endpoint: String,
    /// `text` or `json`.
    pub log_format: String,
    /// An `EnvFilter` directive, e.g. `info,switchyard_runtime=debug`.
    pub log_filter: String,
    /// Share of new traces kept (0.0..=1.0); a trace begun elsewhere keeps its caller's choice.
    #[serde(default = "all")]
    pub trace_sample_ratio: f64,
}

fn all() -> f64 {
    1.0
}

impl ServiceConfig {
    /// Loads the configuration of `service`: defaults, then `file` (if any), then the environment.
    pub fn load(service: &str, file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(service, file, std::env::vars())
    }

    /// As [`ServiceConfig::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        service: &str,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let load = |e: config::ConfigError| ConfigError::Load(e.to_string());
        let mut builder = config::Config::builder()
            .set_default("service", service)
            .and_then(|b| b.set_default("http.listen", "127.0.0.1:0"))
            .and_then(|b| b.set_default("kafka.bootstrap_servers", "localhost:9092"))
            .and_then(|b| b.set_default("kafka.topic_partitions", 3))
            .and_then(|b| b.set_default("kafka.topic_replication", 1))
            .and_then(|b| b.set_default("kafka.ensure_topics", true))
            .and_then(|b| b.set_default("kafka.max_in_flight", 16))
            .and_then(|b| b.set_default("kafka.max_in_flight_per_partition", 8))
            .and_then(|b| b.set_default("kafka.max_batch", 16))
            .and_then(|b| b.set_default("kafka.max_parked", 1000))
            .and_then(|b| b.set_default("registry.url", "http://127.0.0.1:8081/apis/ccompat/v7"))
            .and_then(|b| b.set_default("registry.timeout_ms", 5000))
            .and_then(|b| b.set_default("registry.register_schemas", true))
            .and_then(|b| b.set_default("database.url", ""))
            .and_then(|b| b.set_default("database.max_connections", 0))
            .and_then(|b| b.set_default("outbox.poll_interval_ms", 500))
            .and_then(|b| b.set_default("outbox.batch_size", 500))
            .and_then(|b| b.set_default("outbox.retention_hours", 24))
            .and_then(|b| b.set_default("outbox.max_attempts", 5))
            .and_then(|b| b.set_default("inbox.retention_hours", 24 * 7))
            .and_then(|b| b.set_default("shutdown.deadline_ms", 10_000))
            .and_then(|b| b.set_default("telemetry.otlp_endpoint", ""))
            .and_then(|b| b.set_default("telemetry.log_format", "text"))
            .and_then(|b| b.set_default("telemetry.log_filter", "info,apache_avro=error"))
            .map_err(load)?;
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SWITCHYARD_") && k != "SWITCHYARD_CONFIG")
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SWITCHYARD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let cfg: ServiceConfig = builder.build().and_then(|c| c.try_deserialize()).map_err(load)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service.trim().is_empty() {
            return Err(invalid("service", "must not be empty"));
        }
        self.http
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("http.listen", format!("{:?} is not host:port ({e})", self.http.listen)))?;
        if !self.admin.token.is_empty() && self.admin.token.expose().len() < 16 {
            return Err(invalid(
                "admin.token",
                "must be at least 16 characters (or empty: admin API off)",
            ));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.kafka.topic_partitions < 1 {
            return Err(invalid("kafka.topic_partitions", "must be at least 1"));
        }
        if self.kafka.max_in_flight < 1 || self.kafka.max_in_flight_per_partition < 1 {
            return Err(invalid(
                "kafka.max_in_flight",
                "it and kafka.max_in_flight_per_partition must be at least 1",
            ));
        }
        if !(1..=1000).contains(&self.kafka.max_batch) {
            return Err(invalid("kafka.max_batch", "must be between 1 and 1000"));
        }
        if self.kafka.max_parked > 100_000 {
            return Err(invalid("kafka.max_parked", "must be at most 100000"));
        }
        if self.kafka.topic_replication < 1 {
            return Err(invalid("kafka.topic_replication", "must be at least 1"));
        }
        let url = reqwest::Url::parse(&self.registry.url)
            .map_err(|e| invalid("registry.url", format!("{:?} is not a URL ({e})", self.registry.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("registry.url", "must be http or https"));
        }
        if self.registry.timeout_ms == 0 {
            return Err(invalid("registry.timeout_ms", "must be positive"));
        }
        let db = self.database.url.expose();
        if db.is_empty() {
            return Err(invalid(
                "database.url",
                "is required (set SWITCHYARD_DATABASE__URL or database.url in the config file)",
            ));
        }
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(invalid("database.url", "must be a postgres:// URL"));
        }
        if self.database.max_connections == 1 {
            return Err(invalid(
                "database.max_connections",
                "must be at least 2 (the relay holds one)",
            ));
        }
        if self.outbox.poll_interval_ms == 0 {
            return Err(invalid("outbox.poll_interval_ms", "must be positive"));
        }
        if !(1..=10_000).contains(&self.outbox.batch_size) {
            return Err(invalid("outbox.batch_size", "must be between 1 and 10000"));
        }
        if self.outbox.max_attempts < 1 {
            return Err(invalid("outbox.max_attempts", "must be at least 1"));
        }
        if self.shutdown.deadline_ms == 0 {
            return Err(invalid("shutdown.deadline_ms", "must be positive"));
        }
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            return Err(invalid("telemetry.log_format", "must be `text` or `json`"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return Err(invalid("telemetry.trace_sample_ratio", "must be between 0 and 1"));
        }
        if !self.telemetry.otlp_endpoint.is_empty() && reqwest::Url::parse(&self.telemetry.otlp_endpoint).is_err() {
            return Err(invalid("telemetry.otlp_endpoint", "must be a URL or empty"));
        }
        Ok(())
    }

    /// Reads one section of the service's config file (e.g. an adapter's `partners`), with
    /// `default` when the file or the section is absent.
    pub fn section<T: serde::de::DeserializeOwned>(
        file: Option<&Path>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(file) = file else { return Ok(default) };
        let cfg = config::Config::builder()
            .add_source(config::File::from(file).format(config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        match cfg.get::<T>(key) {
            Ok(v) => Ok(v),
            Err(config::ConfigError::NotFound(_)) => Ok(default),
            Err(e) => Err(ConfigError::Load(format!("{}: {e}", file.display()))),
        }
    }

    /// The database pool size in force (see [`DatabaseConfig::max_connections`]).
    pub fn pool_size(&self) -> u32 {
        match self.database.max_connections {
            0 => u32::try_from(self.kafka.max_in_flight * 2 + 4).unwrap_or(u32::MAX),
            n => n,
        }
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.outbox.poll_interval_ms)
    }

    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.shutdown.deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_defaults() {
        let cfg = ServiceConfig::load_from(
            "orchestrator",
            None,
            env(&[
                ("SWITCHYARD_DATABASE__URL", "postgres://u:p@localhost/db"),
                ("SWITCHYARD_OUTBOX__BATCH_SIZE", "42"),
                ("SWITCHYARD_HTTP__LISTEN", "127.0.0.1:9999"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.service, "orchestrator");
        assert_eq!(cfg.outbox.batch_size, 42);
        assert_eq!(cfg.http.listen, "127.0.0.1:9999");
        assert_eq!(cfg.kafka.bootstrap_servers, "localhost:9092");
    }

    #[test]
    fn missing_database_url_names_the_field() {
        let err = ServiceConfig::load_from("x", None, env(&[])).expect_err("must fail");
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let base = ("SWITCHYARD_DATABASE__URL", "postgres://u:p@localhost/db");
        for (key, value, field) in [
            ("SWITCHYARD_HTTP__LISTEN", "not-an-address", "http.listen"),
            ("SWITCHYARD_OUTBOX__BATCH_SIZE", "0", "outbox.batch_size"),
            ("SWITCHYARD_REGISTRY__URL", "ftp://x", "registry.url"),
            ("SWITCHYARD_TELEMETRY__LOG_FORMAT", "xml", "telemetry.log_format"),
            ("SWITCHYARD_OUTBOX__BATCH_SIZE", "many", "outbox.batch_size"),
            (
                "SWITCHYARD_TELEMETRY__TRACE_SAMPLE_RATIO",
                "1.5",
                "telemetry.trace_sample_ratio",
            ),
            ("SWITCHYARD_ADMIN__TOKEN", "short", "admin.token"),
        ] {
            let err = ServiceConfig::load_from("x", None, env(&[base, (key, value)])).expect_err(key);
            assert!(err.to_string().contains(field), "{key}={value}: {err}");
        }
    }

    #[test]
    fn database_url_is_redacted_in_debug() {
        let cfg = ServiceConfig::load_from(
            "x",
            None,
            env(&[("SWITCHYARD_DATABASE__URL", "postgres://u:topsecret@localhost/db")]),
        )
        .expect("valid");
        assert!(!format!("{cfg:?}").contains("topsecret"));
    }
}
