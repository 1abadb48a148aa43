//! Shutdown as an input: one token, cancelled on SIGTERM/SIGINT, handed to every loop.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal; it also remembers a fatal failure that caused it, so the process
/// can exit non-zero and its supervisor restarts it.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the token on the first SIGTERM or SIGINT.
    pub fn on_signals(&self) -> &Self {
        let token = self.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            token.cancel();
        });
        self
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Shuts down because of a fatal failure (the first one is kept).
    pub fn fail(&self, reason: impl Into<String>) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert_with(|| reason.into());
        }
        self.token.cancel();
    }

    /// The fatal failure that caused the shutdown, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown was triggered.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// Sleeps for `d` unless shutdown comes first; returns false if shutdown came first.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_triggers_shutdown_and_the_first_reason_is_kept() {
        let s = Shutdown::new();
        let other = s.clone();
        assert!(s.failure().is_none());
        other.fail("consumer died");
        s.fail("second");
        assert!(s.is_triggered());
        assert_eq!(s.failure().as_deref(), Some("consumer died"));
        let plain = Shutdown::new();
        plain.trigger();
        assert!(plain.failure().is_none(), "a signal is not a failure");
    }
}
