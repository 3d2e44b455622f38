//! Plugin calls over a Unix socket: a DescribeInstances returning 1,000 instances, and a small
//! Provision, each a full JSON-RPC round trip on a keep-alive connection; and, in the same run,
//! their floors:
//!
//! - `json_floor_describe_1000`: the same 1,000 descriptions in their wire shape serialised
//!   and parsed back in-process (serde_json, no socket), what any JSON-RPC plugin must pay;
//! - `http_echo_small`: a bare HTTP/1.1 round trip of a small body (the size of a Provision
//!   request) on the same kind of Unix socket and runtime (hyper, no JSON-RPC);
//! - `http_echo_json_small`: the same echo, the server parsing the body into a
//!   `serde_json::Value` and writing it back before answering (about a microsecond of work).
//!   On a two-core machine this alone moves the round trip from the bare echo's to that of a
//!   full JSON-RPC call: once the server works at all, the idle runtime worker parks and every
//!   hop pays a kernel wake-up (`try_to_wake_up`, futex, epoll in the profile).
//!
//! Targets: `describe_1000` ≤ 2× `json_floor_describe_1000`; `provision_small` ≤ 1.5×
//! `http_echo_small`.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use infrakit::rpc::wire::DescribeResp;
use infrakit::rpc::{PluginDir, PluginServer};
use infrakit::*;
use std::path::Path;
use std::sync::Arc;

/// A provision request's body, as the client sends it (the echo floor's payload).
const SMALL_BODY: &[u8] = br#"{"jsonrpc":"2.0","method":"Instance.Provision","params":{"Type":"","Spec":{"Properties":null,"Tags":{"bench":"provision"},"Init":"","LogicalID":null,"Attachments":null}},"id":1}"#;

/// What an echo server does with the body before answering it.
#[derive(Clone, Copy)]
enum Echo {
    /// The body as received.
    Bare,
    /// The body parsed into a `serde_json::Value` and written back: the least JSON work any
    /// JSON-RPC server does with a call.
    Json,
}

/// A bare HTTP/1.1 server on a Unix socket that answers every POST with its body.
async fn echo_server(path: &Path, echo: Echo) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).expect("bind the echo socket");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut body = req.into_body().collect().await?.to_bytes();
                        if let Echo::Json = echo {
                            let value: serde_json::Value =
                                serde_json::from_slice(&body).expect("a JSON body");
                            body = Bytes::from(serde_json::to_vec(&value).expect("encode"));
                        }
                        let mut response = hyper::Response::new(Full::new(body));
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A keep-alive HTTP/1.1 connection to the echo server.
async fn echo_client(path: &Path) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect to the echo socket");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One echo round trip: POST the small body, read the whole answer.
async fn echo_once(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> usize {
    sender.ready().await.expect("echo connection ready");
    let request = hyper::Request::post("/")
        .header(hyper::header::HOST, "unix")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(SMALL_BODY)))
        .expect("request");
    let response = sender.send_request(request).await.expect("echo");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("echo body")
        .to_bytes();
    body.len()
}

fn rpc(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("infrakit-rpc-bench-{}", std::process::id()));
    let plugins = PluginDir::new(&dir);
    let cloud = Simulator::builder().log_calls(false).build();
    for i in 0..1000 {
        cloud.insert(
            InstanceSpec::default()
                .with_tag(GROUP_TAG, "workers")
                .with_tag("n", i.to_string())
                .with_logical_id(format!("10.0.{}.{}", i / 250, i % 250).as_str()),
        );
    }
    let server = rt
        .block_on(
            PluginServer::new()
                .instance("", Arc::new(cloud.clone()))
                .serve(plugins.socket("simulator")),
        )
        .expect("serve");
    let remote = Arc::new(plugins.instance("simulator"));
    let query = Tags::new().with(GROUP_TAG, "workers");
    assert_eq!(
        rt.block_on(remote.describe(&query, false))
            .expect("describe")
            .len(),
        1000
    );

    // The floor of a describe: the same descriptions, in their wire shape, through serde_json.
    let descriptions = rt
        .block_on(cloud.describe(&query, false))
        .expect("describe in-process");
    assert_eq!(descriptions.len(), 1000);
    let wire = DescribeResp {
        kind: String::new(),
        descriptions: Some(descriptions),
    };
    let echo_socket = dir.join("echo.sock");
    let echo = rt.block_on(echo_server(&echo_socket, Echo::Bare));
    let echo_json_socket = dir.join("echo-json.sock");
    let echo_json = rt.block_on(echo_server(&echo_json_socket, Echo::Json));

    let mut group = c.benchmark_group("rpc");
    group.throughput(Throughput::Elements(1));
    group.bench_function("json_floor_describe_1000", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&wire).expect("encode");
            let back: DescribeResp = serde_json::from_slice(&bytes).expect("decode");
            back.descriptions.map_or(0, |d| d.len())
        })
    });
    // The server's own share of a small call: the same body answered in-process (JSON-RPC
    // decode, dispatch, the simulator, encode; no socket, no HTTP).
    let handler = PluginServer::new().instance("", Arc::new(cloud.clone()));
    group.bench_function("server_handle_provision", |b| {
        b.iter_custom(|iters| {
            let (ids, elapsed) = rt.block_on(async {
                let mut ids = Vec::with_capacity(iters as usize);
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    ids.push(handler.handle(SMALL_BODY).await);
                }
                (ids, start.elapsed())
            });
            for answer in ids {
                let v: serde_json::Value = serde_json::from_slice(&answer).expect("answer");
                let id = InstanceId::new(v["result"]["ID"].as_str().expect("an ID"));
                rt.block_on(cloud.destroy(&id, DestroyContext::Terminate))
                    .expect("destroy in-process");
            }
            elapsed
        })
    });
    for (name, socket) in [
        ("http_echo_small", &echo_socket),
        ("http_echo_json_small", &echo_json_socket),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let socket = socket.clone();
                rt.block_on(rt.spawn(async move {
                    let mut sender = echo_client(&socket).await;
                    echo_once(&mut sender).await;
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        echo_once(&mut sender).await;
                    }
                    start.elapsed()
                }))
                .expect("bench task")
            })
        });
    }
    // The calls run on a runtime worker, as an engine's controller makes them.
    let query = Arc::new(query);
    group.bench_function("describe_1000", |b| {
        b.iter_custom(|iters| {
            let (remote, query) = (Arc::clone(&remote), Arc::clone(&query));
            rt.block_on(rt.spawn(async move {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    remote.describe(&query, false).await.expect("describe");
                }
                start.elapsed()
            }))
            .expect("bench task")
        })
    });
    // The provider's state stays the same size: what a batch provisioned is destroyed
    // in-process after it is timed (a provider that only grows would time the allocator).
    group.bench_function("provision_small", |b| {
        b.iter_custom(|iters| {
            let (remote, cloud) = (Arc::clone(&remote), cloud.clone());
            rt.block_on(rt.spawn(async move {
                let spec = InstanceSpec::default().with_tag("bench", "provision");
                let mut ids = Vec::with_capacity(iters as usize);
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    ids.push(remote.provision(spec.clone()).await.expect("provision"));
                }
                let elapsed = start.elapsed();
                for id in &ids {
                    cloud
                        .destroy(id, DestroyContext::Terminate)
                        .await
                        .expect("destroy in-process");
                }
                elapsed
            }))
            .expect("bench task")
        })
    });
    group.finish();
    echo.abort();
    echo_json.abort();
    rt.block_on(server.stop());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, rpc);
criterion_main!(benches);
