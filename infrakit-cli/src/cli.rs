//! The command line: every subcommand, flag and default, as `clap` parses them.

use crate::duration::parse_duration;
use crate::exit::EXIT_CODES;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "infrakit",
    version,
    about = "Declarative, self-healing infrastructure: run manager replicas, commit group specs, \
             inspect and scale groups, render templates, serve plugins.",
    long_about = None,
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the options every subcommand takes.
const GLOBAL: &str = "Global options";

/// The help heading of the built-in plugins' options.
const BUILTIN: &str = "Built-in plugin options";

impl Cli {
    /// The log filter: `--log-level`, else `info` for the long-running commands (a replica, a
    /// plugin) and `warn` for the others, whose output is their answer.
    pub fn log_level(&self) -> &str {
        match (&self.global.log_level, &self.command) {
            (Some(level), _) => level,
            (None, Command::Manager(ManagerCommand::Run(_)))
            | (None, Command::Plugin(PluginCommand::Start { .. })) => "info",
            (None, _) => "warn",
        }
    }
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Directory of plugin sockets [default: ~/.infrakit/plugins].
    #[arg(long, global = true, help_heading = GLOBAL, env = infrakit_rpc::PLUGINS_DIR_ENV, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// The manager replica to talk to: a socket name in the plugin directory, or a socket path.
    /// A replica that does not lead sends the command on to the leader.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "INFRAKIT_MANAGER",
        default_value = "group",
        value_name = "NAME|PATH"
    )]
    pub manager: String,

    /// Print machine-readable JSON on standard output instead of tables and sentences.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Log format (logs go to standard error).
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter (`info`, `debug`, `infrakit_core=debug,warn`, ...); `RUST_LOG` wins when set
    /// [default: info for `manager run` and `plugin start`, warn for the other commands].
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Timeout of each call to a plugin or replica.
    #[arg(long, global = true, help_heading = GLOBAL, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a manager replica, commit specs, ask a replica about leadership.
    #[command(subcommand)]
    Manager(ManagerCommand),
    /// Inspect and change the groups a manager controls.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Render a template to standard output.
    Template(TemplateArgs),
    /// List the plugins in the plugin directory, or serve a built-in plugin.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Look at or act on single instances of an instance plugin (any socket).
    #[command(subcommand)]
    Instance(InstanceCommand),
}

/// `infrakit instance ...`: each names the plugin socket with `--name` (`name/subtype` for a
/// plugin of several types).
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List the instances whose tags include every `--tags K=V` (all without).
    Describe {
        /// The instance plugin.
        #[arg(long, value_name = "PLUGIN")]
        name: String,
        /// Only instances with this tag (repeatable; a subset match).
        #[arg(long = "tags", value_name = "K=V", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Show the provider's details of each instance.
        #[arg(long)]
        properties: bool,
    },
    /// Provision one instance from an instance spec (JSON: Properties, Tags, Init,
    /// LogicalID, Attachments; `-` reads standard input). Prints its ID.
    Provision {
        /// The instance plugin.
        #[arg(long, value_name = "PLUGIN")]
        name: String,
        /// The spec file.
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
    /// Destroy one instance.
    Destroy {
        /// The instance plugin.
        #[arg(long, value_name = "PLUGIN")]
        name: String,
        /// The instance.
        id: String,
        /// Why, as the plugin is told (a plugin may keep volumes on a rolling update).
        #[arg(long, value_enum, default_value_t = DestroyReason::Terminate)]
        reason: DestroyReason,
    },
    /// Check instance properties (a JSON file; `-` reads standard input).
    Validate {
        /// The instance plugin.
        #[arg(long, value_name = "PLUGIN")]
        name: String,
        /// The properties file.
        #[arg(long, value_name = "FILE")]
        properties: PathBuf,
    },
}

/// Why an instance is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DestroyReason {
    /// Gone for good.
    Terminate,
    /// Replaced by a new instance of the same logical ID.
    RollingUpdate,
    /// The group shrinks.
    ScaleDown,
}

/// Parses `K=V`.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// `infrakit manager ...`
#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// Run one manager replica until SIGTERM or Ctrl-C.
    ///
    /// The replica serves the Group API (and its leadership status) on the socket
    /// `<plugin-dir>/<name>`. It acts only while it leads; a follower answers reads and sends
    /// callers to the leader. Plugins named in group specs are found among the built-ins
    /// started with `--builtin`, the in-process `vanilla` flavor, then the sockets of the plugin
    /// directory.
    Run(Box<RunArgs>),
    /// Commit group specs from a file or URL (rendered first if it is a template).
    ///
    /// The file holds one group spec, a list of them, or Go InfraKit's
    /// `[{"Plugin":"group","Properties":{<spec>}}]`. Each spec is validated and its plan shown;
    /// without `--pretend` it is committed on the leader.
    Commit(CommitArgs),
    /// Show whether a replica leads, and where the leader is.
    Status,
}

/// Leadership sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeadershipKind {
    /// Always leads (one replica), or always follows `--follow`.
    Static,
    /// The replica named on the first line of `--leader-file` leads.
    File,
    /// Leads iff the local Docker engine is the swarm's Raft leader (feature `swarm`).
    Swarm,
    /// A lease campaign in an etcd cluster, `--etcd-endpoints` (feature `etcd`).
    Etcd,
}

/// Spec stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A JSON file, written atomically (`--store-file`).
    File,
    /// The swarm's cluster spec (feature `swarm`).
    Swarm,
    /// A key in an etcd cluster, every leader write fenced by the leader's lease (feature
    /// `etcd`; fenced with `--leadership etcd`).
    Etcd,
}

/// `infrakit manager run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The replica's socket name in the plugin directory (or a socket path).
    #[arg(long, default_value = "group", value_name = "NAME|PATH")]
    pub name: String,

    /// The replica's ID for leadership [default: --name]. With file leadership, the leader
    /// file names it and followers report it as the leader's location, so the default (the
    /// socket name) lets clients find the leader.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Where leadership comes from.
    #[arg(long, value_enum, default_value_t = LeadershipKind::Static)]
    pub leadership: LeadershipKind,

    /// The leader file of `--leadership file` [default: ~/.infrakit/leader].
    #[arg(long, value_name = "PATH")]
    pub leader_file: Option<PathBuf>,

    /// With `--leadership static`: never lead; report this location as the leader's.
    #[arg(long, value_name = "LOCATION")]
    pub follow: Option<String>,

    /// Where the specs are kept.
    #[arg(long, value_enum, default_value_t = StoreKind::File)]
    pub store: StoreKind,

    /// The spec file of `--store file` [default: ~/.infrakit/configs/groups.json].
    #[arg(long, value_name = "PATH")]
    pub store_file: Option<PathBuf>,

    /// Run a built-in plugin in this process, as `KIND` or `KIND=NAME` (repeatable). Kinds:
    /// simulator (instance), vanilla (flavor); container (instance), nodes (instance: Docker
    /// engines in network namespaces) and swarm (flavor, types manager and worker) with feature
    /// `swarm`; ec2 (instance) with feature `aws`.
    #[arg(long = "builtin", value_name = "KIND[=NAME]", value_parser = parse_builtin)]
    pub builtins: Vec<(String, String)>,

    /// How often each group is re-observed even without events (plugins in other processes
    /// send none).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub resync: Duration,

    /// A limit on each instance plugin's calls per second, in place of what each plugin
    /// declares (EC2: 50; the simulator and local plugins: none); 0 keeps each plugin's own.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub calls_per_second: u32,

    /// Serve the operator's window on this address: a live status page at `/`, `/metrics`
    /// (Prometheus), `/healthz`, `/readyz` and `/status` (JSON). Off unless given; give a
    /// loopback address (e.g. 127.0.0.1:9090) unless others must reach it.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// With `--leadership swarm`: bring the swarm back from the loss of a majority of its
    /// managers. After --recover-after without a Raft leader, if the instance plugin PLUGIN
    /// (a built-in or a socket name) lists no instance for a majority of the managers (their
    /// logical IDs are their addresses), the survivor with the lowest logical ID forces a new
    /// cluster from its state. A manager the plugin still lists (a cut link) never counts as
    /// lost. Off unless given.
    #[arg(long, value_name = "PLUGIN")]
    pub recover_with: Option<String>,

    /// The group whose instances are the managers, for --recover-with.
    #[arg(long, default_value = "managers", value_name = "GROUP")]
    pub recover_group: String,

    /// How long without a Raft leader before --recover-with looks at the instance plugin.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub recover_after: Duration,

    /// Options of the built-in plugins.
    #[command(flatten)]
    pub builtin: BuiltinArgs,

    /// Options of etcd leadership and store.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

const ETCD: &str = "etcd (--leadership etcd, --store etcd)";

/// Options of etcd leadership and store.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// The cluster's client URLs (`https://` with --etcd-ca).
    #[arg(
        long,
        help_heading = ETCD,
        env = "INFRAKIT_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_name = "URL[,URL..]"
    )]
    pub etcd_endpoints: String,

    /// The key prefix the replicas share: campaign keys under PREFIX/leader/, the specs in
    /// PREFIX/spec.
    #[arg(long, help_heading = ETCD, default_value = "/infrakit", value_name = "PREFIX")]
    pub etcd_prefix: String,

    /// The leadership lease's TTL: a dead leader is replaced this long after its last
    /// keep-alive (whole seconds).
    #[arg(long, help_heading = ETCD, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub etcd_ttl: Duration,

    /// The CA certificate (PEM) that signed the members' certificates: TLS.
    #[arg(long, help_heading = ETCD, value_name = "PATH")]
    pub etcd_ca: Option<PathBuf>,

    /// A client certificate (PEM), for clusters that require mutual TLS (with --etcd-key).
    #[arg(long, help_heading = ETCD, value_name = "PATH", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, help_heading = ETCD, value_name = "PATH", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,

    /// What this replica publishes as its location when it leads, for followers to send
    /// commits on to [default: its socket's absolute path].
    #[arg(long, help_heading = ETCD, value_name = "LOCATION")]
    pub advertise: Option<String>,
}

/// Options of the built-in plugins.
#[derive(Debug, Clone, Args)]
pub struct BuiltinArgs {
    /// Docker engine of the swarm leadership, store and built-ins.
    #[arg(
        long,
        help_heading = BUILTIN,
        env = "INFRAKIT_DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock",
        value_name = "URL"
    )]
    pub docker_host: String,

    /// The user-defined Docker network of the `container` built-in.
    #[arg(long, help_heading = BUILTIN, default_value = "infrakit", value_name = "NETWORK")]
    pub container_network: String,

    /// Create the `container` built-in's network with this subnet (e.g. `10.213.0.0/24`)
    /// unless it exists; fixed IPs (logical IDs) need one.
    #[arg(long, help_heading = BUILTIN, value_name = "CIDR")]
    pub container_subnet: Option<String>,

    /// The scope label of the `container` built-in (plugins of several scopes share an engine).
    #[arg(long, help_heading = BUILTIN, default_value = "infrakit", value_name = "SCOPE")]
    pub container_scope: String,

    /// The namespace (`infrakit.scope` tag) of the `ec2` built-in's instances; its endpoint,
    /// region and credentials come from `AWS_ENDPOINT_URL`, `AWS_REGION` and `AWS_*` keys.
    #[arg(long, help_heading = BUILTIN, env = "INFRAKIT_EC2_SCOPE", default_value = "infrakit", value_name = "SCOPE")]
    pub ec2_scope: String,

    /// The `nodes` built-in's name prefix (1 to 8 lowercase letters or digits): its network
    /// namespaces, links and bridge are named after it.
    #[arg(long, help_heading = BUILTIN, default_value = "ikn", value_name = "PREFIX")]
    pub nodes_prefix: String,

    /// Where the `nodes` built-in keeps its nodes (records, engine sockets, data roots).
    #[arg(long, help_heading = BUILTIN, default_value = "/var/lib/infrakit/nodes", value_name = "DIR")]
    pub nodes_root: PathBuf,

    /// The `nodes` built-in's network (a /24; the host is .1 on its bridge).
    #[arg(long, help_heading = BUILTIN, default_value = "10.90.0.0/24", value_name = "CIDR")]
    pub nodes_subnet: String,

    /// Latency the `simulator` built-in adds to every call.
    #[arg(long, help_heading = BUILTIN, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub simulator_latency: Duration,
}

/// `infrakit manager commit`
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The specs: a path, a `file://` or `http(s)://` URL, or `-` for standard input.
    #[arg(value_name = "FILE|URL")]
    pub source: String,

    /// Show the plans only; change nothing.
    #[arg(long)]
    pub pretend: bool,

    /// A template global, `/path=value` (repeatable); the source is rendered with them.
    #[arg(long = "global", value_name = "/PATH=VALUE")]
    pub globals: Vec<String>,

    /// After committing, follow each group until it converges.
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// `--watch` and its deadline.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Follow convergence live (a progress bar on a terminal, plain lines otherwise) until the
    /// group converges or `--deadline` passes (exit code 4).
    #[arg(long)]
    pub watch: bool,

    /// How long `--watch` waits.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub deadline: Duration,
}

/// `infrakit group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the groups with their size, members and whether they converged.
    Ls,
    /// Show a group's members (ID, logical ID, health, config up to date) and its plan.
    Describe {
        /// The group.
        id: String,
        /// Follow convergence.
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Set the size of a scaled group, or print it when no size is given.
    Scale {
        /// The group.
        id: String,
        /// The new size.
        size: Option<u32>,
        /// Follow convergence.
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Destroy some members and lower the group's size by as many. Only members are accepted.
    DestroyInstances {
        /// The group.
        id: String,
        /// The instances.
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Stop managing a group; its instances keep running.
    Free {
        /// The group.
        id: String,
    },
    /// Drain and destroy every member, then forget the group.
    Destroy {
        /// The group.
        id: String,
    },
}

/// `infrakit template`
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The template: a path or a `file://` / `http(s)://` URL.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// A global, `/path=value` (repeatable); a value that is JSON is read as JSON.
    #[arg(long = "global", value_name = "/PATH=VALUE")]
    pub globals: Vec<String>,

    /// The template's context (its `{{this}}`), as JSON.
    #[arg(long, default_value = "{}", value_name = "JSON")]
    pub context: String,
}

/// `infrakit plugin ...`
#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum PluginCommand {
    /// List the sockets of the plugin directory and the interfaces each implements.
    Ls,
    /// Serve a built-in plugin on `<plugin-dir>/<name>` until SIGTERM or Ctrl-C.
    ///
    /// Several manager replicas can then share one provider: name it in specs as
    /// `"Plugin": "<name>"` (or `"<name>/<type>"` for the swarm flavor's manager and worker).
    Start {
        /// simulator, vanilla; container, nodes and swarm with feature `swarm`; ec2 with
        /// feature `aws`.
        kind: String,
        /// The socket name [default: the kind].
        #[arg(long, value_name = "NAME|PATH")]
        name: Option<String>,
        /// Simulator only: also serve the same simulated cloud on this socket, its calls logged
        /// as made by CALLER (repeatable; e.g. one socket per replica, to tell who called).
        #[arg(long = "caller-socket", value_name = "PATH=CALLER", value_parser = parse_caller_socket)]
        caller_sockets: Vec<(PathBuf, String)>,
        /// Simulator only: append every call to this file as it is made, one JSON object per
        /// line (`Seq`, `AtMs` since the Unix epoch, `Caller`, `Op`, `Instance`, `LogicalID`,
        /// `Error`).
        #[arg(long, value_name = "PATH")]
        call_log: Option<PathBuf>,
        /// Options of the built-in plugins.
        #[command(flatten)]
        builtin: Box<BuiltinArgs>,
    },
}

/// Parses `PATH=CALLER`.
fn parse_caller_socket(s: &str) -> Result<(PathBuf, String), String> {
    match s.rsplit_once('=') {
        Some((path, caller)) if !path.trim().is_empty() && !caller.trim().is_empty() => {
            Ok((PathBuf::from(path.trim()), caller.trim().to_owned()))
        }
        _ => Err(format!("expected PATH=CALLER, got {s:?}")),
    }
}

/// Parses `KIND` or `KIND=NAME`.
fn parse_builtin(s: &str) -> Result<(String, String), String> {
    let (kind, name) = match s.split_once('=') {
        Some((k, n)) => (k.trim(), n.trim()),
        None => (s.trim(), s.trim()),
    };
    if kind.is_empty() || name.is_empty() {
        return Err(format!("expected KIND or KIND=NAME, got {s:?}"));
    }
    Ok((kind.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("infrakit").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn manager_run_defaults_and_flags() {
        let cli = parse(&["manager", "run"]).unwrap();
        let Command::Manager(ManagerCommand::Run(run)) = cli.command else {
            panic!("not manager run")
        };
        assert_eq!(run.name, "group");
        assert_eq!(run.leadership, LeadershipKind::Static);
        assert_eq!(run.store, StoreKind::File);
        assert_eq!(run.resync, Duration::from_secs(10));
        assert!(run.builtins.is_empty());

        let cli = parse(&[
            "manager",
            "run",
            "--name",
            "group-a",
            "--leadership",
            "file",
            "--leader-file",
            "/tmp/leader",
            "--builtin",
            "simulator=sim",
            "--builtin",
            "vanilla",
            "--resync",
            "500ms",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.global.log_format, LogFormat::Json);
        let Command::Manager(ManagerCommand::Run(run)) = cli.command else {
            panic!("not manager run")
        };
        assert_eq!(run.leadership, LeadershipKind::File);
        assert_eq!(run.leader_file, Some(PathBuf::from("/tmp/leader")));
        assert_eq!(
            run.builtins,
            vec![
                ("simulator".into(), "sim".into()),
                ("vanilla".into(), "vanilla".into())
            ]
        );
        assert_eq!(run.resync, Duration::from_millis(500));
    }

    #[test]
    fn log_level_defaults_by_command() {
        assert_eq!(parse(&["manager", "run"]).unwrap().log_level(), "info");
        assert_eq!(
            parse(&["plugin", "start", "simulator"])
                .unwrap()
                .log_level(),
            "info"
        );
        assert_eq!(parse(&["group", "ls"]).unwrap().log_level(), "warn");
        assert_eq!(
            parse(&["group", "ls", "--log-level", "debug"])
                .unwrap()
                .log_level(),
            "debug"
        );
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["group", "ls", "--json", "--manager", "group-b"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.manager, "group-b");
        assert!(matches!(cli.command, Command::Group(GroupCommand::Ls)));
    }

    #[test]
    fn group_commands() {
        let cli = parse(&[
            "group",
            "scale",
            "workers",
            "5",
            "--watch",
            "--deadline",
            "1m",
        ])
        .unwrap();
        let Command::Group(GroupCommand::Scale { id, size, watch }) = cli.command else {
            panic!("not scale")
        };
        assert_eq!((id.as_str(), size), ("workers", Some(5)));
        assert!(watch.watch);
        assert_eq!(watch.deadline, Duration::from_secs(60));

        let cli = parse(&["group", "destroy-instances", "workers", "i-1", "i-2"]).unwrap();
        let Command::Group(GroupCommand::DestroyInstances { instances, .. }) = cli.command else {
            panic!("not destroy-instances")
        };
        assert_eq!(instances, vec!["i-1", "i-2"]);
        assert!(parse(&["group", "destroy-instances", "workers"]).is_err());
        assert!(parse(&["group", "scale", "workers", "-1"]).is_err());
    }

    #[test]
    fn template_and_commit() {
        let cli = parse(&[
            "template", "--url", "boot.sh", "--global", "/a=1", "--global", "/b=x",
        ])
        .unwrap();
        let Command::Template(t) = cli.command else {
            panic!("not template")
        };
        assert_eq!(t.globals, vec!["/a=1", "/b=x"]);

        let cli = parse(&["manager", "commit", "groups.json", "--pretend"]).unwrap();
        let Command::Manager(ManagerCommand::Commit(c)) = cli.command else {
            panic!("not commit")
        };
        assert!(c.pretend);
        assert_eq!(c.source, "groups.json");
        assert!(parse(&["template"]).is_err(), "--url is required");
    }

    #[test]
    fn builtin_values() {
        assert_eq!(
            parse_builtin("simulator").unwrap(),
            ("simulator".into(), "simulator".into())
        );
        assert_eq!(
            parse_builtin("swarm=flavors").unwrap(),
            ("swarm".into(), "flavors".into())
        );
        assert!(parse_builtin("=x").is_err());
        assert!(parse_builtin("x=").is_err());
    }

    #[test]
    fn help_lists_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes"), "{help}");
        assert!(help.contains("not the leader"), "{help}");
    }
}
