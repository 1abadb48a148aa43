//! Stripe's HTTP API.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use switchyard_runtime::Secret;

use super::transformers::{ExternalAccount, PayoutList, PayoutObject, SearchResult, external_account, status};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send},
    payouts::{ListPage, ListedPayout, Payout, PayoutOutcome, PayoutVendor, SettlementKind, SettlementLine, csv_rows},
};

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub partner: String,
    pub base_url: String,
    pub api_key: Secret,
    /// The connected account payouts are made from (`acct_...`).
    pub account: String,
    /// The webhook endpoint's signing secret (and the previous one while it rolls); None: this
    /// instance takes no webhooks.
    pub webhook_secret: Option<crate::signing::SecretPair>,
    pub timeout: Duration,
}

pub struct Stripe {
    cfg: StripeConfig,
    http: reqwest::Client,
}

impl Stripe {
    pub fn new(cfg: StripeConfig) -> Result<Self, VendorError> {
        if !cfg.account.starts_with("acct_") {
            return Err(VendorError::Permanent(
                "settings.account must be a connected account (acct_...)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Stripe { cfg, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.cfg.base_url))
            .bearer_auth(self.cfg.api_key.expose())
            .header("Stripe-Account", &self.cfg.account)
    }

    fn outcome(p: &PayoutObject) -> Result<PayoutOutcome, VendorError> {
        Ok(PayoutOutcome {
            provider_reference: Some(p.id.clone()),
            status: status(&p.status)
                .ok_or_else(|| VendorError::Permanent(format!("unknown payout status {:?}", p.status)))?,
        })
    }

    async fn run(&self, p: &Payout, progress: Arc<dyn Progress>) -> Result<PayoutOutcome, VendorError> {
        let currency = p.amount.currency.to_lowercase();
        let destination = match progress.get("external_account") {
            Some(id) => id,
            None => {
                let form = external_account(&p.beneficiary, &currency).map_err(VendorError::Permanent)?;
                let ba: ExternalAccount = json(
                    send(
                        self.request(
                            reqwest::Method::POST,
                            &format!("/v1/accounts/{}/external_accounts", self.cfg.account),
                        )
                        .header("Idempotency-Key", format!("{}-ba", p.idempotency_key))
                        .form(&form),
                        false,
                    )
                    .await?,
                )
                .await?;
                progress.note("external_account", &ba.id).await?;
                ba.id
            }
        };
        let mut form: Vec<(&str, String)> = vec![
            ("amount", p.amount.amount_minor.to_string()),
            ("currency", currency),
            ("destination", destination),
            ("method", "standard".into()),
            ("metadata[payout_id]", p.payout_id.clone()),
            ("metadata[switchyard_key]", p.idempotency_key.clone()),
        ];
        if let Some(r) = &p.reference {
            // Stripe shows at most 22 characters on the statement.
            form.push(("statement_descriptor", r.chars().take(22).collect()));
        }
        let payout: PayoutObject = json(
            send(
                self.request(reqwest::Method::POST, "/v1/payouts")
                    .header("Idempotency-Key", &p.idempotency_key)
                    .form(&form),
                true,
            )
            .await?,
        )
        .await?;
        if payout.metadata.get("payout_id") != Some(&p.payout_id) {
            return Err(VendorError::Permanent("the payout answered is not ours".into()));
        }
        Self::outcome(&payout)
    }

    /// Payouts created since `since_ms`, newest first, 100 a page (`starting_after` the last one).
    async fn list_page(&self, since_ms: i64, after: Option<&str>) -> Result<ListPage, VendorError> {
        let mut query = vec![
            ("created[gte]", (since_ms / 1000).to_string()),
            ("limit", "100".to_string()),
        ];
        if let Some(a) = after {
            query.push(("starting_after", a.to_string()));
        }
        let page: PayoutList =
            json(send(self.request(reqwest::Method::GET, "/v1/payouts").query(&query), false).await?).await?;
        let mut items = Vec::with_capacity(page.data.len());
        for raw in page.data {
            let p: PayoutObject =
                serde_json::from_value(raw.clone()).map_err(|e| VendorError::Permanent(format!("payout list: {e}")))?;
            items.push(ListedPayout {
                our_reference: p.metadata.get("payout_id").cloned(),
                amount: switchyard_model::events::common::Money {
                    amount_minor: p.amount,
                    currency: p.currency.to_uppercase(),
                },
                status: Self::outcome(&p)?.status,
                created_ms: p.created * 1000,
                provider_reference: p.id,
                raw,
            });
        }
        let next = page
            .has_more
            .then(|| items.last().map(|i| i.provider_reference.clone()))
            .flatten();
        Ok(ListPage { items, next })
    }

    /// Cancels a pending payout; one past pending is answered with its current status.
    async fn cancel_payout(&self, p: &Payout, reference: &str) -> Result<PayoutOutcome, VendorError> {
        let cancelled = send(
            self.request(reqwest::Method::POST, &format!("/v1/payouts/{reference}/cancel"))
                .header("Idempotency-Key", format!("{}-cancel", p.idempotency_key)),
            false,
        )
        .await;
        match cancelled {
            Ok(resp) => {
                let payout: PayoutObject = json(resp).await?;
                Self::outcome(&payout)
            }
            // "Payouts can only be canceled while they are pending": where is it then?
            Err(VendorError::Permanent(_)) => match self.lookup(p).await? {
                Recovery::Found(o) => Ok(o),
                _ => Err(VendorError::Permanent(format!("no payout {reference} to cancel"))),
            },
            Err(e) => Err(e),
        }
    }

    /// The payout with our id in its metadata, if Stripe has one: never a re-send to find out (the
    /// idempotency key may have expired, and a re-send would pay again).
    async fn lookup(&self, p: &Payout) -> Result<Recovery<PayoutOutcome>, VendorError> {
        let query = format!("metadata['payout_id']:'{}'", p.payout_id.replace('\'', ""));
        let found: SearchResult = json(
            send(
                self.request(reqwest::Method::GET, "/v1/payouts/search")
                    .query(&[("query", query.as_str())]),
                false,
            )
            .await?,
        )
        .await?;
        match found.data.as_slice() {
            [] => Ok(Recovery::SendAgain),
            [one] => Ok(Recovery::Found(Self::outcome(one)?)),
            // Two executions of one payout: nothing automatic may decide which; an operator must.
            _ => Ok(Recovery::Unknowable),
        }
    }
}

impl PayoutVendor for Stripe {
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
        payout: &'a Payout,
        _: Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PayoutOutcome>, VendorError>> {
        Box::pin(self.lookup(payout))
    }

    fn list<'a>(&'a self, since_ms: i64, cursor: Option<&'a str>) -> BoxFuture<'a, Result<ListPage, VendorError>> {
        Box::pin(self.list_page(since_ms, cursor))
    }

    /// Stripe's itemized payout reconciliation report: `reporting_category` payout,
    /// payout_reversal or adjustment; `gross` a decimal in the major unit (negative for money out);
    /// `currency` lower case; `created_utc` `YYYY-MM-DD HH:MM:SS`.
    fn parse_report(&self, text: &str) -> Result<Vec<SettlementLine>, VendorError> {
        let bad = |n: usize, what: &str| VendorError::Permanent(format!("report line {n}: {what}"));
        csv_rows(text)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let n = i + 1;
                let get = |k: &str| r.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
                let kind = match get("reporting_category") {
                    Some("payout") => SettlementKind::Payout,
                    Some("payout_reversal") => SettlementKind::Return,
                    Some("adjustment") => SettlementKind::Correction,
                    other => return Err(bad(n, &format!("unknown reporting_category {other:?}"))),
                };
                let currency = get("currency").ok_or_else(|| bad(n, "no currency"))?.to_uppercase();
                let gross = get("gross").ok_or_else(|| bad(n, "no gross"))?;
                let amount_minor = switchyard_model::money::parse_decimal(gross.trim_start_matches('-'), &currency)
                    .map_err(|e| bad(n, &format!("gross: {e}")))?;
                let at_ms = get("created_utc")
                    .and_then(|c| chrono::NaiveDateTime::parse_from_str(c, "%Y-%m-%d %H:%M:%S").ok())
                    .map(|d| d.and_utc().timestamp_millis())
                    .ok_or_else(|| bad(n, "created_utc"))?;
                Ok(SettlementLine {
                    line: n,
                    kind,
                    provider_reference: get("automatic_payout_id")
                        .ok_or_else(|| bad(n, "no automatic_payout_id"))?
                        .to_string(),
                    our_reference: get("payout_metadata[payout_id]").map(str::to_string),
                    amount: switchyard_model::events::common::Money { amount_minor, currency },
                    at_ms,
                    counterparty: None,
                })
            })
            .collect()
    }

    fn cancel<'a>(
        &'a self,
        payout: &'a Payout,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<PayoutOutcome, VendorError>> {
        Box::pin(self.cancel_payout(payout, reference))
    }

    fn verify_webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<crate::payouts::PayoutNotice, crate::kyc::WebhookRejection> {
        let secret = self
            .cfg
            .webhook_secret
            .as_ref()
            .ok_or(crate::kyc::WebhookRejection::BadSignature)?;
        super::webhooks::verify(secret, headers, body, now_ms)
    }
}
