//! The reconcile engine: a pure planner, and group controllers that execute its plans.

mod plan;

pub use plan::{
    Action, Cause, InFlight, Member, Plan, PlanInput, UpdateClock, UpdateProgress, plan,
};
