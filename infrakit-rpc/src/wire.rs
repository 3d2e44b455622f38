//! The JSON shapes of InfraKit's plugin protocol (DESIGN §4): PascalCase, `null` for absent
//! values, one params object per call.

use infrakit_core::{
    Allocation, Attachment, Description, DestroyContext, GroupDescription, GroupId, GroupSpec,
    Health, Index, InstanceId, InstanceSpec, LogicalId, Tags,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// JSON-RPC error codes.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC 2.0 request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The plugin failed (what Go plugins answer for every error).
    pub const SERVER_ERROR: i64 = -32000;
}

/// A request envelope.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// `Interface.Method`.
    pub method: String,
    /// One object.
    #[serde(default)]
    pub params: Value,
    /// The caller's ID, echoed back.
    #[serde(default)]
    pub id: Value,
}

/// An error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// Extra data; infrakit-rs puts `{"Transient": bool, "Kind": ".."}` here (Go ignores it).
    #[serde(default)]
    pub data: Value,
}

/// A response envelope: exactly one of `result` and `error`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// The request's ID.
    #[serde(default)]
    pub id: Value,
}

/// `{"Type": ".."}` and `{"Type": "..", "OK": true}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TypeOk {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// Whether the call succeeded.
    #[serde(rename = "OK", default)]
    pub ok: bool,
}

/// `Instance.Validate` and `Flavor.Validate` params (the latter with `Allocation`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ValidateReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The properties.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// The allocation (flavors only).
    #[serde(
        rename = "Allocation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allocation: Option<WireAllocation>,
}

/// `Instance.Provision` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The spec.
    #[serde(rename = "Spec")]
    pub spec: InstanceSpec,
}

/// `Instance.Provision` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionResp {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The new instance.
    #[serde(rename = "ID")]
    pub id: Option<InstanceId>,
}

/// `Instance.Label` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct LabelReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The instance.
    #[serde(rename = "Instance")]
    pub instance: InstanceId,
    /// The tags to set.
    #[serde(rename = "Labels", default)]
    pub labels: Option<Tags>,
}

/// `Instance.Destroy` params (`Context` is absent from the older generation).
#[derive(Debug, Serialize, Deserialize)]
pub struct DestroyReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The instance.
    #[serde(rename = "Instance")]
    pub instance: InstanceId,
    /// Why.
    #[serde(rename = "Context", default)]
    pub context: Option<DestroyContext>,
}

/// `Instance.DescribeInstances` params (`Properties` is absent from the older generation).
#[derive(Debug, Serialize, Deserialize)]
pub struct DescribeReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The tags to match.
    #[serde(rename = "Tags", default)]
    pub tags: Option<Tags>,
    /// Whether to include provider details.
    #[serde(rename = "Properties", default)]
    pub properties: bool,
}

/// `Instance.DescribeInstances` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct DescribeResp {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The instances.
    #[serde(rename = "Descriptions", default)]
    pub descriptions: Option<Vec<Description>>,
}

/// Allocation as Go sends it: `{"Size":3,"LogicalIDs":null}` or `{"Size":0,"LogicalIDs":[..]}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WireAllocation {
    /// The size (0 for a quorum group).
    #[serde(rename = "Size", default)]
    pub size: u32,
    /// The logical IDs (`null` for a scaled group).
    #[serde(rename = "LogicalIDs", default)]
    pub logical_ids: Option<Vec<LogicalId>>,
    /// Attachments by logical ID (an infrakit-rs extension; omitted when empty).
    #[serde(
        rename = "Attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attachments: Option<BTreeMap<LogicalId, Vec<Attachment>>>,
}

impl From<&Allocation> for WireAllocation {
    fn from(a: &Allocation) -> Self {
        match a {
            Allocation::Size(n) => WireAllocation {
                size: *n,
                logical_ids: None,
                attachments: None,
            },
            Allocation::LogicalIds { ids, attachments } => WireAllocation {
                size: 0,
                logical_ids: Some(ids.clone()),
                attachments: (!attachments.is_empty()).then(|| attachments.clone()),
            },
        }
    }
}

impl From<WireAllocation> for Allocation {
    fn from(w: WireAllocation) -> Self {
        match w.logical_ids {
            Some(ids) if !ids.is_empty() || w.size == 0 => Allocation::LogicalIds {
                ids,
                attachments: w.attachments.unwrap_or_default(),
            },
            _ => Allocation::Size(w.size),
        }
    }
}

/// `Flavor.Prepare` params (`Index` is absent from the older generation).
#[derive(Debug, Serialize, Deserialize)]
pub struct PrepareReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The flavor properties.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// The spec to complete.
    #[serde(rename = "Spec")]
    pub spec: InstanceSpec,
    /// The allocation.
    #[serde(rename = "Allocation", default)]
    pub allocation: WireAllocation,
    /// Which member.
    #[serde(rename = "Index", default)]
    pub index: Option<Index>,
}

/// `Flavor.Prepare` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct PrepareResp {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The completed spec.
    #[serde(rename = "Spec")]
    pub spec: InstanceSpec,
}

/// `Flavor.Healthy` and `Flavor.Drain` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The flavor properties.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// The member.
    #[serde(rename = "Instance")]
    pub instance: Description,
}

/// `Flavor.Healthy` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct HealthResp {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// 0 unknown, 1 healthy, 2 unhealthy.
    #[serde(rename = "Health")]
    pub health: Health,
}

/// `Flavor.HealthyBatch` params (infrakit-rs only; Go plugins have no such method).
#[derive(Debug, Serialize, Deserialize)]
pub struct HealthyBatchReq {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The flavor properties.
    #[serde(rename = "Properties", default)]
    pub properties: Value,
    /// The members, in the order of the answer.
    #[serde(rename = "Instances")]
    pub instances: Vec<Description>,
}

/// `Flavor.HealthyBatch` result: one health per member, or `null` when the flavor answers
/// per member (the client then asks `Flavor.Healthy` for each).
#[derive(Debug, Serialize, Deserialize)]
pub struct HealthyBatchResp {
    /// The subtype.
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// 0 unknown, 1 healthy, 2 unhealthy, per member; `null`: ask per member.
    #[serde(rename = "Health")]
    pub health: Option<Vec<Health>>,
}

/// `Group.CommitGroup` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommitReq {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group spec.
    #[serde(rename = "Spec")]
    pub spec: GroupSpec,
    /// Only plan.
    #[serde(rename = "Pretend", default)]
    pub pretend: bool,
}

/// `Group.CommitGroup` result: `{"Name","ID","Details"}` from Group/0.1.1, only
/// `{"Details"}` from Group/0.1.0 (Go v0.4.1, `rpc/group/types.go`), so `ID` may be absent.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommitResp {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group (absent from Group/0.1.0 answers).
    #[serde(rename = "ID", default)]
    pub id: Option<GroupId>,
    /// The plan in one line.
    #[serde(rename = "Details")]
    pub details: String,
}

/// `{"Name":..,"ID":..}`: params of most group calls and the result of several.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupIdReq {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group.
    #[serde(rename = "ID")]
    pub id: GroupId,
}

/// `Group.DescribeGroup` result: Group/0.1.0 answers only `{"Description"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DescribeGroupResp {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group (absent from Group/0.1.0 answers).
    #[serde(rename = "ID", default)]
    pub id: Option<GroupId>,
    /// What the group controller sees.
    #[serde(rename = "Description")]
    pub description: GroupDescription,
}

/// The answer to a group call that returns nothing but an acknowledgement, in either
/// generation: `{"Name","ID"}` (Group/0.1.1: `FreeGroup`, `DestroyGroup`, `DestroyInstances`,
/// `SetSize`) or `{"OK": true}` (Group/0.1.0: `FreeGroup`, `DestroyGroup`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GroupAck {
    /// The plugin's subtype name (Group/0.1.1).
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The group (Group/0.1.1).
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<GroupId>,
    /// Success (Group/0.1.0).
    #[serde(rename = "OK", default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

/// `Group.InspectGroups` params.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NameReq {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
}

/// `Group.InspectGroups` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct InspectResp {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Every group's spec.
    #[serde(rename = "Groups", default)]
    pub groups: Option<Vec<GroupSpec>>,
}

/// `Group.DestroyInstances` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct DestroyInstancesReq {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group.
    #[serde(rename = "ID")]
    pub id: GroupId,
    /// The members to destroy.
    #[serde(rename = "Instances", default)]
    pub instances: Option<Vec<InstanceId>>,
}

/// `Group.Size` result and `Group.SetSize` params.
#[derive(Debug, Serialize, Deserialize)]
pub struct SizeMsg {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group.
    #[serde(rename = "ID")]
    pub id: GroupId,
    /// The size.
    #[serde(rename = "Size", default)]
    pub size: u32,
}

/// `Group.Trigger` result (an infrakit-rs extension; Go plugins do not have the method).
#[derive(Debug, Serialize, Deserialize)]
pub struct TriggerResp {
    /// The plugin's subtype name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The group.
    #[serde(rename = "ID")]
    pub id: GroupId,
    /// Passes started before the requested one.
    #[serde(rename = "PassesStarted", default)]
    pub passes_started: u64,
}

/// `Metadata.List`, `Metadata.Keys` and `Metadata.Get` params: the path as segments.
///
/// Metadata/0.1.0 selects the object by `Type`; Metadata/0.1.1 (Go master,
/// `pkg/rpc/metadata/types.go`) sends the full plugin name in `Name` instead
/// (`{"Name":"vars","Path":["a","b"]}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PathReq {
    /// The subtype (Metadata/0.1.0).
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The full plugin name, `lookup[/type]` (Metadata/0.1.1).
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The path segments.
    #[serde(rename = "Path", default)]
    pub path: Vec<String>,
}

/// `Metadata.List` / `Metadata.Keys` result (`Name` echoed for Metadata/0.1.1 callers).
#[derive(Debug, Serialize, Deserialize)]
pub struct ListResp {
    /// The subtype (echoed to Metadata/0.1.0 callers).
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The plugin name (echoed to Metadata/0.1.1 callers).
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The children.
    #[serde(rename = "Nodes", default)]
    pub nodes: Option<Vec<String>>,
}

/// `Metadata.Get` result (`Name` echoed for Metadata/0.1.1 callers).
#[derive(Debug, Serialize, Deserialize)]
pub struct GetResp {
    /// The subtype (echoed to Metadata/0.1.0 callers).
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The plugin name (echoed to Metadata/0.1.1 callers).
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value (`null` when absent).
    #[serde(rename = "Value", default)]
    pub value: Value,
}

/// The interfaces and versions a plugin implements.
pub mod versions {
    /// Instance, latest generation.
    pub const INSTANCE: &str = "0.6.1";
    /// Instance, v0.4/v0.5 generation.
    pub const INSTANCE_OLD: &str = "0.3.0";
    /// Flavor, latest.
    pub const FLAVOR: &str = "0.1.1";
    /// Flavor, older.
    pub const FLAVOR_OLD: &str = "0.1.0";
    /// Group, latest.
    pub const GROUP: &str = "0.1.1";
    /// Group, older.
    pub const GROUP_OLD: &str = "0.1.0";
    /// Metadata, v0.4/v0.5 generation (selects by `Type`).
    pub const METADATA: &str = "0.1.0";
    /// Metadata, latest generation (selects by `Name`, lists with `Metadata.Keys`).
    pub const METADATA_LATEST: &str = "0.1.1";
    /// The manager's own interface, v0.4 generation: `Manager/0.1.0`.
    pub const MANAGER: &str = "0.1.0";
    /// The manager's interface in the latest generation, announced as `Stack/0.1.1` (its
    /// methods are still named `Manager.*`).
    pub const STACK: &str = "0.1.1";
}

/// `Manager.IsLeader` result (`pkg/rpc/manager/service.go`, both generations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsLeaderResp {
    /// Whether this replica leads.
    #[serde(rename = "Leader")]
    pub leader: bool,
}

/// `Manager.LeaderLocation` result: Go sends a `*net/url.URL`, which `encoding/json` writes
/// field by field; `null` when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderLocationResp {
    /// Where the leader is.
    #[serde(rename = "Location")]
    pub location: Option<GoUrl>,
}

/// A Go `net/url.URL` as `encoding/json` writes it (exported fields, in declaration order;
/// `User` is a pointer to a struct with no exported fields, so `null` or `{}`). Go's decoder
/// matches names case-insensitively and ignores unknown ones, so this set is accepted by every
/// Go version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoUrl {
    /// `unix`, `http`, ... (empty for a bare path).
    #[serde(rename = "Scheme", default)]
    pub scheme: String,
    /// Opaque data (unused here).
    #[serde(rename = "Opaque", default)]
    pub opaque: String,
    /// User info: always `null` here.
    #[serde(rename = "User", default)]
    pub user: Option<Value>,
    /// `host[:port]`.
    #[serde(rename = "Host", default)]
    pub host: String,
    /// The path.
    #[serde(rename = "Path", default)]
    pub path: String,
    /// The raw path (empty: `Path` is the encoding).
    #[serde(rename = "RawPath", default)]
    pub raw_path: String,
    /// A `?` with no query.
    #[serde(rename = "ForceQuery", default)]
    pub force_query: bool,
    /// The query, without `?`.
    #[serde(rename = "RawQuery", default)]
    pub raw_query: String,
    /// The fragment, without `#`.
    #[serde(rename = "Fragment", default)]
    pub fragment: String,
}

impl GoUrl {
    /// Splits a location the way Go's `url.Parse` does for the forms a leadership source
    /// reports: `scheme://host/path?query#fragment`, or a bare path or name (all `Path`).
    pub fn parse(location: &str) -> GoUrl {
        let (rest, fragment) = location
            .split_once('#')
            .map_or((location, ""), |(a, b)| (a, b));
        let (rest, query) = rest.split_once('?').map_or((rest, ""), |(a, b)| (a, b));
        let mut url = GoUrl {
            fragment: fragment.to_owned(),
            raw_query: query.to_owned(),
            ..GoUrl::default()
        };
        match rest.split_once("://") {
            Some((scheme, after))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                url.scheme = scheme.to_ascii_lowercase();
                let (host, path) = match after.find('/') {
                    Some(i) => after.split_at(i),
                    None => (after, ""),
                };
                url.host = host.to_owned();
                url.path = path.to_owned();
            }
            _ => url.path = rest.to_owned(),
        }
        url
    }
}

/// A spec as the latest generation's manager lists it (`Manager.Specs`, `Manager.Enforce`;
/// `pkg/types/spec.go`, stored by `pkg/manager/stored.go` as `Kind: "group"`,
/// `Metadata.Name: <group ID>`, `Properties: <group properties>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSpec {
    /// `"group"` for a group.
    #[serde(rename = "kind")]
    pub kind: String,
    /// The interface and version (empty: the manager does not record it).
    #[serde(rename = "version", default)]
    pub version: String,
    /// Name and tags.
    #[serde(rename = "metadata", default)]
    pub metadata: StackMetadata,
    /// The group's `Properties` (instance, flavor, allocation...).
    #[serde(rename = "properties", default)]
    pub properties: Value,
}

/// `types.Metadata` (`pkg/types/spec.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackMetadata {
    /// The object's identity, for an object that exists (`Manager.Inspect`).
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The group ID.
    #[serde(rename = "name", default)]
    pub name: String,
    /// Tags (`null` here).
    #[serde(rename = "tags", default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `types.Object` (`pkg/types/object.go`): the spec's fields inline, plus `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackObject {
    /// The spec.
    #[serde(flatten)]
    pub spec: StackSpec,
    /// What the group controller sees (a `GroupDescription`).
    #[serde(rename = "state", default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

/// `Manager.Specs` result and `Manager.Enforce` / `Manager.Terminate` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpecsMsg {
    /// The specs.
    #[serde(rename = "Specs", default)]
    pub specs: Option<Vec<StackSpec>>,
}

/// `Manager.Inspect` result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectsResp {
    /// One object per group.
    #[serde(rename = "Objects", default)]
    pub objects: Option<Vec<StackObject>>,
}
