//! Side effects that must not be lost or doubled, delivered by a worker:
//! claim → send → record the outcome. The retry policy is pure ([`backoff`]).

pub mod action;
pub mod backoff;
pub mod handover;
pub mod worker;

pub use action::{Action, Button, Markup};
