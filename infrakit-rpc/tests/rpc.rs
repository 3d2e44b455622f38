//! The plugin protocol over real Unix sockets: every method of every interface, both
//! handshake generations, the exact JSON shapes, errors, robustness and discovery.

mod common;

use async_trait::async_trait;
use common::{fake_plugin, raw_json};
use infrakit_core::*;
use infrakit_rpc::{Client, PluginDir, PluginServer, RemoteInstance, RpcError};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    _dir: tempfile::TempDir,
    plugins: PluginDir,
    cloud: Simulator,
    _server: infrakit_rpc::ServerHandle,
}

async fn simulator_plugin() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path().join("plugins"));
    let cloud = Simulator::new();
    let server = PluginServer::new()
        .instance("", Arc::new(cloud.clone()))
        .instance(
            "other",
            Arc::new(Simulator::builder().id_prefix("other-").build()),
        )
        .flavor("worker", Arc::new(flavor::Vanilla))
        .metadata(
            "",
            Arc::new(MemoryMetadata::new(
                json!({"swarm": {"join_tokens": {"worker": "SWMTKN-1"}}}),
            )),
        )
        .serve(plugins.socket("simulator"))
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        plugins,
        cloud,
        _server: server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_method_round_trips() {
    let f = simulator_plugin().await;
    let remote = f.plugins.instance("simulator");
    remote.validate(&json!({"image": "x"})).await.unwrap();
    let bad = remote.validate(&json!([1])).await.unwrap_err();
    assert!(
        matches!(bad, InstanceError::InvalidProperties(_)),
        "{bad:?}"
    );

    let spec = InstanceSpec::new(json!({"image": "x"}))
        .with_tag(GROUP_TAG, "managers")
        .with_logical_id("10.0.0.1")
        .with_attachment(Attachment::new("vol-1", "ebs"))
        .with_init("#!/bin/sh\necho <&> \"quoted\"");
    let id = remote.provision(spec.clone()).await.unwrap();
    assert_eq!(
        f.cloud.get(&id).unwrap().spec,
        spec,
        "the spec arrives intact"
    );

    remote
        .label(&id, &Tags::new().with("extra", "1"))
        .await
        .unwrap();
    let found = remote
        .describe(&Tags::new().with(GROUP_TAG, "managers"), false)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].logical_id.as_ref().map(LogicalId::as_str),
        Some("10.0.0.1")
    );
    assert_eq!(found[0].tags.get("extra"), Some("1"));
    assert!(found[0].properties.is_none());
    let detailed = remote.describe(&Tags::new(), true).await.unwrap();
    assert_eq!(
        detailed[0].properties.as_ref().unwrap()["Properties"]["image"],
        "x"
    );
    // A missing tag never matches, across the wire too.
    assert!(
        remote
            .describe(&Tags::new().with("absent", ""), false)
            .await
            .unwrap()
            .is_empty()
    );

    remote
        .destroy(&id, DestroyContext::RollingUpdate)
        .await
        .unwrap();
    assert_eq!(
        f.cloud.calls().last().unwrap().context,
        Some(DestroyContext::RollingUpdate)
    );
    let gone = remote
        .destroy(&id, DestroyContext::Terminate)
        .await
        .unwrap_err();
    assert_eq!(
        gone,
        InstanceError::NotFound { id: id.clone() },
        "the typed error survives the wire"
    );

    // Subtypes: one socket, two instance plugins.
    let other = f.plugins.instance("simulator/other");
    assert!(
        other
            .provision(InstanceSpec::default())
            .await
            .unwrap()
            .as_str()
            .starts_with("other-")
    );
    let missing = f
        .plugins
        .instance("simulator/nosuch")
        .describe(&Tags::new(), false)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("nosuch"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_stay_transient_across_the_wire() {
    let f = simulator_plugin().await;
    let remote = f.plugins.instance("simulator");
    remote.describe(&Tags::new(), false).await.unwrap();
    f.cloud.fail_next(1, simulator::Fault::Throttled);
    let e = remote.describe(&Tags::new(), false).await.unwrap_err();
    assert!(
        matches!(
            e,
            InstanceError::Throttled {
                retry_after: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    f.cloud.fail_next(1, simulator::Fault::Permanent);
    let e = remote.provision(InstanceSpec::default()).await.unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("simulated permanent failure"),
        "the remote message is kept: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flavor_method_round_trips() {
    let f = simulator_plugin().await;
    let remote = f.plugins.flavor("simulator/worker");
    let quorum = Allocation::logical_ids(["10.0.0.1", "10.0.0.2"])
        .with_attachment("10.0.0.1", Attachment::new("vol-1", "ebs"));
    remote
        .validate(&json!({"Init": ["echo hi"]}), &quorum)
        .await
        .unwrap();
    let bad = remote
        .validate(&json!({"Init": 5}), &Allocation::size(1))
        .await
        .unwrap_err();
    assert!(matches!(bad, FlavorError::InvalidProperties(_)), "{bad:?}");
    let index = Index {
        group: "workers".into(),
        sequence: 9,
    };
    let spec = remote
        .prepare(
            &json!({"Init": ["echo hi"], "Tags": {"role": "w"}}),
            InstanceSpec::default().with_tag("a", "b"),
            &quorum,
            &index,
        )
        .await
        .unwrap();
    assert_eq!(spec.init, "echo hi");
    assert_eq!(spec.tags, Tags::new().with("a", "b").with("role", "w"));
    let d = Description::new("i-1", Tags::new());
    assert_eq!(
        remote.healthy(&json!({}), &d).await.unwrap(),
        Health::Healthy
    );
    remote.drain(&json!({}), &d).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trips() {
    let f = simulator_plugin().await;
    let md = f.plugins.metadata("simulator");
    assert_eq!(
        md.get("swarm/join_tokens/worker").await.unwrap(),
        Some(json!("SWMTKN-1"))
    );
    assert_eq!(md.get("swarm/nope").await.unwrap(), None);
    assert_eq!(
        md.list("/swarm").await.unwrap(),
        vec!["join_tokens".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_method_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let (manager, cloud) = common::leading_manager().await;
    let _server = PluginServer::new()
        .group("", Arc::new(manager.clone()))
        .serve(plugins.socket("group"))
        .await
        .unwrap();
    let remote = plugins.group("group");

    let spec = GroupSpec::new(
        "workers",
        PluginSpec::new("simulator", json!({})),
        PluginSpec::new("vanilla", json!({})),
        Allocation::size(3),
    );
    assert_eq!(
        remote.commit(spec.clone(), true).await.unwrap(),
        "add 3 to reach 3"
    );
    assert!(cloud.is_empty());
    remote.commit(spec.clone(), false).await.unwrap();
    manager
        .wait_converged(&"workers".into(), Duration::from_secs(10))
        .await
        .unwrap();
    let d = remote.describe(&"workers".into()).await.unwrap();
    assert!(d.converged);
    assert_eq!(d.instances.len(), 3);
    assert_eq!(remote.inspect().await.unwrap(), vec![spec.clone()]);
    assert_eq!(remote.size(&"workers".into()).await.unwrap(), 3);
    remote.set_size(&"workers".into(), 4).await.unwrap();
    assert_eq!(remote.size(&"workers".into()).await.unwrap(), 4);
    manager
        .wait_converged(&"workers".into(), Duration::from_secs(10))
        .await
        .unwrap();

    let err = remote
        .destroy_instances(&"workers".into(), &["nope".into()])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GroupError::NotMember {
            group: "workers".into(),
            ids: vec!["nope".into()]
        }
    );
    let victim = cloud.instances()[0].id.clone();
    remote
        .destroy_instances(&"workers".into(), std::slice::from_ref(&victim))
        .await
        .unwrap();
    assert_eq!(remote.size(&"workers".into()).await.unwrap(), 3);

    let unknown = remote.size(&"nope".into()).await.unwrap_err();
    assert_eq!(unknown, GroupError::UnknownGroup { id: "nope".into() });

    remote
        .commit(
            GroupSpec {
                id: "pets".into(),
                ..spec.clone()
            },
            false,
        )
        .await
        .unwrap();
    remote.free(&"pets".into()).await.unwrap();
    remote.destroy(&"workers".into()).await.unwrap();
    assert!(remote.inspect().await.unwrap().is_empty());
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_handshake_generations_are_answered() {
    let f = simulator_plugin().await;
    let socket = f.plugins.socket("simulator");
    let hello = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":1}"#,
    );
    assert_eq!(
        hello,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"Objects": {
            "Instance/0.6.1": [{"Name": "", "ProxyFor": ""}, {"Name": "other", "ProxyFor": ""}],
            "Flavor/0.1.1": [{"Name": "worker", "ProxyFor": ""}],
            "Metadata/0.1.0": [{"Name": "", "ProxyFor": ""}]
        }}})
    );
    let implements = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Handshake.Implements","params":{},"id":2}"#,
    );
    assert_eq!(
        implements["result"],
        json!({"APIs": [{"Name": "Instance", "Version": "0.3.0"}, {"Name": "Flavor", "Version": "0.1.0"}, {"Name": "Metadata", "Version": "0.1.0"}]})
    );
    let client = f.plugins.client("simulator");
    let i = client.implements().await.unwrap();
    assert_eq!(i.interfaces["Instance"].0, "0.6.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_have_the_exact_wire_shapes() {
    let f = simulator_plugin().await;
    let socket = f.plugins.socket("simulator");
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Type":"","Spec":{"Properties":{"a":1},"Tags":{"k":"v"},"Init":"","LogicalID":null,"Attachments":null}},"id":5}"#,
    );
    assert_eq!(
        r,
        json!({"jsonrpc": "2.0", "result": {"Type": "", "ID": "sim-000001"}, "id": 5})
    );
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Type":"","Tags":{"k":"v"},"Properties":false},"id":"x"}"#,
    );
    assert_eq!(
        r,
        json!({"jsonrpc": "2.0", "id": "x", "result": {"Type": "", "Descriptions": [{"ID": "sim-000001", "LogicalID": null, "Tags": {"k": "v"}}]}})
    );
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Instance.Destroy","params":{"Type":"","Instance":"nope","Context":{"Reason":"terminate"}},"id":3}"#,
    );
    assert_eq!(r["error"]["code"], -32000);
    assert_eq!(r["error"]["message"], "instance nope not found");
    assert_eq!(r["id"], 3);
    assert!(r.get("result").is_none());
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Flavor.Healthy","params":{"Type":"worker","Properties":{},"Instance":{"ID":"i","LogicalID":null,"Tags":{}}},"id":4}"#,
    );
    assert_eq!(r["result"], json!({"Type": "worker", "Health": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_generation_params_are_accepted() {
    let f = simulator_plugin().await;
    let socket = f.plugins.socket("simulator");
    // No Type, no Context, no Properties flag, no Index: what v0.4 sends.
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Spec":{"Properties":null,"Tags":{"g":"1"}}},"id":1}"#,
    );
    let id = r["result"]["ID"].as_str().unwrap().to_owned();
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{"Tags":{"g":"1"}},"id":2}"#,
    );
    assert_eq!(r["result"]["Descriptions"][0]["ID"], id.as_str());
    let r = raw_json(
        &socket,
        &format!(
            r#"{{"jsonrpc":"2.0","method":"Instance.Destroy","params":{{"Instance":"{id}"}},"id":3}}"#
        ),
    );
    assert_eq!(r["result"]["OK"], true);
    assert_eq!(
        f.cloud.calls().last().unwrap().context,
        Some(DestroyContext::Terminate)
    );
    // Go's allocation shape for a quorum group: Size 0 and the logical IDs.
    let r = raw_json(
        &socket,
        r#"{"jsonrpc":"2.0","method":"Flavor.Prepare","params":{"Type":"worker","Properties":{"Init":"x"},"Spec":{"Tags":{}},"Allocation":{"Size":0,"LogicalIDs":["10.0.0.1"]}},"id":4}"#,
    );
    assert_eq!(r["result"]["Spec"]["Init"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_have_the_go_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake");
    let fake = fake_plugin(&socket, |method, _| match method {
        "Handshake.Hello" => Ok(
            json!({"Objects": {"Instance/0.6.1": [{"Name": "sub", "ProxyFor": ""}], "Flavor/0.1.1": [{"Name": "f", "ProxyFor": ""}]}}),
        ),
        "Instance.Provision" => Ok(json!({"Type": "sub", "ID": "i-1"})),
        "Instance.Destroy" => Ok(json!({"Type": "sub", "OK": true})),
        "Flavor.Prepare" => Ok(
            json!({"Type": "f", "Spec": {"Properties": null, "Tags": {}, "Init": "", "LogicalID": null, "Attachments": null}}),
        ),
        _ => Err(json!({"code": -32000, "message": "unexpected", "data": null})),
    });
    let client = Client::new("fake", &socket);
    let inst = RemoteInstance::new(client.clone(), "sub");
    inst.provision(InstanceSpec::new(json!({"a": 1})).with_tag("k", "v"))
        .await
        .unwrap();
    inst.destroy(&"i-1".into(), DestroyContext::ScaleDown)
        .await
        .unwrap();
    let fl = infrakit_rpc::RemoteFlavor::new(client, "f");
    fl.prepare(
        &json!({}),
        InstanceSpec::default(),
        &Allocation::size(3),
        &Index {
            group: "g".into(),
            sequence: 2,
        },
    )
    .await
    .unwrap();
    let reqs = fake.requests.lock().unwrap().clone();
    let by_method = |m: &str| reqs.iter().find(|r| r["method"] == m).cloned().unwrap();
    assert_eq!(
        reqs.iter()
            .filter(|r| r["method"] == "Handshake.Hello")
            .count(),
        1,
        "one handshake per client"
    );
    let p = by_method("Instance.Provision");
    assert_eq!(p["jsonrpc"], "2.0");
    assert!(p["id"].is_u64());
    assert_eq!(
        p["params"],
        json!({"Type": "sub", "Spec": {"Properties": {"a": 1}, "Tags": {"k": "v"}, "Init": "", "LogicalID": null, "Attachments": null}})
    );
    assert_eq!(
        by_method("Instance.Destroy")["params"],
        json!({"Type": "sub", "Instance": "i-1", "Context": {"Reason": "scale_down"}})
    );
    let prep = by_method("Flavor.Prepare");
    assert_eq!(
        prep["params"]["Allocation"],
        json!({"Size": 3, "LogicalIDs": null})
    );
    assert_eq!(
        prep["params"]["Index"],
        json!({"Group": "g", "Sequence": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_generation_plugin_is_driven_through_implements() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("old");
    let fake = fake_plugin(&socket, |method, params| match method {
        "Handshake.Hello" => Err(
            json!({"code": -32000, "message": "rpc: can't find method Handshake.Hello", "data": null}),
        ),
        "Handshake.Implements" => Ok(json!({"APIs": [{"Name": "Instance", "Version": "0.3.0"}]})),
        "Instance.DescribeInstances" => Ok(
            json!({"Descriptions": [{"ID": "i-9", "LogicalID": null, "Tags": params["Tags"].clone()}]}),
        ),
        _ => Err(json!({"code": -32000, "message": "no", "data": null})),
    });
    let remote = RemoteInstance::new(Client::new("old", &socket), "");
    let found = remote
        .describe(&Tags::new().with("a", "b"), false)
        .await
        .unwrap();
    assert_eq!(found[0].id, "i-9");
    let methods: Vec<String> = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "Handshake.Hello",
            "Handshake.Implements",
            "Instance.DescribeInstances"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_missing_plugin_and_dead_socket_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ancient");
    let _fake = fake_plugin(&socket, |method, _| match method {
        "Handshake.Implements" => Ok(json!({"APIs": [{"Name": "Instance", "Version": "0.2.0"}]})),
        _ => Err(json!({"code": -32601, "message": "method not found", "data": null})),
    });
    let client = Client::new("ancient", &socket);
    let e = client
        .check("Instance", &["0.6.1", "0.3.0"], "")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::VersionMismatch { found, .. } if found == "Instance/0.2.0"),
        "{e}"
    );
    assert!(!e.is_transient());

    let plugins = PluginDir::new(dir.path());
    let e = plugins.client("nosuch").implements().await.unwrap_err();
    assert!(matches!(e, RpcError::PluginNotFound { .. }), "{e}");

    // A socket file nobody listens on: a transport error, transient.
    let stale = dir.path().join("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = plugins.client("stale").implements().await.unwrap_err();
    assert!(
        matches!(e, RpcError::Transport { .. }) && e.is_transient(),
        "{e}"
    );
    let as_instance: InstanceError = e.into();
    assert!(as_instance.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("slow");
    let _fake = fake_plugin(&socket, |_, _| {
        std::thread::sleep(Duration::from_secs(2));
        Ok(json!({}))
    });
    let client = Client::with_timeout("slow", &socket, Duration::from_millis(200));
    let start = Instant::now();
    let e = client
        .call_raw("Handshake.Hello", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::Timeout { .. }) && e.is_transient(),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_rpc_errors_and_the_server_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p");
    let _server = PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .max_body_bytes(4096)
        .serve(&socket)
        .await
        .unwrap();
    let code = |body: &str| raw_json(&socket, body)["error"]["code"].as_i64();
    assert_eq!(code("{not json"), Some(-32700));
    assert_eq!(code(r#"[1,2]"#), Some(-32600));
    assert_eq!(
        code(r#"{"jsonrpc":"1.0","method":"Instance.Validate","params":{},"id":1}"#),
        Some(-32600)
    );
    assert_eq!(
        code(r#"{"jsonrpc":"2.0","method":"Nope.Nope","params":{},"id":1}"#),
        Some(-32601)
    );
    assert_eq!(
        code(r#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Spec":5},"id":1}"#),
        Some(-32602)
    );
    assert_eq!(
        code(r#"{"jsonrpc":"2.0","method":"Instance.Label","params":{"Instance":[]},"id":1}"#),
        Some(-32602)
    );
    assert_eq!(
        code(r#"{"jsonrpc":"2.0","method":"Group.Size","params":{"ID":"g"},"id":1}"#),
        Some(-32000),
        "no group served here"
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","method":"Instance.Validate","params":{{"Properties":"{}"}},"id":1}}"#,
        "x".repeat(100_000)
    );
    let (status, body) = common::raw_call(&socket, huge.as_bytes());
    assert!(status.contains("200"), "{status}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("limit"),
        "{v}"
    );
    // Still serving.
    assert!(
        raw_json(
            &socket,
            r#"{"jsonrpc":"2.0","method":"Handshake.Hello","params":{},"id":9}"#
        )["result"]
            .is_object()
    );
}

/// A flavor whose health check of instance "slow" takes two seconds.
struct SlowFlavor;

#[async_trait]
impl Flavor for SlowFlavor {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        s: InstanceSpec,
        _: &Allocation,
        _: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        Ok(s)
    }
    async fn healthy(&self, _: &Value, d: &Description) -> Result<Health, FlavorError> {
        if d.id == "slow" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_call_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let _server = PluginServer::new()
        .flavor("", Arc::new(SlowFlavor))
        .serve(plugins.socket("f"))
        .await
        .unwrap();
    let remote = plugins.flavor("f");
    remote
        .healthy(&json!({}), &Description::new("warm-up", Tags::new()))
        .await
        .unwrap();
    let slow_remote = remote.clone();
    let slow = tokio::spawn(async move {
        slow_remote
            .healthy(&json!({}), &Description::new("slow", Tags::new()))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    for _ in 0..5 {
        remote
            .healthy(&json!({}), &Description::new("fast", Tags::new()))
            .await
            .unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "fast calls waited for the slow one: {:?}",
        start.elapsed()
    );
    assert!(!slow.is_finished());
    slow.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_private_and_stale_ones_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("new/plugins");
    let socket = plugin_dir.join("sim");
    let server = PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .serve(&socket)
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&plugin_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A live socket is not taken over.
    let second = PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .serve(&socket)
        .await
        .unwrap_err();
    assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
    server.stop().await;
    assert!(!socket.exists(), "stop removes the socket");
    // A stale socket (its process died) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .serve(&socket)
        .await
        .unwrap();
    assert_eq!(
        PluginDir::new(&plugin_dir).list().unwrap(),
        vec!["sim".to_string()]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_drives_remote_plugins_found_in_the_plugin_directory() {
    let f = simulator_plugin().await;
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(Plugins::new().fallback(Arc::new(f.plugins.clone())))
        .options(
            EngineOptions::default()
                .resync(Duration::from_millis(100))
                .settle(Duration::from_millis(10)),
        )
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    let spec = GroupSpec::new(
        "workers",
        PluginSpec::new("simulator", json!({"image": "v1"})),
        PluginSpec::new("simulator/worker", json!({"Init": ["echo remote"]})),
        Allocation::size(3),
    );
    manager.commit(spec, false).await.unwrap();
    manager
        .wait_converged(&"workers".into(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(f.cloud.len(), 3);
    assert!(
        f.cloud
            .instances()
            .iter()
            .all(|i| i.spec.init == "echo remote")
    );
    // Healing through the sockets (no events across the wire: the resync finds it).
    let victim = f.cloud.instances()[0].id.clone();
    f.cloud.kill(&victim);
    tokio::time::timeout(Duration::from_secs(10), async {
        while f.cloud.len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("healed through the sockets");
    manager
        .wait_converged(&"workers".into(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(f.cloud.len(), 3);
    assert!(f.cloud.get(&victim).is_none());
    // An unknown plugin name is still a spec error naming the field.
    let bad = GroupSpec::new(
        "x",
        PluginSpec::new("nosuch", json!({})),
        PluginSpec::new("simulator/worker", json!({})),
        Allocation::size(1),
    );
    let e = manager.commit(bad, false).await.unwrap_err();
    assert!(
        matches!(&e, GroupError::InvalidSpec(s) if s.field == "Properties.Instance.Plugin"),
        "{e}"
    );
    manager.shutdown().await;
}

/// A flavor that judges a group at once: healthy when tagged `up=yes`.
struct Judge;

#[async_trait]
impl Flavor for Judge {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn prepare(
        &self,
        _: &Value,
        spec: InstanceSpec,
        _: &Allocation,
        _: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health, FlavorError> {
        Err(FlavorError::Refused {
            message: "asked per member".into(),
        })
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
    async fn healthy_batch(
        &self,
        _: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        if descriptions
            .iter()
            .any(|d| d.tags.get("up") == Some("broken"))
        {
            return Some(Err(FlavorError::Unavailable {
                message: "no node listing".into(),
                retry_after: None,
            }));
        }
        Some(Ok(descriptions
            .iter()
            .map(|d| match d.tags.get("up") {
                Some("yes") => Health::Healthy,
                _ => Health::Unhealthy,
            })
            .collect()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_health_crosses_the_wire_in_one_call_and_per_member_flavors_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let _server = PluginServer::new()
        .flavor("judge", Arc::new(Judge))
        .flavor("vanilla", Arc::new(flavor::Vanilla))
        .serve(plugins.socket("flavors"))
        .await
        .unwrap();
    let members: Vec<Description> = (0..1000)
        .map(|i| {
            let up = if i % 2 == 0 { "yes" } else { "no" };
            Description::new(format!("i-{i}").as_str(), Tags::new().with("up", up))
        })
        .collect();

    let judge = plugins.flavor("flavors/judge");
    let all = judge
        .healthy_batch(&json!({}), &members)
        .await
        .expect("the judge answers batches")
        .unwrap();
    assert_eq!(all.len(), 1000);
    assert!(all.iter().step_by(2).all(|h| *h == Health::Healthy));
    assert!(
        all.iter()
            .skip(1)
            .step_by(2)
            .all(|h| *h == Health::Unhealthy)
    );
    // The flavor's error comes back typed.
    let broken = [Description::new("b", Tags::new().with("up", "broken"))];
    let e = judge
        .healthy_batch(&json!({}), &broken)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, FlavorError::Unavailable { .. }), "{e:?}");

    // A flavor that answers per member says so; the engine then asks `Flavor.Healthy`.
    let vanilla = plugins.flavor("flavors/vanilla");
    assert_eq!(vanilla.healthy_batch(&json!({}), &members).await, None);
    assert_eq!(
        vanilla.healthy(&json!({}), &members[0]).await.unwrap(),
        Health::Healthy
    );
}
