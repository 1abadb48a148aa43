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
}

/// What a flow needs routed.
pub struct Subject<'a> {
    pub flow_id: &'a str,
    pub tenant: &'a str,
    pub region: &'a str,
    pub risk_tier: &'a str,
    pub segment: Option<&'a str>,
}

/// The partners to try for a step, in order, and an optional shadow partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub candidates: Vec<String>,
    pub shadow: Option<String>,
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
        let route = self.routes.iter().find(|r| {
            r.domain == domain
                && r.state == RouteState::On
                && listed(&r.matches.tenants, s.tenant)
                && listed(&r.matches.regions, s.region)
                && listed(&r.matches.risk_tiers, s.risk_tier)
                && (r.matches.segments.is_empty() || s.segment.is_some_and(|seg| listed(&r.matches.segments, seg)))
                && b < r.rollout_percent
        })?;
        let candidates: Vec<String> = std::iter::once(&route.primary)
            .chain(route.secondary.iter())
            .filter(|p| self.enabled(p))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let shadow = route
            .shadow
            .clone()
            .filter(|p| self.enabled(p) && !candidates.contains(p));
        Some(Decision { candidates, shadow })
    }
}

fn toml_parse(text: &str) -> Result<Policy, String> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    cfg.try_deserialize().map_err(|e| e.to_string())
}

/// The policy in force, reloaded from its file when the file changes.
#[derive(Clone)]
pub struct Routing {
    current: Arc<RwLock<Arc<Policy>>>,
}

impl Routing {
    pub fn fixed(policy: Policy) -> Self {
        Routing {
            current: Arc::new(RwLock::new(Arc::new(policy))),
        }
    }

    pub fn get(&self) -> Arc<Policy> {
        self.current.read().map(|p| p.clone()).unwrap_or_default()
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
                        if let Ok(mut cur) = r.current.write() {
                            *cur = Arc::new(p);
                        }
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
            };
            let d = p.decide("kyc", &s).expect("route");
            if d.candidates == vec!["kyc-b", "kyc-a"] {
                on_first += 1;
            }
            assert_eq!(p.decide("kyc", &s), Some(d), "stable per flow");
        }
        assert!((200..400).contains(&on_first), "{on_first} of 1000 on a 30% rollout");
    }

    #[test]
    fn a_route_to_an_unknown_partner_is_refused() {
        let bad = POLICY.replace("secondary = \"kyc-a\"", "secondary = \"kyc-zzz\"");
        assert!(Policy::parse(&bad).expect_err("must fail").contains("kyc-zzz"));
    }
}
