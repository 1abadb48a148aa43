//! `/healthz`, `/readyz` and `/metrics`, served by every service (which may merge its own routes).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use sqlx::PgPool;

use crate::{shutdown::Shutdown, telemetry::Metrics};

/// Readiness: set once start-up is done; cleared when shutdown begins.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct HealthState {
    service: String,
    metrics: Metrics,
    pool: Option<PgPool>,
    ready: Readiness,
}

pub fn health_router(service: &str, metrics: Metrics, pool: Option<PgPool>, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HealthState {
            service: service.to_string(),
            metrics,
            pool,
            ready,
        })
}

async fn healthz(State(s): State<HealthState>) -> impl IntoResponse {
    (StatusCode::OK, format!("{} ok\n", s.service))
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    if !s.ready.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting or stopping\n".to_string());
    }
    if let Some(pool) = &s.pool
        && let Err(e) = sqlx::query("SELECT 1").execute(pool).await
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n"));
    }
    (StatusCode::OK, "ready\n".to_string())
}

async fn metrics_text(State(s): State<HealthState>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn trace_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let path = request.uri().path();
    if matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| path.to_string(), |m| m.as_str().to_string());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "http request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let headers: crate::headers::HeaderMap = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| {
            request
                .headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| (k.to_string(), v.to_string()))
        })
        .collect();
    crate::headers::set_parent_from(&span, &headers);
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// Binds `listen` and serves `router` until shutdown; returns the bound address.
pub async fn serve(
    listen: &str,
    router: Router,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // Every API request in a server span (health and metrics scrapes left out), joined to the
    // caller's trace when it sends `traceparent`.
    let router = router.route_layer(axum::middleware::from_fn(trace_request));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        // Handlers may ask for the peer's address (`ConnectInfo<SocketAddr>`), e.g. to limit failed
        // authentications per client.
        let result = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok((addr, handle))
}
