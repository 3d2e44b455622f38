//! Helpers shared by the RPC tests: raw HTTP over a Unix socket, and a scripted Go-like plugin.
#![allow(dead_code, missing_docs)]

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Sends one raw HTTP request body and returns (status line, response body).
pub fn raw_call(socket: &Path, body: &[u8]) -> (String, Vec<u8>) {
    let mut s = UnixStream::connect(socket).expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: unix\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let headers = String::from_utf8_lossy(&out[..split]).to_string();
    let status = headers.lines().next().unwrap_or_default().to_owned();
    let mut body = out[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

pub fn raw_json(socket: &Path, body: &str) -> Value {
    let (status, body) = raw_call(socket, body.as_bytes());
    assert!(status.contains("200"), "{status}");
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

/// A scripted plugin speaking raw HTTP like a Go plugin: `answer(method, params)` returns the
/// JSON-RPC `result` or `error` object. It records every request body it received.
pub struct FakePlugin {
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

pub fn fake_plugin<F>(socket: &Path, answer: F) -> FakePlugin
where
    F: Fn(&str, &Value) -> Result<Value, Value> + Send + 'static,
{
    let listener = UnixListener::bind(socket).unwrap();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let n = match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break (0, 0),
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    break (p + 4, len);
                }
            };
            if head_end == 0 {
                continue;
            }
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let req: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
            seen.lock().unwrap().push(req.clone());
            let method = req["method"].as_str().unwrap_or_default().to_owned();
            let body = match answer(&method, &req["params"]) {
                Ok(result) => {
                    serde_json::json!({"jsonrpc": "2.0", "result": result, "id": req["id"]})
                }
                Err(error) => {
                    serde_json::json!({"jsonrpc": "2.0", "error": error, "id": req["id"]})
                }
            };
            let body = serde_json::to_vec(&body).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    FakePlugin { requests }
}

/// A started manager that leads (static leadership, memory store) over a fresh simulator
/// (`simulator`) and the plain flavor (`vanilla`), resyncing every 100 ms.
pub async fn leading_manager() -> (infrakit_core::Manager, infrakit_core::Simulator) {
    use infrakit_core::*;
    let cloud = Simulator::new();
    let manager = Manager::builder(StaticLeadership::leader(), MemoryStore::new())
        .plugins(
            Plugins::new()
                .instance("simulator", cloud.clone())
                .flavor("vanilla", flavor::Vanilla),
        )
        .options(EngineOptions::default().resync(std::time::Duration::from_millis(100)))
        .build();
    manager.start();
    manager
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("this replica leads");
    (manager, cloud)
}
