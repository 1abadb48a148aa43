//! The real-time authorization decision: a card processor asks whether to approve a purchase, and the
//! mesh answers from what it holds (the card's state, its spend controls, what it has spent in the
//! day and the month, the money available to it), never from a Kafka round trip. Pure: the store
//! gives it the card and its usage under a lock, and records what it decides.

use serde::{Deserialize, Serialize};

/// A card's lifecycle state, as the mesh holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardState {
    Inactive,
    Active,
    Frozen,
    Terminated,
}

impl CardState {
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Inactive => "INACTIVE",
            CardState::Active => "ACTIVE",
            CardState::Frozen => "FROZEN",
            CardState::Terminated => "TERMINATED",
        }
    }

    pub fn parse(s: &str) -> Option<CardState> {
        [
            CardState::Inactive,
            CardState::Active,
            CardState::Frozen,
            CardState::Terminated,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Spend controls, amounts in minor units of the card's currency. An absent limit is not checked;
/// an empty list allows every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controls {
    #[serde(default)]
    pub per_transaction_minor: Option<i64>,
    #[serde(default)]
    pub daily_minor: Option<i64>,
    #[serde(default)]
    pub monthly_minor: Option<i64>,
    /// Merchant category codes allowed (empty: all but the blocked ones).
    #[serde(default)]
    pub allowed_mccs: Vec<String>,
    #[serde(default)]
    pub blocked_mccs: Vec<String>,
    /// ISO 3166 alpha-2 countries where the card may be used (empty: anywhere).
    #[serde(default)]
    pub allowed_countries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub token: String,
    pub state: CardState,
    pub currency: String,
    pub controls: Controls,
    pub available_minor: i64,
}

/// What the card has spent (held or cleared) in the current day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub day_minor: i64,
    pub month_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub name: String,
    pub mcc: String,
    pub country: Option<String>,
}

/// A processor's question, in the mesh's terms (amounts in minor units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub partner: String,
    pub transaction_id: String,
    pub card_token: String,
    pub amount_minor: i64,
    pub currency: String,
    pub merchant: Merchant,
}

/// Why a purchase is declined: the canonical reasons every processor's own codes map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclineReason {
    UnknownCard,
    CardInactive,
    CardFrozen,
    CardClosed,
    InvalidAmount,
    CurrencyMismatch,
    MerchantCategoryBlocked,
    CountryBlocked,
    PerTransactionLimit,
    DailyLimit,
    MonthlyLimit,
    InsufficientFunds,
    /// Our own parts did not answer in time; the configured fallback declined.
    Unavailable,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::UnknownCard => "UNKNOWN_CARD",
            DeclineReason::CardInactive => "CARD_INACTIVE",
            DeclineReason::CardFrozen => "CARD_FROZEN",
            DeclineReason::CardClosed => "CARD_CLOSED",
            DeclineReason::InvalidAmount => "INVALID_AMOUNT",
            DeclineReason::CurrencyMismatch => "CURRENCY_MISMATCH",
            DeclineReason::MerchantCategoryBlocked => "MERCHANT_CATEGORY_BLOCKED",
            DeclineReason::CountryBlocked => "COUNTRY_BLOCKED",
            DeclineReason::PerTransactionLimit => "PER_TRANSACTION_LIMIT",
            DeclineReason::DailyLimit => "DAILY_LIMIT",
            DeclineReason::MonthlyLimit => "MONTHLY_LIMIT",
            DeclineReason::InsufficientFunds => "INSUFFICIENT_FUNDS",
            DeclineReason::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn parse(s: &str) -> Option<DeclineReason> {
        ALL_REASONS.into_iter().find(|r| r.as_str() == s)
    }
}

const ALL_REASONS: [DeclineReason; 13] = [
    DeclineReason::UnknownCard,
    DeclineReason::CardInactive,
    DeclineReason::CardFrozen,
    DeclineReason::CardClosed,
    DeclineReason::InvalidAmount,
    DeclineReason::CurrencyMismatch,
    DeclineReason::MerchantCategoryBlocked,
    DeclineReason::CountryBlocked,
    DeclineReason::PerTransactionLimit,
    DeclineReason::DailyLimit,
    DeclineReason::MonthlyLimit,
    DeclineReason::InsufficientFunds,
    DeclineReason::Unavailable,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline(DeclineReason),
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v.eq_ignore_ascii_case(value))
}

/// Decides one authorization. The checks run in a fixed order, the card's own standing first, so a
/// purchase is declined for the first thing that rules it out (and the same purchase always for the
/// same reason).
pub fn decide(card: Option<&Card>, usage: Usage, auth: &Authorization) -> Decision {
    use DeclineReason as R;
    let Some(card) = card else {
        return Decision::Decline(R::UnknownCard);
    };
    let refuse = match card.state {
        CardState::Active => None,
        CardState::Inactive => Some(R::CardInactive),
        CardState::Frozen => Some(R::CardFrozen),
        CardState::Terminated => Some(R::CardClosed),
    };
    if let Some(r) = refuse {
        return Decision::Decline(r);
    }
    if auth.amount_minor <= 0 {
        return Decision::Decline(R::InvalidAmount);
    }
    if !auth.currency.eq_ignore_ascii_case(&card.currency) {
        return Decision::Decline(R::CurrencyMismatch);
    }
    let c = &card.controls;
    if listed(&c.blocked_mccs, &auth.merchant.mcc)
        || (!c.allowed_mccs.is_empty() && !listed(&c.allowed_mccs, &auth.merchant.mcc))
    {
        return Decision::Decline(R::MerchantCategoryBlocked);
    }
    if !c.allowed_countries.is_empty()
        && !auth
            .merchant
            .country
            .as_deref()
            .is_some_and(|country| listed(&c.allowed_countries, country))
    {
        return Decision::Decline(R::CountryBlocked);
    }
    let over = |limit: Option<i64>, spent: i64| limit.is_some_and(|l| spent.saturating_add(auth.amount_minor) > l);
    if over(c.per_transaction_minor, 0) {
        return Decision::Decline(R::PerTransactionLimit);
    }
    if over(c.daily_minor, usage.day_minor) {
        return Decision::Decline(R::DailyLimit);
    }
    if over(c.monthly_minor, usage.month_minor) {
        return Decision::Decline(R::MonthlyLimit);
    }
    if auth.amount_minor > card.available_minor {
        return Decision::Decline(R::InsufficientFunds);
    }
    Decision::Approve
}

#[cfg(test)]
// Amounts in minor units are written <units>_<cents>.
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn card() -> Card {
        Card {
            token: "card-1".into(),
            state: CardState::Active,
            currency: "EUR".into(),
            controls: Controls {
                per_transaction_minor: Some(50_00),
                daily_minor: Some(100_00),
                monthly_minor: Some(300_00),
                allowed_mccs: vec![],
                blocked_mccs: vec!["7995".into()],
                allowed_countries: vec!["DE".into(), "FR".into()],
            },
            available_minor: 200_00,
        }
    }

    fn auth(amount_minor: i64) -> Authorization {
        Authorization {
            partner: "cards-lithic".into(),
            transaction_id: "tx-1".into(),
            card_token: "card-1".into(),
            amount_minor,
            currency: "EUR".into(),
            merchant: Merchant {
                name: "Bakery".into(),
                mcc: "5462".into(),
                country: Some("DE".into()),
            },
        }
    }

    #[test]
    fn each_control_declines_for_its_own_reason() {
        use DeclineReason as R;
        let u = Usage::default();
        assert_eq!(decide(Some(&card()), u, &auth(12_34)), Decision::Approve);
        assert_eq!(decide(None, u, &auth(1)), Decision::Decline(R::UnknownCard));
        for (state, reason) in [
            (CardState::Inactive, R::CardInactive),
            (CardState::Frozen, R::CardFrozen),
            (CardState::Terminated, R::CardClosed),
        ] {
            let c = Card { state, ..card() };
            assert_eq!(decide(Some(&c), u, &auth(1)), Decision::Decline(reason));
        }
        assert_eq!(decide(Some(&card()), u, &auth(0)), Decision::Decline(R::InvalidAmount));
        let usd = Authorization {
            currency: "USD".into(),
            ..auth(1)
        };
        assert_eq!(decide(Some(&card()), u, &usd), Decision::Decline(R::CurrencyMismatch));
        let casino = Authorization {
            merchant: Merchant {
                mcc: "7995".into(),
                ..auth(1).merchant
            },
            ..auth(1)
        };
        assert_eq!(
            decide(Some(&card()), u, &casino),
            Decision::Decline(R::MerchantCategoryBlocked)
        );
        let abroad = Authorization {
            merchant: Merchant {
                country: Some("US".into()),
                ..auth(1).merchant
            },
            ..auth(1)
        };
        assert_eq!(decide(Some(&card()), u, &abroad), Decision::Decline(R::CountryBlocked));
        assert_eq!(
            decide(Some(&card()), u, &auth(50_01)),
            Decision::Decline(R::PerTransactionLimit)
        );
        let day = Usage {
            day_minor: 60_00,
            month_minor: 60_00,
        };
        assert_eq!(
            decide(Some(&card()), day, &auth(40_01)),
            Decision::Decline(R::DailyLimit)
        );
        assert_eq!(
            decide(Some(&card()), day, &auth(40_00)),
            Decision::Approve,
            "exactly at the limit"
        );
        let month = Usage {
            day_minor: 0,
            month_minor: 290_00,
        };
        assert_eq!(
            decide(Some(&card()), month, &auth(10_01)),
            Decision::Decline(R::MonthlyLimit)
        );
        let poor = Card {
            available_minor: 5_00,
            ..card()
        };
        assert_eq!(
            decide(Some(&poor), u, &auth(5_01)),
            Decision::Decline(R::InsufficientFunds)
        );
        let allow_list = Card {
            controls: Controls {
                allowed_mccs: vec!["5411".into()],
                ..card().controls
            },
            ..card()
        };
        assert_eq!(
            decide(Some(&allow_list), u, &auth(1)),
            Decision::Decline(R::MerchantCategoryBlocked)
        );
    }

    #[test]
    fn reasons_read_back_as_written() {
        for r in ALL_REASONS {
            assert_eq!(DeclineReason::parse(r.as_str()), Some(r));
        }
        for s in [
            CardState::Inactive,
            CardState::Active,
            CardState::Frozen,
            CardState::Terminated,
        ] {
            assert_eq!(CardState::parse(s.as_str()), Some(s));
        }
    }

    proptest! {
        /// Whatever the card and the purchase, an approval never takes the card past a limit or
        /// past the money available to it, and only an active card approves anything.
        #[test]
        fn an_approval_never_breaks_a_limit(
            amount in -10i64..500_00,
            available in 0i64..300_00,
            day in 0i64..200_00,
            month in 0i64..400_00,
            per_tx in proptest::option::of(0i64..100_00),
            daily in proptest::option::of(0i64..200_00),
            monthly in proptest::option::of(0i64..400_00),
            state in 0usize..4,
        ) {
            let c = Card {
                state: [CardState::Inactive, CardState::Active, CardState::Frozen, CardState::Terminated][state],
                controls: Controls { per_transaction_minor: per_tx, daily_minor: daily, monthly_minor: monthly,
                    allowed_mccs: vec![], blocked_mccs: vec![], allowed_countries: vec![] },
                available_minor: available,
                ..card()
            };
            let u = Usage { day_minor: day, month_minor: month };
            if decide(Some(&c), u, &auth(amount)) == Decision::Approve {
                prop_assert!(c.state == CardState::Active);
                prop_assert!(amount > 0 && amount <= available);
                prop_assert!(per_tx.is_none_or(|l| amount <= l));
                prop_assert!(daily.is_none_or(|l| day + amount <= l));
                prop_assert!(monthly.is_none_or(|l| month + amount <= l));
            }
        }
    }
}
