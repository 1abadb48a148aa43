//! Calling partners safely: retries with backoff and jitter for errors that prove nothing happened,
//! a circuit breaker and a rate limiter per partner, and the metrics of every call. What makes calls
//! with effects happen at most once is the effect ledger ([`crate::effects`]).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{pace::Pacer, telemetry::Metrics};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

/// What a call's error means for retrying.
pub trait Retryable {
    fn retryable(&self) -> bool;
    /// A delay the partner asked for (429 Retry-After).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// Short outcome label for metrics: `transient`, `rate_limited`, `ambiguous`, `rejected`, `auth`.
    fn outcome(&self) -> &'static str;
    /// Whether the failure is the partner's (down, slow, throttling, no answer): it counts toward
    /// opening the circuit. Our own bad request or credentials neither count nor close it.
    fn partner_fault(&self) -> bool {
        self.retryable()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub partner: String,
    pub operation: String,
    /// `ok`, `transient`, `rate_limited`, `ambiguous`, `rejected`, `auth`, `circuit_open`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerLabels {
    pub partner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerOpLabels {
    pub partner: String,
    pub operation: String,
}

/// Per-partner call metrics.
#[derive(Clone)]
pub struct ProviderMetrics {
    pub requests: Family<CallLabels, Counter>,
    pub duration: Family<PartnerOpLabels, Histogram, fn() -> Histogram>,
    /// 0 closed, 1 half-open, 2 open.
    pub circuit_state: Family<PartnerLabels, Gauge>,
    /// Earlier calls that may have happened, resolved by asking the partner, by result.
    pub recoveries: Family<RecoveryLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryLabels {
    pub partner: String,
    /// `found`, `send_again`, `unknowable`, `failed`.
    pub result: String,
}

fn call_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 14,
    ))
}

impl ProviderMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let m = ProviderMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(call_histogram as fn() -> Histogram),
            circuit_state: Family::default(),
            recoveries: Family::default(),
        };
        metrics.register(
            "provider_requests",
            "Partner calls by partner, operation and outcome",
            m.requests.clone(),
        );
        metrics.register(
            "provider_request_duration_seconds",
            "Partner call latency",
            m.duration.clone(),
        );
        metrics.register(
            "provider_circuit_state",
            "Circuit breaker per partner: 0 closed, 1 half-open, 2 open",
            m.circuit_state.clone(),
        );
        metrics.register(
            "provider_effect_recoveries",
            "Earlier partner calls that may have happened (crash mid-call, timeout after sending), resolved by asking the partner",
            m.recoveries.clone(),
        );
        m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    HalfOpen,
    Open,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    opened_at: Option<Instant>,
    /// Half-open: the one trial call is out.
    trial: bool,
}

/// How a call ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    PartnerFault,
    /// Our own fault (a refused request): says nothing about the partner's health.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts per request (first call included).
    pub attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before letting one through.
    pub open_for: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The `[provider]` section of an adapter's configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    pub attempts: u32,
    pub failure_threshold: u32,
    pub open_for_seconds: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        PolicyConfig {
            attempts: p.attempts,
            failure_threshold: p.failure_threshold,
            open_for_seconds: p.open_for.as_secs_f64(),
        }
    }
}

impl PolicyConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            attempts: self.attempts.max(1),
            failure_threshold: self.failure_threshold.max(1),
            open_for: Duration::from_secs_f64(self.open_for_seconds.max(0.1)),
            ..Policy::default()
        }
    }
}

/// Resilient calls to partners.
#[derive(Clone)]
pub struct Caller {
    policy: Policy,
    metrics: ProviderMetrics,
    breakers: Arc<Mutex<HashMap<String, Breaker>>>,
    pacer: Pacer,
}

/// A turn at a partner taken before a call (see [`Caller::turn`]).
#[derive(Debug)]
#[must_use]
pub struct Turn(());

/// How a call waits for its turns at a rate-limited partner.
#[derive(Debug)]
pub enum Pacing {
    /// Each attempt waits for its turn; a long wait parks the message ([`crate::inbox::parked`]):
    /// the caller holds no connection or lock.
    Park,
    /// The first attempt takes this turn, taken before a lock; later attempts wait holding it.
    Taken(Turn),
    /// Each attempt waits for its turn holding what the caller holds (a lock, a connection).
    Hold,
}

/// Why a resilient call gave up.
#[derive(Debug)]
pub enum CallError<E> {
    /// The partner's circuit is open: not called at all.
    CircuitOpen,
    /// The last error after the retries allowed for it.
    Failed(E),
}

impl Caller {
    /// A caller pacing each partner by its rate limit in `pacer` (shared by every instance when
    /// the pacer is [`Pacer::shared`]).
    pub fn new(policy: Policy, metrics: ProviderMetrics, pacer: Pacer) -> Self {
        Caller {
            policy,
            metrics,
            breakers: Arc::default(),
            pacer,
        }
    }

    /// Sets a partner's rate limit (requests per second; 0 = unlimited).
    pub fn set_rate_limit(&self, partner: &str, per_second: f64) {
        self.pacer.set_limit(partner, per_second);
    }

    /// Waits for a turn at `partner` before taking a lock: a long wait parks the message, so
    /// it holds no worker that other partners' traffic needs. Pass it on with [`Pacing::Taken`].
    pub async fn turn(&self, partner: &str) -> Turn {
        wait_until(self.pacer.turn(partner).await, true).await;
        Turn(())
    }

    /// Counts how an uncertain earlier call was resolved.
    pub fn count_recovery(&self, partner: &str, result: &str) {
        self.metrics
            .recoveries
            .get_or_create(&RecoveryLabels {
                partner: partner.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn circuit(&self, partner: &str) -> Circuit {
        let Ok(b) = self.breakers.lock() else {
            return Circuit::Closed;
        };
        match b.get(partner).and_then(|b| b.opened_at) {
            None => Circuit::Closed,
            Some(at) if at.elapsed() >= self.policy.open_for => Circuit::HalfOpen,
            Some(_) => Circuit::Open,
        }
    }

    fn gauge(&self, partner: &str) {
        let v = match self.circuit(partner) {
            Circuit::Closed => 0,
            Circuit::HalfOpen => 1,
            Circuit::Open => 2,
        };
        self.metrics
            .circuit_state
            .get_or_create(&PartnerLabels {
                partner: partner.to_string(),
            })
            .set(v);
    }

    /// Whether a call may go out now: always while closed, never while open, and exactly one trial
    /// at a time while half-open.
    fn admit(&self, partner: &str) -> bool {
        let state = self.circuit(partner);
        let Ok(mut b) = self.breakers.lock() else {
            return true;
        };
        match state {
            Circuit::Closed => true,
            Circuit::Open => false,
            Circuit::HalfOpen => {
                let e = b.entry(partner.to_string()).or_default();
                !std::mem::replace(&mut e.trial, true)
            }
        }
    }

    fn record(&self, partner: &str, verdict: Verdict) {
        if let Ok(mut b) = self.breakers.lock() {
            let e = b.entry(partner.to_string()).or_default();
            e.trial = false;
            match verdict {
                Verdict::Success => {
                    e.failures = 0;
                    e.opened_at = None;
                }
                Verdict::PartnerFault => {
                    e.failures += 1;
                    if e.failures >= self.policy.failure_threshold || e.opened_at.is_some() {
                        e.opened_at = Some(Instant::now());
                    }
                }
                Verdict::Neutral => {}
            }
        }
        self.gauge(partner);
    }

    /// Calls `f` with retries for retryable errors, unless the partner's circuit is open; each
    /// attempt waits for its turn, parking the message while it waits long
    /// ([`Pacing::Park`]: the caller must hold no connection or lock).
    pub async fn call<T, E, F, Fut>(&self, partner: &str, operation: &str, f: F) -> Result<T, CallError<E>>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_paced(partner, operation, Pacing::Park, f).await
    }

    /// [`Caller::call`], waiting for turns as `pacing` says.
    pub async fn call_paced<T, E, F, Fut>(
        &self,
        partner: &str,
        operation: &str,
        mut pacing: Pacing,
        mut f: F,
    ) -> Result<T, CallError<E>>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let count = |outcome: &str| {
            self.metrics
                .requests
                .get_or_create(&CallLabels {
                    partner: partner.to_string(),
                    operation: operation.to_string(),
                    outcome: outcome.to_string(),
                })
                .inc();
        };
        let mut backoff = crate::backoff::Backoff::new(self.policy.base_backoff, self.policy.max_backoff);
        let mut attempt = 0;
        loop {
            if !self.admit(partner) {
                count("circuit_open");
                return Err(CallError::CircuitOpen);
            }
            attempt += 1;
            match std::mem::replace(&mut pacing, Pacing::Hold) {
                Pacing::Taken(_) if attempt == 1 => {}
                Pacing::Park => {
                    wait_until(self.pacer.turn(partner).await, true).await;
                    pacing = Pacing::Park;
                }
                _ => wait_until(self.pacer.turn(partner).await, false).await,
            }
            let started = Instant::now();
            // One span per attempt at the partner: a client span in the flow's trace.
            let span = tracing::info_span!(
                "partner call",
                otel.name = %format!("{partner} {operation}"),
                otel.kind = "client",
                partner,
                operation,
                attempt,
                outcome = tracing::field::Empty,
            );
            let result = tracing::Instrument::instrument(f(), span.clone()).await;
            span.record(
                "outcome",
                match &result {
                    Ok(_) => "ok",
                    Err(e) => e.outcome(),
                },
            );
            drop(span);
            self.metrics
                .duration
                .get_or_create(&PartnerOpLabels {
                    partner: partner.to_string(),
                    operation: operation.to_string(),
                })
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    count("ok");
                    self.record(partner, Verdict::Success);
                    return Ok(v);
                }
                Err(e) => {
                    count(e.outcome());
                    // Only failures of the partner count against its circuit, not our bad requests.
                    self.record(
                        partner,
                        if e.partner_fault() {
                            Verdict::PartnerFault
                        } else {
                            Verdict::Neutral
                        },
                    );
                    if !e.retryable() || attempt >= self.policy.attempts {
                        return Err(CallError::Failed(e));
                    }
                    let ours = backoff.next_wait();
                    let wait = e.retry_after().unwrap_or(ours).min(self.policy.max_backoff * 4);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Waits for a turn; a wait long enough to matter parks the message when allowed.
async fn wait_until(at: Option<Instant>, park: bool) {
    let Some(wait) = at.map(|at| at.saturating_duration_since(Instant::now())) else {
        return;
    };
    if wait.is_zero() {
        return;
    }
    if park && wait >= PARK_AFTER {
        crate::inbox::parked(tokio::time::sleep(wait)).await;
    } else {
        tokio::time::sleep(wait).await;
    }
}

/// Waits for a turn shorter than this keep their worker (parking costs two messages to the
/// consumer).
const PARK_AFTER: Duration = Duration::from_millis(5);

/// The idempotency key of a partner call made for a request event.
pub fn idempotency_key(request_event_id: uuid::Uuid) -> String {
    format!("sy-{}", request_event_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(bool);
    impl Retryable for E {
        fn retryable(&self) -> bool {
            self.0
        }
        fn outcome(&self) -> &'static str {
            if self.0 { "transient" } else { "rejected" }
        }
    }

    fn caller(threshold: u32) -> Caller {
        Caller::new(
            Policy {
                attempts: 3,
                base_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                failure_threshold: threshold,
                open_for: Duration::from_millis(200),
            },
            ProviderMetrics::register(&Metrics::new("t")),
            Pacer::default(),
        )
    }

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let c = caller(100);
        let mut calls = 0;
        let r: Result<(), _> = c
            .call("p", "op", || {
                calls += 1;
                async { Err::<(), _>(E(true)) }
            })
            .await;
        assert!(matches!(r, Err(CallError::Failed(E(true)))));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = c
            .call("p", "op", || {
                calls += 1;
                async { Err::<(), _>(E(false)) }
            })
            .await;
        assert!(matches!(r, Err(CallError::Failed(E(false)))));
        assert_eq!(calls, 1, "a permanent error is not retried");
    }

    #[tokio::test]
    async fn our_own_bad_requests_neither_open_nor_close_the_circuit() {
        let c = caller(3);
        // Two partner failures (3 attempts each would open it: use one attempt's worth by hand).
        c.record("p", Verdict::PartnerFault);
        c.record("p", Verdict::PartnerFault);
        // A refused request of ours in between: says nothing about the partner.
        let _ = c.call("p", "op", || async { Err::<(), _>(E(false)) }).await;
        c.record("p", Verdict::PartnerFault);
        assert_eq!(c.circuit("p"), Circuit::Open, "the 4xx must not have reset the count");
    }

    #[tokio::test]
    async fn half_open_lets_exactly_one_trial_call_through() {
        let c = caller(1);
        c.record("p", Verdict::PartnerFault);
        assert_eq!(c.circuit("p"), Circuit::Open);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let started = Arc::new(tokio::sync::Notify::new());
        let trial = {
            let c = c.clone();
            let started = started.clone();
            tokio::spawn(async move {
                c.call("p", "op", || {
                    started.notify_one();
                    async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, E>(())
                    }
                })
                .await
            })
        };
        started.notified().await;
        let mut second_called = false;
        let second = c
            .call("p", "op", || {
                second_called = true;
                async { Ok::<_, E>(()) }
            })
            .await;
        assert!(
            matches!(second, Err(CallError::CircuitOpen)),
            "a second call while the trial is out"
        );
        assert!(!second_called);
        assert!(trial.await.expect("join").is_ok());
        assert_eq!(c.circuit("p"), Circuit::Closed, "the trial succeeded");
        assert!(c.call("p", "op", || async { Ok::<_, E>(()) }).await.is_ok());
    }

    #[tokio::test]
    async fn the_circuit_opens_then_lets_one_call_through() {
        let c = caller(2);
        let _ = c.call("p", "op", || async { Err::<(), _>(E(true)) }).await;
        assert_eq!(c.circuit("p"), Circuit::Open);
        let mut called = false;
        let r = c
            .call("p", "op", || {
                called = true;
                async { Ok::<_, E>(()) }
            })
            .await;
        assert!(matches!(r, Err(CallError::CircuitOpen)));
        assert!(!called);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(c.circuit("p"), Circuit::HalfOpen);
        assert!(c.call("p", "op", || async { Ok::<_, E>(()) }).await.is_ok());
        assert_eq!(c.circuit("p"), Circuit::Closed);
    }
}
