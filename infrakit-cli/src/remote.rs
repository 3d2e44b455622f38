//! Talking to manager replicas: finding their sockets, asking who leads, and sending mutations
//! on to the leader.
//!
//! A replica serves, on one socket, the Group API (name `""`) and a metadata plugin whose paths
//! `manager/leader` (bool), `manager/id` and `manager/location` (the leader's location as the
//! leadership source reports it) say where it stands. A location is followed when it is a
//! socket: an absolute path, or a name in the plugin directory (with file leadership the
//! default replica ID is the socket name, so followers point at the leader's socket).

use crate::exit::{Exit, NOT_LEADER};
use anyhow::Context;
use infrakit_core::{GroupError, Metadata};
use infrakit_rpc::{Client, PluginDir, RemoteGroup, RemoteMetadata};
use serde_json::Value;
use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many times a call is sent on to a leader before giving up (leadership moving while we
/// follow it).
const MAX_HOPS: usize = 3;

/// How long `manager status` on a follower waits for the leader's epoch.
const LEADER_EPOCH_WAIT: Duration = Duration::from_secs(1);

/// The socket of `name`: a path if it has a `/`, else a socket in the plugin directory.
pub fn socket_for(dir: &PluginDir, name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        dir.socket(name)
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The socket a leader location points at, if it is one we can reach.
pub fn locate(dir: &PluginDir, location: &str) -> Option<PathBuf> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    let path = if Path::new(location).is_absolute() {
        PathBuf::from(location)
    } else if !location.contains('/') {
        dir.socket(location)
    } else {
        return None;
    };
    is_socket(&path).then_some(path)
}

/// What a replica says about leadership.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The socket asked.
    #[serde(rename = "Socket")]
    pub socket: PathBuf,
    /// The replica's ID.
    #[serde(rename = "ID")]
    pub id: Option<String>,
    /// Whether it leads.
    #[serde(rename = "Leader")]
    pub leader: bool,
    /// Where the leader is, as the leadership source says (`None`: unknown or nobody).
    #[serde(rename = "LeaderLocation")]
    pub location: Option<String>,
    /// The epoch this replica writes with, while it leads.
    #[serde(rename = "Epoch", skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// A follower's view of the leader's epoch, asked of the leader where it is reachable.
    #[serde(rename = "LeaderEpoch", skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<u64>,
}

/// A manager replica to talk to, and the way to its leader.
#[derive(Debug, Clone)]
pub struct Manager {
    dir: PluginDir,
    socket: PathBuf,
    timeout: Duration,
}

impl Manager {
    /// The replica `name` (socket name or path) of plugin directory `dir`.
    pub fn new(dir: PluginDir, name: &str, timeout: Duration) -> Self {
        let socket = socket_for(&dir, name);
        Self {
            dir,
            socket,
            timeout,
        }
    }

    fn client(&self, socket: &Path) -> Client {
        let name = socket
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("group");
        Client::with_timeout(name, socket, self.timeout)
    }

    fn group_at(&self, socket: &Path) -> RemoteGroup {
        RemoteGroup::new(self.client(socket), "")
    }

    /// The replica's leadership status, or `None` if it serves no such metadata (e.g. a Go
    /// group plugin).
    pub async fn status_at(&self, socket: &Path) -> anyhow::Result<Option<Status>> {
        let md = RemoteMetadata::new(self.client(socket), "");
        let leader = match md.get("manager/leader").await {
            Ok(Some(Value::Bool(b))) => b,
            Ok(_) => return Ok(None),
            Err(e) => {
                // A socket that is not there is an error worth reporting as such; one that
                // speaks no metadata is just another kind of group plugin.
                if !is_socket(socket) {
                    return Err(anyhow::Error::new(e)
                        .context(format!("no manager at {}", socket.display())));
                }
                tracing::debug!(error = %e, "no leadership metadata: using the replica as it is");
                return Ok(None);
            }
        };
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
        let id = text(md.get("manager/id").await.unwrap_or_default());
        let location = text(md.get("manager/location").await.unwrap_or_default());
        let number = |v: Option<Value>| v.and_then(|v| v.as_u64());
        let epoch = number(md.get("manager/epoch").await.unwrap_or_default());
        let leader_epoch = if leader {
            epoch
        } else {
            match location.as_deref().and_then(|l| locate(&self.dir, l)) {
                Some(at) if at != socket => {
                    // A leader that does not answer at once (paused, gone) is not waited for.
                    let md = RemoteMetadata::new(self.client(&at), "");
                    tokio::time::timeout(LEADER_EPOCH_WAIT, md.get("manager/epoch"))
                        .await
                        .ok()
                        .and_then(|r| number(r.unwrap_or_default()))
                }
                _ => None,
            }
        };
        Ok(Some(Status {
            socket: socket.to_path_buf(),
            id,
            leader,
            location,
            epoch,
            leader_epoch,
        }))
    }

    /// The status of the replica this command names.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.status_at(&self.socket).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} answers no leadership status (not an infrakit manager?)",
                self.socket.display()
            )
        })
    }

    /// The group API to read from: the leader when the replica named says where it is (a
    /// follower's view has no members), else the replica itself.
    pub async fn reader(&self) -> anyhow::Result<RemoteGroup> {
        Ok(self.group_at(&self.reader_socket().await?))
    }

    /// The socket [`reader`](Self::reader) talks to.
    async fn reader_socket(&self) -> anyhow::Result<PathBuf> {
        if !is_socket(&self.socket) {
            return Err(Exit::new(
                crate::exit::ERROR,
                format!(
                    "no manager socket at {} (is `infrakit manager run` running? see --manager and --plugin-dir)",
                    self.socket.display()
                ),
            )
            .into());
        }
        let mut socket = self.socket.clone();
        for _ in 0..MAX_HOPS {
            match self.status_at(&socket).await? {
                Some(s) if !s.leader => {
                    match s.location.as_deref().and_then(|l| locate(&self.dir, l)) {
                        Some(next) if next != socket => {
                            tracing::debug!(from = %socket.display(), to = %next.display(), "reading from the leader");
                            socket = next;
                        }
                        _ => {
                            tracing::warn!(
                                replica = %socket.display(),
                                leader = s.location.as_deref().unwrap_or("none"),
                                "this replica does not lead and the leader is not reachable here: \
                                 its view of a group has no members"
                            );
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        Ok(socket)
    }

    /// Runs a mutation on the leader: tried on the replica named, then sent on to the leader
    /// each replica reports. Exit code 3 when no leader can be reached.
    pub async fn on_leader<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: Fn(RemoteGroup) -> Fut,
        Fut: Future<Output = Result<T, GroupError>>,
    {
        let mut socket = self.reader_socket().await?;
        let mut last = None;
        for _ in 0..=MAX_HOPS {
            match call(self.group_at(&socket)).await {
                Ok(v) => return Ok(v),
                Err(GroupError::NotLeader { leader }) => {
                    match leader.as_deref().and_then(|l| locate(&self.dir, l)) {
                        Some(next) if next != socket => {
                            tracing::info!(from = %socket.display(), to = %next.display(), "not the leader: sending to the leader");
                            socket = next;
                            last = leader;
                        }
                        _ => return Err(not_leader(&socket, leader.as_deref())),
                    }
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("manager at {}", socket.display()));
                }
            }
        }
        Err(not_leader(&socket, last.as_deref()))
    }
}

fn not_leader(socket: &Path, leader: Option<&str>) -> anyhow::Error {
    let message = match leader {
        Some(l) => format!(
            "{} is not the leader; the leader is at {l} (not a socket reachable from here: run the command there, or pass --manager)",
            socket.display()
        ),
        None => format!(
            "{} is not the leader, and no replica leads right now",
            socket.display()
        ),
    };
    Exit::new(NOT_LEADER, message).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_locations() {
        let dir = PluginDir::new("/tmp/plugins");
        assert_eq!(
            socket_for(&dir, "group"),
            PathBuf::from("/tmp/plugins/group")
        );
        assert_eq!(
            socket_for(&dir, "/run/a.sock"),
            PathBuf::from("/run/a.sock")
        );
        assert_eq!(locate(&dir, ""), None);
        assert_eq!(locate(&dir, "10.0.0.1:24864/x"), None);
        assert_eq!(locate(&dir, "no-such-socket"), None);
    }

    #[tokio::test]
    async fn locate_finds_live_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PluginDir::new(tmp.path());
        let server = infrakit_rpc::PluginServer::new()
            .instance("", std::sync::Arc::new(infrakit_core::Simulator::new()))
            .serve(dir.socket("leader-a"))
            .await
            .unwrap();
        assert_eq!(locate(&dir, "leader-a"), Some(dir.socket("leader-a")));
        let abs = dir.socket("leader-a").display().to_string();
        assert_eq!(locate(&dir, &abs), Some(dir.socket("leader-a")));
        server.stop().await;
        assert_eq!(locate(&dir, "leader-a"), None);
    }

    /// A replica that serves no leadership metadata (as a Go group plugin) and answers
    /// NotLeader: the call is sent on to the leader it names; an unreachable leader is exit 3.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutations_follow_not_leader_to_the_leader() {
        use infrakit_core::{
            Allocation, Group, GroupSpec, Manager as Core, MemoryStore, PluginSpec, Plugins,
            Simulator, StaticLeadership, flavor::Vanilla,
        };
        use serde_json::json;
        use std::sync::Arc;

        let tmp = tempfile::tempdir().unwrap();
        let dir = PluginDir::new(tmp.path());
        let plugins = Plugins::new()
            .instance("sim", Simulator::new())
            .flavor("vanilla", Vanilla);
        let serve = |leadership: StaticLeadership, name: &'static str| {
            let manager = Core::builder(leadership, MemoryStore::new())
                .plugins(plugins.clone())
                .build();
            manager.start();
            let socket = dir.socket(name);
            async move {
                let server = infrakit_rpc::PluginServer::new()
                    .group("", Arc::new(manager.clone()))
                    .serve(socket)
                    .await
                    .unwrap();
                (manager, server)
            }
        };
        let (leader, _l) = serve(StaticLeadership::leader(), "leader").await;
        let (_f, _fs) = serve(
            StaticLeadership::follower(Some("leader".into())),
            "follower",
        )
        .await;
        let (_g, _gs) = serve(
            StaticLeadership::follower(Some("elsewhere:1".into())),
            "lost",
        )
        .await;
        leader
            .wait_leading(std::time::Duration::from_secs(30))
            .await
            .expect("this replica leads");
        let spec = GroupSpec::new(
            "workers",
            PluginSpec::new("sim", json!({})),
            PluginSpec::new("vanilla", json!({})),
            Allocation::size(1),
        );

        let follower = Manager::new(dir.clone(), "follower", Duration::from_secs(10));
        let plan = follower
            .on_leader(|g| {
                let spec = spec.clone();
                async move { g.commit(spec, false).await }
            })
            .await
            .unwrap();
        assert_eq!(plan, "add 1 to reach 1");
        assert_eq!(leader.inspect().await.unwrap().len(), 1);

        let lost = Manager::new(dir.clone(), "lost", Duration::from_secs(10));
        let e = lost
            .on_leader(|g| async move { g.set_size(&"workers".into(), 2).await })
            .await
            .unwrap_err();
        assert_eq!(crate::exit::code_of(&e), NOT_LEADER);
        assert!(
            e.to_string().contains("the leader is at elsewhere:1"),
            "{e}"
        );
    }

    /// A Go v0.4.1 group plugin (`rpc/group/types.go` of that release: `CommitGroup` answers
    /// `{"Details"}`, `FreeGroup` `{"OK": true}`, no `Size`/`SetSize`/`DestroyInstances`, no
    /// metadata, `Handshake.Implements` only), answering raw HTTP like the Go binary.
    fn go_v041_group(socket: &Path) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
        use serde_json::json;
        use std::io::{Read, Write};
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut size = 3u64;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() >= p + 4 + len {
                        break Some(buf[p + 4..p + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let req: Value = serde_json::from_slice(&body).unwrap();
                let method = req["method"].as_str().unwrap().to_owned();
                log.lock().unwrap().push(method.clone());
                let spec = |n: u64| {
                    json!({"ID": "workers", "Properties": {"Allocation": {"Size": n},
                        "Instance": {"Plugin": "sim", "Properties": {}},
                        "Flavor": {"Plugin": "vanilla", "Properties": {}}}})
                };
                let answer = match method.as_str() {
                    "Handshake.Implements" => {
                        json!({"result": {"APIs": [{"Name": "Group", "Version": "0.1.0"}]}})
                    }
                    "Group.CommitGroup" => {
                        size = req["params"]["Spec"]["Properties"]["Allocation"]["Size"]
                            .as_u64()
                            .unwrap_or(size);
                        json!({"result": {"Details": "Managing"}})
                    }
                    "Group.FreeGroup" | "Group.DestroyGroup" => json!({"result": {"OK": true}}),
                    "Group.InspectGroups" => json!({"result": {"Groups": [spec(size)]}}),
                    other => json!({"error": {"code": -32000,
                        "message": format!("rpc: can't find method \"{other}\""), "data": null}}),
                };
                let mut answer = answer;
                answer["jsonrpc"] = json!("2.0");
                answer["id"] = req["id"].clone();
                let out = serde_json::to_vec(&answer).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    out.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&out);
            }
        });
        seen
    }

    /// `manager commit`, `group scale` and `group free` against a v0.4.1 group plugin: each
    /// change is reported as done (it was), the size is read from the spec, and
    /// `destroy-instances` is refused naming the plugin's generation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_v041_group_plugin_is_managed_without_false_failures() {
        use infrakit_core::{Group, GroupSpec};
        let tmp = tempfile::tempdir().unwrap();
        let dir = PluginDir::new(tmp.path());
        let seen = go_v041_group(&dir.socket("group"));
        let replica = Manager::new(dir.clone(), "group", Duration::from_secs(10));
        assert_eq!(replica.status_at(&dir.socket("group")).await.unwrap(), None);
        let spec: GroupSpec = serde_json::from_value(serde_json::json!({"ID": "workers",
            "Properties": {"Allocation": {"Size": 3},
                "Instance": {"Plugin": "sim", "Properties": {}},
                "Flavor": {"Plugin": "vanilla", "Properties": {}}}}))
        .unwrap();
        let plan = replica
            .on_leader(|g| {
                let spec = spec.clone();
                async move { g.commit(spec, false).await }
            })
            .await
            .unwrap();
        assert_eq!(plan, "Managing");
        let id = infrakit_core::GroupId::new("workers");
        assert_eq!(replica.reader().await.unwrap().size(&id).await.unwrap(), 3);
        replica
            .on_leader(|g| {
                let id = id.clone();
                async move { g.set_size(&id, 5).await }
            })
            .await
            .unwrap();
        assert_eq!(replica.reader().await.unwrap().size(&id).await.unwrap(), 5);
        replica
            .on_leader(|g| {
                let id = id.clone();
                async move { g.free(&id).await }
            })
            .await
            .unwrap();
        let e = replica
            .on_leader(|g| {
                let id = id.clone();
                async move { g.destroy_instances(&id, &["i-1".into()]).await }
            })
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("Group/0.1.0"), "{e:#}");
        let seen = seen.lock().unwrap().clone();
        assert!(
            !seen
                .iter()
                .any(|m| m == "Group.SetSize" || m == "Group.DestroyInstances"),
            "{seen:?}"
        );
    }
}
