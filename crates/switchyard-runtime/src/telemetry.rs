//! Tracing and metrics.
//!
//! Metric names follow one scheme for every service: `switchyard_<subsystem>_<what>_<unit>`, with a
//! constant `service` label. This module owns the runtime's metrics; services add their own through
//! [`Metrics::registry`].

use std::sync::{Arc, Mutex};

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::TelemetryConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub topic: String,
    /// `processed`, `duplicate`, `dead_lettered`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DlqLabels {
    pub topic: String,
    /// `undecodable`, `unknown_schema`, `invalid_event`, `handler_rejected`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// The consumer group.
    pub group: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub topic: String,
    /// `decode` (the registry unreachable), `handler` (a transient handler failure).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `idle` or `in_use`.
    pub state: String,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The runtime's metrics, registered on a shared registry rendered at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub messages_consumed: Family<ConsumedLabels, Counter>,
    pub messages_produced: Family<TopicLabels, Counter>,
    pub handler_duration: Family<TopicLabels, Histogram, fn() -> Histogram>,
    pub dlq_messages: Family<DlqLabels, Counter>,
    pub outbox_publish_lag: Histogram,
    pub outbox_pending: Gauge,
    pub outbox_oldest_pending_age: Gauge,
    pub outbox_relay_active: Gauge,
    pub outbox_set_aside: Family<TopicLabels, Counter>,
    pub inbox_duplicates: Counter,
    pub consumer_in_flight: Gauge,
    pub consumer_batch_size: Histogram,
    pub consumer_parked: Gauge,
    pub handler_retries: Family<RetryLabels, Counter>,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    pub db_pool_max: Gauge,
    pub resident_memory: Gauge,
    pub consumer_lag_messages: Family<LagLabels, Gauge>,
    pub consumer_lag_seconds: Family<LagLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let mut root = Registry::with_prefix_and_labels(
            "switchyard",
            [(
                std::borrow::Cow::Borrowed("service"),
                std::borrow::Cow::Owned(service.to_string()),
            )]
            .into_iter(),
        );
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            messages_consumed: Family::default(),
            messages_produced: Family::default(),
            handler_duration: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            dlq_messages: Family::default(),
            outbox_publish_lag: seconds_histogram(),
            outbox_pending: Gauge::default(),
            outbox_oldest_pending_age: Gauge::default(),
            outbox_relay_active: Gauge::default(),
            outbox_set_aside: Family::default(),
            inbox_duplicates: Counter::default(),
            consumer_in_flight: Gauge::default(),
            consumer_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            consumer_parked: Gauge::default(),
            handler_retries: Family::default(),
            db_pool_connections: Family::default(),
            db_pool_max: Gauge::default(),
            resident_memory: Gauge::default(),
            consumer_lag_messages: Family::default(),
            consumer_lag_seconds: Family::default(),
        };
        root.register(
            "messages_consumed",
            "Messages taken from Kafka, by topic and outcome",
            m.messages_consumed.clone(),
        );
        root.register(
            "messages_produced",
            "Messages published to Kafka, by topic",
            m.messages_produced.clone(),
        );
        root.register(
            "handler_duration_seconds",
            "Time to handle one consumed message",
            m.handler_duration.clone(),
        );
        root.register(
            "dlq_messages",
            "Messages sent to a dead-letter topic, by source topic and reason",
            m.dlq_messages.clone(),
        );
        root.register(
            "outbox_publish_lag_seconds",
            "Time from outbox commit to Kafka acknowledgement",
            m.outbox_publish_lag.clone(),
        );
        root.register(
            "outbox_pending_rows",
            "Outbox rows not yet published",
            m.outbox_pending.clone(),
        );
        root.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row",
            m.outbox_oldest_pending_age.clone(),
        );
        root.register(
            "outbox_relay_active",
            "1 while this instance holds the relay lock",
            m.outbox_relay_active.clone(),
        );
        root.register(
            "outbox_set_aside",
            "Outbox rows set aside after repeated delivery failures (see the outbox table's last_error)",
            m.outbox_set_aside.clone(),
        );
        root.register(
            "inbox_duplicates",
            "Consumed messages skipped because their event id was already applied",
            m.inbox_duplicates.clone(),
        );
        root.register(
            "consumer_in_flight",
            "Messages received and not yet done (running, or queued behind their key)",
            m.consumer_in_flight.clone(),
        );
        root.register(
            "consumer_batch_size",
            "Messages applied together in one transaction",
            m.consumer_batch_size.clone(),
        );
        root.register(
            "consumer_parked",
            "Messages waiting for their turn at a rate-limited partner, holding no in-flight place",
            m.consumer_parked.clone(),
        );
        root.register(
            "handler_retries",
            "Messages tried again in place after a transient failure, by topic and reason",
            m.handler_retries.clone(),
        );
        root.register(
            "db_pool_connections",
            "Database connections of this instance's pool, idle or in use",
            m.db_pool_connections.clone(),
        );
        root.register(
            "db_pool_max_connections",
            "The most connections this instance's pool opens",
            m.db_pool_max.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory of this process (VmRSS)",
            m.resident_memory.clone(),
        );
        root.register(
            "consumer_lag_messages",
            "Messages in this member's assigned partitions not yet done, by group and topic",
            m.consumer_lag_messages.clone(),
        );
        root.register(
            "consumer_lag_seconds",
            "Age of the oldest message in this member's assigned partitions not yet done (0 when caught up)",
            m.consumer_lag_seconds.clone(),
        );
        if let Ok(mut guard) = m.registry.lock() {
            *guard = root;
        }
        m
    }

    /// Registers a service's own metric (its name gets the `switchyard_` prefix and `service` label).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock()
            && encode(&mut out, &r).is_err()
        {
            out.clear();
        }
        out
    }

    pub fn registry(&self) -> Arc<Mutex<Registry>> {
        self.registry.clone()
    }

    /// Sets the pool and memory gauges now (the runtime calls it every few seconds).
    pub fn sample_process(&self, pool: &sqlx::PgPool) {
        let (size, idle) = (i64::from(pool.size()), pool.num_idle() as i64);
        let state = |s: &str| PoolLabels { state: s.to_string() };
        self.db_pool_connections.get_or_create(&state("idle")).set(idle);
        self.db_pool_connections
            .get_or_create(&state("in_use"))
            .set((size - idle).max(0));
        self.db_pool_max.set(i64::from(pool.options().get_max_connections()));
        if let Some(rss) = resident_bytes() {
            self.resident_memory.set(rss);
        }
    }
}

/// This process's resident memory, from `/proc/self/status` (Linux; `None` elsewhere).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Keeps the tracer provider alive; flushes spans on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs logging and tracing for `service`. Spans always carry W3C trace context (so it crosses
/// Kafka headers); they are exported over OTLP only when an endpoint is configured. Safe to call more
/// than once in a process (later calls keep the first subscriber).
pub fn init(cfg: &TelemetryConfig, service: &str) -> anyhow::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    // New traces are kept at the configured ratio; a trace begun upstream keeps its caller's choice
    // (the sampled flag travels in traceparent, through HTTP and Kafka headers).
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.trace_sample_ratio)));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(Resource::builder_empty().with_service_name(service.to_string()).build());
    if !cfg.otlp_endpoint.is_empty() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("switchyard");
    global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_new(&cfg.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if cfg.log_format == "json" {
        registry.with(tracing_subscriber::fmt::layer().json()).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer()).try_init()
    };
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_prefix_and_service_label() {
        let m = Metrics::new("orchestrator");
        m.messages_produced
            .get_or_create(&TopicLabels {
                topic: "kyc.requests.v1".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("switchyard_messages_produced_total{service=\"orchestrator\",topic=\"kyc.requests.v1\"} 1"),
            "{text}"
        );
        assert!(text.contains("switchyard_outbox_publish_lag_seconds_bucket"));
    }

    #[test]
    fn resident_memory_is_read_from_the_process() {
        let rss = resident_bytes().expect("VmRSS on Linux");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
