//! Both Go InfraKit generations, in both directions.
//!
//! - Our clients against scripted Go-shaped peers: each peer answers exactly what the Go
//!   server of its generation writes (the file it comes from is cited at each shape).
//! - Our server driven with the exact requests Go's clients send (Go's `encoding/json` writes
//!   every exported field of the request struct, so an empty field is still present).
//!
//! Go sources (github.com/docker/infrakit, now docker-archive/deploykit):
//! - v0.4.1: `rpc/group/types.go`, `rpc/group/service.go`, `rpc/group/client.go`,
//!   `cmd/cli/manager.go` (finds the manager with `client.New(addr, manager.InterfaceSpec)`,
//!   `IsLeader`, then drives the same socket as a group plugin), `pkg/manager/api.go`
//!   (`Manager/0.1.0`), `pkg/rpc/manager/service.go` (`IsLeader`, `LeaderLocation`).
//! - master: `pkg/rpc/group/types.go` (every request and response carries `Name`),
//!   `pkg/rpc/group/client.go` (sends the plugin name it was made with),
//!   `pkg/rpc/internal/keyed.go` (the keyed lookup), `pkg/plugin/name.go`
//!   (`GetLookupAndType`), `pkg/rpc/manager/service.go` and `client.go` (`Manager.*` under
//!   `pkg/spi/stack/spi.go`'s `Stack/0.1.1`), `pkg/types/spec.go` and `object.go`
//!   (`types.Spec`, `types.Object`), `pkg/manager/stored.go` (a group stored as
//!   `kind: group`, `metadata.name: <ID>`), `pkg/rpc/metadata/types.go` and `service.go`
//!   (`Metadata.Keys` / `Metadata.Get` with `Name`), `pkg/rpc/handshake.go` (`Hello`),
//!   `pkg/rpc/client/handshake.go` (master: `Hello`, v0.4/v0.5: `Handshake.Implements`; in
//!   both a listed name at another version is a mismatch only if the same name is not also
//!   listed at the wanted version, so announcing Metadata at 0.1.0 and 0.1.1 serves both).

mod common;

use common::{fake_plugin, raw_json};
use infrakit_core::*;
use infrakit_rpc::{Client, ManagerStatus, PluginServer, RemoteGroup, RemoteMetadata};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Go's `net/rpc`-style answer for a method the server does not have (gorilla/rpc, v0.4.1).
fn cant_find(method: &str) -> Value {
    json!({"code": -32000, "message": format!("rpc: can't find method \"{method}\""), "data": null})
}

/// A group spec's wire form as Go's `group.Spec` carries it.
fn go_spec(id: &str, size: u32) -> Value {
    json!({"ID": id, "Properties": {
        "Allocation": {"Size": size},
        "Instance": {"Plugin": "simulator", "Properties": {}},
        "Flavor": {"Plugin": "vanilla", "Properties": {}}
    }})
}

fn methods(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r["method"].as_str().unwrap().to_owned())
        .collect()
}

/// The group plugin of Go v0.4.1: `Handshake.Implements` says `Group/0.1.0`; results are
/// `rpc/group/types.go` of that release: `CommitGroupResponse{Details}`,
/// `FreeGroupResponse{OK}`, `DescribeGroupResponse{Description}`,
/// `DestroyGroupResponse{OK}`, `InspectGroupsResponse{Groups}`; `service.go` has no `Size`,
/// `SetSize` or `DestroyInstances`. `workers` starts at size 3.
fn v041_group(socket: &std::path::Path) -> common::FakePlugin {
    let size = std::sync::Mutex::new(3u32);
    fake_plugin(socket, move |method, params| match method {
        "Handshake.Hello" => Err(cant_find("Handshake.Hello")),
        "Handshake.Implements" => Ok(json!({"APIs": [{"Name": "Group", "Version": "0.1.0"}]})),
        "Group.CommitGroup" => {
            if let Some(n) = params["Spec"]["Properties"]["Allocation"]["Size"].as_u64() {
                *size.lock().unwrap() = n as u32;
            }
            Ok(json!({"Details": "Managing 3 instances"}))
        }
        "Group.FreeGroup" | "Group.DestroyGroup" => Ok(json!({"OK": true})),
        "Group.DescribeGroup" => Ok(json!({"Description": {
            "Instances": [{"ID": "i-1", "LogicalID": null, "Tags": {"infrakit.group": "workers"}}],
            "Converged": true
        }})),
        "Group.InspectGroups" => Ok(json!({"Groups": [go_spec("workers", *size.lock().unwrap())]})),
        other => Err(cant_find(other)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v041_group_plugin_is_driven_in_its_own_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("group");
    let fake = v041_group(&socket);
    let group = RemoteGroup::new(Client::new("group", &socket), "");
    let workers: GroupId = "workers".into();

    assert_eq!(group.generation().await.unwrap(), "0.1.0");
    let spec: GroupSpec = serde_json::from_value(go_spec("workers", 3)).unwrap();
    // `{"Details": ..}` with no ID is a success, not a decoding failure.
    assert_eq!(
        group.commit(spec, false).await.unwrap(),
        "Managing 3 instances"
    );
    // `{"OK": true}` is a success.
    group.free(&workers).await.unwrap();
    group.destroy(&workers).await.unwrap();
    let d = group.describe(&workers).await.unwrap();
    assert!(d.converged);
    assert_eq!(d.instances[0].id, "i-1");
    assert_eq!(group.inspect().await.unwrap()[0].id, workers);

    // No Group.Size: the size is the inspected spec's.
    assert_eq!(group.size(&workers).await.unwrap(), 3);
    // No Group.SetSize: the changed spec is committed.
    group.set_size(&workers, 5).await.unwrap();
    assert_eq!(group.size(&workers).await.unwrap(), 5);
    let unknown = group.size(&"nope".into()).await.unwrap_err();
    assert_eq!(unknown, GroupError::UnknownGroup { id: "nope".into() });
    // No Group.DestroyInstances: refused, naming the generation, and nothing is sent.
    let refused = group
        .destroy_instances(&workers, &["i-1".into()])
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("Group/0.1.0") && message.contains("Group.DestroyInstances"),
        "{message}"
    );
    assert!(!refused.is_transient());

    let requests = fake.requests.lock().unwrap().clone();
    let sent = methods(&requests);
    for absent in ["Group.Size", "Group.SetSize", "Group.DestroyInstances"] {
        assert!(!sent.iter().any(|m| m == absent), "{absent} sent: {sent:?}");
    }
    let commits: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "Group.CommitGroup")
        .collect();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[1]["params"]["Pretend"], false);
    assert_eq!(
        commits[1]["params"]["Spec"]["Properties"]["Allocation"],
        json!({"Size": 5})
    );
}

/// v0.4.1 has no SetSize; a quorum group's size is its logical IDs: refused before anything is
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v041_quorum_group_is_not_resized_by_commit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("group");
    let fake = fake_plugin(&socket, |method, _| match method {
        "Handshake.Hello" => Err(cant_find("Handshake.Hello")),
        "Handshake.Implements" => Ok(json!({"APIs": [{"Name": "Group", "Version": "0.1.0"}]})),
        "Group.InspectGroups" => Ok(json!({"Groups": [{"ID": "managers", "Properties": {
            "Allocation": {"LogicalIDs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]},
            "Instance": {"Plugin": "simulator", "Properties": {}},
            "Flavor": {"Plugin": "vanilla", "Properties": {}}
        }}]})),
        other => Err(cant_find(other)),
    });
    let group = RemoteGroup::new(Client::new("group", &socket), "");
    assert_eq!(group.size(&"managers".into()).await.unwrap(), 3);
    let e = group.set_size(&"managers".into(), 5).await.unwrap_err();
    assert!(matches!(e, GroupError::InvalidSpec(_)), "{e:?}");
    assert!(!methods(&fake.requests.lock().unwrap()).contains(&"Group.CommitGroup".to_owned()));
}

/// The group plugin of Go master: `Handshake.Hello` lists `Group/0.1.1` with the single object
/// named `"."`; every result carries `Name` and `ID` (`pkg/rpc/group/types.go`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_group_plugin_is_driven_in_its_own_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("group");
    let fake = fake_plugin(&socket, |method, params| {
        let name = params["Name"].clone();
        let id = params["ID"].clone();
        match method {
            "Handshake.Hello" => {
                Ok(json!({"Objects": {"Group/0.1.1": [{"Name": ".", "ProxyFor": ""}]}}))
            }
            "Group.CommitGroup" => Ok(
                json!({"Name": name, "ID": params["Spec"]["ID"], "Details": "Managing 3 instances"}),
            ),
            "Group.FreeGroup"
            | "Group.DestroyGroup"
            | "Group.DestroyInstances"
            | "Group.SetSize" => Ok(json!({"Name": name, "ID": id})),
            "Group.DescribeGroup" => Ok(json!({"Name": name, "ID": id, "Description": {
                "Instances": [{"ID": "i-1", "LogicalID": null, "Tags": {}}], "Converged": false
            }})),
            "Group.InspectGroups" => {
                Ok(json!({"Name": name, "ID": "", "Groups": [go_spec("workers", 3)]}))
            }
            "Group.Size" => Ok(json!({"Name": name, "ID": id, "Size": 3})),
            other => Err(cant_find(other)),
        }
    });
    let group = RemoteGroup::new(Client::new("group", &socket), "");
    let workers: GroupId = "workers".into();
    assert_eq!(group.generation().await.unwrap(), "0.1.1");
    let spec: GroupSpec = serde_json::from_value(go_spec("workers", 3)).unwrap();
    assert_eq!(
        group.commit(spec, true).await.unwrap(),
        "Managing 3 instances"
    );
    group.free(&workers).await.unwrap();
    group.destroy(&workers).await.unwrap();
    assert!(!group.describe(&workers).await.unwrap().converged);
    assert_eq!(group.inspect().await.unwrap().len(), 1);
    assert_eq!(group.size(&workers).await.unwrap(), 3);
    group.set_size(&workers, 4).await.unwrap();
    group
        .destroy_instances(&workers, &["i-1".into()])
        .await
        .unwrap();
    let requests = fake.requests.lock().unwrap().clone();
    let by = |m: &str| requests.iter().find(|r| r["method"] == m).unwrap().clone();
    assert_eq!(
        by("Group.SetSize")["params"],
        json!({"Name": "", "ID": "workers", "Size": 4})
    );
    assert_eq!(
        by("Group.DestroyInstances")["params"],
        json!({"Name": "", "ID": "workers", "Instances": ["i-1"]})
    );
}

/// A plugin that announces Group/0.1.1 but answers `can't find method` for Size and SetSize
/// (a partial implementation) gets the same honest fallbacks as Group/0.1.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_method_falls_back_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("group");
    let _fake = fake_plugin(&socket, |method, _| match method {
        "Handshake.Hello" => {
            Ok(json!({"Objects": {"Group/0.1.1": [{"Name": ".", "ProxyFor": ""}]}}))
        }
        "Group.InspectGroups" => Ok(json!({"Groups": [go_spec("workers", 2)]})),
        "Group.CommitGroup" => Ok(json!({"Details": "ok"})),
        other => Err(cant_find(other)),
    });
    let group = RemoteGroup::new(Client::new("group", &socket), "");
    assert_eq!(group.size(&"workers".into()).await.unwrap(), 2);
    group.set_size(&"workers".into(), 3).await.unwrap();
    let e = group
        .destroy_instances(&"workers".into(), &["i".into()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Group.DestroyInstances"), "{e}");
}

/// Master's metadata plugin: `Metadata/0.1.1`, selected by `Name`, listed with `Metadata.Keys`
/// (`pkg/rpc/metadata/types.go`: `KeysRequest{Name, Path}`, `KeysResponse{Name, Nodes}`,
/// `GetRequest{Name, Path}`, `GetResponse{Name, Value}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_metadata_plugin_is_read_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vars");
    let fake = fake_plugin(&socket, |method, params| match method {
        "Handshake.Hello" => Ok(
            json!({"Objects": {"Metadata/0.1.1": [{"Name": ".", "ProxyFor": ""}, {"Name": "aws", "ProxyFor": ""}]}}),
        ),
        "Metadata.Keys" => Ok(json!({"Name": params["Name"], "Nodes": ["region"]})),
        "Metadata.Get" => Ok(json!({"Name": params["Name"], "Value": "eu-west-1"})),
        other => Err(cant_find(other)),
    });
    let top = RemoteMetadata::new(Client::new("vars", &socket), "");
    assert_eq!(top.list("").await.unwrap(), ["region"]);
    let aws = RemoteMetadata::new(Client::new("vars", &socket), "aws");
    assert_eq!(aws.get("region").await.unwrap(), Some(json!("eu-west-1")));
    let requests = fake.requests.lock().unwrap().clone();
    let calls: Vec<(Value, Value)> = requests
        .iter()
        .filter(|r| r["method"] != "Handshake.Hello")
        .map(|r| (r["method"].clone(), r["params"].clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (json!("Metadata.Keys"), json!({"Name": "vars", "Path": []})),
            (
                json!("Metadata.Get"),
                json!({"Name": "vars/aws", "Path": ["region"]})
            ),
        ]
    );
}

struct Status {
    leader: bool,
    location: Option<String>,
}

impl ManagerStatus for Status {
    fn is_leader(&self) -> bool {
        self.leader
    }
    fn leader_location(&self) -> Option<String> {
        self.location.clone()
    }
}

struct Replica {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    manager: Manager,
    cloud: Simulator,
    _server: infrakit_rpc::ServerHandle,
}

/// A replica as `infrakit manager run` serves it: the manager as the unnamed group, a
/// metadata plugin, the Manager object, master-style names.
async fn replica(status: Status) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("group");
    let (manager, cloud) = common::leading_manager().await;
    let server = PluginServer::new()
        .group("", Arc::new(manager.clone()))
        .metadata(
            "",
            Arc::new(MemoryMetadata::new(json!({"manager": {"leader": true}}))),
        )
        .manager(Arc::new(status))
        .latest_names()
        .serve(&socket)
        .await
        .unwrap();
    Replica {
        _dir: dir,
        socket,
        manager,
        cloud,
        _server: server,
    }
}

fn call(socket: &std::path::Path, method: &str, params: Value) -> Value {
    raw_json(
        socket,
        &json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).to_string(),
    )
}

/// Both handshakes list the Manager object in both generations, the single objects named `"."`
/// and Metadata at 0.1.0 and 0.1.1 (`pkg/rpc/handshake.go`; `cmd/cli/manager.go` of v0.4.1
/// asks for `Manager/0.1.0`, master's for `Stack/0.1.1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_announces_what_both_go_clis_look_for() {
    let r = replica(Status {
        leader: true,
        location: Some("/run/infrakit/plugins/group".into()),
    })
    .await;
    let dot = json!([{"Name": ".", "ProxyFor": ""}]);
    assert_eq!(
        call(&r.socket, "Handshake.Hello", json!({}))["result"],
        json!({"Objects": {
            "Group/0.1.1": dot, "Metadata/0.1.0": dot, "Metadata/0.1.1": dot,
            "Manager/0.1.0": dot, "Stack/0.1.1": dot
        }})
    );
    assert_eq!(
        call(&r.socket, "Handshake.Implements", json!({}))["result"],
        json!({"APIs": [
            {"Name": "Group", "Version": "0.1.0"},
            {"Name": "Metadata", "Version": "0.1.0"},
            {"Name": "Metadata", "Version": "0.1.1"},
            {"Name": "Manager", "Version": "0.1.0"},
            {"Name": "Stack", "Version": "0.1.1"}
        ]})
    );
    r.manager.shutdown().await;
}

/// `infrakit manager inspect` of v0.4.1 and master against our replica: `IsLeader {}`, then
/// `Group.InspectGroups` on the same socket (v0.4.1 sends `{"ID": ""}`, master
/// `{"Name": "group", "ID": ""}` since it adapts the client with the socket's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_go_manager_clis_find_the_leader_and_read_its_groups() {
    let r = replica(Status {
        leader: true,
        location: Some("/run/infrakit/plugins/group".into()),
    })
    .await;
    let spec = go_spec("workers", 2);
    // v0.4.1 `manager commit`: `group_plugin.NewClient(addr)` -> `{"Spec", "Pretend"}`.
    let commit = call(
        &r.socket,
        "Group.CommitGroup",
        json!({"Spec": spec, "Pretend": false}),
    );
    assert_eq!(commit["result"]["Details"], "add 2 to reach 2", "{commit}");

    assert_eq!(
        call(&r.socket, "Manager.IsLeader", json!({}))["result"],
        json!({"Leader": true})
    );
    let v041 = call(&r.socket, "Group.InspectGroups", json!({"ID": ""}));
    assert_eq!(v041["result"]["Groups"][0]["ID"], "workers", "{v041}");
    let master = call(
        &r.socket,
        "Group.InspectGroups",
        json!({"Name": "group", "ID": ""}),
    );
    assert_eq!(master["result"]["Groups"][0]["ID"], "workers", "{master}");
    assert_eq!(master["result"]["Name"], "group");

    // master `manager commit` of a spec whose plugin is `group/workers`: the name reaches the
    // manager's one group object.
    let pretend = call(
        &r.socket,
        "Group.CommitGroup",
        json!({"Name": "group/workers", "Spec": go_spec("workers", 3), "Pretend": true}),
    );
    assert_eq!(
        pretend["result"],
        json!({"Name": "group/workers", "ID": "workers", "Details": "add 1 to reach 3"})
    );
    // master `group describe` / `free` / `destroy` shapes.
    let d = call(
        &r.socket,
        "Group.DescribeGroup",
        json!({"Name": "group", "ID": "workers"}),
    );
    assert_eq!(d["result"]["ID"], "workers", "{d}");
    assert!(d["result"]["Description"]["Instances"].is_array());
    let size = call(
        &r.socket,
        "Group.Size",
        json!({"Name": "group", "ID": "workers"}),
    );
    assert_eq!(
        size["result"],
        json!({"Name": "group", "ID": "workers", "Size": 2})
    );
    // master `group scale`: `SetSizeRequest{Name, ID, Size}` -> `{Name, ID}`.
    let scaled = call(
        &r.socket,
        "Group.SetSize",
        json!({"Name": "group", "ID": "workers", "Size": 1}),
    );
    assert_eq!(
        scaled["result"],
        json!({"Name": "group", "ID": "workers"}),
        "{scaled}"
    );
    // v0.4.1 `group describe` / `group free`: `{"ID": ..}` only; Go reads `Description`, and
    // ignores our `Name`/`ID` beside it.
    let d = call(&r.socket, "Group.DescribeGroup", json!({"ID": "workers"}));
    assert!(d["result"]["Description"]["Converged"].is_boolean(), "{d}");
    let freed = call(&r.socket, "Group.FreeGroup", json!({"ID": "workers"}));
    assert!(freed["result"].is_object(), "{freed}");
    let gone = call(&r.socket, "Group.InspectGroups", json!({"ID": ""}));
    assert_eq!(gone["result"]["Groups"], json!([]), "{gone}");
    r.manager.shutdown().await;
}

/// The Manager interface's methods (`pkg/rpc/manager/service.go`): IsLeader, LeaderLocation
/// (a `*url.URL` field by field), Specs / Enforce (`types.Spec` lists), Inspect
/// (`types.Object` lists), Terminate (refused, as Go's manager refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_interface_maps_onto_our_manager() {
    let r = replica(Status {
        leader: true,
        location: Some("/run/infrakit/plugins/group".into()),
    })
    .await;
    assert_eq!(
        call(&r.socket, "Manager.LeaderLocation", json!({}))["result"],
        json!({"Location": {
            "Scheme": "", "Opaque": "", "User": null, "Host": "", "Path": "/run/infrakit/plugins/group",
            "RawPath": "", "ForceQuery": false, "RawQuery": "", "Fragment": ""
        }})
    );
    // Enforce: master's `EnforceRequest{Specs []types.Spec}`; a group is `kind: group`.
    let properties = go_spec("workers", 2)["Properties"].clone();
    let enforce = call(
        &r.socket,
        "Manager.Enforce",
        json!({"Specs": [{"kind": "group", "version": "", "metadata": {"name": "workers", "tags": null}, "properties": properties}]}),
    );
    assert_eq!(enforce["result"], json!({}), "{enforce}");
    r.manager
        .wait_converged(&"workers".into(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.cloud.instances().len(), 2);

    let specs = call(&r.socket, "Manager.Specs", json!({}));
    let listed = &specs["result"]["Specs"][0];
    assert_eq!(listed["kind"], "group");
    assert_eq!(listed["metadata"], json!({"name": "workers", "tags": null}));
    assert_eq!(listed["properties"]["Allocation"], json!({"Size": 2}));
    assert_eq!(
        listed["properties"]["Instance"]["Plugin"], "simulator",
        "{specs}"
    );

    let inspect = call(&r.socket, "Manager.Inspect", json!({}));
    let object = &inspect["result"]["Objects"][0];
    assert_eq!(object["kind"], "group");
    assert_eq!(object["metadata"]["id"], "workers");
    assert_eq!(object["state"]["Converged"], true, "{inspect}");
    assert_eq!(object["state"]["Instances"].as_array().unwrap().len(), 2);

    let not_a_group = call(
        &r.socket,
        "Manager.Enforce",
        json!({"Specs": [{"kind": "ingress", "metadata": {"name": "lb"}, "properties": {}}]}),
    );
    assert_eq!(not_a_group["error"]["code"], -32602, "{not_a_group}");
    let terminate = call(&r.socket, "Manager.Terminate", json!({"Specs": null}));
    assert_eq!(terminate["error"]["code"], -32000);
    assert_eq!(r.cloud.instances().len(), 2, "Terminate destroyed nothing");
    r.manager.shutdown().await;
}

/// A follower says so and where the leader is; a URL location is split like Go's `url.Parse`;
/// an unknown one is `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_is_leader_false_and_the_leaders_url() {
    let r = replica(Status {
        leader: false,
        location: Some("tcp://10.0.0.5:24864/infrakit?x=1".into()),
    })
    .await;
    assert_eq!(
        call(&r.socket, "Manager.IsLeader", json!({}))["result"],
        json!({"Leader": false})
    );
    let l = call(&r.socket, "Manager.LeaderLocation", json!({}))["result"]["Location"].clone();
    assert_eq!(l["Scheme"], "tcp");
    assert_eq!(l["Host"], "10.0.0.5:24864");
    assert_eq!(l["Path"], "/infrakit");
    assert_eq!(l["RawQuery"], "x=1");
    r.manager.shutdown().await;

    let r = replica(Status {
        leader: false,
        location: None,
    })
    .await;
    assert_eq!(
        call(&r.socket, "Manager.LeaderLocation", json!({}))["result"],
        json!({"Location": null})
    );
    r.manager.shutdown().await;
}

/// A socket without the Manager object (a plain plugin) answers the Manager methods with an
/// error, so Go's scan (`client.New(addr, manager.InterfaceSpec)`) moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_plugin_serves_no_manager() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sim");
    let _server = PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .serve(&socket)
        .await
        .unwrap();
    let r = call(&socket, "Manager.IsLeader", json!({}));
    assert_eq!(r["error"]["code"], -32000);
    let apis = call(&socket, "Handshake.Implements", json!({}))["result"]["APIs"].clone();
    assert_eq!(apis, json!([{"Name": "Instance", "Version": "0.3.0"}]));
}

/// Go's keyed lookup (`pkg/rpc/internal/keyed.go`) over our objects, for every interface that
/// master selects by `Name`: `lookup/type`; an empty type with one object means it; an empty
/// type otherwise means the unnamed object; then the type as a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_like_gos_keyed_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("simulator");
    let _server = PluginServer::new()
        .instance("", Arc::new(Simulator::builder().id_prefix("top-").build()))
        .instance(
            "other",
            Arc::new(Simulator::builder().id_prefix("other-").build()),
        )
        .metadata("", Arc::new(MemoryMetadata::new(json!({"a": {"b": 1}}))))
        .metadata("aws", Arc::new(MemoryMetadata::new(json!({"region": "x"}))))
        .latest_names()
        .serve(&socket)
        .await
        .unwrap();
    let provision = |name: &str| {
        call(
            &socket,
            "Instance.Provision",
            json!({"Name": name, "Spec": {"Properties": null, "Tags": {}}}),
        )["result"]["ID"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(provision("simulator").starts_with("top-"));
    assert!(provision("simulator/other").starts_with("other-"));
    // `Type` still selects exactly, as before.
    let typed = call(
        &socket,
        "Instance.Provision",
        json!({"Type": "other", "Spec": {"Tags": {}}}),
    );
    assert!(
        typed["result"]["ID"]
            .as_str()
            .unwrap()
            .starts_with("other-")
    );

    // Master's metadata requests: `{"Name", "Path"}`, answered `{"Name", "Nodes"|"Value"}`.
    assert_eq!(
        call(
            &socket,
            "Metadata.Keys",
            json!({"Name": "simulator", "Path": []})
        )["result"],
        json!({"Name": "simulator", "Nodes": ["a"]})
    );
    assert_eq!(
        call(
            &socket,
            "Metadata.Get",
            json!({"Name": "simulator/aws", "Path": ["region"]})
        )["result"],
        json!({"Name": "simulator/aws", "Value": "x"})
    );
    let missing = call(
        &socket,
        "Metadata.Get",
        json!({"Name": "simulator/gcp", "Path": []}),
    );
    assert_eq!(missing["error"]["code"], -32000, "{missing}");

    // Our own client reads both objects through the announced Metadata/0.1.1.
    let client = Client::new("simulator", &socket);
    assert_eq!(
        client.implements().await.unwrap().interfaces["Metadata"].0,
        "0.1.1"
    );
    let aws = RemoteMetadata::new(client.clone(), "aws");
    assert_eq!(aws.get("region").await.unwrap(), Some(json!("x")));
    let top = RemoteMetadata::new(client, "");
    assert_eq!(top.get("a/b").await.unwrap(), Some(json!(1)));
}

/// Two group objects: a name the keyed lookup does not resolve is an error naming it (the lone
/// object fallback applies only when one group is served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolved_group_name_is_an_error_when_several_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("groups");
    let a = Manager::builder(StaticLeadership::leader(), MemoryStore::new()).build();
    let b = Manager::builder(StaticLeadership::leader(), MemoryStore::new()).build();
    let _server = PluginServer::new()
        .group("a", Arc::new(a))
        .group("b", Arc::new(b))
        .serve(&socket)
        .await
        .unwrap();
    let r = call(
        &socket,
        "Group.InspectGroups",
        json!({"Name": "groups/b", "ID": ""}),
    );
    assert_eq!(r["result"]["Groups"], json!([]), "{r}");
    let r = call(
        &socket,
        "Group.InspectGroups",
        json!({"Name": "groups/c", "ID": ""}),
    );
    assert_eq!(r["error"]["code"], -32000);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"groups/c\""),
        "{r}"
    );
}

/// A Go flavor has no `Flavor.HealthyBatch`: the client asks once, then per member for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_flavor_is_asked_health_per_member_after_one_probe() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("flavor");
    let fake = fake_plugin(&socket, |method, _| match method {
        "Handshake.Hello" => Err(cant_find("Handshake.Hello")),
        "Handshake.Implements" => Ok(json!({"APIs": [{"Name": "Flavor", "Version": "0.1.0"}]})),
        "Flavor.Healthy" => Ok(json!({"Type": "", "Health": 1})),
        other => Err(cant_find(other)),
    });
    let flavor = infrakit_rpc::RemoteFlavor::new(Client::new("flavor", &socket), "");
    let members = [
        Description::new("i-1", Tags::new()),
        Description::new("i-2", Tags::new()),
    ];
    for _ in 0..3 {
        assert_eq!(flavor.healthy_batch(&json!({}), &members).await, None);
    }
    for m in &members {
        assert_eq!(
            flavor.healthy(&json!({}), m).await.unwrap(),
            Health::Healthy
        );
    }
    let asked = methods(&fake.requests.lock().unwrap());
    let probes = asked.iter().filter(|m| *m == "Flavor.HealthyBatch").count();
    assert_eq!(probes, 1, "{asked:?}");
    assert_eq!(asked.iter().filter(|m| *m == "Flavor.Healthy").count(), 2);
}
