//! Kafka headers: W3C trace context and CloudEvents binary-mode attributes.

use std::collections::BTreeMap;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use switchyard_model::Envelope;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const CE_SPECVERSION: &str = "1.0";

/// Header name → value, as stored with an outbox row and sent with the message.
pub type HeaderMap = BTreeMap<String, String>;

/// Headers for an event produced now, inside the current tracing span.
pub fn for_event(envelope: &Envelope) -> HeaderMap {
    let mut h = HeaderMap::new();
    inject_current_trace(&mut h);
    h.insert("ce_specversion".into(), CE_SPECVERSION.into());
    h.insert("ce_id".into(), envelope.event_id.to_string());
    h.insert("ce_type".into(), envelope.event_type.clone());
    h.insert("ce_source".into(), format!("/switchyard/{}", envelope.producer));
    h.insert("ce_subject".into(), envelope.flow_id.clone());
    let time = chrono::DateTime::from_timestamp_millis(envelope.occurred_at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    h.insert("ce_time".into(), time);
    h.insert("tenant_id".into(), envelope.tenant_id.clone());
    h
}

/// Writes `traceparent`/`tracestate` of the current span into `h`. With no active traced span (no
/// subscriber, or outside any span) the event starts a new trace, so every message carries one.
pub fn inject_current_trace(h: &mut HeaderMap) {
    let mut cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        let ids = uuid::Uuid::new_v4().as_u128();
        let span_id = (ids as u64).max(1);
        let root = SpanContext::new(
            TraceId::from(ids.max(1)),
            SpanId::from(span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        cx = cx.with_remote_span_context(root);
    }
    TraceContextPropagator::new().inject_context(&cx, &mut Inject(h));
}

/// The current span's `traceparent` (a new trace's when there is none).
pub fn current_traceparent() -> Option<String> {
    let mut h = HeaderMap::new();
    inject_current_trace(&mut h);
    h.remove("traceparent")
}

/// A span that continues the trace `traceparent` names (a flow's, kept since it started), linked to
/// the trace it is opened in (e.g. a partner's webhook's): later work joins the flow's trace, and
/// the webhook's own trace is one link away.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let here = tracing::Span::current().context().span().span_context().clone();
    if let Some(tp) = traceparent {
        let mut h = HeaderMap::new();
        h.insert("traceparent".into(), tp.to_string());
        set_parent_from(span, &h);
    }
    if here.is_valid() {
        span.add_link(here);
    }
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Makes `span` a child of the trace context carried in `h` (if any).
pub fn set_parent_from(span: &tracing::Span, h: &HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&Extract(h));
    let _ = span.set_parent(cx);
}

/// Reads the headers of a Kafka message (values that are not UTF-8 are skipped).
pub fn from_kafka<H: rdkafka::message::Headers>(headers: Option<&H>) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(hs) = headers {
        for h in hs.iter() {
            if let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) {
                out.insert(h.key.to_string(), v.to_string());
            }
        }
    }
    out
}

/// Converts to rdkafka's owned headers.
pub fn to_kafka(h: &HeaderMap) -> rdkafka::message::OwnedHeaders {
    h.iter().fold(
        rdkafka::message::OwnedHeaders::new_with_capacity(h.len()),
        |acc, (k, v)| {
            acc.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        },
    )
}
