//! Errors of the RPC layer, and how plugin errors travel: as `-32000` with the message (what
//! Go plugins send and understand), plus a `data` object that lets an infrakit-rs client
//! rebuild the typed error (`{"Kind":"throttled","Transient":true,..}`; Go ignores it).

use crate::wire::{ErrorObject, code};
use infrakit_core::{
    Classify, ErrorKind, FlavorError, GroupError, GroupId, InstanceError, InstanceId,
    MetadataError, SpecError, timeouts::PluginCall,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Calling a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No socket for this plugin name.
    #[error("plugin {name:?} not found (no socket at {path})")]
    PluginNotFound {
        /// The plugin name.
        name: String,
        /// Where its socket should be.
        path: String,
    },
    /// The plugin does not implement the interface at a version we speak.
    #[error("plugin {plugin:?} does not implement {interface} {expected}; it implements {found}")]
    VersionMismatch {
        /// The plugin.
        plugin: String,
        /// The interface.
        interface: String,
        /// The versions we speak.
        expected: String,
        /// What it announced.
        found: String,
    },
    /// The socket could not be reached, or the connection broke; transient.
    #[error("transport to {plugin:?}: {message}")]
    Transport {
        /// The plugin.
        plugin: String,
        /// What happened.
        message: String,
    },
    /// No answer within the timeout; transient.
    #[error("{method} on {plugin:?} timed out after {after:?}")]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The method.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The plugin answered with an error.
    #[error("{plugin:?} {method}: {message}")]
    Remote {
        /// The plugin.
        plugin: String,
        /// The method.
        method: String,
        /// The JSON-RPC code.
        code: i64,
        /// The plugin's message.
        message: String,
        /// Extra data.
        data: Value,
    },
    /// The plugin's generation of the interface has no such method, and nothing it has can
    /// do the same honestly.
    #[error("plugin {plugin:?} speaks {interface}/{version}, which has no {method}: {reason}")]
    Unsupported {
        /// The plugin.
        plugin: String,
        /// The interface.
        interface: String,
        /// The version the plugin announced.
        version: String,
        /// The method it lacks.
        method: String,
        /// What to do instead.
        reason: String,
    },
    /// The answer is not a JSON-RPC response we understand.
    #[error("bad response from {plugin:?} to {method}: {message}")]
    Protocol {
        /// The plugin.
        plugin: String,
        /// The method.
        method: String,
        /// What is wrong.
        message: String,
    },
}

impl Classify for RpcError {
    fn kind(&self) -> ErrorKind {
        match self {
            RpcError::Transport { .. } | RpcError::Timeout { .. } => ErrorKind::Transient,
            RpcError::Remote { data, .. } if data.get("Transient") == Some(&Value::Bool(true)) => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Permanent,
        }
    }
}

fn remote_parts(e: &RpcError) -> Option<(&str, &Value)> {
    match e {
        RpcError::Remote { message, data, .. } => Some((message.as_str(), data)),
        _ => None,
    }
}

fn data_str<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

fn data_ids(data: &Value, key: &str) -> Vec<InstanceId> {
    data.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(InstanceId::from)
                .collect()
        })
        .unwrap_or_default()
}

fn spec_error(data: &Value, message: &str) -> SpecError {
    SpecError::new(
        data_str(data, "Field").unwrap_or_default(),
        data_str(data, "Reason").unwrap_or(message),
    )
}

/// The operation and deadline of a remote `TimedOut`.
fn timed_out(data: &Value) -> Option<(PluginCall, Duration)> {
    let operation = data_str(data, "Operation")?.parse().ok()?;
    let after = Duration::from_millis(data.get("AfterMs")?.as_u64()?);
    Some((operation, after))
}

fn timed_out_extra(operation: PluginCall, after: Duration) -> Value {
    json!({"Operation": operation.as_str(), "AfterMs": after.as_millis() as u64})
}

impl From<RpcError> for InstanceError {
    fn from(e: RpcError) -> Self {
        if let Some((message, data)) = remote_parts(&e) {
            let transient = data.get("Transient") == Some(&Value::Bool(true));
            if let (Some("timed_out"), Some((operation, after))) =
                (data_str(data, "Kind"), timed_out(data))
            {
                return InstanceError::TimedOut { operation, after };
            }
            return match data_str(data, "Kind") {
                Some("throttled") => InstanceError::Throttled {
                    message: message.to_owned(),
                    retry_after: data
                        .get("RetryAfterMs")
                        .and_then(Value::as_u64)
                        .map(Duration::from_millis),
                },
                Some("unavailable") => InstanceError::Unavailable {
                    message: message.to_owned(),
                },
                Some("conflict") => InstanceError::Conflict {
                    message: message.to_owned(),
                },
                Some("not_found") => InstanceError::NotFound {
                    id: InstanceId::new(data_str(data, "ID").unwrap_or_default()),
                },
                Some("invalid") => InstanceError::InvalidProperties(spec_error(data, message)),
                Some("unsupported") => InstanceError::Unsupported {
                    operation: message.to_owned(),
                },
                _ => InstanceError::Provider {
                    message: message.to_owned(),
                    transient,
                },
            };
        }
        let transient = e.is_transient();
        if transient {
            InstanceError::Unavailable {
                message: e.to_string(),
            }
        } else {
            InstanceError::Provider {
                message: e.to_string(),
                transient,
            }
        }
    }
}

impl From<RpcError> for FlavorError {
    fn from(e: RpcError) -> Self {
        if let Some((message, data)) = remote_parts(&e) {
            let transient = data.get("Transient") == Some(&Value::Bool(true));
            if let (Some("timed_out"), Some((operation, after))) =
                (data_str(data, "Kind"), timed_out(data))
            {
                return FlavorError::TimedOut { operation, after };
            }
            return match data_str(data, "Kind") {
                Some("invalid") => FlavorError::InvalidProperties(spec_error(data, message)),
                Some("unavailable") => FlavorError::Unavailable {
                    message: message.to_owned(),
                    retry_after: None,
                },
                Some("refused") => FlavorError::Refused {
                    message: message.to_owned(),
                },
                _ => FlavorError::Other {
                    message: message.to_owned(),
                    transient,
                },
            };
        }
        let transient = e.is_transient();
        if transient {
            FlavorError::Unavailable {
                message: e.to_string(),
                retry_after: None,
            }
        } else {
            FlavorError::Other {
                message: e.to_string(),
                transient,
            }
        }
    }
}

impl From<RpcError> for GroupError {
    fn from(e: RpcError) -> Self {
        if let Some((message, data)) = remote_parts(&e) {
            let transient = data.get("Transient") == Some(&Value::Bool(true));
            return match data_str(data, "Kind") {
                Some("not_leader") => GroupError::NotLeader {
                    leader: data_str(data, "Leader").map(str::to_owned),
                },
                Some("unknown_group") => GroupError::UnknownGroup {
                    id: GroupId::new(data_str(data, "ID").unwrap_or_default()),
                },
                Some("invalid") => GroupError::InvalidSpec(spec_error(data, message)),
                Some("not_member") => GroupError::NotMember {
                    group: GroupId::new(data_str(data, "ID").unwrap_or_default()),
                    ids: data_ids(data, "Instances"),
                },
                Some("partial_destroy") => GroupError::PartialDestroy {
                    group: GroupId::new(data_str(data, "ID").unwrap_or_default()),
                    destroyed: data.get("Destroyed").and_then(Value::as_u64).unwrap_or(0) as usize,
                    remaining: data_ids(data, "Remaining"),
                    cause: Box::new(GroupError::Other {
                        message: data_str(data, "Cause").unwrap_or(message).to_owned(),
                        transient,
                    }),
                },
                _ => GroupError::Other {
                    message: message.to_owned(),
                    transient,
                },
            };
        }
        GroupError::Other {
            message: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

impl From<RpcError> for MetadataError {
    fn from(e: RpcError) -> Self {
        MetadataError::Unavailable {
            message: e.to_string(),
        }
    }
}

/// How a server reports a plugin's error: code -32000 and the message, plus typed data.
pub(crate) trait ToErrorObject {
    fn to_error_object(&self) -> ErrorObject;
}

fn object(message: String, transient: bool, kind: &str, extra: Value) -> ErrorObject {
    let mut data = json!({"Kind": kind, "Transient": transient});
    if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
        d.extend(extra);
    }
    ErrorObject {
        code: code::SERVER_ERROR,
        message,
        data,
    }
}

fn spec_extra(s: &SpecError) -> Value {
    json!({"Field": s.field, "Reason": s.reason})
}

impl ToErrorObject for InstanceError {
    fn to_error_object(&self) -> ErrorObject {
        let t = self.is_transient();
        let m = self.to_string();
        match self {
            InstanceError::Throttled { retry_after, .. } => object(
                m,
                t,
                "throttled",
                json!({"RetryAfterMs": retry_after.map(|d| d.as_millis() as u64)}),
            ),
            InstanceError::Unavailable { .. } => object(m, t, "unavailable", Value::Null),
            InstanceError::Conflict { .. } => object(m, t, "conflict", Value::Null),
            InstanceError::NotFound { id } => object(m, t, "not_found", json!({"ID": id})),
            InstanceError::InvalidProperties(s) => object(m, t, "invalid", spec_extra(s)),
            InstanceError::Unsupported { .. } => object(m, t, "unsupported", Value::Null),
            InstanceError::TimedOut { operation, after } => {
                object(m, t, "timed_out", timed_out_extra(*operation, *after))
            }
            // Kinds this version does not know travel as provider errors, transient or not.
            InstanceError::Provider { .. } | _ => object(m, t, "provider", Value::Null),
        }
    }
}

impl ToErrorObject for FlavorError {
    fn to_error_object(&self) -> ErrorObject {
        let t = self.is_transient();
        let m = self.to_string();
        match self {
            FlavorError::InvalidProperties(s) => object(m, t, "invalid", spec_extra(s)),
            FlavorError::Unavailable { .. } => object(m, t, "unavailable", Value::Null),
            FlavorError::Refused { .. } => object(m, t, "refused", Value::Null),
            FlavorError::TimedOut { operation, after } => {
                object(m, t, "timed_out", timed_out_extra(*operation, *after))
            }
            FlavorError::Other { .. } | _ => object(m, t, "other", Value::Null),
        }
    }
}

impl ToErrorObject for GroupError {
    fn to_error_object(&self) -> ErrorObject {
        let t = self.is_transient();
        let m = self.to_string();
        match self {
            GroupError::NotLeader { leader } => {
                object(m, t, "not_leader", json!({"Leader": leader}))
            }
            GroupError::UnknownGroup { id } => object(m, t, "unknown_group", json!({"ID": id})),
            GroupError::InvalidSpec(s) => object(m, t, "invalid", spec_extra(s)),
            GroupError::NotMember { group, ids } => {
                object(m, t, "not_member", json!({"ID": group, "Instances": ids}))
            }
            // Go clients read only the message: it carries the cause too.
            GroupError::PartialDestroy {
                group,
                destroyed,
                remaining,
                cause,
            } => object(
                format!("{m}: {cause}"),
                t,
                "partial_destroy",
                json!({"ID": group, "Destroyed": destroyed, "Remaining": remaining,
                    "Cause": cause.to_string()}),
            ),
            _ => object(m, t, "other", Value::Null),
        }
    }
}

impl ToErrorObject for MetadataError {
    fn to_error_object(&self) -> ErrorObject {
        object(
            self.to_string(),
            self.is_transient(),
            "metadata",
            Value::Null,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn across(e: &GroupError) -> (ErrorObject, GroupError) {
        let o = e.to_error_object();
        let back = GroupError::from(RpcError::Remote {
            plugin: "group".into(),
            method: "Group.DestroyInstances".into(),
            code: o.code,
            message: o.message.clone(),
            data: o.data.clone(),
        });
        (o, back)
    }

    #[test]
    fn a_partial_destroy_crosses_the_wire_typed_and_go_reads_the_cause() {
        let e = GroupError::PartialDestroy {
            group: "workers".into(),
            destroyed: 1,
            remaining: vec!["i-2".into()],
            cause: Box::new(GroupError::Other {
                message: "i-2 refuses to drain".into(),
                transient: true,
            }),
        };
        let (wire, back) = across(&e);
        assert_eq!(
            wire.message,
            "group workers: 1 destroyed, 1 remain; the rest is retried: i-2 refuses to drain"
        );
        assert_eq!(back, e);
        assert!(back.is_transient());
    }

    #[test]
    fn a_timeout_crosses_the_wire_typed() {
        let remote = |o: ErrorObject| RpcError::Remote {
            plugin: "p".into(),
            method: "Instance.Provision".into(),
            code: o.code,
            message: o.message,
            data: o.data,
        };
        let e = InstanceError::TimedOut {
            operation: PluginCall::Provision,
            after: Duration::from_secs(120),
        };
        let wire = e.to_error_object();
        assert_eq!(wire.message, "provision timed out after 2m");
        assert_eq!(InstanceError::from(remote(wire)), e);
        let f = FlavorError::TimedOut {
            operation: PluginCall::Healthy,
            after: Duration::from_millis(1500),
        };
        let back = FlavorError::from(remote(f.to_error_object()));
        assert_eq!(back, f);
        assert!(back.is_transient());
    }
}
