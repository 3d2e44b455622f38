//! High availability on etcd: a 3-member etcd cluster on this machine, three manager replicas
//! on it, and the leader taken away again and again, with the timeline printed.
//!
//! ```text
//! scripts/test --prepare-only          # installs Debian's etcd-server, once
//! cargo run --features etcd --example etcd_ha                 # one crash, one clean stop
//! cargo run --features etcd --example etcd_ha -- --rounds 20  # and the medians of 10 of each
//! ```
//!
//! Each replica runs on its own runtime and thread, as if in its own process: a *crash* drops
//! that runtime at once (no resign: the lease must expire, as after SIGKILL), a *clean stop*
//! is `Manager::shutdown`, which resigns. As soon as the old leader is gone, one instance is
//! destroyed behind the managers' backs; the new leader's first action is its replacement,
//! timed from the moment the old leader was told to go.
//! All replicas drive one simulator, whose call log says which replica made each call.
//!
//! Exit code 0 only if every round healed with exactly one replacement and never two leaders.

use infrakit::etcd::cluster::EtcdCluster;
use infrakit::etcd::{EtcdConfig, EtcdLeadership, EtcdStore};
use infrakit::simulator::Op;
use infrakit::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The leadership lease's TTL.
const TTL: Duration = Duration::from_secs(2);
/// Any wait in the story.
const WAIT: Duration = Duration::from_secs(30);

fn main() -> Result<(), Error> {
    let rounds = match std::env::args().skip_while(|a| a != "--rounds").nth(1) {
        Some(n) => n.parse()?,
        None => 2,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(rounds))
}

enum Command {
    Commit(
        Box<GroupSpec>,
        oneshot::Sender<Result<Duration, GroupError>>,
    ),
    Crash,
    Resign,
}

/// A replica on its own thread and runtime.
struct Replica {
    name: String,
    leading: Arc<AtomicBool>,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn spawn(name: &str, endpoints: Vec<String>, cloud: &Simulator) -> Replica {
        let (commands, mut rx) = mpsc::unbounded_channel();
        let leading = Arc::new(AtomicBool::new(false));
        let (flag, view, who) = (
            Arc::clone(&leading),
            cloud.with_caller(name),
            name.to_owned(),
        );
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("{who}: no runtime: {e}"),
            };
            rt.block_on(async move {
                let client = match EtcdConfig::new(endpoints).connect().await {
                    Ok(c) => c,
                    Err(e) => return eprintln!("{who}: {e}"),
                };
                let leadership = EtcdLeadership::builder(client.clone())
                    .prefix("/etcd-ha")
                    .ttl(TTL)
                    .location(who.clone())
                    .start();
                let store = EtcdStore::new(client, "/etcd-ha/spec").fenced_by(&leadership);
                let manager = Manager::builder(leadership, store)
                    .plugins(
                        Plugins::new()
                            .instance("simulator", view)
                            .flavor("vanilla", flavor::Vanilla),
                    )
                    .build();
                manager.start();
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                loop {
                    tokio::select! {
                        command = rx.recv() => match command {
                            Some(Command::Commit(spec, reply)) => {
                                let started = Instant::now();
                                let r = manager.commit(*spec, false).await.map(|_| started.elapsed());
                                let _ = reply.send(r);
                            }
                            // Returning drops the runtime with every task in it: no resign.
                            Some(Command::Crash) | None => return,
                            Some(Command::Resign) => {
                                manager.shutdown().await;
                                flag.store(false, Ordering::SeqCst);
                                return;
                            }
                        },
                        _ = tick.tick() => flag.store(manager.leadership().is_leader(), Ordering::SeqCst),
                    }
                }
            });
        });
        Replica {
            name: name.to_owned(),
            leading,
            commands,
            thread: Some(thread),
        }
    }

    fn leads(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    async fn commit(&self, spec: GroupSpec) -> Result<Duration, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Commit(Box::new(spec), tx))
            .map_err(|_| "replica gone")?;
        Ok(rx.await??)
    }

    /// Stops the replica (crash or clean stop) and waits for its thread.
    async fn stop(mut self, command: Command) {
        let _ = self.commands.send(command);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Waits until exactly one replica leads; fails if two ever do.
async fn leader(replicas: &[Replica]) -> Result<usize, Error> {
    let start = Instant::now();
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].leads())
            .collect();
        if leading.len() > 1 {
            return Err(format!("two leaders at once: {leading:?}").into());
        }
        if let Some(l) = leading.first() {
            return Ok(*l);
        }
        if start.elapsed() > WAIT {
            return Err("no replica leads".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_instances(cloud: &Simulator, n: usize) -> Result<(), Error> {
    let start = Instant::now();
    while cloud.describe(&Tags::new(), false).await?.len() != n {
        if start.elapsed() > WAIT {
            return Err(format!("not {n} instances after {WAIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn spec() -> Result<GroupSpec, SpecError> {
    GroupSpec::from_json(
        &json!({"ID": "workers", "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "simulator", "Properties": {"Image": "app:1"}},
            "Flavor": {"Plugin": "vanilla", "Properties": {}}}})
        .to_string(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Option<(Duration, Duration, Duration)> {
    v.sort();
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

async fn run(rounds: usize) -> Result<(), Error> {
    println!("starting a 3-member etcd cluster on loopback ports...");
    let cluster = EtcdCluster::start(3).await?;
    println!("etcd: {}", cluster.endpoint_list());
    let cloud = Simulator::builder().build();
    let mut next = 0;
    let mut spawn = |cloud: &Simulator| {
        next += 1;
        Replica::spawn(&format!("replica-{next}"), cluster.endpoints(), cloud)
    };
    let mut replicas: Vec<Replica> = (0..3).map(|_| spawn(&cloud)).collect();
    let l = leader(&replicas).await?;
    let mut commits = vec![replicas[l].commit(spec()?).await?];
    wait_instances(&cloud, 3).await?;
    println!(
        "{} leads; committed 3 workers through etcd in {}",
        replicas[l].name,
        ms(commits[0])
    );

    let (mut crashes, mut resigns) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let crash = round % 2 == 1;
        let l = leader(&replicas).await?;
        wait_instances(&cloud, 3).await?;
        let old = replicas.remove(l);
        let old_name = old.name.clone();
        let victim = cloud.describe(&Tags::new(), false).await?[0].id.clone();
        let since = cloud.calls().len();
        let gone = Instant::now();
        old.stop(if crash {
            Command::Crash
        } else {
            Command::Resign
        })
        .await;
        // Only once the old leader is gone, so it cannot be the one that heals.
        cloud.destroy(&victim, DestroyContext::Terminate).await?;
        let n = leader(&replicas).await?;
        let elected = gone.elapsed();
        wait_instances(&cloud, 3).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let provisions: Vec<_> = cloud.calls()[since..]
            .iter()
            .filter(|c| c.op == Op::Provision)
            .cloned()
            .collect();
        if provisions.len() != 1 {
            return Err(format!("round {round}: {} provisions, not one", provisions.len()).into());
        }
        let acted = provisions[0].at.saturating_duration_since(gone);
        let by = provisions[0].caller.clone().unwrap_or_default();
        if by != replicas[n].name {
            return Err(
                format!("round {round}: {by} acted, but {} leads", replicas[n].name).into(),
            );
        }
        let rtt = replicas[n].commit(spec()?).await?;
        commits.push(rtt);
        println!(
            "round {round:>2}: {} {old_name} at 0 ms | {by} leads at {} | replacement provisioned at {} | commit {}",
            if crash { "crashed " } else { "stopped " },
            ms(elected),
            ms(acted),
            ms(rtt)
        );
        if crash {
            crashes.push(acted)
        } else {
            resigns.push(acted)
        }
        replicas.push(spawn(&cloud));
    }

    println!("\n| measure | runs | min | median | max | target |\n|---|---|---|---|---|---|");
    for (what, v, target) in [
        (
            "crash (no resign) → first action",
            crashes,
            format!("≤ TTL + 0.5 s = {}", ms(TTL + Duration::from_millis(500))),
        ),
        (
            "clean stop (resign) → first action",
            resigns,
            "≤ 100 ms".to_owned(),
        ),
        ("commit round trip through etcd", commits, "-".to_owned()),
    ] {
        let runs = v.len();
        if let Some((lo, mid, hi)) = median(v) {
            println!(
                "| {what} | {runs} | {} | {} | {} | {target} |",
                ms(lo),
                ms(mid),
                ms(hi)
            );
        }
    }
    for r in replicas {
        r.stop(Command::Resign).await;
    }
    Ok(())
}
