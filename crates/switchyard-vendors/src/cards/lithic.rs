//! Lithic-shaped card issuing: `Authorization: <api key>` (no scheme); `POST /v1/cards` with a
//! `type` (VIRTUAL | PHYSICAL) and a free `memo`; `PATCH /v1/cards/{token}` with `state` OPEN |
//! PAUSED | CLOSED (closing is final). Lithic takes no idempotency key, so our key goes in the
//! card's memo and an earlier attempt is looked up in the card list (`page_size`,
//! `starting_after`, `{data, has_more}`) before anything is sent again.
//!
//! Auth Stream Access (ASA): Lithic posts each authorization to our responder, signed with
//! `X-Lithic-HMAC` (base64 HMAC-SHA256 of the body with the responder's secret); we answer 200 with
//! `{token, result}`, `result` APPROVED or a decline code. Events (webhooks) follow Standard
//! Webhooks: `webhook-id`, `webhook-timestamp` (seconds), `webhook-signature` (`v1,<base64
//! HMAC-SHA256 of "<id>.<timestamp>.<body>">`, the secret `whsec_<base64>`).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use switchyard_model::events::{
    cards::{CardEventKind, CardFormFactor, CardMerchant, CardOperation, CardState},
    common::Money,
};
use switchyard_runtime::Secret;

use super::{AuthRejection, AuthRequest, CardChange, CardNotice, CardOrder, CardOutcome, CardVendor, alpha2, last4};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send},
    kyc::WebhookRejection,
    signing::{Alg, b64, equal, hmac, unb64},
};

/// Standard Webhooks' tolerance for the timestamp.
pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, Clone)]
pub struct LithicConfig {
    pub partner: String,
    pub base_url: String,
    pub api_key: Secret,
    /// The ASA responder's HMAC secret.
    pub asa_secret: Secret,
    /// The event subscription's secret (`whsec_...`).
    pub webhook_secret: Secret,
    pub timeout: Duration,
}

pub struct Lithic {
    cfg: LithicConfig,
    webhook_key: Vec<u8>,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct CardObject {
    token: String,
    state: String,
    #[serde(default)]
    last_four: Option<String>,
    #[serde(default)]
    memo: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CardList {
    data: Vec<CardObject>,
    has_more: bool,
}

/// Lithic's card states, exhaustively.
fn state(s: &str) -> Option<CardState> {
    Some(match s {
        "PENDING_FULFILLMENT" | "PENDING_ACTIVATION" => CardState::Inactive,
        "OPEN" => CardState::Active,
        "PAUSED" => CardState::Frozen,
        "CLOSED" => CardState::Terminated,
        _ => return None,
    })
}

/// Our canonical decline reasons as ASA results.
fn result_code(reason: &str) -> &'static str {
    match reason {
        "CARD_INACTIVE" | "CARD_FROZEN" | "CARD_CLOSED" | "UNKNOWN_CARD" => "CARD_PAUSED",
        "MERCHANT_CATEGORY_BLOCKED" | "COUNTRY_BLOCKED" | "CURRENCY_MISMATCH" => "UNAUTHORIZED_MERCHANT",
        "PER_TRANSACTION_LIMIT" | "DAILY_LIMIT" | "MONTHLY_LIMIT" => "VELOCITY_EXCEEDED",
        // INSUFFICIENT_FUNDS, INVALID_AMOUNT, UNAVAILABLE
        _ => "INSUFFICIENT_FUNDS",
    }
}

/// Lithic's detailed results on declined transactions, back to canonical reasons.
fn canonical_decline(code: &str) -> String {
    match code {
        "CARD_PAUSED" => "CARD_FROZEN",
        "CARD_CLOSED" => "CARD_CLOSED",
        "UNAUTHORIZED_MERCHANT" => "MERCHANT_CATEGORY_BLOCKED",
        "VELOCITY_EXCEEDED" | "USER_TRANSACTION_LIMIT" | "CARD_SPEND_LIMIT_EXCEEDED" => "PER_TRANSACTION_LIMIT",
        "INSUFFICIENT_FUNDS" => "INSUFFICIENT_FUNDS",
        _ => "UNAVAILABLE",
    }
    .to_string()
}

impl Lithic {
    pub fn new(cfg: LithicConfig) -> Result<Self, VendorError> {
        let webhook_key = cfg
            .webhook_secret
            .expose()
            .strip_prefix("whsec_")
            .and_then(unb64)
            .ok_or_else(|| VendorError::Permanent("secrets.webhook_secret must be whsec_<base64>".into()))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Lithic { cfg, webhook_key, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.cfg.base_url))
            .header("Authorization", self.cfg.api_key.expose())
    }

    fn outcome(c: &CardObject) -> Result<CardOutcome, VendorError> {
        Ok(CardOutcome {
            card_token: c.token.clone(),
            last4: last4(c.last_four.as_deref()),
            state: state(&c.state).ok_or_else(|| VendorError::Permanent(format!("card state {:?}", c.state)))?,
        })
    }

    async fn run(&self, order: &CardOrder) -> Result<CardOutcome, VendorError> {
        let kind = match order.form_factor {
            CardFormFactor::Virtual => "VIRTUAL",
            CardFormFactor::Physical => "PHYSICAL",
        };
        let mut body = json!({"type": kind, "memo": order.idempotency_key});
        if order.form_factor == CardFormFactor::Physical {
            body["shipping_method"] = json!("STANDARD");
        }
        if !order.product.is_empty() {
            body["product_id"] = json!(order.product);
        }
        let card: CardObject =
            json(send(self.request(reqwest::Method::POST, "/v1/cards").json(&body), true).await?).await?;
        Self::outcome(&card)
    }

    /// The cards whose memo is our key, newest pages first.
    async fn lookup(&self, key: &str) -> Result<Recovery<CardOutcome>, VendorError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = vec![("page_size", "100".to_string())];
            if let Some(a) = &after {
                q.push(("starting_after", a.clone()));
            }
            let page: CardList =
                json(send(self.request(reqwest::Method::GET, "/v1/cards").query(&q), false).await?).await?;
            after = page.data.last().map(|c| c.token.clone());
            found.extend(page.data.into_iter().filter(|c| c.memo.as_deref() == Some(key)));
            if !page.has_more || after.is_none() {
                break;
            }
        }
        match found.as_slice() {
            [] => Ok(Recovery::SendAgain),
            [one] => Ok(Recovery::Found(Self::outcome(one)?)),
            // Two cards under one key: an operator decides which stays.
            _ => Ok(Recovery::Unknowable),
        }
    }

    async fn patch(&self, c: &CardChange) -> Result<CardOutcome, VendorError> {
        let target = match c.operation {
            CardOperation::Activate | CardOperation::Unfreeze => "OPEN",
            CardOperation::Freeze => "PAUSED",
            CardOperation::Terminate => "CLOSED",
            other => return Err(VendorError::Permanent(format!("{other:?} is not a card state change"))),
        };
        let card: CardObject = json(
            send(
                self.request(reqwest::Method::PATCH, &format!("/v1/cards/{}", c.card_token))
                    .json(&json!({"state": target})),
                true,
            )
            .await?,
        )
        .await?;
        Self::outcome(&card)
    }
}

#[derive(Debug, Deserialize)]
struct Merchant {
    #[serde(default)]
    descriptor: Option<String>,
    #[serde(default)]
    mcc: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

impl Merchant {
    fn canonical(&self) -> CardMerchant {
        CardMerchant {
            name: self.descriptor.clone().unwrap_or_default(),
            mcc: self.mcc.clone().unwrap_or_default(),
            country: self.country.as_deref().and_then(alpha2),
            city: self.city.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct AsaCard {
    token: String,
}

#[derive(Debug, Deserialize)]
struct AsaRequest {
    token: String,
    status: String,
    /// Cents, in the card's (settlement) currency.
    amount: i64,
    #[serde(default)]
    settled_currency: Option<String>,
    card: AsaCard,
    merchant: Merchant,
}

#[derive(Debug, Deserialize)]
struct TxnEvent {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    amount: i64,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TransactionObject {
    token: String,
    card_token: String,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    merchant: Option<Merchant>,
    #[serde(default)]
    events: Vec<TxnEvent>,
}

#[derive(Debug, Deserialize)]
struct Event {
    event_type: String,
    payload: serde_json::Value,
    #[serde(default)]
    created: Option<String>,
}

fn time_ms(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.timestamp_millis())
        .unwrap_or(0)
}

impl CardVendor for Lithic {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn issue<'a>(
        &'a self,
        order: &'a CardOrder,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(self.run(order))
    }

    fn find<'a>(
        &'a self,
        order: &'a CardOrder,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<CardOutcome>, VendorError>> {
        Box::pin(self.lookup(&order.idempotency_key))
    }

    fn change<'a>(&'a self, change: &'a CardChange) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(self.patch(change))
    }

    fn card<'a>(&'a self, card_token: &'a str) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(async move {
            let c: CardObject = json(
                send(
                    self.request(reqwest::Method::GET, &format!("/v1/cards/{card_token}")),
                    false,
                )
                .await?,
            )
            .await?;
            Self::outcome(&c)
        })
    }

    fn read_authorization(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<AuthRequest, AuthRejection> {
        let sig = headers
            .get("x-lithic-hmac")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| unb64(v.trim()))
            .ok_or_else(|| AuthRejection::Unauthenticated("no X-Lithic-HMAC".into()))?;
        if !equal(&sig, &hmac(Alg::Sha256, self.cfg.asa_secret.expose().as_bytes(), body)) {
            return Err(AuthRejection::Unauthenticated("X-Lithic-HMAC does not match".into()));
        }
        let r: AsaRequest = serde_json::from_slice(body).map_err(|e| AuthRejection::Malformed(e.to_string()))?;
        if r.status != "AUTHORIZATION" {
            return Err(AuthRejection::NotAnAuthorization(r.status));
        }
        Ok(AuthRequest {
            transaction_id: r.token.clone(),
            card_token: r.card.token.clone(),
            amount: Money {
                amount_minor: r.amount,
                currency: r.settled_currency.as_deref().unwrap_or("USD").to_ascii_uppercase(),
            },
            merchant: r.merchant.canonical(),
            echo: json!({"token": r.token}),
        })
    }

    fn answer_authorization(&self, req: &AuthRequest, decline: Option<&str>) -> (u16, serde_json::Value) {
        let result = decline.map(result_code).unwrap_or("APPROVED");
        (200, json!({"token": req.transaction_id, "result": result}))
    }

    fn verify_webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Vec<CardNotice>, WebhookRejection> {
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let (Some(id), Some(ts), Some(sigs)) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"))
        else {
            return Err(WebhookRejection::MissingSignature);
        };
        let t: i64 = ts
            .parse()
            .map_err(|_| WebhookRejection::Malformed("webhook-timestamp".into()))?;
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let want = b64(&hmac(Alg::Sha256, &self.webhook_key, &signed));
        let ok = sigs
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .any(|s| equal(s.as_bytes(), want.as_bytes()));
        if !ok {
            return Err(WebhookRejection::BadSignature);
        }
        if (now_ms / 1000 - t).abs() > TOLERANCE_S {
            return Err(WebhookRejection::Stale);
        }
        let e: Event = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
        let bad = |e: serde_json::Error| WebhookRejection::Malformed(e.to_string());
        match e.event_type.as_str() {
            "card_transaction.updated" => {
                let t: TransactionObject = serde_json::from_value(e.payload).map_err(bad)?;
                // The transaction's latest event is the news.
                let Some(last) = t.events.last() else {
                    return Ok(vec![]);
                };
                let (kind, declined) = match last.kind.as_str() {
                    "AUTHORIZATION" => (CardEventKind::Authorization, last.result.as_deref() != Some("APPROVED")),
                    "CLEARING" => (CardEventKind::Clearing, false),
                    "AUTHORIZATION_REVERSAL" | "AUTHORIZATION_EXPIRY" => (CardEventKind::Reversal, false),
                    _ => return Ok(vec![]),
                };
                Ok(vec![CardNotice {
                    event_id: last.token.clone(),
                    card_token: t.card_token,
                    kind,
                    transaction_id: Some(t.token),
                    amount: Some(Money {
                        amount_minor: last.amount,
                        currency: t.currency.as_deref().unwrap_or("USD").to_ascii_uppercase(),
                    }),
                    state: None,
                    merchant: t.merchant.as_ref().map(Merchant::canonical),
                    decline_reason: declined.then(|| canonical_decline(last.result.as_deref().unwrap_or_default())),
                    occurred_at_ms: time_ms(last.created.as_deref().or(e.created.as_deref())),
                }])
            }
            "card.updated" | "card.created" => {
                let c: CardObject = serde_json::from_value(e.payload).map_err(bad)?;
                let Some(s) = state(&c.state) else {
                    return Ok(vec![]);
                };
                Ok(vec![CardNotice {
                    event_id: id.to_string(),
                    card_token: c.token,
                    kind: CardEventKind::StatusChange,
                    transaction_id: None,
                    amount: None,
                    state: Some(s),
                    merchant: None,
                    decline_reason: None,
                    occurred_at_ms: time_ms(e.created.as_deref()),
                }])
            }
            _ => Ok(vec![]),
        }
    }
}
