//! `yardctl chaos`: the referee of crash safety. Onboardings go through the ingress of the running
//! mesh while every service kind is SIGKILLed at random moments (and restarted), adapters die between
//! a vendor's answer and its commit (the effect ledger's worst moment, by a fault hook), vendors leave
//! calls in doubt (work done, answer held past our timeout), and optionally the Kafka broker and
//! PostgreSQL are killed mid-run. Then every flow's decision is compared with what its applicant
//! should get, and every simulator's ledger of effects with the flows: exit 1 on any lost flow, any
//! wrong decision, any step with more than one vendor effect. Payouts run beside them
//! ([`crate::chaos_payouts`]): exit 1 on any payout executed twice, lost, or reported against what
//! the vendor's ledger says; and cards ([`crate::chaos_cards`]): exit 1 on a card issued twice or
//! not at all, a purchase recorded otherwise than its processor answered, or money held wrongly;
//! and pay-by-bank payments ([`crate::chaos_openbanking`]): exit 1 on one not executed or made
//! other than once at its provider.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::demo::Env;

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Onboardings to run.
    #[arg(long, default_value_t = 300)]
    pub flows: usize,
    /// SIGKILLs of each service kind (ingress, orchestrator, kyc-adapter, aml-adapter,
    /// webhook-normalizer).
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Seconds over which flows are submitted and kills are spread.
    #[arg(long, default_value_t = 60)]
    pub window: u64,
    /// Probability that an adapter dies right after a vendor answered, before the answer is
    /// committed (the fault hook `SWITCHYARD_CHAOS_CRASH_AFTER_CALL`).
    #[arg(long, default_value_t = 0.03)]
    pub crash_after_call: f64,
    /// Vendor calls left in doubt: the vendor does the work, then holds its answer past our timeout
    /// (this many at the KYC vendor and as many at the AML vendor).
    #[arg(long, default_value_t = 3)]
    pub ambiguous: u32,
    /// Also SIGKILL the Kafka broker once mid-run (restarted with the stack script).
    #[arg(long)]
    pub kill_broker: bool,
    /// Also SIGKILL PostgreSQL once mid-run (restarted with the stack script).
    #[arg(long)]
    pub kill_postgres: bool,
    /// Service kinds to kill (comma-separated); default all five.
    #[arg(long, value_delimiter = ',', default_values_t = KINDS.map(String::from))]
    pub services: Vec<String>,
    /// Payouts to run beside the onboardings (alternately at the two payout vendors, straight to
    /// `payouts.requests.v1`); default: as many as flows.
    #[arg(long)]
    pub payouts: Option<usize>,
    /// Cards to issue and use beside the onboardings (alternately at the two card processors), and
    /// as many pay-by-bank payments (alternately at the two open-banking providers); default: a
    /// tenth of the flows, at least 2.
    #[arg(long)]
    pub cards: Option<usize>,
    /// Seconds to wait for every flow's decision after the last submission.
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
}

const KINDS: [&str; 9] = [
    "ingress",
    "orchestrator",
    "kyc-adapter",
    "aml-adapter",
    "webhook-normalizer",
    "payouts-adapter",
    "fraud-adapter",
    "cards-adapter",
    "openbanking-adapter",
];
/// Adapters restarted with the fault hook armed (every service the supervisor restarts gets it, so
/// every adapter that calls partners is listed, and restarted without it at the end).
const HOOKED: [&str; 6] = [
    "kyc-adapter",
    "aml-adapter",
    "payouts-adapter",
    "fraud-adapter",
    "cards-adapter",
    "openbanking-adapter",
];
const SIMS: [(&str, &str); 4] = [
    ("onfido", "http://127.0.0.1:9301"),
    ("sumsub", "http://127.0.0.1:9302"),
    ("mesh", "http://127.0.0.1:9303"),
    ("watchman", "http://127.0.0.1:9304"),
];
const TENANT: &str = "tenant-chaos";

/// Applicant kinds (the simulators pick outcomes from markers in the family name) and the decision
/// each must get.
const PERSONAS: [(&str, &str, bool); 6] = [
    // family name, expected decision, reaches screening
    ("Clearwater", "approved", true),
    ("Clearwater", "approved", true),
    ("Stepup", "approved", true),
    ("Forger", "rejected", false),
    ("Sanctionov", "rejected", true),
    ("Politica", "manual_review", true),
];

struct Flow {
    given: String,
    family: &'static str,
    expect: &'static str,
    screened: bool,
    id: Option<String>,
}

fn rand_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u64
}

fn stack_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack")
}

fn pid_of(run: &Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(run.join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid-file names of a service kind's instances: the first, and a second one when
/// `SWITCHYARD_SECOND_INSTANCES` runs it (`<kind>-b`).
fn instances_of(run: &Path, kind: &str) -> Vec<String> {
    let mut names = vec![format!("svc-{kind}")];
    let second = format!("svc-{kind}-b");
    if run.join(format!("{second}.pid")).exists() {
        names.push(second);
    }
    names
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

async fn sh(cmd: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<()> {
    let mut c = Command::new(cmd);
    c.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().await.with_context(|| format!("running {cmd}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    Ok(())
}

async fn sigkill(pid: i32) {
    let _ = sh("kill", &["-KILL", &pid.to_string()], &[]).await;
}

/// Restarts whatever service is down (one `services.sh start` at a time), until `stop`.
async fn supervise(
    stop: Arc<AtomicBool>,
    hook: Vec<(&'static str, String)>,
    restarts: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    let dir = stack_dir();
    let run = dir.join("data/run");
    while !stop.load(Ordering::SeqCst) {
        let down = KINDS.iter().any(|k| {
            instances_of(&run, k)
                .iter()
                .any(|name| !pid_of(&run, name).is_some_and(alive))
        });
        if down {
            let script = dir.join("services.sh");
            match sh(&script.to_string_lossy(), &["start"], &hook).await {
                Ok(()) => {
                    restarts.fetch_add(1, Ordering::SeqCst);
                }
                // A service that could not start (Kafka or PostgreSQL down, or killed again while
                // starting): try again.
                Err(_) => {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Flow {
    fn body(&self, run: &str, i: usize) -> Value {
        json!({"applicant_id": format!("chaos-{run}-{i}"), "person": {"given_name": self.given, "family_name": self.family,
            "date_of_birth": "1988-03-09", "nationality": "GB", "email": format!("{}@example.test", self.given.to_lowercase())},
            "region": "UK", "risk_tier": "LOW", "segment": "retail"})
    }
}

/// Submits an onboarding with one Idempotency-Key until the ingress takes it.
async fn submit(env: &Env, key: &str, body: &Value, idem: &str) -> anyhow::Result<String> {
    submit_to(env, key, "/v1/onboardings", body, idem).await
}

/// Posts `body` to the ingress at `path` with one Idempotency-Key until the ingress takes it (it may
/// be dead for a while); the id it answers.
pub(crate) async fn submit_to(env: &Env, key: &str, path: &str, body: &Value, idem: &str) -> anyhow::Result<String> {
    let url = format!("{}{path}", env.var("INGRESS_URL")?);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resp = env
            .http
            .post(&url)
            .bearer_auth(key)
            .header("idempotency-key", idem)
            .json(body)
            .send()
            .await;
        let mut wait = Duration::from_millis(200);
        if let Ok(r) = resp {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let v: Value = r.json().await.unwrap_or(Value::Null);
            match (status, v["id"].as_str()) {
                (200..=202, Some(id)) => return Ok(id.to_string()),
                // In flight with this key (a retry racing the first attempt): ask again.
                (409, _) | (500..=599, _) => {}
                // Over the tenant's rate (retries piling up behind a restart): when told.
                (429, _) => wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 10)),
                _ => anyhow::bail!("submit answered {status}: {v}"),
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ingress did not take a submission in 120 s"
        );
        tokio::time::sleep(wait).await;
    }
}

/// How often the adapters' fault hook has fired (from their logs).
fn hook_crashes(dir: &Path) -> usize {
    HOOKED
        .iter()
        .map(|s| {
            std::fs::read_to_string(dir.join(format!("data/logs/{s}.log")))
                .map(|t| t.matches("chaos: crashing at").count())
                .unwrap_or(0)
        })
        .sum()
}

pub async fn chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let env = Arc::new(Env::load()?);
    let dir = stack_dir();
    let crashes_before = hook_crashes(&dir);
    let run_dir = dir.join("data/run");
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let key = env.api_key(TENANT).await?;
    println!(
        "chaos run {run}: {} flows over {} s; {} SIGKILLs of each of {}; adapters die after a vendor's answer with p={}; \
         {} calls left in doubt per vendor{}{}",
        args.flows,
        args.window,
        args.kills,
        args.services.join(", "),
        args.crash_after_call,
        args.ambiguous,
        if args.kill_broker {
            "; Kafka broker killed once"
        } else {
            ""
        },
        if args.kill_postgres {
            "; PostgreSQL killed once"
        } else {
            ""
        },
    );

    // Vendor calls left in doubt: the work is done, the answer comes after our 3 s timeout.
    for (sim, matcher) in [("onfido", "POST /v3.6/checks"), ("mesh", "create-and-screen")] {
        if args.ambiguous == 0 {
            break;
        }
        let url = SIMS
            .iter()
            .find(|(n, _)| *n == sim)
            .map(|(_, u)| *u)
            .unwrap_or_default();
        env.http
            .post(format!("{url}/_sim/faults"))
            .json(&json!({"matcher": matcher, "fault": {"kind": "hang_after_effect", "ms": 4500}, "times": args.ambiguous}))
            .send()
            .await?
            .error_for_status()?;
    }

    // Payouts left in doubt: the money moves, the answer comes after the adapter's 3 s timeout.
    for ((_, url), (_, matcher)) in crate::chaos_payouts::SIMS.iter().zip(crate::chaos_payouts::IN_DOUBT) {
        if args.ambiguous == 0 {
            break;
        }
        env.http
            .post(format!("{url}/_sim/faults"))
            .json(&json!({"matcher": matcher, "fault": {"kind": "hang_after_effect", "ms": 4500}, "times": args.ambiguous}))
            .send()
            .await?
            .error_for_status()?;
    }

    // Adapters restarted with the fault hook armed (the supervisor restarts them with it too).
    let hook = vec![("SWITCHYARD_CHAOS_CRASH_AFTER_CALL", args.crash_after_call.to_string())];
    for adapter in HOOKED {
        if let Some(pid) = pid_of(&run_dir, &format!("svc-{adapter}")) {
            let _ = sh("kill", &["-TERM", &pid.to_string()], &[]).await;
            for _ in 0..100 {
                if !alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let supervisor = tokio::spawn(supervise(stop.clone(), hook, restarts.clone(), refused.clone()));

    let mut flows: Vec<Flow> = (0..args.flows)
        .map(|i| {
            let (family, expect, screened) = PERSONAS[i % PERSONAS.len()];
            Flow {
                given: format!("Cx{run}n{i}"),
                family,
                expect,
                screened,
                id: None,
            }
        })
        .collect();

    // Kills: each kind `kills` times at random moments of the window.
    let started = Instant::now();
    let window = Duration::from_secs(args.window.max(1));
    let mut plan: Vec<(Duration, &str)> = Vec::new();
    for kind in KINDS.iter().filter(|k| args.services.iter().any(|s| s == *k)) {
        for _ in 0..args.kills {
            plan.push((Duration::from_millis(rand_below(window.as_millis() as u64)), *kind));
        }
    }
    anyhow::ensure!(
        args.services.iter().all(|s| KINDS.contains(&s.as_str())),
        "--services: each must be one of {}",
        KINDS.join(", ")
    );
    plan.sort();
    let infra = {
        let kill_broker = args.kill_broker;
        let kill_postgres = args.kill_postgres;
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for (enabled, what, at) in [(kill_broker, "kafka", 0.3), (kill_postgres, "postgres", 0.6)] {
                if !enabled {
                    continue;
                }
                tokio::time::sleep_until((started + window.mul_f64(at)).into()).await;
                let pid = if what == "kafka" {
                    pid_of(&dir.join("data/run"), "kafka")
                } else {
                    std::fs::read_to_string(dir.join("data/postgres/postmaster.pid"))
                        .ok()
                        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
                };
                let Some(pid) = pid else {
                    eprintln!("  cannot find the {what} process");
                    continue;
                };
                println!("  {:>5.1} s  SIGKILL {what} ({pid})", started.elapsed().as_secs_f64());
                if what == "kafka" {
                    let _ = sh("kill", &["-KILL", "--", &format!("-{pid}")], &[]).await;
                }
                sigkill(pid).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                let script = dir.join("stack.sh");
                match sh(&script.to_string_lossy(), &["up"], &[]).await {
                    Ok(()) => println!("  {:>5.1} s  {what} restarted", started.elapsed().as_secs_f64()),
                    Err(e) => eprintln!("  {what} restart failed: {e}"),
                }
                done.push(what);
            }
            done
        })
    };
    let killer = {
        let run_dir = run_dir.clone();
        tokio::spawn(async move {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for (at, kind) in plan {
                tokio::time::sleep_until((started + at).into()).await;
                // Kill a live process: wait for the supervisor to have restarted this kind.
                let deadline = Instant::now() + Duration::from_secs(60);
                let pid = loop {
                    let live: Vec<i32> = instances_of(&run_dir, kind)
                        .iter()
                        .filter_map(|name| pid_of(&run_dir, name).filter(|p| alive(*p)))
                        .collect();
                    if !live.is_empty() {
                        break Some(live[rand_below(live.len() as u64) as usize]);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                if let Some(pid) = pid {
                    sigkill(pid).await;
                    *count.entry(kind).or_default() += 1;
                }
            }
            count
        })
    };

    // Payouts beside the onboardings, over the same window.
    let payouts = args.payouts.unwrap_or(args.flows);
    let payouts_sent = {
        let (env, run) = (env.clone(), run.clone());
        tokio::spawn(async move { crate::chaos_payouts::submit(&env, &run, payouts, window).await })
    };
    let cards = args.cards.unwrap_or(args.flows / 10).max(2);
    let cards_run = {
        let (env, run) = (env.clone(), run.clone());
        tokio::spawn(async move { crate::chaos_cards::run(&env, &run, cards, window).await })
    };
    let bank_payments_run = {
        let (env, run) = (env.clone(), run.clone());
        tokio::spawn(async move { crate::chaos_openbanking::run(&env, &run, cards, window).await })
    };

    // Submissions, spread over the window, several at a time.
    let per = window.as_secs_f64() / args.flows.max(1) as f64;
    let mut pending = futures::stream::FuturesUnordered::new();
    for (i, f) in flows.iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs_f64(per * i as f64)).into()).await;
        let body = f.body(&run, i);
        let env = env.clone();
        let key = key.clone();
        let idem = format!("chaos-{run}-{i}");
        pending.push(async move { (i, submit(&env, &key, &body, &idem).await) });
    }
    use futures::StreamExt;
    while let Some((i, r)) = pending.next().await {
        flows[i].id = Some(r?);
    }
    let kills = killer.await?;
    let infra_done = infra.await?;
    payouts_sent.await??;
    println!(
        "  {:>5.1} s  all {} flows accepted; kills: {}",
        started.elapsed().as_secs_f64(),
        flows.len(),
        kills
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Every flow's decision.
    let deadline = Instant::now() + Duration::from_secs(args.settle);
    let mut decided: Vec<Option<Value>> = vec![None; flows.len()];
    loop {
        for (i, f) in flows.iter().enumerate() {
            if decided[i].is_some() {
                continue;
            }
            let Some(id) = &f.id else { continue };
            let url = format!("{}/v1/onboardings/{id}", env.var("INGRESS_URL")?);
            if let Ok(r) = env.http.get(&url).bearer_auth(&key).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["status"] == "completed"
            {
                decided[i] = Some(v);
            }
        }
        let left = decided.iter().filter(|d| d.is_none()).count();
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(60));
    let payout_report = crate::chaos_payouts::verify(&env, &run, payouts, left).await?;
    let card_cases = cards_run.await??;
    let card_report = crate::chaos_cards::verify(&env, &card_cases, Duration::from_secs(60)).await?;
    let bank_cases = bank_payments_run.await??;
    let bank_report = crate::chaos_openbanking::verify(&env, &bank_cases, Duration::from_secs(90)).await?;
    let took = started.elapsed().as_secs_f64();

    // Back to a normal mesh: the adapters without the fault hook.
    stop.store(true, Ordering::SeqCst);
    supervisor.await?;
    for adapter in HOOKED {
        if let Some(pid) = pid_of(&run_dir, &format!("svc-{adapter}")).filter(|p| alive(*p)) {
            let _ = sh("kill", &["-TERM", &pid.to_string()], &[]).await;
            for _ in 0..100 {
                if !alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    sh(&dir.join("services.sh").to_string_lossy(), &["start"], &[]).await?;
    for (_, url) in SIMS.iter().chain(crate::chaos_payouts::SIMS.iter()) {
        let _ = env.http.delete(format!("{url}/_sim/faults")).send().await;
    }

    // The simulators' ledgers: every effect a vendor recorded for this run, by applicant.
    let mut effects: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (sim, url) in SIMS {
        let v: Value = env
            .http
            .get(format!("{url}/_sim/ledger"))
            .query(&[("key", format!("Cx{run}n"))])
            .send()
            .await?
            .json()
            .await?;
        for e in v["effects"].as_array().into_iter().flatten() {
            let who = e["key"]
                .as_str()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string();
            let kind = format!("{sim}.{}", e["kind"].as_str().unwrap_or("?"));
            *effects.entry(who).or_default().entry(kind).or_default() += 1;
        }
    }
    let count = |who: &str, kinds: &[&str]| -> u64 {
        effects
            .get(who)
            .map(|m| kinds.iter().map(|k| m.get(*k).copied().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    const KYC: [&str; 2] = ["onfido.check_created", "sumsub.review_requested"];
    const AML: [&str; 2] = ["mesh.customer_screened", "watchman.search"];
    let (mut lost, mut wrong, mut dup_kyc, mut dup_aml, mut missing) = (vec![], vec![], 0, 0, 0);
    let (mut kyc_minmax, mut aml_minmax) = ((u64::MAX, 0), (u64::MAX, 0));
    let mut orphan_applicants = 0;
    let mut by_decision: BTreeMap<String, usize> = BTreeMap::new();
    // Flows that were lost, decided wrongly, or whose steps had other than one vendor effect.
    let mut bad_flows = 0usize;
    for (i, f) in flows.iter().enumerate() {
        let Some(d) = &decided[i] else {
            lost.push(f.id.clone().unwrap_or_default());
            bad_flows += 1;
            continue;
        };
        let decision = d["decision"].as_str().unwrap_or("?");
        *by_decision.entry(decision.to_string()).or_default() += 1;
        if decision != f.expect {
            wrong.push(format!(
                "{} {} ({}): {decision}, expected {} [{}]",
                f.given,
                f.family,
                f.id.as_deref().unwrap_or(""),
                f.expect,
                d["failure_code"].as_str().unwrap_or("")
            ));
        }
        let kyc = count(&f.given, &KYC);
        let aml = count(&f.given, &AML);
        kyc_minmax = (kyc_minmax.0.min(kyc), kyc_minmax.1.max(kyc));
        aml_minmax = (aml_minmax.0.min(aml), aml_minmax.1.max(aml));
        dup_kyc += usize::from(kyc > 1);
        dup_aml += usize::from(aml > 1);
        missing += usize::from(kyc == 0 || (f.screened && aml == 0));
        bad_flows += usize::from(decision != f.expect || kyc != 1 || aml > 1 || (f.screened && aml == 0));
        let applicants = count(&f.given, &["onfido.applicant_created"]);
        orphan_applicants += applicants.saturating_sub(count(&f.given, &["onfido.check_created"]));
    }
    let totals = |kinds: &[&str]| -> u64 { flows.iter().map(|f| count(&f.given, kinds)).sum() };
    println!(
        "\nchaos run {run}: {took:.0} s, {} restarts ({} attempts that had to be repeated), {} adapter deaths between a vendor's answer and its commit",
        restarts.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        hook_crashes(&dir) - crashes_before
    );
    println!(
        "  flows decided: {}/{}  ({})",
        flows.len() - lost.len(),
        flows.len(),
        by_decision
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  lost flows: {}", lost.len());
    println!("  wrong decisions: {}", wrong.len());
    println!(
        "  KYC effects per flow: min {} max {}; flows with more than one: {dup_kyc}  (onfido checks {}, sumsub reviews {})",
        kyc_minmax.0.min(kyc_minmax.1),
        kyc_minmax.1,
        totals(&KYC[..1]),
        totals(&KYC[1..])
    );
    println!(
        "  AML effects per flow: min {} max {}; flows with more than one: {dup_aml}  (mesh screenings {}, watchman searches {})",
        aml_minmax.0.min(aml_minmax.1),
        aml_minmax.1,
        totals(&AML[..1]),
        totals(&AML[1..])
    );
    println!("  flows missing an effect they needed: {missing}");
    println!(
        "  onfido applicants without a check (no charge; a crash between creating one and recording it): {orphan_applicants}"
    );
    if !infra_done.is_empty() {
        println!("  infrastructure killed and restarted: {}", infra_done.join(", "));
    }
    for w in wrong.iter().take(10) {
        println!("  wrong: {w}");
    }
    for l in lost.iter().take(10) {
        println!("  lost: {l}");
    }
    payout_report.print(payouts);
    card_report.print();
    bank_report.print();
    let ok = lost.is_empty()
        && wrong.is_empty()
        && dup_kyc == 0
        && dup_aml == 0
        && missing == 0
        && payout_report.ok()
        && card_report.ok()
        && bank_report.ok();
    println!("{}", if ok { "chaos: PASS" } else { "chaos: FAIL" });
    println!("chaos: {} passed, {bad_flows} failed", flows.len() - bad_flows);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `yardctl bench stall`: how long the orchestrator's partitions stand still after a SIGKILL and an
/// immediate restart, with dynamic group membership and with static membership (a stable
/// `group.instance.id`). Prints figures; asserts nothing.
pub async fn stall(trials: usize) -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let dir = stack_dir();
    let run_dir = dir.join("data/run");
    let key = env.api_key(TENANT).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let script = dir.join("services.sh");
    let mut n = 0usize;
    n += 1;
    let baseline = one_flow(&env, &key, &run, n).await?;
    println!("bench stall: one onboarding end to end without a kill: {baseline:.2} s");
    for (mode, instance) in [("dynamic membership", ""), ("static membership", "local-0")] {
        let mut stalls = Vec::new();
        // The first restart in a mode also clears the membership the previous mode left: not counted.
        for trial in 0..=trials {
            if let Some(pid) = pid_of(&run_dir, "svc-orchestrator") {
                sigkill(pid).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            sh(
                &script.to_string_lossy(),
                &["start"],
                &[("SWITCHYARD_KAFKA__GROUP_INSTANCE_ID", instance.to_string())],
            )
            .await?;
            // The orchestrator is ready again: how long until it moves a flow?
            n += 1;
            let took = one_flow(&env, &key, &run, n).await?;
            if trial > 0 {
                stalls.push((took - baseline).max(0.0));
            }
        }
        stalls.sort_by(f64::total_cmp);
        println!(
            "{mode}: stall after SIGKILL + restart (flow latency beyond {baseline:.2} s), {trials} trials: median {:.1} s, max {:.1} s",
            crate::demo::percentile(&stalls, 50.0),
            stalls.last().copied().unwrap_or(0.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits one clean onboarding and returns the seconds until it is decided.
async fn one_flow(env: &Env, key: &str, run: &str, n: usize) -> anyhow::Result<f64> {
    let f = Flow {
        given: format!("St{run}n{n}"),
        family: "Clearwater",
        expect: "approved",
        screened: true,
        id: None,
    };
    let started = Instant::now();
    let id = submit(env, key, &f.body(run, n), &format!("stall-{run}-{n}")).await?;
    let url = format!("{}/v1/onboardings/{id}", env.var("INGRESS_URL")?);
    loop {
        let v: Value = env.http.get(&url).bearer_auth(key).send().await?.json().await?;
        if v["status"] == "completed" {
            return Ok(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "flow {id} not decided");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
