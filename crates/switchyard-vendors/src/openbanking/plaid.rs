//! Plaid-shaped open banking (API version 2020-09-14). Every call is a `POST` with
//! `PLAID-CLIENT-ID` / `PLAID-SECRET` and `Plaid-Version`. Consent: `/link/token/create` (a hosted
//! Link URL for the customer), then the public token Link hands back exchanged at
//! `/item/public_token/exchange` for an access token that does not expire (the item's consent may:
//! `/item/get`'s `consent_expiration_time`; re-consent through Link's update mode). Accounts and
//! balances: `/accounts/balance/get`; transactions: `/transactions/sync` with a cursor (`added`,
//! `modified`, `removed`, `has_more`), amounts positive for money **out**. Payments:
//! `/payment_initiation/recipient/create`, `/payment_initiation/payment/create` (no idempotency key:
//! our key goes in the reference, and an earlier attempt is found in `/payment_initiation/payment/list`
//! before anything is sent again), then the customer authorizes through Link. Webhooks carry
//! `Plaid-Verification`: an ES256 JWT (`iat`, `request_body_sha256`) signed with a key fetched by
//! its `kid` from `/webhook_verification_key/get`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_model::events::payouts::AccountScheme;
use switchyard_runtime::Secret;

use super::{
    BankAccount, BankTransaction, Connection, ConsentLink, ConsentRequest, Notice, OpenBankingVendor, PaymentOrder,
    PaymentOutcome, PaymentStatus, Refreshed, TransactionPage, TransactionStatus, minor,
};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send},
    kyc::WebhookRejection,
    signing::{Es, b64url, es_verify, jwk_point, sha256_hex, unb64url},
};

/// How old a webhook's `iat` may be.
pub const TOLERANCE_S: i64 = 300;

#[derive(Clone)]
pub struct PlaidConfig {
    pub partner: String,
    pub base_url: String,
    pub client_id: String,
    pub secret: Secret,
    pub client_name: String,
    pub country_codes: Vec<String>,
    /// Where Plaid sends this partner's webhooks.
    pub webhook_url: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for PlaidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaidConfig")
            .field("partner", &self.partner)
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub struct Plaid {
    cfg: PlaidConfig,
    http: reqwest::Client,
    /// Webhook verification keys by `kid`.
    keys: Mutex<HashMap<String, Vec<u8>>>,
}

/// Plaid's payment statuses, exhaustively.
fn status(s: &str) -> Option<(PaymentStatus, Option<&'static str>)> {
    use PaymentStatus as P;
    Some(match s {
        "PAYMENT_STATUS_INPUT_NEEDED" => (P::AwaitingAuthorization, None),
        "PAYMENT_STATUS_AUTHORISING"
        | "PAYMENT_STATUS_PROCESSING"
        | "PAYMENT_STATUS_ESTABLISHED"
        | "PAYMENT_STATUS_UNKNOWN" => (P::Pending, None),
        // In the EU, INITIATED can be the last status a successful payment reaches.
        "PAYMENT_STATUS_INITIATED" | "PAYMENT_STATUS_EXECUTED" => (P::Executed, None),
        "PAYMENT_STATUS_SETTLED" | "PAYMENT_STATUS_COMPLETED" => (P::Settled, None),
        "PAYMENT_STATUS_INSUFFICIENT_FUNDS" => (P::Failed, Some("insufficient_funds")),
        "PAYMENT_STATUS_BLOCKED" | "PAYMENT_STATUS_REJECTED" => (P::Failed, Some("rejected")),
        "PAYMENT_STATUS_CANCELLED" => (P::Failed, Some("cancelled")),
        "PAYMENT_STATUS_FAILED" => (P::Failed, Some("provider_error")),
        _ => return None,
    })
}

/// The reference a payment carries at Plaid: our key's first 16 hex digits (Plaid keeps 18
/// characters), found again by listing payments.
pub fn reference_of(key: &str) -> String {
    format!(
        "SY{}",
        key.strip_prefix("sy-")
            .unwrap_or(key)
            .chars()
            .take(16)
            .collect::<String>()
    )
    .to_uppercase()
}

#[derive(Deserialize)]
struct Balances {
    #[serde(default)]
    available: Option<serde_json::Number>,
    #[serde(default)]
    current: Option<serde_json::Number>,
    #[serde(default)]
    iso_currency_code: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    account_id: String,
    balances: Balances,
    #[serde(default)]
    mask: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Transaction {
    transaction_id: String,
    account_id: String,
    amount: serde_json::Number,
    #[serde(default)]
    iso_currency_code: Option<String>,
    date: String,
    #[serde(default)]
    authorized_date: Option<String>,
    pending: bool,
    name: String,
    #[serde(default)]
    pending_transaction_id: Option<String>,
}

#[derive(Deserialize)]
struct Removed {
    transaction_id: String,
}

#[derive(Deserialize)]
struct Sync {
    added: Vec<Transaction>,
    modified: Vec<Transaction>,
    removed: Vec<Removed>,
    next_cursor: String,
    has_more: bool,
}

#[derive(Deserialize)]
struct Payment {
    payment_id: String,
    status: String,
    #[serde(default)]
    reference: Option<String>,
}

impl Plaid {
    pub fn new(cfg: PlaidConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Plaid {
            cfg,
            http,
            keys: Mutex::new(HashMap::new()),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
        mutating: bool,
    ) -> Result<T, VendorError> {
        json(
            send(
                self.http
                    .post(format!("{}{path}", self.cfg.base_url))
                    .header("PLAID-CLIENT-ID", &self.cfg.client_id)
                    .header("PLAID-SECRET", self.cfg.secret.expose())
                    .header("Plaid-Version", "2020-09-14")
                    .json(&body),
                mutating,
            )
            .await?,
        )
        .await
    }

    fn link_body(&self, customer_key: &str, redirect_uri: &str) -> Value {
        json!({"client_name": self.cfg.client_name, "language": "en", "country_codes": self.cfg.country_codes,
            "user": {"client_user_id": customer_key}, "webhook": self.cfg.webhook_url,
            "redirect_uri": redirect_uri, "hosted_link": {}})
    }

    async fn link(&self, body: Value) -> Result<ConsentLink, VendorError> {
        let r: Value = self.call("/link/token/create", body, false).await?;
        Ok(ConsentLink {
            authorization_url: r["hosted_link_url"]
                .as_str()
                .ok_or_else(|| VendorError::Permanent("no hosted_link_url".into()))?
                .to_string(),
            provider_reference: r["link_token"]
                .as_str()
                .ok_or_else(|| VendorError::Permanent("no link_token".into()))?
                .to_string(),
            expires_at_ms: r["expiration"]
                .as_str()
                .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                .map(|d| d.timestamp_millis()),
        })
    }

    fn outcome(p: &Payment, authorization_url: Option<String>) -> Result<PaymentOutcome, VendorError> {
        let (s, reason) =
            status(&p.status).ok_or_else(|| VendorError::Permanent(format!("payment status {:?}", p.status)))?;
        Ok(PaymentOutcome {
            provider_reference: p.payment_id.clone(),
            status: s,
            authorization_url: authorization_url.filter(|_| s == PaymentStatus::AwaitingAuthorization),
            failure_reason: reason.map(str::to_string),
        })
    }

    async fn create(&self, o: &PaymentOrder, progress: Arc<dyn Progress>) -> Result<PaymentOutcome, VendorError> {
        let recipient = match progress.get("recipient_id") {
            Some(r) => r,
            None => {
                let mut body = json!({"name": o.beneficiary_name});
                match o.beneficiary.scheme {
                    AccountScheme::Iban => body["iban"] = json!(o.beneficiary.value),
                    AccountScheme::SortCodeAccount => {
                        body["bacs"] = json!({"account": o.beneficiary.value, "sort_code": o.beneficiary.bank_code});
                    }
                    other => return Err(VendorError::Permanent(format!("{other:?} accounts are not paid here"))),
                }
                let r: Value = self.call("/payment_initiation/recipient/create", body, true).await?;
                let id = r["recipient_id"]
                    .as_str()
                    .ok_or_else(|| VendorError::Permanent("no recipient_id".into()))?
                    .to_string();
                progress.note("recipient_id", &id).await?;
                id
            }
        };
        let value = crate::decimal::major_amount(o.amount.amount_minor, &o.amount.currency)?;
        let created: Payment = self
            .call(
                "/payment_initiation/payment/create",
                json!({"recipient_id": recipient, "reference": reference_of(&o.idempotency_key),
                    "amount": {"currency": o.amount.currency, "value": value}}),
                true,
            )
            .await?;
        progress.note("payment_id", &created.payment_id).await?;
        self.authorize_link(o, created).await
    }

    /// The payment, with a Link for the customer to authorize it while it waits for them.
    async fn authorize_link(&self, o: &PaymentOrder, p: Payment) -> Result<PaymentOutcome, VendorError> {
        let url = if status(&p.status).map(|s| s.0) == Some(PaymentStatus::AwaitingAuthorization) {
            let mut body = self.link_body(&o.customer_key, &o.redirect_uri);
            body["products"] = json!(["payment_initiation"]);
            body["payment_initiation"] = json!({"payment_id": p.payment_id});
            Some(self.link(body).await?.authorization_url)
        } else {
            None
        };
        Self::outcome(&p, url)
    }

    async fn lookup(
        &self,
        o: &PaymentOrder,
        progress: Arc<dyn Progress>,
    ) -> Result<Recovery<PaymentOutcome>, VendorError> {
        if let Some(id) = progress.get("payment_id") {
            let p: Payment = self
                .call("/payment_initiation/payment/get", json!({"payment_id": id}), false)
                .await?;
            return Ok(Recovery::Found(self.authorize_link(o, p).await?));
        }
        let ours = reference_of(&o.idempotency_key);
        let mut found: Vec<Payment> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({"count": 200});
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let r: Value = self.call("/payment_initiation/payment/list", body, false).await?;
            for p in r["payments"].as_array().cloned().unwrap_or_default() {
                if let Ok(p) = serde_json::from_value::<Payment>(p)
                    && p.reference.as_deref() == Some(ours.as_str())
                {
                    found.push(p);
                }
            }
            cursor = r["next_cursor"].as_str().filter(|c| !c.is_empty()).map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        match found.len() {
            0 => Ok(Recovery::SendAgain),
            1 => Ok(Recovery::Found(self.authorize_link(o, found.remove(0)).await?)),
            // Two payments under one key: an operator decides.
            _ => Ok(Recovery::Unknowable),
        }
    }

    async fn sync(&self, c: &Connection, cursor: Option<&str>) -> Result<TransactionPage, VendorError> {
        let mut body = json!({"access_token": c.access_token, "count": 100});
        if let Some(cur) = cursor {
            body["cursor"] = json!(cur);
        }
        let s: Sync = self.call("/transactions/sync", body, false).await?;
        let date = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        let mut page = TransactionPage {
            removed: s.removed.into_iter().map(|r| r.transaction_id).collect(),
            cursor: Some(s.next_cursor),
            has_more: s.has_more,
            ..TransactionPage::default()
        };
        for t in s.added.into_iter().chain(s.modified) {
            let currency = t.iso_currency_code.clone().unwrap_or_else(|| "USD".into());
            let out =
                minor(&t.amount, &currency).map_err(|e| VendorError::Permanent(format!("transaction amount: {e}")))?;
            page.transactions.push(BankTransaction {
                transaction_id: t.transaction_id,
                account_id: t.account_id,
                // Plaid counts money out as positive.
                amount_minor: -out,
                currency,
                status: if t.pending {
                    TransactionStatus::Pending
                } else {
                    TransactionStatus::Booked
                },
                booking_date: if t.pending { None } else { date(&t.date) },
                value_date: t.authorized_date.as_deref().and_then(date).or_else(|| date(&t.date)),
                description: t.name,
                replaces: t.pending_transaction_id,
            });
        }
        Ok(page)
    }

    async fn key(&self, kid: &str) -> Result<Vec<u8>, WebhookRejection> {
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(kid).cloned()) {
            return Ok(k);
        }
        let r: Value = self
            .call("/webhook_verification_key/get", json!({"key_id": kid}), false)
            .await
            .map_err(|e| WebhookRejection::Malformed(format!("verification key not fetched: {e}")))?;
        let k = &r["key"];
        if !k["expired_at"].is_null() {
            return Err(WebhookRejection::BadSignature);
        }
        let point = match (k["x"].as_str(), k["y"].as_str()) {
            (Some(x), Some(y)) => jwk_point(Es::Es256, x, y),
            _ => None,
        }
        .ok_or(WebhookRejection::BadSignature)?;
        if let Ok(mut m) = self.keys.lock() {
            m.insert(kid.to_string(), point.clone());
        }
        Ok(point)
    }

    async fn verify(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Notice, WebhookRejection> {
        let jwt = headers
            .get("plaid-verification")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookRejection::MissingSignature)?;
        let mut parts = jwt.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(WebhookRejection::Malformed("Plaid-Verification is not a JWT".into()));
        };
        let header: Value = unb64url(h64)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| WebhookRejection::Malformed("JWT header".into()))?;
        if header["alg"] != "ES256" {
            return Err(WebhookRejection::BadSignature);
        }
        let kid = header["kid"].as_str().ok_or(WebhookRejection::BadSignature)?;
        let key = self.key(kid).await?;
        let sig = unb64url(s64).ok_or(WebhookRejection::BadSignature)?;
        if !es_verify(Es::Es256, &key, format!("{h64}.{p64}").as_bytes(), &sig) {
            return Err(WebhookRejection::BadSignature);
        }
        let claims: Value = unb64url(p64)
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| WebhookRejection::Malformed("JWT claims".into()))?;
        if claims["request_body_sha256"].as_str() != Some(sha256_hex(body).as_str()) {
            return Err(WebhookRejection::BadSignature);
        }
        let iat = claims["iat"].as_i64().ok_or(WebhookRejection::BadSignature)?;
        if (now_ms / 1000 - iat).abs() > TOLERANCE_S {
            return Err(WebhookRejection::Stale);
        }
        let e: Value = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
        // Plaid's webhooks carry no id of their own: the body's digest names a delivery.
        let event_id = sha256_hex(body)[..32].to_string();
        let item = e["item_id"].as_str().unwrap_or_default().to_string();
        match (e["webhook_type"].as_str(), e["webhook_code"].as_str()) {
            (Some("PAYMENT_INITIATION"), Some("PAYMENT_STATUS_UPDATE")) => {
                let (s, reason) = e["new_payment_status"]
                    .as_str()
                    .and_then(status)
                    .ok_or_else(|| WebhookRejection::Malformed("new_payment_status".into()))?;
                Ok(Notice::Payment {
                    event_id,
                    provider_reference: e["payment_id"]
                        .as_str()
                        .ok_or_else(|| WebhookRejection::Malformed("payment_id".into()))?
                        .to_string(),
                    status: s,
                    failure_reason: reason.map(str::to_string),
                    occurred_at_ms: e["timestamp"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp_millis())
                        .unwrap_or(iat * 1000),
                })
            }
            (Some("TRANSACTIONS"), Some("SYNC_UPDATES_AVAILABLE")) => Ok(Notice::TransactionsAvailable {
                event_id,
                connection: item,
            }),
            (Some("ITEM"), Some("PENDING_EXPIRATION" | "PENDING_DISCONNECT" | "USER_PERMISSION_REVOKED")) => {
                Ok(Notice::ConsentExpiring {
                    event_id,
                    connection: item,
                    expires_at_ms: e["consent_expiration_time"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.timestamp_millis()),
                })
            }
            (t, c) => Err(WebhookRejection::Malformed(format!("webhook {t:?}/{c:?} is not taken"))),
        }
    }
}

impl OpenBankingVendor for Plaid {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn consent_link<'a>(&'a self, req: &'a ConsentRequest) -> BoxFuture<'a, Result<ConsentLink, VendorError>> {
        Box::pin(async move {
            let mut body = self.link_body(&req.customer_key, &req.redirect_uri);
            body["products"] = json!(["transactions"]);
            if let Some(i) = &req.institution_id {
                body["institution_id"] = json!(i);
            }
            self.link(body).await
        })
    }

    fn complete<'a>(&'a self, _: &'a ConsentRequest, code: &'a str) -> BoxFuture<'a, Result<Connection, VendorError>> {
        Box::pin(async move {
            let r: Value = self
                .call("/item/public_token/exchange", json!({"public_token": code}), false)
                .await?;
            let access = r["access_token"]
                .as_str()
                .ok_or_else(|| VendorError::Permanent("no access_token".into()))?
                .to_string();
            let item: Value = self.call("/item/get", json!({"access_token": access}), false).await?;
            Ok(Connection {
                access_token: access,
                refresh_token: None,
                access_expires_at_ms: None,
                consent_expires_at_ms: item["item"]["consent_expiration_time"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis()),
                provider_reference: r["item_id"].as_str().map(str::to_string),
                scopes: item["item"]["products"]
                    .as_array()
                    .map(|p| p.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            })
        })
    }

    fn refresh<'a>(
        &'a self,
        req: &'a ConsentRequest,
        c: &'a Connection,
    ) -> BoxFuture<'a, Result<Refreshed, VendorError>> {
        Box::pin(async move {
            // Access tokens do not expire; a consent that does is renewed through Link's update mode.
            let mut body = self.link_body(&req.customer_key, &req.redirect_uri);
            body["access_token"] = json!(c.access_token);
            Ok(Refreshed::Reconsent(self.link(body).await?))
        })
    }

    fn revoke<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            let _: Value = self
                .call("/item/remove", json!({"access_token": c.access_token}), false)
                .await?;
            Ok(())
        })
    }

    fn accounts<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<Vec<BankAccount>, VendorError>> {
        Box::pin(async move {
            let r: Value = self
                .call("/accounts/balance/get", json!({"access_token": c.access_token}), false)
                .await?;
            let accounts: Vec<Account> = serde_json::from_value(r["accounts"].clone())
                .map_err(|e| VendorError::Permanent(format!("accounts: {e}")))?;
            accounts
                .into_iter()
                .map(|a| {
                    let currency = a.balances.iso_currency_code.clone().unwrap_or_else(|| "USD".into());
                    let m = |n: &Option<serde_json::Number>| {
                        n.as_ref()
                            .map(|v| minor(v, &currency))
                            .transpose()
                            .map_err(|e| VendorError::Permanent(format!("balance: {e}")))
                    };
                    Ok(BankAccount {
                        current_minor: m(&a.balances.current)?,
                        available_minor: m(&a.balances.available)?,
                        kind: match a.kind.as_str() {
                            "depository" => "current",
                            "credit" => "credit_card",
                            "loan" => "loan",
                            _ => "other",
                        }
                        .to_string(),
                        number_last4: a.mask.filter(|m| m.len() == 4),
                        account_id: a.account_id,
                        name: a.name,
                        currency,
                    })
                })
                .collect()
        })
    }

    fn transactions<'a>(
        &'a self,
        c: &'a Connection,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TransactionPage, VendorError>> {
        Box::pin(self.sync(c, cursor))
    }

    fn pay<'a>(
        &'a self,
        order: &'a PaymentOrder,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>> {
        Box::pin(self.create(order, progress))
    }

    fn find<'a>(
        &'a self,
        order: &'a PaymentOrder,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PaymentOutcome>, VendorError>> {
        Box::pin(self.lookup(order, progress))
    }

    fn payment<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>> {
        Box::pin(async move {
            let p: Payment = self
                .call(
                    "/payment_initiation/payment/get",
                    json!({"payment_id": provider_reference}),
                    false,
                )
                .await?;
            Self::outcome(&p, None)
        })
    }

    fn verify_webhook<'a>(
        &'a self,
        headers: &'a reqwest::header::HeaderMap,
        _path: &'a str,
        body: &'a [u8],
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Notice, WebhookRejection>> {
        Box::pin(self.verify(headers, body, now_ms))
    }
}

/// A JWT as Plaid signs its webhooks (ES256 over `header.claims`): what a simulator does.
pub fn sign_webhook(private_key_pkcs8: &[u8], kid: &str, body: &[u8], iat: i64) -> Result<String, String> {
    let header = b64url(json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string().as_bytes());
    let claims = b64url(
        json!({"iat": iat, "request_body_sha256": sha256_hex(body)})
            .to_string()
            .as_bytes(),
    );
    let (sig, _) = crate::signing::es_sign(Es::Es256, private_key_pkcs8, format!("{header}.{claims}").as_bytes())?;
    Ok(format!("{header}.{claims}.{}", b64url(&sig)))
}
