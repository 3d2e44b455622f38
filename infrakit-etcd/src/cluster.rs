//! A real etcd cluster on this machine, for tests and demos: members are `etcd` processes on
//! loopback ports (chosen free, never fixed) with their data in a temporary directory.
//!
//! Invariants: every member process is killed when the cluster is dropped, and the
//! directory removed; a member that is killed keeps its data directory, so it rejoins with
//! [`EtcdCluster::restart`]. Nothing here is used by the library itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How to get etcd on Debian (and what the test command does).
pub const INSTALL_HINT: &str = "install Debian's etcd-server (`apt-get install etcd-server`), or run `scripts/test --prepare-only`, which installs it";

/// Why a cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No `etcd` binary.
    #[error(
        "no etcd binary found (looked for $INFRAKIT_ETCD_BIN, then etcd on PATH and in /usr/bin): {INSTALL_HINT}"
    )]
    NoEtcd,
    /// A process or file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not become healthy in time.
    #[error("etcd cluster not healthy after {waited:?}; last member log lines:\n{log}")]
    Unhealthy {
        /// How long it waited.
        waited: Duration,
        /// The tail of the members' logs.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// One member.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A local etcd cluster.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use infrakit_etcd::cluster::EtcdCluster;
/// let mut cluster = EtcdCluster::start(3).await?;
/// let client = infrakit_etcd::EtcdConfig::new(cluster.endpoints()).connect().await?;
/// cluster.kill(0).await?;     // SIGKILL one member: the other two keep quorum
/// cluster.restart(0).await?;  // it rejoins with its data
/// # drop(client); Ok(()) }
/// ```
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    tls: Option<ClusterTls>,
}

/// The PEM files of a cluster started with [`EtcdCluster::start_tls`]: a CA, the members'
/// certificate (for `127.0.0.1`) and a client certificate the members require.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The members' certificate and key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and key signed by the CA.
    pub client: (PathBuf, PathBuf),
}

/// The `etcd` binary: `$INFRAKIT_ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`.
pub fn etcd_binary() -> Result<PathBuf, ClusterError> {
    if let Some(path) = std::env::var_os("INFRAKIT_ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("etcd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|p| p.is_file())
        .ok_or(ClusterError::NoEtcd)
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("find a free loopback port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("find a free loopback port"))
}

/// Runs `openssl` with `args` in `dir`.
async fn openssl(dir: &Path, args: &[&str]) -> Result<(), ClusterError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io("run openssl (Debian package openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Io {
            what: format!("openssl {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
    }
}

/// A CA, a member certificate for 127.0.0.1 and a client certificate, in `dir`.
async fn make_certificates(dir: &Path) -> Result<ClusterTls, ClusterError> {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=infrakit test CA",
    ];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca).await?;
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!("{name}.ext");
        tokio::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .await
        .map_err(io("write a certificate extension file"))?;
        let (k, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subject = format!("/CN=infrakit test {name}");
        let mut req = vec!["req", "-subj", subject.as_str()];
        req.extend(key);
        req.extend(["-keyout", k.as_str(), "-out", csr.as_str()]);
        openssl(dir, &req).await?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        )
        .await?;
    }
    Ok(ClusterTls {
        ca: dir.join("ca.pem"),
        server: (dir.join("server.pem"), dir.join("server.key")),
        client: (dir.join("client.pem"), dir.join("client.key")),
    })
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one answers and the cluster has a leader.
    pub async fn start(size: usize) -> Result<Self, ClusterError> {
        Self::start_with(size, false).await
    }

    /// Like [`start`](Self::start), with clients served over TLS only and a client
    /// certificate required (mutual TLS); the certificates are made with `openssl` and
    /// named by [`tls`](Self::tls).
    pub async fn start_tls(size: usize) -> Result<Self, ClusterError> {
        Self::start_with(size, true).await
    }

    /// The certificates of a cluster started with [`start_tls`](Self::start_tls).
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    async fn start_with(size: usize, tls: bool) -> Result<Self, ClusterError> {
        let binary = etcd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("infrakit-etcd-")
            .tempdir()
            .map_err(io("create the cluster's directory"))?;
        let token = format!(
            "infrakit-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                data: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        let tls = match tls {
            true => Some(make_certificates(dir.path()).await?),
            false => None,
        };
        let mut cluster = Self {
            binary,
            dir,
            token,
            members,
            tls,
        };
        for i in 0..size {
            cluster.spawn(i, "new").await?;
        }
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[i].client_port
        )
    }

    /// The endpoints as one comma-separated list (`--etcd-endpoints`).
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    async fn spawn(&mut self, i: usize, state: &str) -> Result<(), ClusterError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .await
            .map_err(io(format!("open {}", m.log.display())))?
            .into_std()
            .await;
        let err = log.try_clone().map_err(io("open the member log"))?;
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server.0)
                .arg("--key-file")
                .arg(&tls.server.1)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", self.binary.display())))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// SIGKILLs member `i` (its data stays, for [`restart`](Self::restart)).
    pub async fn kill(&mut self, i: usize) -> Result<(), ClusterError> {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().await.map_err(io("kill an etcd member"))?;
        }
        Ok(())
    }

    /// Starts member `i` again with its data: it rejoins the cluster.
    pub async fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i).await?;
        self.spawn(i, "existing").await
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to member `i`.
    pub async fn signal(&self, i: usize, signal: &str) -> Result<(), ClusterError> {
        let Some(pid) = self.members[i].child.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .map_err(io("run kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError::Io {
                what: format!("kill -{signal} {pid}"),
                source: std::io::Error::other(status.to_string()),
            })
        }
    }

    /// The member that leads the Raft group now, asked of every running member.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let Ok(mut client) = self.member_client(i).await else {
                continue;
            };
            if let Ok(status) = client.status().await {
                let me = status.header().map(|h| h.member_id());
                if me == Some(status.leader()) && status.leader() != 0 {
                    return Some(i);
                }
            }
        }
        None
    }

    async fn member_client(&self, i: usize) -> Result<etcd_client::Client, etcd_client::Error> {
        let mut config = crate::EtcdConfig::new([self.endpoint(i)])
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(1));
        if let Some(tls) = &self.tls {
            config = config.tls(tls.ca.clone(), Some(tls.client.clone()));
        }
        config.connect().await.map_err(|e| match e {
            crate::EtcdError::Request(e) => e,
            other => etcd_client::Error::InvalidArgs(other.to_string()),
        })
    }

    /// Waits until every running member answers a linearizable read.
    pub async fn wait_healthy(&self, within: Duration) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut healthy = true;
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    continue;
                }
                let ok = match self.member_client(i).await {
                    Ok(mut c) => c.get("health", None).await.is_ok(),
                    Err(_) => false,
                };
                healthy &= ok;
            }
            if healthy {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Unhealthy {
                    waited: within,
                    log: self.log_tail(10).await,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of every member's log.
    pub async fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = tokio::fs::read_to_string(&m.log).await.unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ({})\n", m.name, m.log.display()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
