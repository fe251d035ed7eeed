//! Side effects that must not be lost or doubled, delivered by a worker:
//! claim → send → record the outcome. The retry policy is pure ([`backoff`]). Answers to button
//! presses are sent beside it without a row ([`answers`]).

pub mod action;
pub mod answers;
pub mod backoff;
pub mod handover;
pub mod worker;

pub use action::{Action, Button, Markup};
