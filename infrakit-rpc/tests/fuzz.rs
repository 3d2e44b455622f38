//! Property tests: arbitrary bytes and arbitrary JSON thrown at the server always get a
//! JSON-RPC answer, never a panic or a hang.

use infrakit_core::{MemoryMetadata, Simulator, flavor::Vanilla};
use infrakit_rpc::PluginServer;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn server() -> PluginServer {
    PluginServer::new()
        .instance("", Arc::new(Simulator::new()))
        .flavor("", Arc::new(Vanilla))
        .metadata("", Arc::new(MemoryMetadata::new(json!({"a": 1}))))
}

fn check_answer(answer: &[u8]) {
    let v: Value = serde_json::from_slice(answer).expect("the answer is JSON");
    assert_eq!(v["jsonrpc"], "2.0");
    assert!(
        v.get("result").is_some() != v.get("error").is_some(),
        "exactly one of result and error: {v}"
    );
    if let Some(e) = v.get("error") {
        assert!(e["code"].is_i64() && e["message"].is_string(), "{v}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const METHODS: &[&str] = &[
    "Handshake.Hello",
    "Handshake.Implements",
    "Instance.Validate",
    "Instance.Provision",
    "Instance.Label",
    "Instance.Destroy",
    "Instance.DescribeInstances",
    "Flavor.Validate",
    "Flavor.Prepare",
    "Flavor.Healthy",
    "Flavor.Drain",
    "Group.CommitGroup",
    "Metadata.Get",
    "Metadata.List",
    "Nope.Nope",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_an_error(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = server();
        let answer = runtime().block_on(s.handle(&body));
        check_answer(&answer);
    }

    #[test]
    fn arbitrary_json_gets_an_answer(body in arb_json()) {
        let s = server();
        let answer = runtime().block_on(s.handle(body.to_string().as_bytes()));
        check_answer(&answer);
    }

    #[test]
    fn arbitrary_params_of_real_methods_get_an_answer(method in prop::sample::select(METHODS), params in arb_json(), id in arb_json()) {
        let s = server();
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let answer = runtime().block_on(s.handle(body.to_string().as_bytes()));
        check_answer(&answer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_over_the_socket_never_take_the_server_down() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fuzz");
    let _handle = server().serve(&socket).await.unwrap();
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(any::<u8>(), 0..2048);
    for _ in 0..200 {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        let socket = socket.clone();
        let (status, answer) = tokio::task::spawn_blocking(move || common_raw(&socket, &body))
            .await
            .unwrap();
        assert!(status.contains("200"), "{status}");
        check_answer(&answer);
    }
}

fn common_raw(socket: &std::path::Path, body: &[u8]) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: unix\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[..split])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, out[split + 4..].to_vec())
}
