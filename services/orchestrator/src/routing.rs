//! Routing policy as data: a partner catalog and per-domain routes, read from a TOML file and
//! reloaded when it changes (no redeploy). A bad file is refused with the reason logged and counted;
//! the last good policy stays in force.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Partner {
    pub id: String,
    pub domain: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub currencies: Vec<String>,
    #[serde(default)]
    pub rate_limit_per_second: f64,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub last_disaster_test: Option<String>,
    #[serde(default)]
    pub known_gaps: Vec<String>,
    /// Payouts: countries of beneficiaries' banks it pays into (any when empty).
    #[serde(default)]
    pub countries: Vec<String>,
    /// Payouts: the largest amount it takes, in minor units of the payout's currency.
    #[serde(default)]
    pub max_amount_minor: Option<i64>,
    /// Payouts: its price, a fixed part in minor units and a share in basis points.
    #[serde(default)]
    pub fee_fixed_minor: i64,
    #[serde(default)]
    pub fee_bps: i64,
    /// Payouts: how long the money usually takes to arrive.
    #[serde(default)]
    pub settlement_minutes: i64,
}

impl Partner {
    /// Whether it can pay `amount_minor` in `currency` into a bank in `country`.
    fn can_pay(&self, currency: &str, country: Option<&str>, amount_minor: i64) -> bool {
        listed(&self.currencies, currency)
            && country.is_none_or(|c| listed(&self.countries, c))
            && self.max_amount_minor.is_none_or(|m| amount_minor <= m)
    }

    /// What a payout of `amount_minor` costs with it.
    pub fn fee(&self, amount_minor: i64) -> i64 {
        self.fee_fixed_minor + amount_minor.saturating_mul(self.fee_bps) / 10_000
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Match {
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub risk_tiers: Vec<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    /// Payouts and fraud: the money's currency.
    #[serde(default)]
    pub currencies: Vec<String>,
    /// Payouts: the beneficiary bank's country.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Payouts and fraud: amount bounds in minor units (inclusive).
    #[serde(default)]
    pub min_amount_minor: Option<i64>,
    #[serde(default)]
    pub max_amount_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub domain: String,
    pub primary: String,
    #[serde(default)]
    pub secondary: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// Share of matching flows (by a stable hash of the flow id) that take this route.
    #[serde(default = "hundred")]
    pub rollout_percent: u8,
    /// A partner called in parallel whose answer is recorded, never acted on.
    #[serde(default)]
    pub shadow: Option<String>,
    #[serde(default = "on")]
    pub state: RouteState,
    /// Payouts: how candidates are ordered: as listed (default), by `cost` or by `speed` (a payout's
    /// own priority wins).
    #[serde(default)]
    pub order_by: Option<String>,
    /// Fraud: when no partner can score, payouts below this amount (minor units) go ahead, flagged,
    /// and are scored later; absent: fail closed (nothing is paid unscreened).
    #[serde(default)]
    pub fail_open_below_minor: Option<i64>,
}

fn hundred() -> u8 {
    100
}

fn on() -> RouteState {
    RouteState::On
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub partners: Vec<Partner>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub payout_velocity: Velocity,
}

/// Velocity limits on payouts, per fixed window: per beneficiary (count and amount) and per tenant
/// (amount), amounts per currency in minor units. A limit not set is not checked.
#[derive(Debug, Clone, Deserialize)]
pub struct Velocity {
    #[serde(default = "day")]
    pub window_hours: i64,
    #[serde(default)]
    pub per_beneficiary_count: Option<i64>,
    #[serde(default)]
    pub per_beneficiary_amount_minor: std::collections::HashMap<String, i64>,
    #[serde(default)]
    pub per_tenant_amount_minor: std::collections::HashMap<String, i64>,
}

impl Default for Velocity {
    fn default() -> Self {
        Velocity {
            window_hours: day(),
            per_beneficiary_count: None,
            per_beneficiary_amount_minor: Default::default(),
            per_tenant_amount_minor: Default::default(),
        }
    }
}

fn day() -> i64 {
    24
}

/// What a flow needs routed.
pub struct Subject<'a> {
    pub flow_id: &'a str,
    pub tenant: &'a str,
    pub region: &'a str,
    pub risk_tier: &'a str,
    pub segment: Option<&'a str>,
    /// Payouts and fraud: the money.
    pub money: Option<(&'a str, i64)>,
    /// Payouts: the beneficiary bank's country, and what the payout favours (`cost`/`speed`).
    pub country: Option<&'a str>,
    pub priority: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A subject routed on its tenant alone (cards, open banking).
    pub fn plain(flow_id: &'a str, tenant: &'a str) -> Self {
        Subject {
            flow_id,
            tenant,
            region: "",
            risk_tier: "",
            segment: None,
            money: None,
            country: None,
            priority: None,
        }
    }

    /// A subject with no region, tier or segment (payouts and fraud route on the money).
    pub fn money(flow_id: &'a str, tenant: &'a str, currency: &'a str, amount_minor: i64) -> Self {
        Subject {
            flow_id,
            tenant,
            region: "",
            risk_tier: "",
            segment: None,
            money: Some((currency, amount_minor)),
            country: None,
            priority: None,
        }
    }
}

/// The partners to try for a step, in order, and an optional shadow partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub candidates: Vec<String>,
    pub shadow: Option<String>,
    /// Fraud: the route's fail-open limit (see [`Route::fail_open_below_minor`]).
    pub fail_open_below_minor: Option<i64>,
}

fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(value))
}

/// A stable 0..100 bucket of a flow id (FNV-1a), so a flow always takes the same rollout branch.
pub fn bucket(flow_id: &str) -> u8 {
    (switchyard_runtime::outbox::fnv1a(&[flow_id]) % 100) as u8
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = toml_parse(text)?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        for (i, r) in self.routes.iter().enumerate() {
            for p in std::iter::once(&r.primary)
                .chain(r.secondary.iter())
                .chain(r.shadow.iter())
            {
                let Some(partner) = self.partners.iter().find(|x| &x.id == p) else {
                    return Err(format!("routes[{i}]: partner {p:?} is not in the partner catalog"));
                };
                if partner.domain != r.domain {
                    return Err(format!(
                        "routes[{i}]: partner {p:?} serves {}, not {}",
                        partner.domain, r.domain
                    ));
                }
            }
            if r.rollout_percent > 100 {
                return Err(format!("routes[{i}].rollout_percent must be 0..=100"));
            }
            if let Some(o) = &r.order_by
                && !["cost", "speed", "listed"].contains(&o.as_str())
            {
                return Err(format!("routes[{i}].order_by must be cost, speed or listed, not {o:?}"));
            }
        }
        Ok(())
    }

    fn enabled(&self, id: &str) -> bool {
        self.partners.iter().any(|p| p.id == id && p.enabled)
    }

    /// Chooses the route for `domain`: the first route that is on, matches the subject and whose
    /// rollout includes this flow.
    pub fn decide(&self, domain: &str, s: &Subject<'_>) -> Option<Decision> {
        let b = bucket(s.flow_id);
        let money = |m: &Match| match s.money {
            None => m.currencies.is_empty() && m.min_amount_minor.is_none() && m.max_amount_minor.is_none(),
            Some((currency, amount)) => {
                listed(&m.currencies, currency)
                    && m.min_amount_minor.is_none_or(|x| amount >= x)
                    && m.max_amount_minor.is_none_or(|x| amount <= x)
            }
        };
        let region = |m: &Match| s.region.is_empty() || listed(&m.regions, s.region);
        let tier = |m: &Match| s.risk_tier.is_empty() || listed(&m.risk_tiers, s.risk_tier);
        let country = |m: &Match| m.countries.is_empty() || s.country.is_some_and(|c| listed(&m.countries, c));
        let route = self.routes.iter().find(|r| {
            r.domain == domain
                && r.state == RouteState::On
                && listed(&r.matches.tenants, s.tenant)
                && region(&r.matches)
                && tier(&r.matches)
                && (r.matches.segments.is_empty() || s.segment.is_some_and(|seg| listed(&r.matches.segments, seg)))
                && money(&r.matches)
                && country(&r.matches)
                && b < r.rollout_percent
        })?;
        let mut candidates: Vec<&Partner> = std::iter::once(&route.primary)
            .chain(route.secondary.iter())
            .filter_map(|p| self.partners.iter().find(|x| &x.id == p && x.enabled))
            .collect();
        if domain == "payouts"
            && let Some((currency, amount)) = s.money
        {
            candidates.retain(|p| p.can_pay(currency, s.country, amount));
            match s.priority.or(route.order_by.as_deref()) {
                Some("cost") => candidates.sort_by_key(|p| p.fee(amount)),
                Some("speed") => candidates.sort_by_key(|p| p.settlement_minutes),
                _ => {}
            }
        }
        if candidates.is_empty() {
            return None;
        }
        let candidates: Vec<String> = candidates.into_iter().map(|p| p.id.clone()).collect();
        let shadow = route
            .shadow
            .clone()
            .filter(|p| self.enabled(p) && !candidates.contains(p));
        Some(Decision {
            candidates,
            shadow,
            fail_open_below_minor: route.fail_open_below_minor,
        })
    }
}

fn toml_parse(text: &str) -> Result<Policy, String> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    cfg.try_deserialize().map_err(|e| e.to_string())
}

/// Operators' changes on top of the file (`yardctl routes set`, audited in `routing_changes`): a
/// partner switched on or off, a partner made primary on the routes of its domain that name it
/// secondary. The file stays the source of everything else; a reset takes an override away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub enabled: std::collections::BTreeMap<String, bool>,
    pub primary: std::collections::BTreeSet<String>,
}

impl Policy {
    /// The policy with the operators' overrides applied.
    pub fn with(&self, o: &Overrides) -> Policy {
        let mut p = self.clone();
        for partner in &mut p.partners {
            if let Some(on) = o.enabled.get(&partner.id) {
                partner.enabled = *on;
            }
        }
        for id in &o.primary {
            let Some(domain) = self.partners.iter().find(|x| &x.id == id).map(|x| x.domain.clone()) else {
                continue;
            };
            for r in p.routes.iter_mut().filter(|r| r.domain == domain) {
                if r.secondary.as_ref() == Some(id) {
                    let old = std::mem::replace(&mut r.primary, id.clone());
                    r.secondary = Some(old);
                }
            }
        }
        p
    }
}

/// The policy in force: the file's, reloaded when the file changes, with the operators' overrides.
#[derive(Clone)]
pub struct Routing {
    current: Arc<RwLock<Arc<Policy>>>,
    base: Arc<RwLock<(Arc<Policy>, Overrides)>>,
}

impl Routing {
    pub fn fixed(policy: Policy) -> Self {
        let policy = Arc::new(policy);
        Routing {
            current: Arc::new(RwLock::new(policy.clone())),
            base: Arc::new(RwLock::new((policy, Overrides::default()))),
        }
    }

    pub fn get(&self) -> Arc<Policy> {
        self.current.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// The file's policy, without overrides.
    pub fn file(&self) -> Arc<Policy> {
        self.base.read().map(|b| b.0.clone()).unwrap_or_default()
    }

    pub fn overrides(&self) -> Overrides {
        self.base.read().map(|b| b.1.clone()).unwrap_or_default()
    }

    fn set_file(&self, policy: Policy) {
        if let Ok(mut b) = self.base.write() {
            b.0 = Arc::new(policy);
            self.recompute(&b);
        }
    }

    /// Puts `overrides` in force (from the database; every instance follows the same table).
    pub fn set_overrides(&self, overrides: Overrides) {
        if let Ok(mut b) = self.base.write() {
            b.1 = overrides;
            self.recompute(&b);
        }
    }

    fn recompute(&self, base: &(Arc<Policy>, Overrides)) {
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(base.0.with(&base.1));
        }
    }

    /// Loads `path` (failing start-up on a bad file) and watches it.
    pub fn watch(
        path: PathBuf,
        shutdown: switchyard_runtime::Shutdown,
        reloads: prometheus_client::metrics::family::Family<ReloadLabels, prometheus_client::metrics::counter::Counter>,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("routing file {}: {e}", path.display()))?;
        let policy = Policy::parse(&text).map_err(|e| format!("routing file {}: {e}", path.display()))?;
        let routing = Routing::fixed(policy);
        let r = routing.clone();
        tokio::spawn(async move {
            let mut seen = modified(&path);
            while shutdown.sleep(Duration::from_secs(1)).await {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                let result = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Policy::parse(&t));
                match result {
                    Ok(p) => {
                        r.set_file(p);
                        reloads.get_or_create(&ReloadLabels { result: "ok".into() }).inc();
                        tracing::info!(file = %path.display(), "routing policy reloaded");
                    }
                    Err(e) => {
                        reloads
                            .get_or_create(&ReloadLabels {
                                result: "rejected".into(),
                            })
                            .inc();
                        tracing::error!(file = %path.display(), error = %e, "routing policy refused; keeping the previous one");
                    }
                }
            }
        });
        Ok(routing)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: String,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[partners]]
id = "kyc-a"
domain = "kyc"
[[partners]]
id = "kyc-b"
domain = "kyc"
[[partners]]
id = "kyc-c"
domain = "kyc"
enabled = false

[[routes]]
domain = "kyc"
primary = "kyc-b"
secondary = "kyc-a"
match = { tenants = ["tenant-x"] }

[[routes]]
domain = "kyc"
primary = "kyc-a"
secondary = "kyc-b"
shadow = "kyc-c"
match = { regions = ["EU", "UK"], risk_tiers = ["LOW", "MEDIUM"] }

[[routes]]
domain = "kyc"
primary = "kyc-b"
"#;

    fn subject<'a>(tenant: &'a str, region: &'a str, tier: &'a str) -> Subject<'a> {
        Subject {
            flow_id: "f-1",
            tenant,
            region,
            risk_tier: tier,
            segment: None,
            money: None,
            country: None,
            priority: None,
        }
    }

    #[test]
    fn first_matching_route_wins_and_disabled_partners_are_skipped() {
        let p = Policy::parse(POLICY).expect("policy");
        let d = p.decide("kyc", &subject("tenant-x", "US", "HIGH")).expect("route");
        assert_eq!(d.candidates, vec!["kyc-b", "kyc-a"]);
        let d = p.decide("kyc", &subject("t", "EU", "LOW")).expect("route");
        assert_eq!(d.candidates, vec!["kyc-a", "kyc-b"]);
        assert_eq!(d.shadow, None, "kyc-c is disabled");
        let d = p.decide("kyc", &subject("t", "EU", "HIGH")).expect("route");
        assert_eq!(d.candidates, vec!["kyc-b"]);
        assert!(p.decide("aml", &subject("t", "EU", "LOW")).is_none());
    }

    #[test]
    fn rollout_splits_flows_stably() {
        let text = POLICY.replace("match = { tenants = [\"tenant-x\"] }", "rollout_percent = 30");
        let p = Policy::parse(&text).expect("policy");
        let mut on_first = 0;
        for i in 0..1000 {
            let id = format!("flow-{i}");
            let s = Subject {
                flow_id: &id,
                tenant: "t",
                region: "US",
                risk_tier: "HIGH",
                segment: None,
                money: None,
                country: None,
                priority: None,
            };
            let d = p.decide("kyc", &s).expect("route");
            if d.candidates == vec!["kyc-b", "kyc-a"] {
                on_first += 1;
            }
            assert_eq!(p.decide("kyc", &s), Some(d), "stable per flow");
        }
        assert!((200..400).contains(&on_first), "{on_first} of 1000 on a 30% rollout");
    }

    const PAYOUTS: &str = r#"
[[partners]]
id = "pay-cheap"
domain = "payouts"
currencies = ["EUR", "GBP"]
fee_fixed_minor = 50
settlement_minutes = 1440
max_amount_minor = 1000000
[[partners]]
id = "pay-fast"
domain = "payouts"
currencies = ["EUR", "USD"]
countries = ["DE", "FR", "US"]
fee_fixed_minor = 25
fee_bps = 20
settlement_minutes = 30
[[partners]]
id = "fraud-a"
domain = "fraud"

[[routes]]
domain = "fraud"
primary = "fraud-a"
match = { currencies = ["EUR"], max_amount_minor = 50000 }
fail_open_below_minor = 10000

[[routes]]
domain = "fraud"
primary = "fraud-a"

[[routes]]
domain = "payouts"
primary = "pay-cheap"
secondary = "pay-fast"
order_by = "cost"
"#;

    fn payout<'a>(currency: &'a str, amount: i64, country: &'a str, priority: Option<&'a str>) -> Subject<'a> {
        Subject {
            country: Some(country),
            priority,
            ..Subject::money("f-1", "t", currency, amount)
        }
    }

    /// Payout partners are those that can pay the currency, country and amount, cheapest first
    /// (25 + 0.2% against 50: the fast one is cheaper below 125.00), or fastest when asked.
    #[test]
    fn payouts_route_by_currency_country_amount_and_cost_or_speed() {
        let p = Policy::parse(PAYOUTS).expect("policy");
        let route = |s: &Subject<'_>| p.decide("payouts", s).map(|d| d.candidates);
        assert_eq!(
            route(&payout("EUR", 10_000, "DE", None)).unwrap(),
            ["pay-fast", "pay-cheap"]
        );
        assert_eq!(
            route(&payout("EUR", 50_000, "DE", None)).unwrap(),
            ["pay-cheap", "pay-fast"]
        );
        assert_eq!(
            route(&payout("EUR", 50_000, "DE", Some("speed"))).unwrap(),
            ["pay-fast", "pay-cheap"]
        );
        assert_eq!(
            route(&payout("EUR", 50_000, "IT", None)).unwrap(),
            ["pay-cheap"],
            "country"
        );
        assert_eq!(
            route(&payout("GBP", 50_000, "GB", None)).unwrap(),
            ["pay-cheap"],
            "currency"
        );
        assert_eq!(route(&payout("USD", 50_000, "US", None)).unwrap(), ["pay-fast"]);
        assert_eq!(
            route(&payout("EUR", 2_000_000, "DE", None)).unwrap(),
            ["pay-fast"],
            "amount cap"
        );
        assert_eq!(route(&payout("JPY", 5_000, "JP", None)), None, "nobody pays yen");
    }

    #[test]
    fn the_fraud_fail_mode_comes_with_the_route_matched_on_the_money() {
        let p = Policy::parse(PAYOUTS).expect("policy");
        let small = p.decide("fraud", &Subject::money("f", "t", "EUR", 20_000)).unwrap();
        assert_eq!(small.fail_open_below_minor, Some(10_000));
        let large = p.decide("fraud", &Subject::money("f", "t", "EUR", 90_000)).unwrap();
        assert_eq!(large.fail_open_below_minor, None, "fail closed");
        let gbp = p.decide("fraud", &Subject::money("f", "t", "GBP", 20_000)).unwrap();
        assert_eq!(gbp.fail_open_below_minor, None);
        assert!(Policy::parse(&PAYOUTS.replace("order_by = \"cost\"", "order_by = \"luck\"")).is_err());
    }

    #[test]
    fn a_route_to_an_unknown_partner_is_refused() {
        let bad = POLICY.replace("secondary = \"kyc-a\"", "secondary = \"kyc-zzz\"");
        assert!(Policy::parse(&bad).expect_err("must fail").contains("kyc-zzz"));
    }

    #[test]
    fn overrides_switch_partners_and_make_one_primary_where_it_was_secondary() {
        let p = Policy::parse(POLICY).unwrap();
        let mut o = Overrides::default();
        o.enabled.insert("kyc-c".into(), true);
        o.enabled.insert("kyc-b".into(), false);
        o.primary.insert("kyc-a".into());
        let q = p.with(&o);
        assert!(q.enabled("kyc-c") && !q.enabled("kyc-b") && q.enabled("kyc-a"));
        // Where kyc-a was secondary it is primary now; where it was primary nothing changes.
        let pairs: Vec<(&str, Option<&str>)> = q
            .routes
            .iter()
            .map(|r| (r.primary.as_str(), r.secondary.as_deref()))
            .collect();
        let before: Vec<(&str, Option<&str>)> = p
            .routes
            .iter()
            .map(|r| (r.primary.as_str(), r.secondary.as_deref()))
            .collect();
        for (b, a) in before.iter().zip(&pairs) {
            match b {
                (prim, Some("kyc-a")) => assert_eq!(*a, ("kyc-a", Some(*prim))),
                _ => assert_eq!(b, a),
            }
        }
        assert!(
            before.iter().any(|(_, s)| *s == Some("kyc-a")),
            "the policy has a route to flip"
        );
        // No overrides: the file's policy as it is.
        assert_eq!(
            format!("{:?}", p.with(&Overrides::default()).routes),
            format!("{:?}", p.routes)
        );
    }
}
