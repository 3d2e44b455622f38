//! Exit codes, and how an error picks one.

use infrakit_core::GroupError;
use std::fmt;
use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// Any other failure: a plugin, the store, a transport, an invalid spec.
pub const ERROR: u8 = 1;
/// Bad usage (clap's own code).
pub const USAGE: u8 = 2;
/// The replica asked does not lead and the leader could not be reached from here.
pub const NOT_LEADER: u8 = 3;
/// `--watch`: the group did not converge before the deadline.
pub const NOT_CONVERGED: u8 = 4;
/// No such group.
pub const UNKNOWN_GROUP: u8 = 5;
/// No such instance (`infrakit instance destroy`).
pub const UNKNOWN_INSTANCE: u8 = 6;

/// The exit codes, for `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (plugin, store, transport, invalid spec, ...)
  2  bad usage
  3  not the leader: the replica asked does not lead and the leader could not be reached
  4  --watch: the group did not converge before --deadline
  5  no such group
  6  no such instance

Environment: INFRAKIT_PLUGINS_DIR (plugin directory), INFRAKIT_MANAGER (replica to talk to),
RUST_LOG (log filter).";

/// An error that carries its own exit code.
#[derive(Debug)]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl Exit {
    /// An error exiting with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code of a failed command: an [`Exit`] anywhere in the chain decides, then a
/// [`GroupError`] (not leader: 3, unknown group: 5), an unknown instance (6), else 1.
pub fn code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        match cause.downcast_ref::<GroupError>() {
            Some(GroupError::NotLeader { .. }) => return NOT_LEADER,
            Some(GroupError::UnknownGroup { .. }) => return UNKNOWN_GROUP,
            _ => {}
        }
        if let Some(infrakit_core::InstanceError::NotFound { .. }) =
            cause.downcast_ref::<infrakit_core::InstanceError>()
        {
            return UNKNOWN_INSTANCE;
        }
    }
    ERROR
}

/// The process exit code of a command's result, after printing the error.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code_of(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_follow_the_cause() {
        let e = anyhow::Error::new(GroupError::NotLeader { leader: None }).context("commit");
        assert_eq!(code_of(&e), NOT_LEADER);
        let e = anyhow::Error::new(GroupError::UnknownGroup { id: "w".into() });
        assert_eq!(code_of(&e), UNKNOWN_GROUP);
        let e: anyhow::Result<()> = Err(Exit::new(NOT_CONVERGED, "late").into());
        let e = e.context("watch").unwrap_err();
        assert_eq!(code_of(&e), NOT_CONVERGED);
        assert_eq!(code_of(&anyhow::anyhow!("boom")), ERROR);
        assert_eq!(USAGE, 2);
    }
}
