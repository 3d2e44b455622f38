//! Shared by the EC2 tests: the moto server's address, a VPC per test, and a recording proxy
//! in front of moto that can inject faults on the wire.
#![allow(dead_code, missing_docs)]

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use infrakit_aws::{ATTACHMENT_TAG, SCOPE_TAG};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const REGION: &str = "us-east-1";

/// moto's address, from `INFRAKIT_MOTO_ENDPOINT` (set by `scripts/test`). Fails loudly if
/// moto is not there.
pub fn moto() -> String {
    let endpoint = std::env::var("INFRAKIT_MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "INFRAKIT_MOTO_ENDPOINT is not set: these tests need moto server. Run them with \
             `scripts/test` (root), or start it with `eval \"$(scripts/test --prepare-only)\"`, \
             or `pip install 'moto[server]' && MOTO_ENABLE_AMI_VALIDATION=true moto_server \
             -H 127.0.0.1 -p 5000 &` and export INFRAKIT_MOTO_ENDPOINT=http://127.0.0.1:5000"
        )
    });
    let address = endpoint.trim_start_matches("http://").to_owned();
    if std::net::TcpStream::connect(&address).is_err() {
        panic!(
            "moto server is not answering at {endpoint}: start it with `scripts/test \
             --prepare-only` (root) or `MOTO_ENABLE_AMI_VALIDATION=true moto_server -H 127.0.0.1 -p 5000 &`"
        );
    }
    endpoint
}

/// A client of our configuration at `endpoint`, with a retry partition of its own: the
/// adaptive rate limiter of one test must not slow the others down.
pub fn client_at(endpoint: &str) -> Client {
    client_with(endpoint, infrakit_aws::retry_config(5))
}

pub fn client_with(endpoint: &str, retry: aws_sdk_ec2::config::retry::RetryConfig) -> Client {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let config = infrakit_aws::config(
        Some(endpoint),
        REGION,
        Credentials::new("test", "test", None, None, "static"),
    )
    .retry_config(retry)
    .retry_partition(aws_sdk_ec2::config::retry::RetryPartition::new(format!(
        "test-{n}"
    )))
    .build();
    Client::from_conf(config)
}

/// A VPC and one subnet of `10.<octet>.1.0/24`, for one test.
pub struct Net {
    pub vpc: String,
    pub subnet: String,
    pub az: String,
    pub octet: u8,
}

impl Net {
    pub fn ip(&self, host: u8) -> String {
        format!("10.{}.1.{host}", self.octet)
    }
}

pub async fn network(client: &Client, octet: u8) -> Net {
    network_of(client, octet, 24).await
}

/// A VPC and one subnet of `10.<octet>.0.0/<prefix>` (from /16 to /24), for one test.
pub async fn network_of(client: &Client, octet: u8, prefix: u8) -> Net {
    let vpc = client
        .create_vpc()
        .cidr_block(format!("10.{octet}.0.0/16"))
        .send()
        .await
        .expect("create vpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let subnet = client
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(if prefix == 24 {
            format!("10.{octet}.1.0/24")
        } else {
            format!("10.{octet}.0.0/{prefix}")
        })
        .availability_zone(format!("{REGION}a"))
        .send()
        .await
        .expect("create subnet")
        .subnet
        .expect("subnet");
    Net {
        vpc,
        subnet: subnet.subnet_id.expect("subnet id"),
        az: subnet.availability_zone.expect("az"),
        octet,
    }
}

/// An AMI that moto knows (it validates AMIs when started with MOTO_ENABLE_AMI_VALIDATION).
pub async fn image(client: &Client) -> String {
    client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("describe images")
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_owned))
        .expect("moto has no AMI")
}

/// An EBS volume in `az` carrying the attachment tag `name` in `scope`.
pub async fn volume(client: &Client, az: &str, scope: &str, name: &str) -> String {
    client
        .create_volume()
        .availability_zone(az)
        .size(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(Tag::builder().key(ATTACHMENT_TAG).value(name).build())
                .tags(Tag::builder().key(SCOPE_TAG).value(scope).build())
                .build(),
        )
        .send()
        .await
        .expect("create volume")
        .volume_id
        .expect("volume id")
}

/// What the proxy does with a request.
pub enum Verdict {
    /// Pass it to moto and its answer back.
    Forward,
    /// Answer this instead, without telling moto.
    Reply(u16, String),
    /// Let moto carry it out, then lose the answer: reply this instead.
    ForwardThenReply(u16, String),
}

/// One request seen by the proxy: its action and its form parameters.
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    pub params: HashMap<String, String>,
}

type Rule = Box<dyn Fn(&Seen, usize) -> Verdict + Send + Sync>;

/// An HTTP proxy in front of moto that records every EC2 request and applies a rule to it.
pub struct Proxy {
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    rule: Arc<Mutex<Rule>>,
}

/// EC2's error document.
pub fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>infrakit-test</RequestID></Response>"
    )
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let rule: Arc<Mutex<Rule>> = Arc::new(Mutex::new(Box::new(|_, _| Verdict::Forward)));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let (s, r) = (seen.clone(), rule.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, rule, upstream) = (s.clone(), r.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, rule, upstream) = (seen.clone(), rule.clone(), upstream.clone());
                        async move { handle(req, &seen, &rule, &upstream).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy {
            endpoint,
            seen,
            rule,
        }
    }

    /// Sets the rule; `n` is how many requests of the same action came before this one.
    pub fn rule(&self, rule: impl Fn(&Seen, usize) -> Verdict + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn actions(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.action).collect()
    }

    pub fn count(&self, action: &str) -> usize {
        self.seen().iter().filter(|s| s.action == action).count()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    rule: &Mutex<Rule>,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let params: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let this = Seen {
        action: params.get("Action").cloned().unwrap_or_default(),
        params,
    };
    let verdict = {
        let mut seen = seen.lock().unwrap();
        let before = seen.iter().filter(|s| s.action == this.action).count();
        seen.push(this.clone());
        (rule.lock().unwrap())(&this, before)
    };
    let reply = |status: u16, text: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(text)))
            .unwrap()
    };
    if let Verdict::Reply(status, text) = verdict {
        return Ok(reply(status, text));
    }
    let stream = tokio::net::TcpStream::connect(upstream).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut forward = Request::builder().method(parts.method).uri(parts.uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let answer = sender
        .send_request(forward.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.into_body().collect().await?.to_bytes();
    if let Verdict::ForwardThenReply(status, text) = verdict {
        return Ok(reply(status, text));
    }
    let mut out = Response::builder().status(status);
    for (k, v) in &headers {
        if k != "transfer-encoding" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    Ok(out.body(Full::new(bytes)).unwrap())
}
