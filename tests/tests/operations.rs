//! The operators' surface through the running mesh (`make services`): every admin API refuses a
//! caller without the admin token; `yardctl keys`, `flows`, `dlq`, `routes` and `partners` do what
//! they say through the services' admin APIs and Kafka, and a routing change is kept with who made
//! it and takes effect on the next flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Output, time::Duration};

use serde_json::{Value, json};
use switchyard_runtime::Metrics;
use switchyard_tests::{
    Mesh, Stack, applied_times, create_effects_table, effects_count, eventually, fresh_account, iban_de, produce,
    read_topic, sample_event, short_id, spawn_consumer, workspace_bin,
};

/// Tests that change the routing hold this alone; the others share it.
static ROUTING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
const WAIT: Duration = Duration::from_secs(60);

/// Runs `yardctl` with the mesh's endpoints and the admin token.
fn yardctl(m: &Mesh, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(workspace_bin("yardctl"));
    cmd.args(args);
    for (k, v) in &m.vars {
        cmd.env(k, v);
    }
    cmd.env("USER", "ops-test")
        .output()
        .expect("yardctl (build the workspace binaries first)")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn every_admin_api_refuses_a_caller_without_the_admin_token() {
    let m = Mesh::get();
    let routes = [
        format!("{}/admin/keys", m.var("INGRESS_URL")),
        format!("{}/admin/flows", m.var("ORCHESTRATOR_URL")),
        format!("{}/admin/routing", m.var("ORCHESTRATOR_URL")),
        format!("{}/routing", m.var("ORCHESTRATOR_URL")),
        format!("{}/admin/effects?flow_id=x", m.var("KYC_ADAPTER_URL")),
        format!("{}/admin/outbox?key=x", m.var("PAYOUTS_ADAPTER_URL")),
        format!("{}/findings", m.var("RECONCILIATION_URL")),
    ];
    for url in &routes {
        let none = m.http.get(url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{url} without a token");
        let body: Value = none.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("admin token"),
            "{url}: {body}"
        );
        let wrong = m
            .http
            .get(url)
            .bearer_auth("not-the-token-at-all-0000")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{url} with a wrong token");
        let right = m.admin_get(url).send().await.unwrap();
        assert_eq!(right.status(), 200, "{url} with the token");
    }
    // A tenant's API key is not an admin token.
    let key = m.api_key(&format!("tenant-ops-{}", short_id()), "payouts:read");
    let r = m
        .http
        .get(format!("{}/admin/keys", m.var("INGRESS_URL")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_with_who_did_it() {
    let m = Mesh::get();
    let tenant = format!("tenant-keys-{}", short_id());
    let created = yardctl(
        &m,
        &[
            "keys",
            "create",
            "--tenant",
            &tenant,
            "--scopes",
            "payouts:read",
            "--label",
            "ops",
            "--by",
            "ops-anna",
        ],
    );
    assert!(created.status.success(), "{}", out(&created));
    let key = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert!(key.starts_with("sy_"), "the key alone on stdout: {key:?}");
    // The key works for its scope, and only for it.
    let (code, _) = m.read(&key, "/v1/payouts/nothing-here").await;
    assert_eq!(code, 404, "authenticated, the payout unknown");
    let (code, _) = m.read(&key, "/v1/onboardings/nothing-here").await;
    assert_eq!(code, 403, "a scope it does not have");
    let listed = yardctl(&m, &["keys", "list", "--tenant", &tenant]);
    let text = out(&listed);
    assert!(listed.status.success(), "{text}");
    let id = key.split('_').nth(1).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{text}"));
    assert!(
        line.contains("active") && line.contains("ops-anna") && line.contains("payouts:read"),
        "{line}"
    );
    assert!(!text.contains(&key), "a secret is never listed");
    // Refused scopes and missing fields say so.
    let bad = yardctl(
        &m,
        &["keys", "create", "--tenant", &tenant, "--scopes", "payouts:steal"],
    );
    assert!(!bad.status.success());
    assert!(out(&bad).contains("unknown scope"), "{}", out(&bad));

    let revoked = yardctl(&m, &["keys", "revoke", &key, "--by", "ops-ben"]);
    assert!(revoked.status.success(), "{}", out(&revoked));
    let (code, _) = m.read(&key, "/v1/payouts/nothing-here").await;
    assert_eq!(code, 401, "a revoked key is refused at once");
    let again = yardctl(&m, &["keys", "revoke", id, "--by", "ops-ben"]);
    assert!(!again.status.success(), "revoked once");
    assert!(out(&again).contains("already revoked"), "{}", out(&again));
    let text = out(&yardctl(&m, &["keys", "list", "--tenant", &tenant]));
    assert!(
        text.lines().any(|l| l.starts_with(id) && l.contains("revoked")),
        "{text}"
    );
    let all = m
        .admin_json(&format!("{}/admin/keys?tenant={tenant}", m.var("INGRESS_URL")))
        .await;
    assert_eq!(all["keys"][0]["revoked_by"], "ops-ben", "{all}");
}

/// A payout shown whole: its state and history from the orchestrator, its calls to partners from
/// the adapters' effect ledgers, every event written for it, and no dead letter; listed by kind,
/// state and tenant, and not among flows older than a day.
#[tokio::test]
async fn a_flow_is_shown_across_the_services_and_listed_by_state_tenant_and_age() {
    let _shared = ROUTING.read().await;
    let m = Mesh::get();
    let tenant = format!("tenant-flows-{}", short_id());
    let key = m.api_key(&tenant, "payouts:write,payouts:read");
    let id = format!("show-{}", short_id());
    let (code, resp) = m
        .post(
            &key,
            "/v1/payouts",
            &json!({"payout_id": id, "customer_id": "cust-s", "amount": {"currency": "EUR", "value": "12.34"},
                    "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}}),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    let p = m.payout_in(&key, &id, &["settled"], WAIT).await;
    let flow_id = format!("{}.{tenant}.{id}", tenant.len());

    let shown = yardctl(&m, &["flows", "show", &flow_id, "--json"]);
    assert!(shown.status.success(), "{}", out(&shown));
    let f: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(f["kind"], "payout");
    assert_eq!(f["state"], "settled");
    assert_eq!(f["amount_minor"], 1234);
    let events: Vec<&str> = f["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert!(
        events.contains(&"payout_started") && events.contains(&"settled"),
        "{events:?}"
    );
    let partner = p["partner"].as_str().unwrap();
    let paid: Vec<&Value> = f["effects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"] == "payouts-adapter")
        .collect();
    assert_eq!(paid.len(), 1, "one call to pay: {}", f["effects"]);
    assert_eq!(paid[0]["partner"], partner);
    assert_eq!(paid[0]["provider_reference"], p["provider_reference"]);
    assert!(
        f["effects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["service"] == "fraud-adapter"),
        "the fraud screening's call: {}",
        f["effects"]
    );
    let written: Vec<(String, String)> = f["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["service"].as_str().unwrap().to_string(),
                o["topic"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        written.contains(&("ingress".into(), "payouts.commands.v1".into())),
        "{written:?}"
    );
    assert!(
        written.contains(&("orchestrator".into(), "payouts.requests.v1".into())),
        "{written:?}"
    );
    assert!(
        f["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| !o["published_at"].is_null())
    );
    assert_eq!(f["dead_letters"], json!([]));
    assert_eq!(f["unreachable"], json!([]));
    let text = out(&yardctl(&m, &["flows", "show", &flow_id]));
    assert!(text.contains("calls to partners") && text.contains(partner), "{text}");
    assert!(!text.contains("Grace Hopper"), "the payee's name is never shown");

    let listed = out(&yardctl(
        &m,
        &[
            "flows", "list", "--kind", "payout", "--state", "settled", "--tenant", &tenant,
        ],
    ));
    assert!(listed.contains(&flow_id) && listed.contains("1 flows"), "{listed}");
    let old = out(&yardctl(
        &m,
        &["flows", "list", "--tenant", &tenant, "--older-than", "1d"],
    ));
    assert!(old.contains("0 flows"), "{old}");
    let unknown = yardctl(&m, &["flows", "show", "5.nope.nothing"]);
    assert!(!unknown.status.success());
    assert!(out(&unknown).contains("no flow"), "{}", out(&unknown));
    let bad = yardctl(&m, &["flows", "list", "--kind", "cards"]);
    assert!(
        !bad.status.success() && out(&bad).contains("kind must be"),
        "{}",
        out(&bad)
    );
}

/// A message a consumer refused is dead-lettered; once the cause is fixed, `yardctl dlq replay`
/// sends it back through the normal path and it is applied once; a second replay is skipped by the
/// inbox. An undecodable message is not replayed without --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_is_applied_once_however_often_it_is_replayed() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let db = stack.fresh_db("replay").await;
    let topic = stack.fresh_topic("replay", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    sqlx::query("ALTER TABLE effects ADD CONSTRAINT no_77 CHECK (seq <> 77)")
        .execute(&db.pool)
        .await
        .unwrap();
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "replay-test").unwrap();
    for seq in [1, 77, 2] {
        let flow = format!("flow-r{seq}");
        let frame = codec.encode(&topic, &sample_event("t", &flow, seq)).await.unwrap();
        produce(&producer, &topic, &flow, &frame).await;
    }
    produce(&producer, &topic, "flow-garbage", b"{not avro}").await;
    let metrics = Metrics::new("replay");
    let (stop, handle) = spawn_consumer(&stack, &db, &topic, codec, metrics.clone());
    let dlq = read_topic(&stack, &format!("{topic}.dlq"), 2, WAIT, Duration::from_millis(300)).await;
    assert_eq!(dlq.len(), 2);
    assert!(eventually(WAIT, || async { effects_count(&db.pool).await == 2 }).await);

    let listed = yardctl(&m, &["dlq", "list", "--topic", &topic]);
    let text = out(&listed);
    assert!(listed.status.success(), "{text}");
    assert!(text.contains("2 dead letters"), "{text}");
    // Their order in the dead-letter topic is the order they failed in.
    let id_of = |reason: &str| {
        text.lines()
            .find(|l| l.contains(reason) && l.contains(&format!("{topic}.dlq/0/")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {reason} dead letter listed:\n{text}"))
            .to_string()
    };
    let (refused, garbage) = (id_of("handler_rejected"), id_of("undecodable"));
    let shown = out(&yardctl(&m, &["dlq", "show", &refused, "--payload"]));
    assert!(shown.contains("dlq_source_topic") && shown.contains(&topic), "{shown}");
    assert!(shown.contains("\"flow_id\": \"flow-r77\""), "decoded: {shown}");

    // Still refused: dead-lettered again, nothing applied.
    let first = yardctl(&m, &["dlq", "replay", &refused]);
    assert!(first.status.success(), "{}", out(&first));
    read_topic(&stack, &format!("{topic}.dlq"), 3, WAIT, Duration::from_millis(300)).await;
    assert_eq!(effects_count(&db.pool).await, 2);
    // Fixed: applied once, then skipped as a duplicate however often it comes back.
    sqlx::query("ALTER TABLE effects DROP CONSTRAINT no_77")
        .execute(&db.pool)
        .await
        .unwrap();
    for _ in 0..2 {
        let again = yardctl(&m, &["dlq", "replay", &refused]);
        assert!(again.status.success(), "{}", out(&again));
    }
    assert!(eventually(WAIT, || async { effects_count(&db.pool).await == 3 }).await);
    let wanted = "switchyard_inbox_duplicates_total{service=\"replay\"} 1\n";
    assert!(
        eventually(WAIT, || async { metrics.render().contains(wanted) }).await,
        "the second replay skipped: {}",
        metrics.render()
    );
    assert_eq!(applied_times(&db.pool).await, [1, 1, 1]);
    let not_sent = yardctl(&m, &["dlq", "replay", &garbage]);
    assert!(!not_sent.status.success());
    assert!(out(&not_sent).contains("undecodable"), "{}", out(&not_sent));
    let bad = yardctl(&m, &["dlq", "show", "not-an-id"]);
    assert!(!bad.status.success() && out(&bad).contains("<dlq topic>/<partition>/<offset>"));
    stop.trigger();
    handle.await.unwrap().unwrap();
    db.drop_db().await;
}

/// Puts the routing back as the file says when the test ends, passed or failed.
struct ResetRouting<'a>(&'a Mesh, String);

impl Drop for ResetRouting<'_> {
    fn drop(&mut self) {
        let o = yardctl(
            self.0,
            &[
                "routes",
                "set",
                &self.1,
                "--reset",
                "--reason",
                "test over",
                "--by",
                "ops-test",
            ],
        );
        assert!(o.status.success() || std::thread::panicking(), "{}", out(&o));
    }
}

/// An operator switches a payout partner off: the next payout goes to the other partner, the
/// change is kept with who made it and why, `yardctl partners` shows it; a reset puts the file's
/// routing back for the next payout. A change that makes no sense is refused.
#[tokio::test]
async fn a_routing_change_is_audited_and_takes_effect_on_the_next_flow() {
    let _alone = ROUTING.write().await;
    let m = Mesh::get();
    let tenant = format!("tenant-routes-{}", short_id());
    let key = m.api_key(&tenant, "payouts:write,payouts:read");
    let pay = |id: String| {
        let (m, key) = (&m, key.clone());
        async move {
            let body = json!({"payout_id": id, "customer_id": "cust-r", "amount": {"currency": "EUR", "value": "5.00"},
                "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}});
            let (code, resp) = m.post(&key, "/v1/payouts", &body).await;
            assert_eq!(code, 202, "{resp}");
            m.payout_in(&key, &id, &["settled"], WAIT).await["partner"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let usual = pay(format!("before-{}", short_id())).await;
    let other = if usual == "payouts-stripe" {
        "payouts-wise"
    } else {
        "payouts-stripe"
    };
    let reason = format!("partner incident {}", short_id());
    let _reset = ResetRouting(&m, usual.clone());
    let set = yardctl(
        &m,
        &[
            "routes",
            "set",
            &usual,
            "--disable",
            "--reason",
            &reason,
            "--by",
            "ops-carla",
        ],
    );
    assert!(set.status.success(), "{}", out(&set));
    assert_eq!(pay(format!("during-{}", short_id())).await, other, "moved off {usual}");

    let routing = m
        .admin_json(&format!("{}/admin/routing", m.var("ORCHESTRATOR_URL")))
        .await;
    let change = &routing["changes"][0];
    assert_eq!(
        (&change["partner"], &change["action"], &change["by"], &change["reason"]),
        (&json!(usual), &json!("disable"), &json!("ops-carla"), &json!(reason)),
        "{routing}"
    );
    assert_eq!(routing["overrides"]["enabled"][&usual], false);
    let partners = out(&yardctl(&m, &["partners"]));
    let line = partners.lines().find(|l| l.contains(&usual)).unwrap();
    assert!(line.contains("DISABLED"), "{partners}");
    let shown = out(&yardctl(&m, &["routes", "show"]));
    assert!(shown.contains(&reason) && shown.contains("ops-carla"), "{shown}");

    for (args, why) in [
        (
            vec!["routes", "set", "payouts-nobody", "--disable", "--reason", "x"],
            "no partner",
        ),
        (vec!["routes", "set", &usual, "--reason", "x"], "say what to do"),
        (vec!["routes", "set", "kyc-onfido", "--primary", "--reason", "x"], ""),
    ] {
        let o = yardctl(&m, &args);
        if why.is_empty() {
            // kyc-onfido is secondary on one route: allowed; put it back.
            assert!(o.status.success(), "{}", out(&o));
            let o = yardctl(&m, &["routes", "set", "kyc-onfido", "--reset", "--reason", "test over"]);
            assert!(o.status.success(), "{}", out(&o));
        } else {
            assert!(!o.status.success() && out(&o).contains(why), "{args:?}: {}", out(&o));
        }
    }

    let reset = yardctl(
        &m,
        &[
            "routes",
            "set",
            &usual,
            "--reset",
            "--reason",
            "incident over",
            "--by",
            "ops-carla",
        ],
    );
    assert!(reset.status.success(), "{}", out(&reset));
    assert_eq!(
        pay(format!("after-{}", short_id())).await,
        usual,
        "back as the file says"
    );
}

/// The chart's migration Job: a service started with `SWITCHYARD_MIGRATE_ONLY=1` migrates its
/// database (its own tables too), registers no schema, makes no topic, serves nothing and exits 0;
/// run again, it changes nothing and exits 0.
#[tokio::test]
async fn a_migrate_only_run_migrates_the_database_and_exits() {
    let stack = Stack::get();
    let db = stack.fresh_db("migrate_only").await;
    let tables = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('onboarding_flows', 'payouts', 'routing_changes') ORDER BY 1",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    assert!(tables().await.is_empty());
    let run = || {
        let mut child = std::process::Command::new(workspace_bin("orchestrator"))
            .env_clear()
            .env("SWITCHYARD_MIGRATE_ONLY", "1")
            .env("SWITCHYARD_DATABASE__URL", &db.url)
            // Nothing listens there: a run that tried Kafka or the registry would fail or hang.
            .env("SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("SWITCHYARD_REGISTRY__URL", "http://127.0.0.1:1/apis/ccompat/v7")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("orchestrator binary");
        // A hang guard, not a speed target: a process that serves never exits on its own.
        for _ in 0..600 {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = child.kill();
        panic!(
            "a migrate-only run did not exit: {}",
            out(&child.wait_with_output().unwrap())
        );
    };
    let first = run();
    assert!(first.status.success(), "{}", out(&first));
    assert_eq!(tables().await, ["onboarding_flows", "payouts", "routing_changes"]);
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let second = run();
    assert!(second.status.success(), "{}", out(&second));
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(migrations, again, "nothing applied twice");
    db.drop_db().await;
}
