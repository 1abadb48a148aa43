//! TrueLayer-shaped open banking. Account information: the customer consents at the auth link
//! (`response_type=code`, scopes `info accounts balance transactions offline_access`, our consent id
//! as `state`); the code is exchanged at `/connect/token` for an access token (about an hour) and a
//! refresh token; `/data/v1/accounts`, `/balance`, `/transactions` (and `/transactions/pending`)
//! with decimal, signed amounts. Payments (v3): a `client_credentials` token, then
//! `POST /v3/payments` with an `Idempotency-Key` (kept 30 days: a re-send answers the same payment;
//! 409 while the first is in flight) and `Tl-Signature`, a detached JWS (ES512 on P-521, header
//! `{alg, kid, tl_version: "2", tl_headers}`) over `POST /v3/payments\nIdempotency-Key: …\n<body>`.
//! The customer authorizes on the hosted payment page. Statuses: authorization_required,
//! authorizing, authorized, executed, settled, failed. Webhooks carry the same `Tl-Signature`,
//! signed by TrueLayer with a key from the JWKS at its `jku` (allow-listed), over the webhook's
//! method, path, `X-Tl-Webhook-Timestamp` and body.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use switchyard_model::events::payouts::AccountScheme;
use switchyard_runtime::Secret;

use super::{
    BankAccount, BankTransaction, Connection, ConsentLink, ConsentRequest, Notice, OpenBankingVendor, PaymentOrder,
    PaymentOutcome, PaymentStatus, Refreshed, TransactionPage, TransactionStatus, last4, minor,
};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send, send_accepting},
    kyc::{REPLAY_WINDOW_MS, WebhookRejection},
    signing::{Es, b64url, es_sign, es_verify, jwk_point, unb64url},
};

#[derive(Clone)]
pub struct TrueLayerConfig {
    pub partner: String,
    /// The auth server (`https://auth.truelayer.com`): the consent link and `/connect/token`.
    pub auth_url: String,
    /// The API (`https://api.truelayer.com`): `/data/v1`, `/v3/payments`.
    pub api_url: String,
    /// The hosted payment page.
    pub hpp_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Our request-signing key (PKCS#8 DER, P-521) and its id at TrueLayer.
    pub signing_key: Secret,
    pub signing_kid: String,
    /// The only JWKS URL a webhook's `jku` may name.
    pub webhook_jku: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for TrueLayerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrueLayerConfig")
            .field("partner", &self.partner)
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub struct TrueLayer {
    cfg: TrueLayerConfig,
    signing_key: Vec<u8>,
    http: reqwest::Client,
    /// The payments token and when it expires.
    token: Mutex<Option<(String, Instant)>>,
    /// Webhook keys by `kid` (public points), from the allowed JWKS.
    keys: Mutex<HashMap<String, Vec<u8>>>,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Results<T> {
    results: Vec<T>,
}

#[derive(Deserialize)]
struct AccountNumber {
    #[serde(default)]
    iban: Option<String>,
    #[serde(default)]
    number: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    account_id: String,
    account_type: String,
    display_name: String,
    currency: String,
    #[serde(default)]
    account_number: Option<AccountNumber>,
}

#[derive(Deserialize)]
struct Balance {
    currency: String,
    #[serde(default)]
    available: Option<serde_json::Number>,
    current: serde_json::Number,
}

#[derive(Deserialize)]
struct Transaction {
    transaction_id: String,
    timestamp: String,
    description: String,
    amount: serde_json::Number,
    currency: String,
}

#[derive(Deserialize)]
struct Payment {
    id: String,
    status: String,
    #[serde(default)]
    resource_token: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
}

/// TrueLayer's payment statuses, exhaustively.
fn status(s: &str) -> Option<PaymentStatus> {
    Some(match s {
        "authorization_required" => PaymentStatus::AwaitingAuthorization,
        "authorizing" | "authorized" => PaymentStatus::Pending,
        "executed" => PaymentStatus::Executed,
        "settled" => PaymentStatus::Settled,
        "failed" => PaymentStatus::Failed,
        _ => return None,
    })
}

fn failure_reason(r: Option<&str>) -> Option<String> {
    r.map(|r| {
        match r {
            "authorization_failed" | "rejected" | "blocked" => "rejected",
            "insufficient_funds" => "insufficient_funds",
            "canceled" | "cancelled" | "user_canceled_at_provider" => "cancelled",
            "expired" | "authorization_expired" => "expired",
            "provider_error" | "provider_rejected" | "scheme_unavailable" => "provider_error",
            _ => "other",
        }
        .to_string()
    })
}

fn kind(t: &str) -> &'static str {
    match t {
        "TRANSACTION" => "current",
        "SAVINGS" => "savings",
        _ => "other",
    }
}

impl TrueLayer {
    pub fn new(cfg: TrueLayerConfig) -> Result<Self, VendorError> {
        let signing_key = crate::signing::unb64(cfg.signing_key.expose().trim())
            .ok_or_else(|| VendorError::Permanent("secrets.signing_key: not base64 (PKCS#8 DER, P-521)".into()))?;
        // A key that cannot sign is a configuration error now, not at the first payment.
        es_sign(Es::Es512, &signing_key, b"probe")
            .map_err(|e| VendorError::Permanent(format!("secrets.signing_key: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(TrueLayer {
            cfg,
            signing_key,
            http,
            token: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
        })
    }

    fn tokens(t: Token, consent_expires_at_ms: Option<i64>) -> Connection {
        Connection {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            access_expires_at_ms: Some(chrono::Utc::now().timestamp_millis() + t.expires_in as i64 * 1000),
            // 90 days of access from the consent (the regulation's reconfirmation period).
            consent_expires_at_ms,
            provider_reference: None,
            scopes: t
                .scope
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    async fn grant(&self, form: &[(&str, &str)]) -> Result<reqwest::Response, VendorError> {
        send_accepting(
            self.http
                .post(format!("{}/connect/token", self.cfg.auth_url))
                .form(form),
            false,
            &[400],
        )
        .await
    }

    async fn payments_token(&self) -> Result<String, VendorError> {
        if let Ok(g) = self.token.lock()
            && let Some((t, until)) = g.as_ref()
            && Instant::now() + Duration::from_secs(30) < *until
        {
            return Ok(t.clone());
        }
        let resp = self
            .grant(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.cfg.client_id),
                ("client_secret", self.cfg.client_secret.expose()),
                ("scope", "payments"),
            ])
            .await?;
        if resp.status().as_u16() == 400 {
            return Err(VendorError::Auth("client credentials refused".into()));
        }
        let t: Token = json(resp).await?;
        if let Ok(mut g) = self.token.lock() {
            *g = Some((
                t.access_token.clone(),
                Instant::now() + Duration::from_secs(t.expires_in),
            ));
        }
        Ok(t.access_token)
    }

    fn data(&self, c: &Connection, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/data/v1{path}", self.cfg.api_url))
            .bearer_auth(&c.access_token)
    }

    /// `Tl-Signature` for a request: a detached ES512 JWS over its method, path, `Idempotency-Key`
    /// and body.
    fn sign(&self, method: &str, path: &str, key: &str, body: &str) -> Result<String, VendorError> {
        let header =
            json!({"alg": "ES512", "kid": self.cfg.signing_kid, "tl_version": "2", "tl_headers": "Idempotency-Key"});
        let h = b64url(header.to_string().as_bytes());
        let payload = format!("{method} {path}\nIdempotency-Key: {key}\n{body}");
        let input = format!("{h}.{}", b64url(payload.as_bytes()));
        let (sig, _) = es_sign(Es::Es512, &self.signing_key, input.as_bytes()).map_err(VendorError::Permanent)?;
        Ok(format!("{h}..{}", b64url(&sig)))
    }

    fn outcome(&self, p: &Payment, redirect_uri: Option<&str>) -> Result<PaymentOutcome, VendorError> {
        let status =
            status(&p.status).ok_or_else(|| VendorError::Permanent(format!("payment status {:?}", p.status)))?;
        let authorization_url = match (status, &p.resource_token, redirect_uri) {
            (PaymentStatus::AwaitingAuthorization, Some(token), Some(back)) => reqwest::Url::parse_with_params(
                &format!("{}/", self.cfg.hpp_url),
                &[
                    ("payment_id", p.id.as_str()),
                    ("resource_token", token),
                    ("return_uri", back),
                ],
            )
            .ok()
            .map(|u| u.to_string()),
            _ => None,
        };
        Ok(PaymentOutcome {
            provider_reference: p.id.clone(),
            status,
            authorization_url,
            failure_reason: (status == PaymentStatus::Failed)
                .then(|| failure_reason(p.failure_reason.as_deref()).unwrap_or_else(|| "other".into())),
        })
    }

    async fn create(&self, o: &PaymentOrder) -> Result<PaymentOutcome, VendorError> {
        let token = self.payments_token().await?;
        let identifier = match o.beneficiary.scheme {
            AccountScheme::Iban => json!({"type": "iban", "iban": o.beneficiary.value}),
            AccountScheme::SortCodeAccount => json!({"type": "sort_code_account_number",
                "sort_code": o.beneficiary.bank_code, "account_number": o.beneficiary.value}),
            other => {
                return Err(VendorError::Permanent(format!(
                    "{other:?} accounts are not paid by bank transfer here"
                )));
            }
        };
        let body = json!({
            "amount_in_minor": o.amount.amount_minor,
            "currency": o.amount.currency,
            "payment_method": {"type": "bank_transfer", "provider_selection": {"type": "user_selected"},
                "beneficiary": {"type": "external_account", "account_holder_name": o.beneficiary_name,
                    "account_identifier": identifier, "reference": o.reference.chars().take(18).collect::<String>()}},
            "user": {"id": o.customer_key},
            "metadata": {"payment_id": o.payment_id},
        })
        .to_string();
        let signature = self.sign("POST", "/v3/payments", &o.idempotency_key, &body)?;
        let resp = send_accepting(
            self.http
                .post(format!("{}/v3/payments", self.cfg.api_url))
                .bearer_auth(token)
                .header("Idempotency-Key", &o.idempotency_key)
                .header("Tl-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body),
            true,
            &[409],
        )
        .await?;
        if resp.status().as_u16() == 409 {
            // The same key is still being processed: nothing new was made; ask again later.
            return Err(VendorError::Transient(
                "409: a request with this key is in flight".into(),
            ));
        }
        let p: Payment = json(resp).await?;
        self.outcome(&p, Some(&o.redirect_uri))
    }

    async fn get_payment(&self, id: &str) -> Result<PaymentOutcome, VendorError> {
        let token = self.payments_token().await?;
        let p: Payment = json(
            send(
                self.http
                    .get(format!("{}/v3/payments/{id}", self.cfg.api_url))
                    .bearer_auth(token),
                false,
            )
            .await?,
        )
        .await?;
        self.outcome(&p, None)
    }

    async fn fetch_accounts(&self, c: &Connection) -> Result<Vec<BankAccount>, VendorError> {
        let accounts: Results<Account> = json(send(self.data(c, "/accounts"), false).await?).await?;
        let mut out = Vec::with_capacity(accounts.results.len());
        for a in accounts.results {
            let b: Results<Balance> =
                json(send(self.data(c, &format!("/accounts/{}/balance", a.account_id)), false).await?).await?;
            let b = b.results.into_iter().next();
            let bad = |e: String| VendorError::Permanent(format!("balance: {e}"));
            out.push(BankAccount {
                number_last4: last4(
                    a.account_number
                        .as_ref()
                        .and_then(|n| n.iban.as_deref().or(n.number.as_deref())),
                ),
                current_minor: b
                    .as_ref()
                    .map(|b| minor(&b.current, &b.currency))
                    .transpose()
                    .map_err(bad)?,
                available_minor: b
                    .as_ref()
                    .and_then(|b| b.available.as_ref().map(|v| minor(v, &b.currency)))
                    .transpose()
                    .map_err(bad)?,
                kind: kind(&a.account_type).to_string(),
                name: a.display_name,
                currency: a.currency,
                account_id: a.account_id,
            });
        }
        Ok(out)
    }

    async fn fetch_transactions(&self, c: &Connection, cursor: Option<&str>) -> Result<TransactionPage, VendorError> {
        let today = chrono::Utc::now().date_naive();
        let from = cursor
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .unwrap_or(today - chrono::Days::new(90));
        let accounts: Results<Account> = json(send(self.data(c, "/accounts"), false).await?).await?;
        let mut page = TransactionPage::default();
        for a in &accounts.results {
            for (path, state) in [
                (
                    format!("/accounts/{}/transactions?from={from}&to={today}", a.account_id),
                    TransactionStatus::Booked,
                ),
                (
                    format!("/accounts/{}/transactions/pending", a.account_id),
                    TransactionStatus::Pending,
                ),
            ] {
                let r: Results<Transaction> = json(send(self.data(c, &path), false).await?).await?;
                for t in r.results {
                    let date = chrono::DateTime::parse_from_rfc3339(&t.timestamp)
                        .map(|d| d.date_naive())
                        .map_err(|e| VendorError::Permanent(format!("transaction timestamp: {e}")))?;
                    page.transactions.push(BankTransaction {
                        amount_minor: minor(&t.amount, &t.currency)
                            .map_err(|e| VendorError::Permanent(format!("transaction amount: {e}")))?,
                        transaction_id: t.transaction_id,
                        account_id: a.account_id.clone(),
                        currency: t.currency,
                        status: state,
                        booking_date: (state == TransactionStatus::Booked).then_some(date),
                        value_date: Some(date),
                        description: t.description,
                        replaces: None,
                    });
                }
            }
        }
        // Next time from three days back: late bookings are fetched again, kept once by id.
        page.cursor = Some((today - chrono::Days::new(3)).to_string());
        Ok(page)
    }

    /// The public point of webhook key `kid`, from the allowed JWKS (fetched again when unknown).
    async fn webhook_key(&self, kid: &str) -> Result<Vec<u8>, WebhookRejection> {
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(kid).cloned()) {
            return Ok(k);
        }
        let jwks: serde_json::Value = self
            .http
            .get(&self.cfg.webhook_jku)
            .send()
            .await
            .map_err(|e| WebhookRejection::Malformed(format!("JWKS not fetched: {}", e.without_url())))?
            .json()
            .await
            .map_err(|e| WebhookRejection::Malformed(format!("JWKS: {e}")))?;
        let mut found = None;
        if let (Ok(mut m), Some(keys)) = (self.keys.lock(), jwks["keys"].as_array()) {
            for k in keys {
                let (Some(id), Some(x), Some(y)) = (k["kid"].as_str(), k["x"].as_str(), k["y"].as_str()) else {
                    continue;
                };
                if let Some(p) = jwk_point(Es::Es512, x, y) {
                    if id == kid {
                        found = Some(p.clone());
                    }
                    m.insert(id.to_string(), p);
                }
            }
        }
        found.ok_or(WebhookRejection::BadSignature)
    }

    async fn verify(
        &self,
        headers: &reqwest::header::HeaderMap,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Notice, WebhookRejection> {
        let sig = headers
            .get("tl-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookRejection::MissingSignature)?;
        let (h64, s64) = sig
            .split_once("..")
            .ok_or_else(|| WebhookRejection::Malformed("Tl-Signature is not a detached JWS".into()))?;
        let header: serde_json::Value = unb64url(h64)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| WebhookRejection::Malformed("JWS header".into()))?;
        if header["alg"] != "ES512" || header["jku"] != self.cfg.webhook_jku.as_str() {
            return Err(WebhookRejection::BadSignature);
        }
        let kid = header["kid"].as_str().ok_or(WebhookRejection::BadSignature)?;
        let mut payload = format!("POST {path}\n");
        for name in header["tl_headers"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
        {
            let v = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(WebhookRejection::BadSignature)?;
            payload.push_str(&format!("{name}: {v}\n"));
        }
        let mut signed = payload.into_bytes();
        signed.extend_from_slice(body);
        let input = format!("{h64}.{}", b64url(&signed));
        let signature = unb64url(s64).ok_or(WebhookRejection::BadSignature)?;
        let key = self.webhook_key(kid).await?;
        if !es_verify(Es::Es512, &key, input.as_bytes(), &signature) {
            return Err(WebhookRejection::BadSignature);
        }
        let at = headers
            .get("x-tl-webhook-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| WebhookRejection::Malformed("X-Tl-Webhook-Timestamp".into()))?;
        if now_ms - at > REPLAY_WINDOW_MS {
            return Err(WebhookRejection::Stale);
        }
        let e: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
        let event_id = e["event_id"].as_str().unwrap_or_default().to_string();
        let kind = e["type"].as_str().unwrap_or_default();
        let s = match kind {
            "payment_authorized" => PaymentStatus::Pending,
            "payment_executed" => PaymentStatus::Executed,
            "payment_settled" => PaymentStatus::Settled,
            "payment_failed" => PaymentStatus::Failed,
            other => {
                return Err(WebhookRejection::Malformed(format!(
                    "event type {other:?} is not taken"
                )));
            }
        };
        Ok(Notice::Payment {
            event_id,
            provider_reference: e["payment_id"]
                .as_str()
                .ok_or_else(|| WebhookRejection::Malformed("payment_id".into()))?
                .to_string(),
            status: s,
            failure_reason: (s == PaymentStatus::Failed)
                .then(|| failure_reason(e["failure_reason"].as_str()).unwrap_or_else(|| "other".into())),
            occurred_at_ms: at,
        })
    }
}

impl OpenBankingVendor for TrueLayer {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn consent_link<'a>(&'a self, req: &'a ConsentRequest) -> BoxFuture<'a, Result<ConsentLink, VendorError>> {
        Box::pin(async move {
            let mut params = vec![
                ("response_type", "code"),
                ("client_id", self.cfg.client_id.as_str()),
                ("redirect_uri", req.redirect_uri.as_str()),
                ("scope", "info accounts balance transactions offline_access"),
                ("state", req.consent_id.as_str()),
            ];
            if let Some(p) = &req.institution_id {
                params.push(("providers", p.as_str()));
            }
            let url = reqwest::Url::parse_with_params(&format!("{}/", self.cfg.auth_url), &params)
                .map_err(|e| VendorError::Permanent(format!("auth link: {e}")))?;
            Ok(ConsentLink {
                authorization_url: url.to_string(),
                provider_reference: req.consent_id.clone(),
                expires_at_ms: None,
            })
        })
    }

    fn complete<'a>(
        &'a self,
        req: &'a ConsentRequest,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Connection, VendorError>> {
        Box::pin(async move {
            let resp = self
                .grant(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", &self.cfg.client_id),
                    ("client_secret", self.cfg.client_secret.expose()),
                    ("redirect_uri", &req.redirect_uri),
                    ("code", code),
                ])
                .await?;
            if resp.status().as_u16() == 400 {
                return Err(VendorError::Permanent(
                    "the authorization code was refused (used, expired or unknown)".into(),
                ));
            }
            let t: Token = json(resp).await?;
            let consent_until = chrono::Utc::now().timestamp_millis() + 90 * 24 * 3600 * 1000;
            Ok(Self::tokens(t, Some(consent_until)))
        })
    }

    fn refresh<'a>(
        &'a self,
        req: &'a ConsentRequest,
        c: &'a Connection,
    ) -> BoxFuture<'a, Result<Refreshed, VendorError>> {
        Box::pin(async move {
            let Some(refresh) = c.refresh_token.as_deref() else {
                return Ok(Refreshed::Reconsent(self.consent_link(req).await?));
            };
            let resp = self
                .grant(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", &self.cfg.client_id),
                    ("client_secret", self.cfg.client_secret.expose()),
                    ("refresh_token", refresh),
                ])
                .await?;
            if resp.status().as_u16() == 400 {
                // invalid_grant: the consent is gone or expired; the customer must consent again.
                return Ok(Refreshed::Reconsent(self.consent_link(req).await?));
            }
            let t: Token = json(resp).await?;
            Ok(Refreshed::Connection(Self::tokens(t, c.consent_expires_at_ms)))
        })
    }

    fn revoke<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            send_accepting(
                self.http
                    .delete(format!("{}/api/delete", self.cfg.auth_url))
                    .bearer_auth(&c.access_token),
                false,
                &[401],
            )
            .await?;
            Ok(())
        })
    }

    fn accounts<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<Vec<BankAccount>, VendorError>> {
        Box::pin(self.fetch_accounts(c))
    }

    fn transactions<'a>(
        &'a self,
        c: &'a Connection,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TransactionPage, VendorError>> {
        Box::pin(self.fetch_transactions(c, cursor))
    }

    fn pay<'a>(
        &'a self,
        order: &'a PaymentOrder,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>> {
        Box::pin(self.create(order))
    }

    fn find<'a>(
        &'a self,
        _: &'a PaymentOrder,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PaymentOutcome>, VendorError>> {
        // The Idempotency-Key is kept 30 days: a re-send with it answers the payment already made.
        Box::pin(async { Ok(Recovery::SendAgain) })
    }

    fn payment<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>> {
        Box::pin(self.get_payment(provider_reference))
    }

    fn verify_webhook<'a>(
        &'a self,
        headers: &'a reqwest::header::HeaderMap,
        path: &'a str,
        body: &'a [u8],
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Notice, WebhookRejection>> {
        Box::pin(self.verify(headers, path, body, now_ms))
    }
}

/// A webhook's `Tl-Signature` as TrueLayer makes it (ES512, its JWKS at `jku`): what a simulator
/// does.
pub fn sign_webhook(
    private_key_pkcs8: &[u8],
    kid: &str,
    jku: &str,
    path: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<String, String> {
    let header =
        json!({"alg": "ES512", "kid": kid, "tl_version": "2", "tl_headers": "X-Tl-Webhook-Timestamp", "jku": jku});
    let h = b64url(header.to_string().as_bytes());
    let mut payload = format!("POST {path}\nX-Tl-Webhook-Timestamp: {timestamp}\n").into_bytes();
    payload.extend_from_slice(body);
    let (sig, _) = es_sign(
        Es::Es512,
        private_key_pkcs8,
        format!("{h}.{}", b64url(&payload)).as_bytes(),
    )?;
    Ok(format!("{h}..{}", b64url(&sig)))
}

/// Verifies a request's `Tl-Signature` (ours, made by [`TrueLayer`]) with our public point: what
/// the payments API does; simulators only. The signed headers are taken from `headers` by name.
pub fn verify_request(
    public_point: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    signature: &str,
) -> bool {
    let Some((h64, s64)) = signature.split_once("..") else {
        return false;
    };
    let Some(header) = unb64url(h64).and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok()) else {
        return false;
    };
    if header["alg"] != "ES512" || header["tl_version"] != "2" {
        return false;
    }
    let mut payload = format!("{method} {path}\n");
    for name in header["tl_headers"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
    {
        let Some((_, v)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
            return false;
        };
        payload.push_str(&format!("{name}: {v}\n"));
    }
    let mut signed = payload.into_bytes();
    signed.extend_from_slice(body);
    unb64url(s64).is_some_and(|sig| {
        es_verify(
            Es::Es512,
            public_point,
            format!("{h64}.{}", b64url(&signed)).as_bytes(),
            &sig,
        )
    })
}
