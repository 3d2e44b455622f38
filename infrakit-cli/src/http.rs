//! `infrakit manager run --http ADDR`: the operator's window on a replica.
//!
//! - `/metrics`: the engine's metrics in the Prometheus text format (the `metrics` facade's
//!   recorder is `metrics-exporter-prometheus`), plus gauges this window keeps: leadership
//!   (`infrakit_leader`, `infrakit_leadership_term`) and per group the update's progress
//!   (`infrakit_update_outdated`), convergence and target size, refreshed at each scrape.
//! - `/healthz`: the process answers (Kubernetes' liveness).
//! - `/readyz`: Kubernetes' readiness: this replica leads with its specs loaded from the store,
//!   or follows a leader it knows; otherwise 503 with the reason.
//! - `/status`: groups, members with health and age, the update's state, the current plan, the
//!   last error, recent events, as JSON.
//! - `/`: the same as a page (rendered with minijinja), live: it follows `/events` (server-sent
//!   events, one engine event per message) and re-renders its groups from `/fragment`.
//!
//! Invariant: the window only reads; it never mutates a group.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use infrakit_core::{Allocation, Group, GroupError, Health, InstanceId, LeadershipState, Manager};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

/// Events kept for `/status` and the page.
const RECENT: usize = 50;
/// Buckets of the provider-call latency histogram, in seconds.
const CALL_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

const PAGE: &str = include_str!("http/page.html");
/// The groups part of the page, also served alone (`/fragment`) for live updates.
const GROUPS: &str = include_str!("http/groups.html");

/// The running window; [`stop`](Self::stop) ends it.
pub struct StatusServer {
    tasks: Vec<JoinHandle<()>>,
}

impl StatusServer {
    /// Stops serving.
    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// What every handler reads.
#[derive(Clone)]
struct Window {
    manager: Manager,
    replica: String,
    prometheus: PrometheusHandle,
    templates: Arc<minijinja::Environment<'static>>,
    recent: Arc<Mutex<VecDeque<Logged>>>,
    /// When this window first saw each member: the age it shows.
    seen: Arc<Mutex<BTreeMap<InstanceId, Instant>>>,
}

/// One engine event, as shown.
#[derive(Debug, Clone, Serialize)]
struct Logged {
    /// Seconds since the Unix epoch.
    at: f64,
    text: String,
}

/// Installs the Prometheus recorder and serves the window on `addr`.
pub async fn serve(
    addr: SocketAddr,
    manager: Manager,
    replica: String,
) -> anyhow::Result<StatusServer> {
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("infrakit_provider_call_seconds".into()),
            &CALL_BUCKETS,
        )
        .map_err(|e| anyhow::anyhow!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("install the metrics recorder: {e}"))?;
    describe_metrics();

    let mut templates = minijinja::Environment::new();
    // `.html` names turn on HTML escaping: IDs and errors come from providers.
    for (name, text) in [("page.html", PAGE), ("groups.html", GROUPS)] {
        templates
            .add_template(name, text)
            .map_err(|e| anyhow::anyhow!("the status page template {name}: {e}"))?;
    }
    let window = Window {
        manager: manager.clone(),
        replica,
        prometheus,
        templates: Arc::new(templates),
        recent: Arc::default(),
        seen: Arc::default(),
    };

    let recorder = {
        let window = window.clone();
        let mut events = manager.events();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => window.log(e.to_string()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        window.log(format!("({n} events not shown: the page fell behind)"))
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    };

    let app = Router::new()
        .route("/", get(page))
        .route("/fragment", get(fragment))
        .route("/status", get(status_json))
        .route("/events", get(events))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(window);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen on {addr}: {e}"))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the status server stopped");
        }
    });
    tracing::info!(url = %format!("http://{addr}/"), "status page, /metrics, /healthz, /readyz, /status");
    Ok(StatusServer {
        tasks: vec![server, recorder],
    })
}

fn describe_metrics() {
    metrics::describe_counter!("infrakit_reconcile_passes_total", "Reconcile passes run");
    metrics::describe_counter!(
        "infrakit_reconcile_errors_total",
        "Reconcile passes that failed"
    );
    metrics::describe_histogram!(
        "infrakit_provider_call_seconds",
        metrics::Unit::Seconds,
        "Provider and flavor call latency, by operation"
    );
    metrics::describe_gauge!("infrakit_group_members", "Members by state");
    metrics::describe_gauge!("infrakit_leader", "1 while this replica leads");
    metrics::describe_gauge!("infrakit_leadership_term", "This replica's leadership term");
    metrics::describe_gauge!(
        "infrakit_update_outdated",
        "Members a rolling update has still to replace"
    );
    metrics::describe_gauge!(
        "infrakit_group_converged",
        "1 when the group matches its spec"
    );
    metrics::describe_gauge!("infrakit_group_target_size", "The size the spec asks for");
}

impl Window {
    fn log(&self, text: String) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Logged { at, text });
    }

    /// Everything the page and `/status` show, read now.
    async fn status(&self) -> Status {
        let leadership = LeadershipView::of(&self.manager.leadership());
        let mut groups = Vec::new();
        let mut error = None;
        match self.manager.inspect().await {
            Ok(specs) => {
                for spec in specs {
                    let target = match &spec.allocation {
                        Allocation::Size(n) => *n as usize,
                        Allocation::LogicalIds { ids, .. } => ids.len(),
                    };
                    match self.manager.describe(&spec.id).await {
                        Ok(d) => groups.push(self.group_view(spec.id.to_string(), target, d)),
                        Err(e) => groups.push(GroupView::failed(spec.id.to_string(), target, &e)),
                    }
                }
            }
            Err(GroupError::NotLeader { leader }) => {
                error = Some(match leader {
                    Some(l) => format!("this replica follows; the leader is {l}"),
                    None => "this replica follows; no leader is known".into(),
                })
            }
            Err(e) => error = Some(e.to_string()),
        }
        self.forget_gone(&groups);
        let events = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.iter().rev().cloned().collect()
        };
        Status {
            replica: self.replica.clone(),
            leadership,
            groups,
            error,
            events,
        }
    }

    fn group_view(
        &self,
        id: String,
        target: usize,
        d: infrakit_core::GroupDescription,
    ) -> GroupView {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let members = d
            .members
            .iter()
            .map(|m| {
                let first = *seen.entry(m.id.clone()).or_insert(now);
                MemberView {
                    id: m.id.to_string(),
                    logical_id: m.logical_id.as_ref().map(ToString::to_string),
                    health: match m.health {
                        Health::Healthy => "healthy",
                        Health::Unhealthy => "unhealthy",
                        Health::Unknown => "unknown",
                    },
                    up_to_date: m.up_to_date,
                    age_secs: now.duration_since(first).as_secs(),
                }
            })
            .collect();
        let update = d.update.as_ref().map(|u| {
            let v = serde_json::to_value(u).unwrap_or_default();
            UpdateView {
                state: v["State"].as_str().unwrap_or("unknown").to_owned(),
                outdated: v["Outdated"].as_u64().unwrap_or(0),
            }
        });
        GroupView {
            id,
            target,
            converged: d.converged,
            plan: d.plan,
            last_error: d.last_error,
            update,
            members,
        }
    }

    /// Ages are kept only for members still listed.
    fn forget_gone(&self, groups: &[GroupView]) {
        let listed: std::collections::BTreeSet<&str> = groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.id.as_str()))
            .collect();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|id, _| listed.contains(id.as_str()));
    }

    fn render(&self, status: &Status, fragment: bool) -> Result<String, minijinja::Error> {
        let name = if fragment { "groups.html" } else { "page.html" };
        self.templates.get_template(name)?.render(status)
    }
}

/// The JSON of `/status` and the page's data.
#[derive(Debug, Serialize)]
struct Status {
    replica: String,
    leadership: LeadershipView,
    groups: Vec<GroupView>,
    /// Why no groups are shown (a follower, a store error).
    error: Option<String>,
    /// Newest first.
    events: Vec<Logged>,
}

#[derive(Debug, Serialize)]
struct LeadershipView {
    /// `leader`, `follower` or `unavailable`.
    state: &'static str,
    term: Option<u64>,
    leader: Option<String>,
    error: Option<String>,
}

impl LeadershipView {
    fn of(state: &LeadershipState) -> Self {
        match state {
            LeadershipState::Leader { term } => Self {
                state: "leader",
                term: Some(term.0),
                leader: None,
                error: None,
            },
            LeadershipState::Follower { leader } => Self {
                state: "follower",
                term: None,
                leader: leader.clone(),
                error: None,
            },
            LeadershipState::Unavailable { error } => Self {
                state: "unavailable",
                term: None,
                leader: None,
                error: Some(error.to_string()),
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct GroupView {
    id: String,
    target: usize,
    converged: bool,
    plan: Option<String>,
    last_error: Option<String>,
    update: Option<UpdateView>,
    members: Vec<MemberView>,
}

impl GroupView {
    fn failed(id: String, target: usize, e: &GroupError) -> Self {
        Self {
            id,
            target,
            converged: false,
            plan: None,
            last_error: Some(e.to_string()),
            update: None,
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct UpdateView {
    /// `up_to_date`, `rolling`, `paused` or `failed`.
    state: String,
    outdated: u64,
}

#[derive(Debug, Serialize)]
struct MemberView {
    id: String,
    logical_id: Option<String>,
    health: &'static str,
    up_to_date: bool,
    /// Seconds since this window first saw it.
    age_secs: u64,
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

async fn page(State(w): State<Window>) -> Response {
    let status = w.status().await;
    match w.render(&status, false) {
        Ok(html) => Html(html).into_response(),
        Err(e) => internal(e),
    }
}

async fn fragment(State(w): State<Window>) -> Response {
    let status = w.status().await;
    match w.render(&status, true) {
        Ok(html) => Html(html).into_response(),
        Err(e) => internal(e),
    }
}

async fn status_json(State(w): State<Window>) -> Response {
    axum::Json(w.status().await).into_response()
}

async fn events(
    State(w): State<Window>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = BroadcastStream::new(w.manager.events()).map(|e| {
        Ok(Event::default().data(match e {
            Ok(e) => e.to_string(),
            Err(_) => "(events missed)".to_owned(),
        }))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics_text(State(w): State<Window>) -> Response {
    let status = w.status().await;
    let leads = status.leadership.state == "leader";
    metrics::gauge!("infrakit_leader").set(if leads { 1.0 } else { 0.0 });
    metrics::gauge!("infrakit_leadership_term").set(status.leadership.term.unwrap_or(0) as f64);
    for g in &status.groups {
        let outdated = g.update.as_ref().map_or(0, |u| u.outdated);
        metrics::gauge!("infrakit_update_outdated", "group" => g.id.clone()).set(outdated as f64);
        metrics::gauge!("infrakit_group_converged", "group" => g.id.clone()).set(if g.converged {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("infrakit_group_target_size", "group" => g.id.clone()).set(g.target as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        w.prometheus.render(),
    )
        .into_response()
}

async fn readyz(State(w): State<Window>) -> Response {
    match w.manager.leadership() {
        LeadershipState::Leader { .. } => match w.manager.inspect().await {
            Ok(_) => (StatusCode::OK, "ready: leading\n".to_owned()).into_response(),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: leading, but the specs are not loaded: {e}\n"),
            )
                .into_response(),
        },
        LeadershipState::Follower { leader: Some(l) } => {
            (StatusCode::OK, format!("ready: following {l}\n")).into_response()
        }
        LeadershipState::Follower { leader: None } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader is known\n".to_owned(),
        )
            .into_response(),
        LeadershipState::Unavailable { error } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: leadership unavailable: {error}\n"),
        )
            .into_response(),
    }
}
