//! Identifier newtypes: instance IDs, logical IDs and group IDs are all strings on the wire,
//! but they must never be mixed up in code.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// The provider's identifier of one instance (an EC2 instance ID, a container ID, ...).
    ///
    /// ```
    /// use infrakit_core::InstanceId;
    /// let id = InstanceId::from("i-0abc");
    /// assert_eq!(id.as_str(), "i-0abc");
    /// assert_eq!(id.to_string(), "i-0abc");
    /// ```
    InstanceId
);

string_id!(
    /// A stable identity that a replacement instance inherits, e.g. a swarm manager's
    /// private IP. Attachments are bound to logical IDs and follow them.
    ///
    /// ```
    /// use infrakit_core::LogicalId;
    /// let ip = LogicalId::new("10.0.0.1");
    /// assert_eq!(ip, "10.0.0.1");
    /// ```
    LogicalId
);

string_id!(
    /// The name of a group, unique within one manager (`workers`, `managers`).
    ///
    /// ```
    /// use infrakit_core::GroupId;
    /// let g: GroupId = "workers".into();
    /// assert_eq!(g.as_str(), "workers");
    /// ```
    GroupId
);
