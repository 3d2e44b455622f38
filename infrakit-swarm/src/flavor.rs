//! The swarm flavor: managers and workers that join a swarm with its tokens.

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{Node, NodeSpecRoleEnum, NodeState, Reachability};
use bollard::query_parameters::{DeleteNodeOptions, UpdateNodeOptions};
use foldhash::fast::RandomState;
use infrakit_core::{
    Allocation, Description, Flavor, FlavorError, GROUP_TAG, GroupId, Health, Index, InstanceSpec,
    SpecError,
};
use infrakit_template::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The tag (and engine label) that links an instance to the swarm node it becomes.
pub const LINK_LABEL: &str = "infrakit.link";

/// The join script used when the properties name no template: it joins with the role's token.
/// Context: `Role`, `Token`, `Manager` (address:port), `Link`, `LogicalID`, `Group`, `Sequence`,
/// `Fresh` (a manager whose logical ID is no Raft member: it leaves whatever swarm its data
/// root remembers before it joins, so a manager left out of a forced new cluster joins at once
/// as a new node instead of waiting to be promoted back).
///
/// The script is done as soon as the engine is an active member (also when it already was: a
/// node restarted on its old data root reconnects by itself, `pending` then `active`). A join
/// can fail while the swarm is busy (a leader election, "Timeout was reached before node
/// joined"), and a join left to continue in the background can die there when the swarm has
/// no leader: a join *this script started* that is not active 30 s after it returned is abandoned
/// (`swarm leave --force`) and started again. A node that was already a member is never made
/// to leave, unless its engine reports the `error` state (its old membership is refused, as
/// for a manager left out of a forced new cluster): then it leaves and joins at once. Every engine call has a time limit (`docker info` can hang on a stuck join).
pub const DEFAULT_TEMPLATE: &str = "#!/bin/sh
# joins the swarm as a {{Role}} (infrakit link {{Link}})
{{#if Fresh}}
echo \"$(date +%T) not a Raft member: leaving any swarm this data root remembers\"
timeout 20 docker swarm leave --force >/dev/null 2>&1 || true
{{/if}}
joined=0
since=0
last=none
for attempt in $(seq 300); do
  state=$(timeout 5 docker info 2>/dev/null | sed -n 's/^ *Swarm: //p')
  if [ \"$state\" != \"$last\" ]; then echo \"$(date +%T) swarm state: ${state:-no answer}\"; last=$state; fi
  if [ \"$state\" = active ]; then exit 0; fi
  if [ \"$joined\" = 0 ] && [ \"$state\" = pending ]; then sleep 1; continue; fi
  if [ \"$joined\" = 1 ] && [ $(( $(date +%s) - since )) -lt 30 ]; then sleep 1; continue; fi
  if [ \"$joined\" = 1 ] || [ \"$state\" = error ]; then timeout 20 docker swarm leave --force || true; fi
  joined=1
  timeout 30 docker swarm join --token {{Token}} {{Manager}} && exit 0
  since=$(date +%s)
done
exit 1
";

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A manager: a member of the Raft quorum.
    Manager,
    /// A worker.
    Worker,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    /// A template URL for the join script (default: [`DEFAULT_TEMPLATE`]).
    #[serde(rename = "InitScriptTemplateURL", default)]
    template_url: Option<String>,
    /// The manager address to join (default: the address of the engine this flavor talks to).
    #[serde(rename = "ManagerAddress", default)]
    manager: Option<String>,
}

/// The swarm flavor of one role, talking to a manager's engine.
///
/// - `validate`: managers need logical IDs, an odd number of them; attachments only for
///   known logical IDs.
/// - `prepare`: renders the join script (a template, with the role's join token and a manager
///   address), tags the instance with a fresh `infrakit.link` label naming its group
///   (`<unique>@<group>`) — the instance plugin or the script makes it an engine label — and
///   adds the logical ID's attachments.
/// - `healthy`: the node whose engine carries the link label (or, failing that, whose address
///   is the logical ID): ready, and reachable for a manager; no such node yet is `Unknown`.
/// - `healthy_batch`: the whole group from one node listing; a worker flavor also removes the
///   nodes of the group that stayed `Down` with no member (their instances are gone) for
///   [`remove_down_after`](Self::remove_down_after).
/// - `drain`: demotes a manager; removes a worker from the swarm.
///
/// Join tokens appear only in the rendered script: never in logs, errors or `Debug`.
#[derive(Clone)]
pub struct SwarmFlavor {
    docker: Docker,
    role: Role,
    templates: Engine,
    sequence: std::sync::Arc<AtomicU64>,
    /// Node listings made so far (shared by clones).
    listings: std::sync::Arc<AtomicU64>,
    /// How long a node of a group, not a Raft member, must stay `Down` with no member before
    /// it is removed from the swarm (`None`: never).
    remove_down_after: Option<Duration>,
    /// When each candidate node (`Down`, of one of this flavor's groups, no member) was first
    /// seen so: node ID → instant (shared by clones).
    down_since: std::sync::Arc<Mutex<HashMap<String, Instant>>>,
}

/// How long a dead node (a worker's, or a manager's left out of a forced new cluster) stays in
/// the swarm by default before it is removed.
pub const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(60);

impl std::fmt::Debug for SwarmFlavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmFlavor")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn parse(properties: &Value) -> Result<Props, FlavorError> {
    if properties.is_null() {
        return Ok(Props::default());
    }
    Ok(SpecError::from_value(properties.clone())?)
}

fn unavailable(e: impl std::fmt::Display) -> FlavorError {
    FlavorError::Unavailable {
        message: e.to_string(),
        retry_after: None,
    }
}

impl SwarmFlavor {
    /// A flavor for `role`, talking to a manager's engine.
    pub fn new(docker: Docker, role: Role) -> Self {
        Self {
            docker,
            role,
            templates: Engine::new(),
            sequence: std::sync::Arc::new(AtomicU64::new(0)),
            listings: std::sync::Arc::new(AtomicU64::new(0)),
            remove_down_after: Some(REMOVE_DOWN_AFTER),
            down_since: std::sync::Arc::default(),
        }
    }

    /// How long a node must stay `Down` while no member of its group is its instance (the
    /// provider no longer lists it) before the flavor removes it from the swarm, during the
    /// leader's health checks (default [`REMOVE_DOWN_AFTER`]; `None`: never). Only nodes that
    /// are not Raft members are removed: workers, and the nodes of managers left out of a
    /// forced new cluster ([`QuorumRecovery`](crate::QuorumRecovery)); a Raft member is never
    /// removed here. A node that is `Down` but whose instance the provider still lists is a
    /// member: it is left alone (the healing policy decides about it), and so is any node not
    /// linked to a group this flavor judges.
    ///
    /// ```
    /// # async fn f(docker: bollard::Docker) {
    /// use infrakit_swarm::{Role, SwarmFlavor};
    /// let workers = SwarmFlavor::new(docker, Role::Worker)
    ///     .remove_down_after(Some(std::time::Duration::from_secs(30)));
    /// # }
    /// ```
    #[must_use]
    pub fn remove_down_after(mut self, after: Option<Duration>) -> Self {
        self.remove_down_after = after;
        self
    }

    /// How many times this flavor (and its clones) listed the swarm's nodes: one per
    /// `healthy`, `drain`, a manager's `prepare` with a logical ID, and per *batch* of health
    /// checks, whatever its size.
    pub fn node_listings(&self) -> u64 {
        self.listings.load(Ordering::Relaxed)
    }

    async fn list_nodes(&self) -> Result<Vec<Node>, FlavorError> {
        self.listings.fetch_add(1, Ordering::Relaxed);
        self.docker.list_nodes(None).await.map_err(unavailable)
    }

    /// A new link label for a member of `group`: unique, and naming the group after an `@`
    /// (so a listing tells which group a node was made for).
    fn link(&self, group: &GroupId) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}{n:x}{:x}@{group}", nanos, std::process::id())
    }

    /// Removes the nodes (not Raft members) of the judged groups that are `Down` with no member (their
    /// instances are gone from the provider) once they have been so for
    /// [`remove_down_after`](Self::remove_down_after). Failures are logged: the next pass
    /// tries again.
    async fn remove_dead_nodes(&self, nodes: &[Node], members: &[Description]) {
        let Some(after) = self.remove_down_after else {
            return;
        };
        let now = Instant::now();
        let due = {
            let mut since = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
            let candidates = dead_nodes(nodes, members);
            since.retain(|id, _| candidates.contains(id));
            candidates
                .into_iter()
                .filter(|id| now.duration_since(*since.entry(id.clone()).or_insert(now)) >= after)
                .collect::<Vec<_>>()
        };
        for id in due {
            // Not forced: the engine refuses to remove a node that came back meanwhile.
            match self
                .docker
                .delete_node(&id, Some(DeleteNodeOptions { force: false }))
                .await
            {
                Ok(()) => {
                    tracing::info!(node = %id, "removed a dead node from the swarm");
                    self.down_since
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "could not remove a dead node")
                }
            }
        }
    }

    /// The node a member became, by its link label or else its address.
    async fn node_of(&self, d: &Description) -> Result<Option<Node>, FlavorError> {
        let nodes = self.list_nodes().await?;
        let found = Nodes::new(&nodes).of(d);
        Ok(found.cloned())
    }
}

/// A node listing indexed by what links a member to its node: built once per listing, so
/// finding the nodes of a whole group costs one lookup per member. The index holds positions
/// in the listing (4 bytes an entry, a fast seeded hash), not references.
struct Nodes<'a> {
    nodes: &'a [Node],
    by_link: HashMap<&'a str, u32, RandomState>,
    by_addr: HashMap<&'a str, u32, RandomState>,
}

impl<'a> Nodes<'a> {
    fn new(nodes: &'a [Node]) -> Self {
        let mut by_link = HashMap::with_capacity_and_hasher(nodes.len(), RandomState::default());
        let mut by_addr = HashMap::with_capacity_and_hasher(nodes.len(), RandomState::default());
        for (i, n) in nodes.iter().enumerate() {
            // A listing of more than 4 billion nodes is not a swarm.
            let Ok(i) = u32::try_from(i) else { break };
            let link = n
                .description
                .as_ref()
                .and_then(|x| x.engine.as_ref())
                .and_then(|e| e.labels.as_ref())
                .and_then(|l| l.get(LINK_LABEL));
            if let Some(link) = link {
                by_link.entry(link.as_str()).or_insert(i);
            }
            // A manager's `Status.Addr` may read 0.0.0.0; its Raft address (`ip:2377`) does
            // not. The first node in the listing with either address wins.
            if let Some(addr) = n.status.as_ref().and_then(|s| s.addr.as_deref()) {
                by_addr.entry(addr).or_insert(i);
            }
            let raft_host = n
                .manager_status
                .as_ref()
                .and_then(|m| m.addr.as_deref())
                .and_then(|a| a.rsplit_once(':').map(|(host, _)| host));
            if let Some(host) = raft_host {
                by_addr.entry(host).or_insert(i);
            }
        }
        Self {
            nodes,
            by_link,
            by_addr,
        }
    }

    /// Where in the listing the node a member became stands: the one whose engine carries its
    /// link label, or else the one whose address is its logical ID.
    fn position(&self, d: &Description) -> Option<usize> {
        if let Some(&i) = d.tags.get(LINK_LABEL).and_then(|l| self.by_link.get(l)) {
            return Some(i as usize);
        }
        let lid = d.effective_logical_id()?;
        self.by_addr.get(lid.as_str()).map(|&i| i as usize)
    }

    /// The node a member became.
    fn of(&self, d: &Description) -> Option<&'a Node> {
        self.position(d).and_then(|i| self.nodes.get(i))
    }
}

/// The health of many members of one role from one node listing, in their order: what
/// [`SwarmFlavor`]'s batch health check answers, on a listing you already have. One pass over
/// the nodes, then one lookup per member.
///
/// ```
/// use bollard::models::Node;
/// use infrakit_core::{Description, Health, Tags};
/// use infrakit_swarm::{LINK_LABEL, Role, health_of};
///
/// let node: Node = serde_json::from_value(serde_json::json!({
///     "ID": "n1",
///     "Description": {"Engine": {"Labels": {LINK_LABEL: "l-1"}}},
///     "Status": {"State": "ready", "Addr": "10.0.0.5"},
/// }))
/// .unwrap();
/// let joined = Description::new("i-1", Tags::new().with(LINK_LABEL, "l-1"));
/// let booting = Description::new("i-2", Tags::new().with(LINK_LABEL, "l-2"));
/// assert_eq!(
///     health_of(&[node], Role::Worker, &[joined, booting]),
///     vec![Health::Healthy, Health::Unknown]
/// );
/// ```
pub fn health_of(nodes: &[Node], role: Role, descriptions: &[Description]) -> Vec<Health> {
    let index = Nodes::new(nodes);
    // Each node judged once, in listing order; the members then read only this.
    let standing: Vec<Health> = nodes.iter().map(|n| judge(Some(n), role)).collect();
    descriptions
        .iter()
        .map(|d| {
            index
                .position(d)
                .and_then(|i| standing.get(i).copied())
                .unwrap_or(Health::Unknown)
        })
        .collect()
}

/// The IDs of the nodes that are `Down`, not Raft members, linked to a group of `members` (by
/// the group their link label names) and to no member of it: dead nodes whose instances are
/// gone (workers, or managers left out of a forced new cluster).
/// Nodes of other groups, of no group, or of unknown groups are never candidates.
fn dead_nodes(nodes: &[Node], members: &[Description]) -> std::collections::HashSet<String> {
    let groups: std::collections::HashSet<&str> = members
        .iter()
        .filter_map(|d| d.tags.get(GROUP_TAG))
        .collect();
    // The nodes members became, by link label or by address: never candidates.
    let index = Nodes::new(nodes);
    let claimed: std::collections::HashSet<usize> =
        members.iter().filter_map(|d| index.position(d)).collect();
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !claimed.contains(i))
        .map(|(_, n)| n)
        .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::DOWN))
        // Not a Raft member: a worker, or a manager's node left out of a forced new cluster.
        .filter(|n| n.manager_status.is_none())
        .filter_map(|n| {
            let link = n
                .description
                .as_ref()
                .and_then(|x| x.engine.as_ref())
                .and_then(|e| e.labels.as_ref())
                .and_then(|l| l.get(LINK_LABEL))?;
            let (_, group) = link.split_once('@')?;
            groups.contains(group).then(|| n.id.clone()).flatten()
        })
        .collect()
}

/// A member's health from its node (none yet: unknown).
fn judge(node: Option<&Node>, role: Role) -> Health {
    let Some(node) = node else {
        return Health::Unknown;
    };
    let state = node.status.as_ref().and_then(|s| s.state);
    let reachable = node.manager_status.as_ref().and_then(|m| m.reachability);
    match (state, role) {
        (Some(NodeState::READY), Role::Worker) => Health::Healthy,
        (Some(NodeState::READY), Role::Manager) if reachable == Some(Reachability::REACHABLE) => {
            Health::Healthy
        }
        (Some(NodeState::READY), Role::Manager) if reachable == Some(Reachability::UNREACHABLE) => {
            Health::Unhealthy
        }
        (Some(NodeState::DOWN | NodeState::DISCONNECTED), _) => Health::Unhealthy,
        _ => Health::Unknown,
    }
}

#[async_trait]
impl Flavor for SwarmFlavor {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        parse(properties)?;
        allocation
            .validate()
            .map_err(|e| FlavorError::InvalidProperties(e.under("Allocation")))?;
        if self.role == Role::Manager {
            match allocation {
                Allocation::Size(_) => {
                    return Err(SpecError::new(
                        "Allocation",
                        "swarm managers need LogicalIDs (their fixed addresses), not a Size",
                    )
                    .into());
                }
                Allocation::LogicalIds { ids, .. } if ids.len() % 2 == 0 => {
                    return Err(SpecError::new(
                        "Allocation.LogicalIDs",
                        format!(
                            "a manager quorum needs an odd number of members, not {}",
                            ids.len()
                        ),
                    )
                    .into());
                }
                Allocation::LogicalIds { .. } => {}
            }
        }
        Ok(())
    }

    async fn prepare(
        &self,
        properties: &Value,
        mut spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let props = parse(properties)?;
        let swarm = self.docker.inspect_swarm().await.map_err(unavailable)?;
        let tokens = swarm.join_tokens.unwrap_or_default();
        let token = match self.role {
            Role::Manager => tokens.manager,
            Role::Worker => tokens.worker,
        }
        .ok_or_else(|| unavailable("the swarm has no join token for this role"))?;
        let manager = match props.manager {
            Some(m) => m,
            None => {
                let info = self.docker.info().await.map_err(unavailable)?;
                let addr = info
                    .swarm
                    .and_then(|s| s.node_addr)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| unavailable("the engine is not a swarm node"))?;
                format!("{addr}:2377")
            }
        };
        // A manager whose logical ID is no Raft member (its first join, or its membership
        // dropped by a forced new cluster) joins anew: whatever swarm state its data root
        // holds is stale. One that still is (a dead manager coming back on its data root)
        // rejoins as itself.
        let fresh = match (self.role, &spec.logical_id) {
            (Role::Manager, Some(lid)) => !self
                .list_nodes()
                .await?
                .iter()
                .filter_map(|n| n.manager_status.as_ref()?.addr.as_deref())
                .any(|a| a.rsplit_once(':').map_or(a, |(host, _)| host) == lid.as_str()),
            _ => false,
        };
        let link = self.link(&index.group);
        let context = json!({
            "Fresh": fresh,
            "Role": self.role.as_str(),
            "Token": token,
            "Manager": manager,
            "Link": link,
            "LogicalID": spec.logical_id,
            "Group": index.group,
            "Sequence": index.sequence,
        });
        let rendered = match &props.template_url {
            Some(url) => self.templates.render_url(url, &context),
            None => self.templates.render_str(DEFAULT_TEMPLATE, &context),
        }
        // Template errors name variables and lines, never values: no token leaks here.
        .map_err(|e| FlavorError::Other {
            message: format!("join script: {e}"),
            transient: infrakit_core::Classify::is_transient(&e),
        })?;
        if !spec.init.is_empty() && !spec.init.ends_with('\n') {
            spec.init.push('\n');
        }
        spec.init.push_str(&rendered);
        spec.tags.insert(LINK_LABEL, link);
        if spec.attachments.is_empty()
            && let Some(lid) = &spec.logical_id
        {
            spec.attachments = allocation.attachments_for(lid).to_vec();
        }
        tracing::debug!(role = self.role.as_str(), logical_id = ?spec.logical_id, "join script prepared");
        Ok(spec)
    }

    async fn healthy(&self, _: &Value, d: &Description) -> Result<Health, FlavorError> {
        let nodes = self.list_nodes().await?;
        Ok(judge(Nodes::new(&nodes).of(d), self.role))
    }

    /// The whole group from one node listing.
    async fn healthy_batch(
        &self,
        _: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let nodes = match self.list_nodes().await {
            Ok(nodes) => nodes,
            Err(e) => return Some(Err(e)),
        };
        let health = health_of(&nodes, self.role, descriptions);
        // Only the leader's controller asks, once per pass, with every member of the group.
        self.remove_dead_nodes(&nodes, descriptions).await;
        Some(Ok(health))
    }

    async fn drain(&self, _: &Value, d: &Description) -> Result<(), FlavorError> {
        let Some(node) = self.node_of(d).await? else {
            // Never joined, or already gone: nothing to drain.
            return Ok(());
        };
        let id = node
            .id
            .clone()
            .ok_or_else(|| unavailable("a node without an ID"))?;
        match self.role {
            Role::Manager => {
                let mut spec = node.spec.clone().unwrap_or_default();
                if spec.role == Some(NodeSpecRoleEnum::WORKER) {
                    return Ok(());
                }
                spec.role = Some(NodeSpecRoleEnum::WORKER);
                let version = node
                    .version
                    .as_ref()
                    .and_then(|v| v.index)
                    .unwrap_or_default();
                self.docker
                    .update_node(
                        &id,
                        spec,
                        UpdateNodeOptions {
                            version: i64::try_from(version).unwrap_or(i64::MAX),
                        },
                    )
                    .await
                    .map_err(unavailable)
            }
            Role::Worker => self
                .docker
                .delete_node(&id, Some(DeleteNodeOptions { force: true }))
                .await
                .map_err(unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_core::Tags;

    /// A node as the engine lists it (`GET /nodes`), as JSON.
    fn node(i: usize, state: &str, link: Option<&str>, raft: Option<(&str, &str)>) -> Node {
        let mut n = json!({
            "ID": format!("node-{i}"),
            "Description": {"Engine": {"Labels": {}}},
            "Status": {"State": state, "Addr": format!("10.1.{}.{}", i / 250, i % 250)},
        });
        if let Some(link) = link {
            n["Description"]["Engine"]["Labels"][LINK_LABEL] = json!(link);
        }
        if let Some((addr, reachability)) = raft {
            n["Status"]["Addr"] = json!("0.0.0.0");
            n["ManagerStatus"] =
                json!({"Addr": format!("{addr}:2377"), "Reachability": reachability});
        }
        serde_json::from_value(n).expect("a node")
    }

    fn member(link: Option<&str>, lid: Option<&str>) -> Description {
        let mut tags = Tags::new();
        if let Some(link) = link {
            tags = tags.with(LINK_LABEL, link);
        }
        let mut d = Description::new("i", tags);
        d.logical_id = lid.map(Into::into);
        d
    }

    /// A worker node of the listing (`Spec.Role` worker).
    fn worker(i: usize, state: &str, link: Option<&str>) -> Node {
        let mut n = node(i, state, link, None);
        n.spec = Some(bollard::models::NodeSpec {
            role: Some(NodeSpecRoleEnum::WORKER),
            ..Default::default()
        });
        n
    }

    fn in_group(mut d: Description, group: &str) -> Description {
        d.tags.insert(GROUP_TAG, group);
        d
    }

    #[test]
    fn only_down_non_raft_nodes_of_a_judged_group_with_no_member_are_dead() {
        let nodes = vec![
            // 0: down, of group w, its instance gone: dead.
            worker(0, "down", Some("a0@w")),
            // 1: down, of group w, its instance still listed: a member, left alone.
            worker(1, "down", Some("a1@w")),
            // 2: ready, of group w, no member (still booting or just replaced): alive.
            worker(2, "ready", Some("a2@w")),
            // 3: down, of another group: not this flavor's to judge.
            worker(3, "down", Some("a3@other")),
            // 4: down, a link of no group (made before links named one): never removed.
            worker(4, "down", Some("a4")),
            // 5: down, no link at all.
            worker(5, "down", None),
            // 6: down, of group w, a member by its address (logical ID), not its link.
            worker(6, "down", Some("a6@w")),
            // 7: down, a Raft member of group w's link: Raft members are never removed here.
            node(7, "down", Some("a7@w"), Some(("10.9.0.7", "unreachable"))),
            // 8: down, a manager's node left out of a forced new cluster (no Raft status):
            //    dead like a worker's.
            node(8, "down", Some("a8@w"), None),
        ];
        let members = vec![
            in_group(member(Some("a1@w"), None), "w"),
            in_group(member(None, Some("10.1.0.6")), "w"),
        ];
        let dead = dead_nodes(&nodes, &members);
        assert_eq!(
            dead,
            ["node-0".to_owned(), "node-8".to_owned()]
                .into_iter()
                .collect()
        );
        // No member listed: the group is unknown, nothing is judged dead.
        assert!(dead_nodes(&nodes, &[]).is_empty());
        // Members of another group judge only that group's nodes.
        let other = vec![in_group(member(Some("zz@other"), None), "other")];
        assert_eq!(
            dead_nodes(&nodes, &other),
            ["node-3".to_owned()].into_iter().collect()
        );
    }

    #[test]
    fn members_find_their_nodes_by_link_then_by_address() {
        let nodes = vec![
            node(0, "ready", Some("l-0"), None),
            node(1, "down", Some("l-1"), None),
            node(2, "ready", None, Some(("10.0.0.2", "reachable"))),
            node(3, "ready", None, Some(("10.0.0.3", "unreachable"))),
            node(4, "ready", None, None),
        ];
        let index = Nodes::new(&nodes);
        let id = |d: &Description| index.of(d).and_then(|n| n.id.clone());
        assert_eq!(id(&member(Some("l-0"), None)).as_deref(), Some("node-0"));
        // The link wins over the address.
        assert_eq!(
            id(&member(Some("l-1"), Some("10.0.0.2"))).as_deref(),
            Some("node-1")
        );
        // A manager by its Raft address (its status address reads 0.0.0.0).
        assert_eq!(
            id(&member(None, Some("10.0.0.2"))).as_deref(),
            Some("node-2")
        );
        // A worker by its status address; a link nobody carries falls back to it.
        assert_eq!(
            id(&member(Some("l-9"), Some("10.1.0.4"))).as_deref(),
            Some("node-4")
        );
        assert_eq!(id(&member(None, None)), None);
        assert_eq!(id(&member(Some("l-9"), Some("10.9.9.9"))), None);

        let health = |d: &Description, role| judge(index.of(d), role);
        assert_eq!(
            health(&member(Some("l-0"), None), Role::Worker),
            Health::Healthy
        );
        assert_eq!(
            health(&member(Some("l-1"), None), Role::Worker),
            Health::Unhealthy
        );
        assert_eq!(
            health(&member(None, Some("10.0.0.2")), Role::Manager),
            Health::Healthy
        );
        assert_eq!(
            health(&member(None, Some("10.0.0.3")), Role::Manager),
            Health::Unhealthy
        );
        assert_eq!(health(&member(None, None), Role::Worker), Health::Unknown);
    }

    #[test]
    fn a_group_of_a_thousand_is_judged_from_one_listing() {
        let nodes: Vec<Node> = (0..1000)
            .map(|i| {
                let state = if i % 10 == 0 { "down" } else { "ready" };
                node(i, state, Some(&format!("l-{i}")), None)
            })
            .collect();
        let index = Nodes::new(&nodes);
        let members: Vec<Description> = (0..1001)
            .map(|i| member(Some(&format!("l-{i}")), None))
            .collect();
        let healths: Vec<Health> = members
            .iter()
            .map(|d| judge(index.of(d), Role::Worker))
            .collect();
        for (i, h) in healths.iter().enumerate() {
            let want = match i {
                1000 => Health::Unknown,
                i if i % 10 == 0 => Health::Unhealthy,
                _ => Health::Healthy,
            };
            assert_eq!(*h, want, "member {i}");
        }
    }
}
