//! The reconcile engine: a pure planner, and group controllers that execute its plans.
//!
//! - [`plan()`] is a pure function of (spec, observed members, health, in-flight work) to a
//!   typed [`Plan`]; it explains itself in one line ([`Plan::explain`]).
//! - A controller (one task per group, started by the [`Manager`](crate::Manager)) runs
//!   reconcile passes when a [`Trigger`] fires: observe (describe + health), plan, execute with
//!   bounded parallelism. Failed passes are retried with a per-group [`Backoff`] that resets
//!   on success; provider calls wait for their plugin's [`RateLimiter`]; every provider
//!   mutation is fenced by the leadership term and the leader's epoch; everything is
//!   reported as an [`EngineEvent`].

mod backoff;
pub(crate) mod controller;
mod event;
pub(crate) mod fence;
mod guard;
mod hook;
mod logical_ids;
mod options;
mod plan;
mod rate;
mod state;

pub use backoff::Backoff;
pub use event::{EngineEvent, Trigger};
pub use hook::{HeldAction, Hold, PlanHook, Review, Verdict};
pub use logical_ids::LogicalIdIndex;
pub use options::{EngineOptions, GroupOptions};
pub use plan::{
    Action, Cause, InFlight, Member, Plan, PlanInput, RolloutStep, UpdateClock, UpdateProgress,
    plan,
};
pub use rate::RateLimiter;
