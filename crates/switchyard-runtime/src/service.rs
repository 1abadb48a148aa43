//! The boot sequence every service binary runs, and graceful shutdown.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use axum::Router;
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use switchyard_model::{SchemaCatalog, topics};

use crate::{
    codec::{Codec, EncodeError},
    config::ServiceConfig,
    db,
    http::{self, Readiness},
    kafka,
    outbox::{Outbox, Relay, RelayConfig},
    registry::{RegistryClient, RegistryError},
    shutdown::Shutdown,
    telemetry::{self, Metrics, TelemetryGuard},
};

/// Everything a started service has at hand.
pub struct Runtime {
    pub cfg: ServiceConfig,
    /// The config file, if one was given (services read their own sections from it).
    pub config_file: Option<PathBuf>,
    pub pool: PgPool,
    pub codec: Codec,
    pub outbox: Outbox,
    pub metrics: Metrics,
    pub producer: FutureProducer,
    pub shutdown: Shutdown,
    pub ready: Readiness,
    _telemetry: TelemetryGuard,
}

/// The config file named by `--config <path>` or `SWITCHYARD_CONFIG`, if any.
pub fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("SWITCHYARD_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Loads and validates configuration, installs telemetry, connects to Postgres (and migrates), the
/// registry (and registers the model) and Kafka (and creates missing topics).
/// `SWITCHYARD_MIGRATE_ONLY=1`: the process migrates its database and exits (the Helm chart's
/// pre-install/pre-upgrade Job runs each service so, before new pods start). Migrations are
/// idempotent: a second run applies nothing.
pub fn migrate_only() -> bool {
    std::env::var("SWITCHYARD_MIGRATE_ONLY").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

pub async fn boot(service: &str) -> anyhow::Result<Runtime> {
    let config_file = config_path();
    let cfg = ServiceConfig::load(service, config_file.as_deref())?;
    let guard = telemetry::init(&cfg.telemetry, service)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let metrics = Metrics::new(service);
    tracing::info!(service, "starting");

    let pool = db::connect(cfg.database.url.expose(), cfg.pool_size(), &shutdown).await?;
    db::migrate(&pool).await?;

    let registry = RegistryClient::new(&cfg.registry.url, Duration::from_millis(cfg.registry.timeout_ms))?;
    let codec = Codec::new(SchemaCatalog::embedded()?, registry);
    if migrate_only() {
        tracing::info!(service, "migrate-only: the runtime's tables are migrated");
    }
    if cfg.registry.register_schemas && !migrate_only() {
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match codec.register_all().await {
                Ok(()) => break,
                Err(EncodeError::Registry(RegistryError::Unavailable(e))) => {
                    tracing::warn!(error = %e, "schema registry not reachable yet");
                    if !shutdown.sleep(backoff.next_wait()).await {
                        anyhow::bail!("shutdown during start-up");
                    }
                }
                Err(e) => anyhow::bail!("cannot register the model's schemas: {e}"),
            }
        }
    }
    if cfg.kafka.ensure_topics && !migrate_only() {
        let mut names = Vec::new();
        for t in topics::all_topics() {
            names.push(topics::dlq(&t));
            names.push(t);
        }
        kafka::ensure_topics(
            &cfg.kafka.bootstrap_servers,
            &names,
            cfg.kafka.topic_partitions,
            cfg.kafka.topic_replication,
        )
        .await?;
    }
    let producer = kafka::producer(&cfg.kafka.bootstrap_servers, service)?;
    tokio::spawn({
        let (metrics, pool, shutdown) = (metrics.clone(), pool.clone(), shutdown.clone());
        async move {
            loop {
                metrics.sample_process(&pool);
                if !shutdown.sleep(Duration::from_secs(5)).await {
                    break;
                }
            }
        }
    });
    Ok(Runtime {
        outbox: Outbox::new(codec.clone()).with_wake(crate::outbox::Wake::new(pool.clone())),
        cfg,
        config_file,
        pool,
        codec,
        metrics,
        producer,
        shutdown,
        ready: Readiness::default(),
        _telemetry: guard,
    })
}

impl Runtime {
    /// Runs the service's own migrations; false when the process only migrates (its `run` returns).
    pub async fn migrate(&self, migrator: sqlx::migrate::Migrator) -> anyhow::Result<bool> {
        migrator.run(&self.pool).await?;
        Ok(self.serving())
    }

    /// False when the process only migrates (`SWITCHYARD_MIGRATE_ONLY`).
    pub fn serving(&self) -> bool {
        if migrate_only() {
            tracing::info!(service = %self.cfg.service, "migrated; exiting (migrate-only)");
            return false;
        }
        true
    }

    /// Puts a service's own admin routes behind the admin token.
    pub fn admin(&self, routes: axum::Router) -> axum::Router {
        crate::admin::protect(routes, &self.cfg.admin.token)
    }

    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            service: self.cfg.service.clone(),
            poll_interval: self.cfg.poll_interval(),
            batch_size: self.cfg.outbox.batch_size,
            retention: Duration::from_secs(self.cfg.outbox.retention_hours * 3600),
            pause_after_publish: Duration::ZERO,
            max_attempts: self.cfg.outbox.max_attempts,
        }
    }

    /// An inbox consumer of `topics` for this service, applying `handler`.
    pub fn consumer<H: crate::inbox::Handler>(
        &self,
        name: &str,
        topics: &[&str],
        handler: H,
    ) -> crate::inbox::Consumer<H> {
        crate::inbox::Consumer {
            name: name.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            bootstrap: self.cfg.kafka.bootstrap_servers.clone(),
            codec: self.codec.clone(),
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            producer: self.producer.clone(),
            handler,
            wake: self.outbox.wake(),
            instance_id: Some(self.cfg.kafka.group_instance_id.clone()).filter(|i| !i.is_empty()),
            concurrency: crate::inbox::Concurrency {
                max_in_flight: self.cfg.kafka.max_in_flight,
                per_partition: self.cfg.kafka.max_in_flight_per_partition,
                max_batch: self.cfg.kafka.max_batch,
                max_parked: self.cfg.kafka.max_parked,
            },
        }
    }

    /// Runs a consumer until shutdown, as a task `serve_until_shutdown` waits for.
    pub fn spawn_consumer<H: crate::inbox::Handler>(
        &self,
        consumer: crate::inbox::Consumer<H>,
    ) -> tokio::task::JoinHandle<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = consumer.run(shutdown.clone()).await {
                tracing::error!(error = %e, "consumer failed; shutting down");
                shutdown.fail(format!("consumer failed: {e:#}"));
            }
        })
    }

    /// Starts retention for `rules` (the service's own) plus the runtime's (inbox, effect ledger),
    /// with the configured overrides; an unknown override or an unsafe period is an error.
    pub fn spawn_retention(
        &self,
        mut rules: Vec<crate::retention::Rule>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        rules.push(crate::retention::inbox_rule(Duration::from_secs(
            self.cfg.inbox.retention_hours * 3600,
        )));
        rules.push(crate::retention::effect_ledger_rule());
        let rules = crate::retention::configure(rules, &self.cfg.retention)?;
        Ok(crate::retention::spawn(
            self.pool.clone(),
            rules,
            &self.metrics,
            Duration::from_secs(60),
            self.shutdown.clone(),
        ))
    }

    /// Starts this service's outbox relay.
    pub fn spawn_relay(&self) -> tokio::task::JoinHandle<()> {
        let relay = Relay::new(
            self.pool.clone(),
            self.producer.clone(),
            self.metrics.clone(),
            self.relay_config(),
        )
        .with_wake(self.outbox.wake());
        tokio::spawn(relay.run(self.shutdown.clone()))
    }

    /// Serves health, metrics and `routes`, marks the service ready, waits for shutdown, then gives
    /// `tasks` until the deadline to finish.
    pub async fn serve_until_shutdown(
        self,
        routes: Router,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let admin = crate::admin::protect(crate::admin::runtime_routes(self.pool.clone()), &self.cfg.admin.token);
        let router = routes.merge(admin).merge(http::health_router(
            &self.cfg.service,
            self.metrics.clone(),
            Some(self.pool.clone()),
            self.ready.clone(),
        ));
        let (addr, server) = http::serve(&self.cfg.http.listen, router, self.shutdown.clone()).await?;
        self.ready.set(true);
        tracing::info!(service = %self.cfg.service, %addr, "ready");
        self.shutdown.wait().await;
        self.ready.set(false);
        tracing::info!("draining");
        let deadline = self.cfg.shutdown_deadline();
        let drain = async {
            for t in tasks {
                let _ = t.await;
            }
            let _ = server.await;
        };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            tracing::warn!(?deadline, "shutdown deadline passed; exiting with work in flight");
        }
        self.pool.close().await;
        if let Some(failure) = self.shutdown.failure() {
            tracing::error!(%failure, "stopped after a fatal failure");
            anyhow::bail!("stopped after a fatal failure: {failure}");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `main` of a service that so far only boots, relays its outbox and serves health and metrics.
pub async fn run_skeleton(service: &str) -> ExitCode {
    exit_code(
        async {
            let rt = boot(service).await?;
            if !rt.serving() {
                return Ok(());
            }
            let tasks = vec![rt.spawn_relay(), rt.spawn_retention(Vec::new())?];
            rt.serve_until_shutdown(Router::new(), tasks).await
        }
        .await,
    )
}

/// Prints a start-up or run error the way an operator wants to read it, and picks the exit code.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
