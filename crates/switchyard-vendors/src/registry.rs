//! The one place vendors are built: a partner connection (from the adapter's configuration) names a
//! vendor implementation, its endpoint and references to its secrets.
//!
//! Secrets are never literal in configuration: each is a reference, `env:NAME` or `file:/path`, read
//! at start-up (sandbox and production keep separate references).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::Deserialize;
use switchyard_runtime::Secret;

use crate::{
    aml::{
        AmlVendor,
        mesh::{Mesh, MeshConfig},
        watchman::{Watchman, WatchmanConfig},
    },
    cards::{
        CardVendor,
        lithic::{Lithic, LithicConfig},
        marqeta::{Marqeta, MarqetaConfig},
    },
    fraud::{
        FraudVendor,
        seon::{Seon, SeonConfig},
        sift::{Sift, SiftConfig},
    },
    kyc::{
        KycVendor,
        onfido::{Onfido, OnfidoConfig},
        sumsub::{Sumsub, SumsubConfig},
    },
    openbanking::{
        OpenBankingVendor,
        plaid::{Plaid, PlaidConfig},
        truelayer::{TrueLayer, TrueLayerConfig},
    },
    payouts::{
        PayoutVendor,
        stripe::{Stripe, StripeConfig},
        wise::{Wise, WiseConfig},
    },
    signing::SecretPair,
};

#[derive(Debug, Clone, Deserialize)]
pub struct PartnerConnection {
    /// Partner id, as in the partner catalog (e.g. `kyc-onfido`).
    pub id: String,
    /// Implementation: `onfido`, `sumsub`, `mesh`, `watchman`, `sift`, `seon`.
    pub vendor: String,
    pub base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests per second allowed to this partner (0: no limit).
    #[serde(default)]
    pub rate_limit_per_second: f64,
    /// Secret name → reference (`env:NAME` or `file:/path`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Non-secret vendor settings (e.g. a screening configuration id).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// Reads a secret reference.
pub fn resolve_secret(reference: &str) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read secret file {path}: {e}"));
    }
    Err("a secret must be a reference (env:NAME or file:/path), never a literal".to_string())
}

impl PartnerConnection {
    fn secret(&self, name: &str) -> Result<Secret, String> {
        let reference = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("partners.{}.secrets.{name} is required", self.id))?;
        let value = resolve_secret(reference).map_err(|e| format!("partners.{}.secrets.{name}: {e}", self.id))?;
        if value.is_empty() {
            return Err(format!("partners.{}.secrets.{name} is empty", self.id));
        }
        Ok(Secret::new(value))
    }

    /// A secret that may be absent: no reference, or an `env:` reference to an unset variable
    /// (e.g. the previous webhook secret outside a rotation).
    fn optional_secret(&self, name: &str) -> Result<Option<String>, String> {
        let Some(reference) = self.secrets.get(name) else {
            return Ok(None);
        };
        if reference
            .strip_prefix("env:")
            .is_some_and(|var| std::env::var_os(var).is_none())
        {
            return Ok(None);
        }
        let value = resolve_secret(reference).map_err(|e| format!("partners.{}.secrets.{name}: {e}", self.id))?;
        Ok((!value.is_empty()).then_some(value))
    }

    fn webhook_secret(&self) -> Result<SecretPair, String> {
        let current = self.secret("webhook_secret")?;
        let previous = self.optional_secret("webhook_secret_previous")?;
        SecretPair::new(current.expose(), previous.as_deref()).map_err(|e| format!("partners.{}: {e}", self.id))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn setting(&self, name: &str, default: &str) -> String {
        self.settings.get(name).cloned().unwrap_or_else(|| default.to_string())
    }
}

/// Builds the KYC vendor of a partner connection.
pub fn kyc(p: &PartnerConnection) -> Result<Arc<dyn KycVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    match p.vendor.as_str() {
        "onfido" => Ok(Arc::new(
            Onfido::new(OnfidoConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_token: p.secret("api_token")?,
                webhook_secret: p.webhook_secret()?,
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "sumsub" => Ok(Arc::new(
            Sumsub::new(SumsubConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                app_token: p.secret("app_token")?,
                secret_key: p.secret("secret_key")?,
                webhook_secret: p.webhook_secret()?,
                webhook_digest_alg: crate::kyc::sumsub::webhooks::digest_alg(
                    &p.setting("webhook_digest_alg", "HMAC_SHA256_HEX"),
                )
                .map_err(|e| format!("partners.{}.settings.webhook_digest_alg: {e}", p.id))?,
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no KYC vendor named {other:?} (onfido, sumsub)",
            p.id
        )),
    }
}

/// Builds the AML vendor of a partner connection.
pub fn aml(p: &PartnerConnection) -> Result<Arc<dyn AmlVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    match p.vendor.as_str() {
        "mesh" => Ok(Arc::new(
            Mesh::new(MeshConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                realm: p.setting("realm", "default"),
                username: p.secret("username")?,
                password: p.secret("password")?,
                screening_configuration: p.setting("screening_configuration", "default"),
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "watchman" => Ok(Arc::new(
            Watchman::new(WatchmanConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no AML vendor named {other:?} (mesh, watchman)",
            p.id
        )),
    }
}

/// Builds the payout vendor of a partner connection.
pub fn payouts(p: &PartnerConnection) -> Result<Arc<dyn PayoutVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    match p.vendor.as_str() {
        "wise" => Ok(Arc::new(
            Wise::new(WiseConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_token: p.secret("api_token")?,
                profile_id: p.setting("profile_id", ""),
                source_currency: p.setting("source_currency", ""),
                webhook_public_key: match p.optional_secret("webhook_public_key")? {
                    Some(b64) => Some(crate::signing::unb64(b64.trim()).ok_or_else(|| {
                        format!(
                            "partners.{}.secrets.webhook_public_key: not base64 (RSAPublicKey DER)",
                            p.id
                        )
                    })?),
                    None => None,
                },
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "stripe" => Ok(Arc::new(
            Stripe::new(StripeConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_key: p.secret("api_key")?,
                account: p.setting("account", ""),
                webhook_secret: match p.optional_secret("webhook_secret")? {
                    Some(current) => Some(
                        SecretPair::new(&current, p.optional_secret("webhook_secret_previous")?.as_deref())
                            .map_err(|e| format!("partners.{}: {e}", p.id))?,
                    ),
                    None => None,
                },
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no payout vendor named {other:?} (wise, stripe)",
            p.id
        )),
    }
}

/// Builds the card processor of a partner connection.
pub fn cards(p: &PartnerConnection) -> Result<Arc<dyn CardVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    match p.vendor.as_str() {
        "marqeta" => Ok(Arc::new(
            Marqeta::new(MarqetaConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                application_token: p.secret("application_token")?,
                admin_token: p.secret("admin_token")?,
                callback_username: p.setting("callback_username", "switchyard"),
                callback_password: p.secret("callback_password")?,
                webhook_secret: p.optional_secret("webhook_secret")?.map(Secret::new),
                default_product: p.setting("card_product", ""),
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "lithic" => Ok(Arc::new(
            Lithic::new(LithicConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_key: p.secret("api_key")?,
                asa_secret: p.secret("asa_secret")?,
                webhook_secret: p.secret("webhook_secret")?,
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no card processor named {other:?} (marqeta, lithic)",
            p.id
        )),
    }
}

/// Builds the open-banking provider of a partner connection.
pub fn openbanking(p: &PartnerConnection) -> Result<Arc<dyn OpenBankingVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    match p.vendor.as_str() {
        "truelayer" => Ok(Arc::new(
            TrueLayer::new(TrueLayerConfig {
                partner: p.id.clone(),
                auth_url: p.setting("auth_url", &p.base_url),
                api_url: p.base_url.clone(),
                hpp_url: p.setting("hpp_url", "https://payment.truelayer.com"),
                // Not a secret, but issued with one: a setting, or a reference beside the secret.
                client_id: p
                    .optional_secret("client_id")?
                    .unwrap_or_else(|| p.setting("client_id", "")),
                client_secret: p.secret("client_secret")?,
                signing_key: p.secret("signing_key")?,
                signing_kid: p.setting("signing_kid", ""),
                webhook_jku: p.setting("webhook_jku", "https://webhooks.truelayer.com/.well-known/jwks"),
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "plaid" => Ok(Arc::new(
            Plaid::new(PlaidConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                client_id: p
                    .optional_secret("client_id")?
                    .unwrap_or_else(|| p.setting("client_id", "")),
                secret: p.secret("secret")?,
                client_name: p.setting("client_name", "Switchyard"),
                country_codes: p
                    .setting("country_codes", "GB")
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
                webhook_url: p.setting("webhook_url", ""),
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no open-banking provider named {other:?} (truelayer, plaid)",
            p.id
        )),
    }
}

/// Builds the fraud-scoring vendor of a partner connection.
pub fn fraud(p: &PartnerConnection) -> Result<Arc<dyn FraudVendor>, String> {
    let err = |e: crate::VendorError| format!("partners.{}: {e}", p.id);
    let threshold = |name: &str, default: &str| -> Result<f64, String> {
        p.setting(name, default)
            .parse::<f64>()
            .map_err(|e| format!("partners.{}.settings.{name}: {e}", p.id))
    };
    match p.vendor.as_str() {
        "sift" => Ok(Arc::new(
            Sift::new(SiftConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_key: p.secret("api_key")?,
                review_at: threshold("review_at", "0.6")?,
                block_at: threshold("block_at", "0.9")?,
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        "seon" => Ok(Arc::new(
            Seon::new(SeonConfig {
                partner: p.id.clone(),
                base_url: p.base_url.clone(),
                api_key: p.secret("api_key")?,
                timeout: p.timeout(),
            })
            .map_err(err)?,
        )),
        other => Err(format!(
            "partners.{}.vendor: no fraud vendor named {other:?} (sift, seon)",
            p.id
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Partner credentials read from their references never show in a connection's or a vendor
    /// configuration's debug output (which start-up errors and traces may print).
    #[test]
    fn resolved_credentials_never_show_in_debug_output() {
        let file = std::env::temp_dir().join(format!("switchyard-secret-{}", std::process::id()));
        std::fs::write(&file, "s3cr3t-value-77\n").unwrap();
        let p = PartnerConnection {
            id: "aml-mesh".into(),
            vendor: "mesh".into(),
            base_url: "http://127.0.0.1:1".into(),
            timeout_ms: 1000,
            rate_limit_per_second: 0.0,
            secrets: ["username", "password"]
                .into_iter()
                .map(|k| (k.to_string(), format!("file:{}", file.display())))
                .collect(),
            settings: BTreeMap::new(),
        };
        let cfg = MeshConfig {
            partner: p.id.clone(),
            base_url: p.base_url.clone(),
            realm: "r".into(),
            username: p.secret("username").unwrap(),
            password: p.secret("password").unwrap(),
            screening_configuration: "c".into(),
            timeout: p.timeout(),
        };
        assert_eq!(cfg.password.expose(), "s3cr3t-value-77");
        let shown = format!("{p:?} {cfg:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(aml(&p).is_ok());
        let _ = std::fs::remove_file(file);
    }
}
