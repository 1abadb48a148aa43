//! The openbanking-adapter service. For now it boots, relays its outbox and serves `/healthz`, `/readyz` and
//! `/metrics`; see the README for what it will own.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    switchyard_runtime::service::run_skeleton("openbanking-adapter").await
}
