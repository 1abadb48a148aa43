//! Marqeta-shaped card issuing (Core API v3): HTTP Basic with the application token and the admin
//! access token; a user (`POST /users`) owns cards (`POST /cards`, from a card product); state
//! changes are card transitions (`POST /cardtransitions`: ACTIVE | SUSPENDED | TERMINATED, with a
//! channel and a reason code). Every object takes a client-chosen `token`, and a token reused with
//! the same payload answers the object already made (with another payload: 409), so our key is the
//! card's token and a re-send cannot issue twice.
//!
//! Gateway JIT Funding: Marqeta asks our gateway to fund each authorization (Basic auth with the
//! funding source's credentials; a `jit_funding` object inside the transaction). 200 with the
//! `jit_funding` echoed approves; 402 with a `decline_reason` declines. It waits 3 s, then its
//! stand-in rules decide. Webhooks: up to 10 events a POST, grouped by kind (`transactions`,
//! `cardtransitions`), with Basic auth and, when a secret is set, `X-Marqeta-Signature`: hex
//! HMAC-SHA1 of the raw body.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use switchyard_model::events::{
    cards::{CardEventKind, CardMerchant, CardOperation, CardState},
    common::Money,
};
use switchyard_runtime::Secret;

use super::{
    AuthRejection, AuthRequest, CardChange, CardNotice, CardOrder, CardOutcome, CardVendor, alpha2, last4, minor_of,
};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send, send_accepting},
    kyc::WebhookRejection,
    signing::{Alg, equal, hmac, unhex},
};

#[derive(Debug, Clone)]
pub struct MarqetaConfig {
    pub partner: String,
    pub base_url: String,
    pub application_token: Secret,
    pub admin_token: Secret,
    /// What Marqeta presents when it calls our JIT Funding gateway (the funding source's Basic
    /// auth) and on every webhook (the webhook's Basic auth).
    pub callback_username: String,
    pub callback_password: Secret,
    /// The webhook's HMAC secret; None: no signature is expected.
    pub webhook_secret: Option<Secret>,
    /// The card product used when a request names none.
    pub default_product: String,
    pub timeout: Duration,
}

pub struct Marqeta {
    cfg: MarqetaConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct CardObject {
    token: String,
    state: String,
    #[serde(default)]
    last_four: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserObject {
    token: String,
}

/// Marqeta's card states, exhaustively.
fn state(s: &str) -> Option<CardState> {
    Some(match s {
        "UNACTIVATED" => CardState::Inactive,
        "ACTIVE" | "LIMITED" => CardState::Active,
        "SUSPENDED" => CardState::Frozen,
        "TERMINATED" => CardState::Terminated,
        // UNSUPPORTED and anything new: not a state we can act on.
        _ => return None,
    })
}

/// Our canonical decline reasons as JIT Funding decline reasons.
fn decline_code(reason: &str) -> &'static str {
    match reason {
        "UNKNOWN_CARD" => "INVALID_CARD",
        "CARD_INACTIVE" | "CARD_FROZEN" => "CARD_NOT_ACTIVE",
        "CARD_CLOSED" => "CLOSED_ACCOUNT",
        "INVALID_AMOUNT" => "INVALID_AMOUNT",
        "MERCHANT_CATEGORY_BLOCKED" => "INVALID_MERCHANT",
        "PER_TRANSACTION_LIMIT" | "DAILY_LIMIT" | "MONTHLY_LIMIT" => "AMOUNT_LIMIT_EXCEEDED",
        "INSUFFICIENT_FUNDS" => "INSUFFICIENT_FUNDS",
        // CURRENCY_MISMATCH, COUNTRY_BLOCKED, UNAVAILABLE
        _ => "TRANSACTION_NOT_PERMITTED",
    }
}

/// JIT Funding decline reasons and transaction response memos, back to canonical reasons.
fn canonical_decline(code: &str) -> String {
    match code {
        "INVALID_CARD" => "UNKNOWN_CARD",
        "CARD_NOT_ACTIVE" | "CARDHOLDER_NOT_ACTIVE" => "CARD_INACTIVE",
        "CLOSED_ACCOUNT" => "CARD_CLOSED",
        "INVALID_AMOUNT" => "INVALID_AMOUNT",
        "INVALID_MERCHANT" => "MERCHANT_CATEGORY_BLOCKED",
        "AMOUNT_LIMIT_EXCEEDED" | "TRANSACTION_COUNT_LIMIT_EXCEEDED" => "PER_TRANSACTION_LIMIT",
        "INSUFFICIENT_FUNDS" => "INSUFFICIENT_FUNDS",
        _ => "UNAVAILABLE",
    }
    .to_string()
}

impl Marqeta {
    pub fn new(cfg: MarqetaConfig) -> Result<Self, VendorError> {
        if cfg.callback_password.expose().len() < 20 {
            return Err(VendorError::Permanent(
                "secrets.callback_password: Marqeta needs 20 to 50 characters".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Marqeta { cfg, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v3{path}", self.cfg.base_url))
            .basic_auth(self.cfg.application_token.expose(), Some(self.cfg.admin_token.expose()))
    }

    fn outcome(c: &CardObject) -> Result<CardOutcome, VendorError> {
        Ok(CardOutcome {
            card_token: c.token.clone(),
            last4: last4(c.last_four.as_deref()),
            state: state(&c.state).ok_or_else(|| VendorError::Permanent(format!("card state {:?}", c.state)))?,
        })
    }

    /// Our card's token at Marqeta: the issue's key.
    fn card_token(order: &CardOrder) -> String {
        token_of(&order.idempotency_key)
    }

    async fn ensure_user(&self, order: &CardOrder, progress: &Arc<dyn Progress>) -> Result<String, VendorError> {
        if let Some(t) = progress.get("user_token") {
            return Ok(t);
        }
        let mut body = json!({"token": order.holder_key, "active": true});
        if let Some(p) = &order.cardholder {
            body["first_name"] = json!(p.given_name);
            body["last_name"] = json!(p.family_name);
        }
        let resp = send_accepting(self.request(reqwest::Method::POST, "/users").json(&body), true, &[409]).await?;
        let token = if resp.status().as_u16() == 409 {
            // The cardholder is there already (made for an earlier card, with other details).
            let user: UserObject = json(
                send(
                    self.request(reqwest::Method::GET, &format!("/users/{}", order.holder_key)),
                    false,
                )
                .await?,
            )
            .await?;
            user.token
        } else {
            json::<UserObject>(resp).await?.token
        };
        progress.note("user_token", &token).await?;
        Ok(token)
    }

    async fn run(&self, order: &CardOrder, progress: Arc<dyn Progress>) -> Result<CardOutcome, VendorError> {
        let product = match (order.product.as_str(), self.cfg.default_product.as_str()) {
            ("", "") => {
                return Err(VendorError::Permanent(
                    "no card product: name one, or set settings.card_product".into(),
                ));
            }
            ("", default) => default,
            (named, _) => named,
        };
        let user = self.ensure_user(order, &progress).await?;
        let body = json!({
            "token": Self::card_token(order),
            "user_token": user,
            "card_product_token": product,
            "metadata": {"card_id": order.card_id},
        });
        let card: CardObject =
            json(send(self.request(reqwest::Method::POST, "/cards").json(&body), true).await?).await?;
        Self::outcome(&card)
    }

    async fn get(&self, token: &str) -> Result<Option<CardOutcome>, VendorError> {
        let resp = send_accepting(
            self.request(reqwest::Method::GET, &format!("/cards/{token}")),
            false,
            &[404],
        )
        .await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        Ok(Some(Self::outcome(&json::<CardObject>(resp).await?)?))
    }

    async fn transition(&self, c: &CardChange) -> Result<CardOutcome, VendorError> {
        let (target, reason_code) = match c.operation {
            CardOperation::Activate => ("ACTIVE", "00"),
            CardOperation::Unfreeze => ("ACTIVE", "01"),
            CardOperation::Freeze => ("SUSPENDED", "01"),
            CardOperation::Terminate => ("TERMINATED", "01"),
            other => return Err(VendorError::Permanent(format!("{other:?} is not a card transition"))),
        };
        let body = json!({
            "token": token_of(&c.idempotency_key),
            "card_token": c.card_token,
            "state": target,
            "channel": "API",
            "reason_code": reason_code,
        });
        // A 409 says the transition's token is ours already: it was made; the card says where it is.
        send_accepting(
            self.request(reqwest::Method::POST, "/cardtransitions").json(&body),
            true,
            &[409],
        )
        .await?;
        self.get(&c.card_token)
            .await?
            .ok_or_else(|| VendorError::Permanent(format!("no card {}", c.card_token)))
    }

    fn basic_ok(&self, headers: &reqwest::header::HeaderMap) -> bool {
        let Some(given) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| crate::signing::unb64(v.trim()))
        else {
            return false;
        };
        let want = format!("{}:{}", self.cfg.callback_username, self.cfg.callback_password.expose());
        equal(&given, want.as_bytes())
    }
}

#[derive(Debug, Deserialize)]
struct Acceptor {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mcc: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    country_code: Option<String>,
}

impl Acceptor {
    fn merchant(&self) -> CardMerchant {
        CardMerchant {
            name: self.name.clone().unwrap_or_default(),
            mcc: self.mcc.clone().unwrap_or_default(),
            country: self.country_code.as_deref().and_then(alpha2),
            city: self.city.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Transaction {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state: Option<String>,
    card_token: String,
    amount: serde_json::Number,
    #[serde(default = "usd")]
    currency_code: String,
    #[serde(default)]
    card_acceptor: Option<Acceptor>,
    #[serde(default)]
    preceding_related_transaction_token: Option<String>,
    #[serde(default)]
    gpa_order: Option<serde_json::Value>,
    #[serde(default)]
    response: Option<serde_json::Value>,
    #[serde(default)]
    created_time: Option<String>,
}

/// A key as a Marqeta token (36 characters at most): `sy-<uuid>` loses its prefix, not its digits.
fn token_of(key: &str) -> String {
    key.strip_prefix("sy-").unwrap_or(key).chars().take(36).collect()
}

fn usd() -> String {
    "USD".into()
}

#[derive(Debug, Deserialize)]
struct Transition {
    token: String,
    card_token: String,
    state: String,
    #[serde(default)]
    created_time: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delivery {
    #[serde(default)]
    transactions: Vec<Transaction>,
    #[serde(default)]
    cardtransitions: Vec<Transition>,
}

fn time_ms(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.timestamp_millis())
        .unwrap_or(0)
}

impl CardVendor for Marqeta {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn issue<'a>(
        &'a self,
        order: &'a CardOrder,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(self.run(order, progress))
    }

    fn find<'a>(
        &'a self,
        order: &'a CardOrder,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<CardOutcome>, VendorError>> {
        Box::pin(async move {
            // The card's token is ours: Marqeta has it or not, and a re-send with the same payload
            // answers the same card.
            Ok(match self.get(&Self::card_token(order)).await? {
                Some(c) => Recovery::Found(c),
                None => Recovery::SendAgain,
            })
        })
    }

    fn change<'a>(&'a self, change: &'a CardChange) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(self.transition(change))
    }

    fn card<'a>(&'a self, card_token: &'a str) -> BoxFuture<'a, Result<CardOutcome, VendorError>> {
        Box::pin(async move {
            self.get(card_token)
                .await?
                .ok_or_else(|| VendorError::Permanent(format!("no card {card_token}")))
        })
    }

    fn read_authorization(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<AuthRequest, AuthRejection> {
        if !self.basic_ok(headers) {
            return Err(AuthRejection::Unauthenticated("funding source credentials".into()));
        }
        let t: Transaction = serde_json::from_slice(body).map_err(|e| AuthRejection::Malformed(e.to_string()))?;
        let jit = t
            .gpa_order
            .as_ref()
            .and_then(|g| g.get("jit_funding"))
            .cloned()
            .ok_or_else(|| AuthRejection::Malformed("no gpa_order.jit_funding".into()))?;
        let method = jit.get("method").and_then(|m| m.as_str()).unwrap_or_default();
        if method != "pgfs.authorization" {
            return Err(AuthRejection::NotAnAuthorization(method.to_string()));
        }
        let currency = t.currency_code.to_ascii_uppercase();
        Ok(AuthRequest {
            transaction_id: t.token.clone(),
            card_token: t.card_token.clone(),
            amount: Money {
                amount_minor: minor_of(&t.amount, &currency).map_err(AuthRejection::Malformed)?,
                currency,
            },
            merchant: t
                .card_acceptor
                .as_ref()
                .map(Acceptor::merchant)
                .ok_or_else(|| AuthRejection::Malformed("no card_acceptor".into()))?,
            echo: jit,
        })
    }

    fn answer_authorization(&self, req: &AuthRequest, decline: Option<&str>) -> (u16, serde_json::Value) {
        let mut jit = req.echo.clone();
        match decline {
            None => (200, json!({"jit_funding": jit})),
            Some(reason) => {
                jit["decline_reason"] = json!(decline_code(reason));
                (402, json!({"jit_funding": jit}))
            }
        }
    }

    fn verify_webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        _now_ms: i64,
    ) -> Result<Vec<CardNotice>, WebhookRejection> {
        if headers.get("authorization").is_none() {
            return Err(WebhookRejection::MissingSignature);
        }
        if !self.basic_ok(headers) {
            return Err(WebhookRejection::BadSignature);
        }
        if let Some(secret) = &self.cfg.webhook_secret {
            let sig = headers
                .get("x-marqeta-signature")
                .and_then(|v| v.to_str().ok())
                .and_then(unhex)
                .ok_or(WebhookRejection::MissingSignature)?;
            if !equal(&sig, &hmac(Alg::Sha1, secret.expose().as_bytes(), body)) {
                return Err(WebhookRejection::BadSignature);
            }
        }
        let d: Delivery = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
        let mut out = Vec::new();
        for t in d.transactions {
            let kind = match t.kind.as_str() {
                "authorization" => CardEventKind::Authorization,
                "authorization.clearing" => CardEventKind::Clearing,
                "authorization.reversal" => CardEventKind::Reversal,
                // Fundings, fees and the like: not card transactions the mesh follows.
                _ => continue,
            };
            let currency = t.currency_code.to_ascii_uppercase();
            let declined = t.state.as_deref() == Some("DECLINED");
            let decline_reason = declined.then(|| {
                let code = t
                    .gpa_order
                    .as_ref()
                    .and_then(|g| g.pointer("/jit_funding/decline_reason"))
                    .and_then(|v| v.as_str())
                    .or_else(|| t.response.as_ref().and_then(|r| r.get("memo")).and_then(|v| v.as_str()))
                    .unwrap_or_default();
                canonical_decline(code)
            });
            out.push(CardNotice {
                event_id: t.token.clone(),
                card_token: t.card_token.clone(),
                kind,
                // Clearing and reversal name the authorization they follow.
                transaction_id: Some(
                    t.preceding_related_transaction_token
                        .clone()
                        .unwrap_or_else(|| t.token.clone()),
                ),
                amount: Some(Money {
                    amount_minor: minor_of(&t.amount, &currency).map_err(WebhookRejection::Malformed)?,
                    currency,
                }),
                state: None,
                merchant: t.card_acceptor.as_ref().map(Acceptor::merchant),
                decline_reason,
                occurred_at_ms: time_ms(t.created_time.as_deref()),
            });
        }
        for c in d.cardtransitions {
            let Some(s) = state(&c.state) else {
                continue;
            };
            out.push(CardNotice {
                event_id: c.token,
                card_token: c.card_token,
                kind: CardEventKind::StatusChange,
                transaction_id: None,
                amount: None,
                state: Some(s),
                merchant: None,
                decline_reason: None,
                occurred_at_ms: time_ms(c.created_time.as_deref()),
            });
        }
        Ok(out)
    }
}
