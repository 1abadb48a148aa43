//! yardctl: the operator's command line.
//!
//!   yardctl schemas register            register every model schema under <topic>-value
//!   yardctl schemas check [...]         BACKWARD-compatibility check of schema changes (CI runs it)
//!   yardctl topics ensure               create the model's topics and their .dlq topics
//!   yardctl bench relay [...]           outbox relay throughput and publish lag on this machine
//!   yardctl chaos [...]                 flows through the mesh while services are killed; exit 1 on any
//!                                       lost flow, wrong decision or duplicate vendor effect
//!   yardctl privacy                     personal data scan of logs, dead letters, topics and the API
//!   yardctl recon run|findings|ack|resolve   reconciliation runs and findings (its API)
//!
//! Endpoints come from flags or the environment (`local-stack/endpoints.env` names them).

mod admin;
mod bench;
mod cardbench;
mod chaos;
mod chaos_cards;
mod chaos_openbanking;
mod chaos_payouts;
mod dashboards;
mod demo;
mod demo_cards;
mod demo_openbanking;
mod demo_payouts;
mod dlq;
mod flowbench;
mod flows;
mod gatewaybench;
mod keys;
mod panscan;
mod privacy;
mod recon;
mod routes;
mod schemas;
mod sidebyside;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "yardctl", about = "Operate the switchyard mesh")]
struct Cli {
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092",
        global = true
    )]
    kafka: String,
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7",
        global = true
    )]
    registry: String,
    /// A Postgres URL with the right to create databases (benchmarks create their own).
    #[arg(long, env = "POSTGRES_ADMIN_URL", global = true, hide_env_values = true)]
    postgres_admin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Schemas of the canonical model.
    Schemas {
        #[command(subcommand)]
        command: schemas::SchemasCommand,
    },
    /// Kafka topics of the canonical model.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Benchmarks that print figures (never pass/fail on time).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The demo workload: onboardings for two tenants with a vendor outage in the middle.
    Demo,
    /// Crash-safety referee: flows through the running mesh while services, the broker and the
    /// database are killed; checks every decision and every vendor effect.
    Chaos(chaos::ChaosArgs),
    /// Personal data stays where it belongs: flows with marker values at debug log level, then every
    /// log line, dead-letter header, non-personal topic and API answer scanned for them.
    Privacy,
    /// Tenants' API keys (the ingress's admin API).
    Keys {
        #[arg(long, env = "INGRESS_URL", default_value = "http://127.0.0.1:8080")]
        ingress: String,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Flows: one in full (state, history, partners, timers, events, dead letters), or a list.
    Flows {
        #[command(subcommand)]
        command: flows::FlowsCommand,
    },
    /// Routing in force, and an operator's change to it (audited).
    Routes {
        #[command(subcommand)]
        command: routes::RoutesCommand,
    },
    /// The partner catalog with each partner's live health.
    Partners,
    /// Dead-letter topics: list, show, replay to the source topic (idempotent).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Grafana dashboards: run every panel's query against Prometheus.
    Dashboards {
        #[command(subcommand)]
        command: dashboards::DashboardsCommand,
    },
    /// No card number anywhere: every topic, table, log line and span scanned for PAN-shaped
    /// numbers (13–19 digits alone, a card's leading digit, Luhn-valid).
    PanScan,
    /// Reconciliation: run now, list findings, acknowledge or resolve one.
    Recon {
        #[arg(long, env = "RECONCILIATION_URL", default_value = "http://127.0.0.1:8108")]
        url: String,
        #[command(subcommand)]
        command: recon::ReconCommand,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every model topic and its dead-letter topic if missing.
    Ensure {
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schemas { command } => schemas::run(command, &cli.registry).await,
        Command::Topics {
            command: TopicsCommand::Ensure {
                partitions,
                replication,
            },
        } => ensure_topics(&cli.kafka, partitions, replication).await,
        Command::Bench {
            command:
                bench::BenchCommand::Onboarding {
                    flows,
                    concurrency,
                    target,
                },
        } => flowbench::onboarding(flows, concurrency, target).await,
        Command::Bench {
            command: bench::BenchCommand::Payouts { payouts },
        } => chaos_payouts::bench(payouts).await,
        Command::Bench {
            command: bench::BenchCommand::Recon { lines, inject },
        } => recon::bench(lines, inject).await,
        Command::Bench {
            command: bench::BenchCommand::Stall { trials },
        } => chaos::stall(trials).await,
        Command::Bench {
            command:
                bench::BenchCommand::CardAuth {
                    auths,
                    cards,
                    concurrency,
                },
        } => cardbench::bench(cli.postgres_admin.as_deref(), auths, cards, concurrency).await,
        Command::Bench {
            command:
                bench::BenchCommand::CardGateway {
                    auths,
                    cards,
                    concurrency,
                },
        } => gatewaybench::bench(auths, cards, concurrency).await,
        Command::Bench { command } => {
            bench::run(command, &cli.kafka, &cli.registry, cli.postgres_admin.as_deref()).await
        }
        Command::Demo => demo::demo().await,
        Command::Chaos(args) => chaos::chaos(args).await,
        Command::Privacy => privacy::privacy().await,
        Command::PanScan => panscan::run().await,
        Command::Recon { url, command } => recon::run(command, &url).await,
        Command::Dashboards { command } => dashboards::run(command).await,
        Command::Keys { ingress, command } => keys::run(command, &ingress).await,
        Command::Flows { command } => flows::run(command, &cli.kafka).await,
        Command::Routes { command } => routes::run(command).await,
        Command::Partners => routes::partners().await,
        Command::Dlq { command } => dlq::run(command, &cli.kafka, &cli.registry).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn ensure_topics(kafka: &str, partitions: i32, replication: i32) -> anyhow::Result<ExitCode> {
    let mut names = Vec::new();
    for t in switchyard_model::topics::all_topics() {
        names.push(switchyard_model::topics::dlq(&t));
        names.push(t);
    }
    switchyard_runtime::kafka::ensure_topics(kafka, &names, partitions, replication).await?;
    println!("{} topics present (model topics and their .dlq)", names.len());
    Ok(ExitCode::SUCCESS)
}
