//! The reconcile engine: a pure planner, and group controllers that execute its plans.
//!
//! - [`plan()`] is a pure function of (spec, observed members, health, in-flight work) to a
//!   typed [`Plan`]; it explains itself in one line ([`Plan::explain`]).
//! - A controller (one task per group, started by the [`Manager`](crate::Manager)) runs
//!   reconcile passes when a [`Trigger`] fires: observe (describe + health), plan, execute with
//!   bounded parallelism. Failed passes are retried with a per-group [`Backoff`] that resets
//!   on success; provider calls share a global [`RateLimiter`]; every provider mutation is
//!   fenced by the leadership term; everything is reported as an [`EngineEvent`].

mod backoff;
pub(crate) mod controller;
mod event;
mod plan;
mod rate;

pub use backoff::Backoff;
pub use controller::EngineOptions;
pub use event::{EngineEvent, Trigger};
pub use plan::{
    Action, Cause, InFlight, Member, Plan, PlanInput, UpdateClock, UpdateProgress, plan,
};
pub use rate::RateLimiter;
