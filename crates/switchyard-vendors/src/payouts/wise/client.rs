//! Wise's HTTP API.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use switchyard_runtime::Secret;

use super::transformers::{
    Errors, FundRequest, FundResponse, Quote, QuoteRequest, Recipient, RecipientRequest, Transfer, TransferDetails,
    TransferRequest, status,
};
use crate::{
    adapter::{Progress, Recovery},
    decimal::major_amount,
    error::{VendorError, json, send, send_accepting},
    payouts::{
        ListPage, ListedPayout, Payout, PayoutOutcome, PayoutVendor, SettlementKind, SettlementLine, csv_rows,
        last_four,
    },
};

#[derive(Debug, Clone)]
pub struct WiseConfig {
    pub partner: String,
    pub base_url: String,
    pub api_token: Secret,
    pub profile_id: String,
    /// The balance currency transfers are funded from (empty: the payout's own currency).
    pub source_currency: String,
    /// Wise's webhook public key (RSAPublicKey DER); None: this instance takes no webhooks.
    pub webhook_public_key: Option<Vec<u8>>,
    pub timeout: Duration,
}

pub struct Wise {
    cfg: WiseConfig,
    http: reqwest::Client,
}

/// The `customerTransactionId` of a payout: the UUID inside our key (`sy-<uuid>`), so every attempt
/// of one payout sends the same one.
pub(crate) fn customer_transaction_id(key: &str) -> Result<String, VendorError> {
    let hex = key.strip_prefix("sy-").unwrap_or(key);
    uuid::Uuid::parse_str(hex)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| VendorError::Permanent("the payout key holds no UUID for customerTransactionId".into()))
}

impl Wise {
    pub fn new(cfg: WiseConfig) -> Result<Self, VendorError> {
        if cfg.profile_id.is_empty() {
            return Err(VendorError::Permanent("settings.profile_id is required".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Wise { cfg, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        mutating: bool,
    ) -> Result<T, VendorError> {
        json(
            send(
                self.http
                    .post(self.url(path))
                    .bearer_auth(self.cfg.api_token.expose())
                    .json(body),
                mutating,
            )
            .await?,
        )
        .await
    }

    async fn transfer(&self, id: &str) -> Result<Transfer, VendorError> {
        json(
            send(
                self.http
                    .get(self.url(&format!("/v1/transfers/{id}")))
                    .bearer_auth(self.cfg.api_token.expose()),
                false,
            )
            .await?,
        )
        .await
    }

    fn outcome(t: &Transfer) -> Result<PayoutOutcome, VendorError> {
        let status = status(&t.status)
            .ok_or_else(|| VendorError::Permanent(format!("unknown transfer state {:?}", t.status)))?;
        Ok(PayoutOutcome {
            provider_reference: Some(t.id.to_string()),
            status,
        })
    }

    async fn run(&self, p: &Payout, progress: Arc<dyn Progress>) -> Result<PayoutOutcome, VendorError> {
        let currency = p.amount.currency.as_str();
        let ctid = customer_transaction_id(&p.idempotency_key)?;
        let transfer_id = match progress.get("transfer") {
            Some(id) => id,
            None => {
                let source = if self.cfg.source_currency.is_empty() {
                    currency
                } else {
                    self.cfg.source_currency.as_str()
                };
                let quote: Quote = self
                    .post(
                        &format!("/v3/profiles/{}/quotes", self.cfg.profile_id),
                        &QuoteRequest {
                            source_currency: source,
                            target_currency: currency,
                            target_amount: major_amount(p.amount.amount_minor, currency)?,
                            pay_out: "BANK_TRANSFER",
                        },
                        false,
                    )
                    .await?;
                let recipient: Recipient = match progress.get("recipient") {
                    Some(id) => Recipient {
                        id: id
                            .parse()
                            .map_err(|_| VendorError::Permanent("recorded recipient id".into()))?,
                    },
                    None => {
                        let req = RecipientRequest::new(&self.cfg.profile_id, currency, &p.beneficiary)
                            .map_err(VendorError::Permanent)?;
                        let r: Recipient = self.post("/v1/accounts", &req, false).await?;
                        progress.note("recipient", &r.id.to_string()).await?;
                        r
                    }
                };
                // Safe to re-send: the same customerTransactionId gives back the same transfer.
                let t: Transfer = self
                    .post(
                        "/v1/transfers",
                        &TransferRequest {
                            target_account: recipient.id,
                            quote_uuid: &quote.id,
                            customer_transaction_id: &ctid,
                            details: TransferDetails {
                                reference: p.reference.as_deref().unwrap_or(&p.payout_id),
                            },
                        },
                        true,
                    )
                    .await?;
                if t.customer_transaction_id.as_deref().is_some_and(|c| c != ctid) {
                    return Err(VendorError::Permanent("the transfer answered is not ours".into()));
                }
                progress.note("transfer", &t.id.to_string()).await?;
                t.id.to_string()
            }
        };
        // Funding moves the money. Funded already (by an attempt that died before recording it):
        // Wise refuses a second funding with transfer.invalid-state, and the transfer says where it is.
        let resp = send_accepting(
            self.http
                .post(self.url(&format!(
                    "/v3/profiles/{}/transfers/{transfer_id}/payments",
                    self.cfg.profile_id
                )))
                .bearer_auth(self.cfg.api_token.expose())
                .json(&FundRequest { kind: "BALANCE" }),
            true,
            &[422],
        )
        .await?;
        if resp.status().as_u16() == 422 {
            let e: Errors = json(resp).await?;
            if !e.errors.iter().any(|e| e.code == "transfer.invalid-state") {
                let codes: Vec<_> = e.errors.iter().map(|e| e.code.as_str()).collect();
                return Err(VendorError::Permanent(format!("422: {codes:?}")));
            }
        } else {
            let f: FundResponse = json(resp).await?;
            if f.status != "COMPLETED" {
                // Refused before any money moved (e.g. insufficient balance).
                return Err(VendorError::Permanent(format!(
                    "funding {}: {}",
                    f.status,
                    f.error_code.unwrap_or_default()
                )));
            }
        }
        Self::outcome(&self.transfer(&transfer_id).await?)
    }

    /// Transfers created since `since_ms` (by date: Wise filters by day), 100 a page by offset.
    async fn list_page(&self, since_ms: i64, offset: Option<&str>) -> Result<ListPage, VendorError> {
        let since = chrono::DateTime::from_timestamp_millis(since_ms)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        let offset: usize = offset.and_then(|o| o.parse().ok()).unwrap_or(0);
        let raw: Vec<serde_json::Value> = json(
            send(
                self.http
                    .get(self.url("/v1/transfers"))
                    .bearer_auth(self.cfg.api_token.expose())
                    .query(&[
                        ("profile", self.cfg.profile_id.clone()),
                        ("createdDateStart", since),
                        ("limit", "100".into()),
                        ("offset", offset.to_string()),
                    ]),
                false,
            )
            .await?,
        )
        .await?;
        let full = raw.len() == 100;
        let mut items = Vec::with_capacity(raw.len());
        for r in raw {
            let t: Transfer =
                serde_json::from_value(r.clone()).map_err(|e| VendorError::Permanent(format!("transfer list: {e}")))?;
            let currency = t.target_currency.clone().unwrap_or_default();
            let amount_minor = t
                .target_value
                .as_ref()
                .and_then(|v| super::transformers::minor_units(v, &currency))
                .ok_or_else(|| VendorError::Permanent(format!("transfer {}: no amount in {currency}", t.id)))?;
            let created_ms = t
                .created
                .as_deref()
                .and_then(|c| chrono::NaiveDateTime::parse_from_str(c, "%Y-%m-%d %H:%M:%S").ok())
                .map(|d| d.and_utc().timestamp_millis())
                .unwrap_or(0);
            if created_ms < since_ms {
                continue;
            }
            items.push(ListedPayout {
                provider_reference: t.id.to_string(),
                our_reference: t.reference.clone(),
                amount: switchyard_model::events::common::Money { amount_minor, currency },
                status: Self::outcome(&t)?.status,
                created_ms,
                raw: r,
            });
        }
        Ok(ListPage {
            items,
            next: full.then(|| (offset + 100).to_string()),
        })
    }

    /// Cancels a transfer not yet converted (`PUT /v1/transfers/{id}/cancel`); one past that is
    /// answered with its current status.
    async fn cancel_transfer(&self, id: &str) -> Result<PayoutOutcome, VendorError> {
        let resp = send_accepting(
            self.http
                .put(self.url(&format!("/v1/transfers/{id}/cancel")))
                .bearer_auth(self.cfg.api_token.expose()),
            false,
            &[422],
        )
        .await?;
        if resp.status().as_u16() == 422 {
            // transfer.invalid-state: too late to cancel; its current state says where it is.
            return Self::outcome(&self.transfer(id).await?);
        }
        let t: Transfer = json(resp).await?;
        Self::outcome(&t)
    }

    async fn lookup(&self, progress: Arc<dyn Progress>) -> Result<Recovery<PayoutOutcome>, VendorError> {
        // No transfer recorded: none was created for us, or re-creating it with the same
        // customerTransactionId hands it back; either way sending again is safe.
        let Some(id) = progress.get("transfer") else {
            return Ok(Recovery::SendAgain);
        };
        let t = self.transfer(&id).await?;
        if t.status == "incoming_payment_waiting" {
            // Created, not funded: sending again funds it once.
            return Ok(Recovery::SendAgain);
        }
        Ok(Recovery::Found(Self::outcome(&t)?))
    }
}

impl PayoutVendor for Wise {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn initiate<'a>(
        &'a self,
        payout: &'a Payout,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<PayoutOutcome, VendorError>> {
        Box::pin(self.run(payout, progress))
    }

    fn find<'a>(
        &'a self,
        _: &'a Payout,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PayoutOutcome>, VendorError>> {
        Box::pin(self.lookup(progress))
    }

    fn list<'a>(&'a self, since_ms: i64, cursor: Option<&'a str>) -> BoxFuture<'a, Result<ListPage, VendorError>> {
        Box::pin(self.list_page(since_ms, cursor))
    }

    /// Wise's balance statement: `TransferWise ID` (`TRANSFER-<id>`), `Date` `DD-MM-YYYY`, `Amount`
    /// a decimal in the major unit, negative for money sent and positive for money back,
    /// `Description` ("Money returned" for a return), `Payment Reference` (ours); a batch line
    /// (`BATCH-<id>`) funds several transfers at once. The payee's name is never read; of its
    /// account, only the last four characters.
    fn parse_report(&self, text: &str) -> Result<Vec<SettlementLine>, VendorError> {
        let bad = |n: usize, what: &str| VendorError::Permanent(format!("statement line {n}: {what}"));
        csv_rows(text)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let n = i + 1;
                let get = |k: &str| r.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
                let id = get("TransferWise ID").ok_or_else(|| bad(n, "no TransferWise ID"))?;
                // A batch funds several transfers in one line: its id is the batch's, its
                // amount their sum.
                let reference = id
                    .strip_prefix("TRANSFER-")
                    .or_else(|| id.starts_with("BATCH-").then_some(id))
                    .ok_or_else(|| bad(n, "neither a transfer nor a batch"))?;
                let currency = get("Currency").ok_or_else(|| bad(n, "no Currency"))?.to_string();
                let amount = get("Amount").ok_or_else(|| bad(n, "no Amount"))?;
                let amount_minor = switchyard_model::money::parse_decimal(amount.trim_start_matches('-'), &currency)
                    .map_err(|e| bad(n, &format!("Amount: {e}")))?;
                let description = get("Description").unwrap_or_default();
                let kind = if description.starts_with("Correction") {
                    SettlementKind::Correction
                } else if amount.starts_with('-') {
                    SettlementKind::Payout
                } else {
                    SettlementKind::Return
                };
                let at_ms = get("Date")
                    .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%d-%m-%Y").ok())
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc().timestamp_millis())
                    .ok_or_else(|| bad(n, "Date"))?;
                Ok(SettlementLine {
                    line: n,
                    kind,
                    provider_reference: reference.to_string(),
                    our_reference: get("Payment Reference").map(str::to_string),
                    amount: switchyard_model::events::common::Money { amount_minor, currency },
                    at_ms,
                    counterparty: get("Payee Account Number").and_then(last_four),
                })
            })
            .collect()
    }

    fn cancel<'a>(&'a self, _: &'a Payout, reference: &'a str) -> BoxFuture<'a, Result<PayoutOutcome, VendorError>> {
        Box::pin(self.cancel_transfer(reference))
    }

    fn verify_webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        _now_ms: i64,
    ) -> Result<crate::payouts::PayoutNotice, crate::kyc::WebhookRejection> {
        let key = self
            .cfg
            .webhook_public_key
            .as_deref()
            .ok_or(crate::kyc::WebhookRejection::BadSignature)?;
        super::webhooks::verify(key, headers, body)
    }
}
