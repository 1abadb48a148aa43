//! The card flow's state, inputs and effects. No I/O here.
//!
//! ```text
//!  issue ─▶ requested ─┬─ issued ─▶ inactive ─ activate ─▶ active ⇄ frozen (freeze / unfreeze)
//!                      │            (virtual cards: active at once)      └──── terminate ─▶ terminated
//!                      ├─ refused, no live card ─▶ next processor (failover) or failed
//!                      └─ outcome unknown ─▶ stays requested (an operator resolves it)
//! ```
//!
//! One operation is in flight at a time; the rest wait in order. A card stays with the processor
//! that issued it. An operation the card's state does not allow is answered with a failure at once
//! (the card keeps its state). A processor's status notice prompts a read of the card there
//! (`REFRESH`, ours alone), whose answer is taken.

use serde::{Deserialize, Serialize};
use switchyard_model::events::{
    cards::{CardFormFactor, CardOperation, CardState},
    common::Failure,
};

/// An operation asked by a product: the command that asked it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub operation: CardOperation,
    pub command: uuid::Uuid,
    pub reason: Option<String>,
}

/// The operation sent to the adapter; its request's event id is the execution's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub op: Op,
    pub partner: String,
    pub request: uuid::Uuid,
    pub attempt: i32,
    /// Processors tried for an issue, in order.
    pub tried: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub state: CardState,
    /// The issue failed at every processor (terminal).
    pub failed: bool,
    pub partner: Option<String>,
    pub card_token: Option<String>,
    pub last4: Option<String>,
    pub form_factor: Option<CardFormFactor>,
    pub pending: Option<Pending>,
    pub waiting: Vec<Op>,
    /// Reads at the processor that failed in a row (the next waits longer).
    #[serde(default)]
    pub read_failures: u32,
}

impl Card {
    pub fn new(form_factor: Option<CardFormFactor>) -> Self {
        Card {
            state: CardState::Requested,
            failed: false,
            partner: None,
            card_token: None,
            last4: None,
            form_factor,
            pending: None,
            waiting: vec![],
            read_failures: 0,
        }
    }

    pub fn name(&self) -> &'static str {
        if self.failed {
            return "FAILED";
        }
        match self.state {
            CardState::Requested => "REQUESTED",
            CardState::Inactive => "INACTIVE",
            CardState::Active => "ACTIVE",
            CardState::Frozen => "FROZEN",
            CardState::Terminated => "TERMINATED",
        }
    }
}

/// The adapter's answer to a pending operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub request: uuid::Uuid,
    pub partner: String,
    pub card_token: Option<String>,
    pub last4: Option<String>,
    pub state: CardState,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A product's command (the issue itself is the flow's start).
    Command(Op),
    Answer(Answer),
    /// The processor says the card is now in this state (its own console, its fraud rules, or
    /// the echo of our change; perhaps late): a prompt to read the card there.
    ProcessorState(CardState),
    /// The card's timer: read it again at its processor (after a read that failed).
    Timer,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the adapter to carry out `op` at `partner`.
    Request {
        op: Op,
        partner: String,
        request: uuid::Uuid,
        attempt: i32,
    },
    /// Tell products: the card's state after `operation` (or after the processor moved it), or
    /// why `operation` failed.
    Changed {
        operation: Option<CardOperation>,
        failure: Option<Failure>,
    },
    /// The card is known by this token at this processor from now on.
    Token { partner: String, card_token: String },
    /// Arm the card's timer this many seconds from now, or clear it (`None`).
    Timer(Option<u64>),
    /// A line of the card's history.
    Note(&'static str, serde_json::Value),
}
