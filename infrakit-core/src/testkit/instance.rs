//! The [`Instance`] contract, rule by rule: [`check_instance`].

use super::call::{NoAnswer, POLL, bounded};
use super::fixture::{CONFORMANCE_HASH, InstanceFixture};
use super::report::{Outcome, PluginKind, Report};
use super::show::{show_logical_id, show_tags};
use crate::id::InstanceId;
use crate::instance::{Description, DestroyContext, Instance, InstanceError, InstanceSpec};
use crate::tags::{CONFIG_HASH_TAG, GROUP_TAG, Tags};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The tag on every instance a check creates: `infrakit.conformance=<run id>-<rule name>`,
/// unique per check and rule. If a check is interrupted (the test process killed), its
/// leftovers are the instances carrying this tag.
pub const CONFORMANCE_TAG: &str = "infrakit.conformance";

/// Extra tags the rules put on their instances, all under the conformance prefix.
const ROLE_TAG: &str = "infrakit.conformance.role";
const B_TAG: &str = "infrakit.conformance.b";
const C_TAG: &str = "infrakit.conformance.c";
const ABSENT_TAG: &str = "infrakit.conformance.absent";
const LABEL_TAG: &str = "infrakit.conformance.label";

/// One rule of the [`Instance`] contract. Each is checked on instances of its own (tagged
/// [`CONFORMANCE_TAG`]`=<run>-<name>`), independently of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceRule {
    /// `validate(properties)` accepts the fixture's properties.
    ValidateAcceptsFixture,
    /// Right after `provision` returns, `describe` by the spec's tags finds the instance with
    /// every tag, without any `label` call (tags are set at creation, never after).
    TagsSetAtCreation,
    /// An instance tagged `{a, b, c}` is found by `describe({a})`, `describe({a, b})` and
    /// `describe({})`, with the ID `provision` returned.
    DescribeIsSubsetMatch,
    /// `describe({a, z})` does not return an instance without tag `z`, nor `describe({a, b:
    /// other})` one whose `b` differs.
    MissingTagNeverMatches,
    /// An instance provisioned with a logical ID is described with it (the `LogicalID` field
    /// or the `infrakit.logical_id` tag).
    LogicalIdReported,
    /// Provisioning with a logical ID a live instance holds fails with
    /// [`InstanceError::Conflict`], and no second live instance with it appears.
    ExclusiveLogicalIds,
    /// `destroy` and `label` of an ID no instance has fail with [`InstanceError::NotFound`].
    NotFoundOnUnknownId,
    /// After `destroy` returns `Ok`, `describe` stops listing the instance, and a second
    /// `destroy` fails with [`InstanceError::NotFound`].
    GoneAfterDestroy,
    /// `label` keeps the instance's tags and adds the new ones.
    LabelAddsTags,
}

impl InstanceRule {
    /// Every rule, in the order [`check_instance`] checks them.
    pub const ALL: &'static [InstanceRule] = &[
        InstanceRule::ValidateAcceptsFixture,
        InstanceRule::TagsSetAtCreation,
        InstanceRule::DescribeIsSubsetMatch,
        InstanceRule::MissingTagNeverMatches,
        InstanceRule::LogicalIdReported,
        InstanceRule::ExclusiveLogicalIds,
        InstanceRule::NotFoundOnUnknownId,
        InstanceRule::GoneAfterDestroy,
        InstanceRule::LabelAddsTags,
    ];

    /// The rule's stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            InstanceRule::ValidateAcceptsFixture => "validate_accepts_fixture",
            InstanceRule::TagsSetAtCreation => "tags_set_at_creation",
            InstanceRule::DescribeIsSubsetMatch => "describe_is_subset_match",
            InstanceRule::MissingTagNeverMatches => "missing_tag_never_matches",
            InstanceRule::LogicalIdReported => "logical_id_reported",
            InstanceRule::ExclusiveLogicalIds => "exclusive_logical_ids",
            InstanceRule::NotFoundOnUnknownId => "not_found_on_unknown_id",
            InstanceRule::GoneAfterDestroy => "gone_after_destroy",
            InstanceRule::LabelAddsTags => "label_adds_tags",
        }
    }

    /// What the rule requires, in one line.
    pub fn description(self) -> &'static str {
        match self {
            InstanceRule::ValidateAcceptsFixture => "validate accepts the fixture's properties",
            InstanceRule::TagsSetAtCreation => {
                "an instance carries its spec's tags as soon as provision returns, without a label call"
            }
            InstanceRule::DescribeIsSubsetMatch => {
                "describe returns every instance whose tags contain all the queried tags"
            }
            InstanceRule::MissingTagNeverMatches => {
                "describe never returns an instance that lacks a queried tag or has another value"
            }
            InstanceRule::LogicalIdReported => {
                "an instance provisioned with a logical ID is described with it"
            }
            InstanceRule::ExclusiveLogicalIds => {
                "provisioning with a logical ID held by a live instance fails with Conflict"
            }
            InstanceRule::NotFoundOnUnknownId => {
                "destroy and label of an unknown instance ID fail with NotFound"
            }
            InstanceRule::GoneAfterDestroy => {
                "a destroyed instance leaves describe, and destroying it again is NotFound"
            }
            InstanceRule::LabelAddsTags => "label keeps an instance's tags and adds the new ones",
        }
    }
}

impl fmt::Display for InstanceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that an [`Instance`] plugin keeps the contract the engine relies on: every
/// [`InstanceRule`], each on instances of its own, and a rule failing does not stop the
/// others. Every instance the check creates is destroyed before it returns (best effort,
/// failures logged with `tracing`), whatever the outcome.
///
/// The check never panics on the plugin's behalf: an error, a hang (longer than
/// [`call_timeout`](InstanceFixture::call_timeout)) or a panic of the plugin fails the rule
/// being checked, with what was seen. It takes a few seconds against a fast provider, up to
/// about ten times [`settle`](InstanceFixture::settle) against a broken one.
///
/// See the [module docs](super) for an example.
pub async fn check_instance<I: Instance + ?Sized>(plugin: &I, fixture: &InstanceFixture) -> Report {
    let mut run = Run::new(plugin, fixture);
    tracing::info!(run = %run.run, "conformance check of an instance plugin");
    let mut report = Report::new(PluginKind::Instance);
    for &rule in InstanceRule::ALL {
        let outcome = match run.check(rule).await {
            Ok(()) => Outcome::Passed,
            Err(outcome) => outcome,
        };
        tracing::debug!(rule = rule.name(), ?outcome, "conformance rule checked");
        report.push(rule, outcome);
    }
    run.cleanup().await;
    report
}

/// What a rule returns early with: its failure (or skip).
type Step<T = ()> = Result<T, Outcome>;

/// One check in progress: the plugin, the fixture, the run ID and what it created.
struct Run<'a, I: ?Sized> {
    plugin: &'a I,
    fixture: &'a InstanceFixture,
    run: String,
    /// Instances provisioned and not (known to be) destroyed yet.
    created: Vec<InstanceId>,
    /// The conformance tag values used, for the final sweep.
    values: Vec<String>,
}

/// A process-wide counter, so two checks started in the same millisecond differ.
static RUNS: AtomicU64 = AtomicU64::new(0);

fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{millis}-{}", RUNS.fetch_add(1, Ordering::Relaxed))
}

impl<'a, I: Instance + ?Sized> Run<'a, I> {
    fn new(plugin: &'a I, fixture: &'a InstanceFixture) -> Self {
        Self {
            plugin,
            fixture,
            run: run_id(),
            created: Vec::new(),
            values: Vec::new(),
        }
    }

    async fn check(&mut self, rule: InstanceRule) -> Step {
        match rule {
            InstanceRule::ValidateAcceptsFixture => self.validate_accepts_fixture().await,
            InstanceRule::TagsSetAtCreation => self.tags_set_at_creation(rule).await,
            InstanceRule::DescribeIsSubsetMatch => self.describe_is_subset_match(rule).await,
            InstanceRule::MissingTagNeverMatches => self.missing_tag_never_matches(rule).await,
            InstanceRule::LogicalIdReported => self.logical_id_reported(rule).await,
            InstanceRule::ExclusiveLogicalIds => self.exclusive_logical_ids(rule).await,
            InstanceRule::NotFoundOnUnknownId => self.not_found_on_unknown_id(rule).await,
            InstanceRule::GoneAfterDestroy => self.gone_after_destroy(rule).await,
            InstanceRule::LabelAddsTags => self.label_adds_tags(rule).await,
        }
    }

    // ---- the rules ----

    async fn validate_accepts_fixture(&mut self) -> Step {
        let answer = self.call("validate", self.plugin.validate(&self.fixture.properties));
        match answer.await {
            Ok(Ok(())) => Ok(()),
            other => Err(Outcome::failed(
                "validate(fixture properties) to be Ok",
                show_result(&other),
            )),
        }
    }

    async fn tags_set_at_creation(&mut self, rule: InstanceRule) -> Step {
        let tags = self
            .tags(rule)
            .with(GROUP_TAG, format!("infrakit-conformance-{}", self.run))
            .with(CONFIG_HASH_TAG, CONFORMANCE_HASH)
            .with(ROLE_TAG, "member");
        let id = self.provision(self.spec(&tags)).await?;
        // Polling describe only: the kit never calls label here.
        self.poll(&tags, |found| match found.iter().find(|d| d.id == id) {
            Some(d) if d.tags.contains_all(&tags) => Ok(()),
            Some(d) => Err(format!("{id} listed with tags {}", show_tags(&d.tags))),
            None => Err(not_listed(&id, found)),
        })
        .await
        .map_err(|seen| {
            Outcome::failed(
                format!(
                    "describe({}) to list {id} with every spec tag within {:?} of provision \
                     returning, without any label call",
                    show_tags(&tags),
                    self.fixture.settle
                ),
                seen,
            )
        })
    }

    async fn describe_is_subset_match(&mut self, rule: InstanceRule) -> Step {
        let own = self.tags(rule);
        let tags = own.clone().with(B_TAG, "b").with(C_TAG, "c");
        let id = self.provision(self.spec(&tags)).await?;
        let with_b = own.clone().with(B_TAG, "b");
        for query in [own, with_b, Tags::new()] {
            self.poll(&query, |found| listed(&id, found))
            .await
            .map_err(|seen| {
                Outcome::failed(
                    format!(
                        "describe({}) to list {id}, whose tags {} contain the query, within {:?}",
                        show_tags(&query),
                        show_tags(&tags),
                        self.fixture.settle
                    ),
                    seen,
                )
            })?;
        }
        Ok(())
    }

    async fn missing_tag_never_matches(&mut self, rule: InstanceRule) -> Step {
        let own = self.tags(rule);
        let tags = own.clone().with(B_TAG, "b");
        let id = self.provision_visible(&self.spec(&tags)).await?;
        let absent = own.clone().with(ABSENT_TAG, "z");
        let other_value = own.with(B_TAG, "other");
        for query in [absent, other_value] {
            let found = self.describe(&query).await.map_err(|seen| {
                Outcome::failed(format!("describe({}) to answer", show_tags(&query)), seen)
            })?;
            if let Some(d) = found.iter().find(|d| d.id == id) {
                return Err(Outcome::failed(
                    format!(
                        "describe({}) not to list {id}, whose tags are {}",
                        show_tags(&query),
                        show_tags(&tags)
                    ),
                    format!("{id} listed, with tags {}", show_tags(&d.tags)),
                ));
            }
        }
        Ok(())
    }

    async fn logical_id_reported(&mut self, rule: InstanceRule) -> Step {
        let Some((logical_id, _)) = self.fixture.logical_ids.clone() else {
            return Err(no_logical_ids());
        };
        let tags = self.tags(rule);
        let id = self
            .provision(self.spec(&tags).with_logical_id(logical_id.clone()))
            .await?;
        self.poll(&tags, |found| match found.iter().find(|d| d.id == id) {
            Some(d) if d.effective_logical_id().as_ref() == Some(&logical_id) => Ok(()),
            Some(d) => Err(format!(
                "{id} listed with logical ID {}",
                show_logical_id(d.effective_logical_id().as_ref())
            )),
            None => Err(not_listed(&id, found)),
        })
        .await
        .map_err(|seen| {
            Outcome::failed(
                format!(
                    "describe({}) to list {id} with logical ID {logical_id} (the LogicalID field \
                     or the infrakit.logical_id tag) within {:?}",
                    show_tags(&tags),
                    self.fixture.settle
                ),
                seen,
            )
        })
    }

    async fn exclusive_logical_ids(&mut self, rule: InstanceRule) -> Step {
        let Some((_, logical_id)) = self.fixture.logical_ids.clone() else {
            return Err(no_logical_ids());
        };
        let tags = self.tags(rule);
        let spec = self.spec(&tags).with_logical_id(logical_id.clone());
        let first = self.provision_visible(&spec).await?;
        let expected = format!(
            "provision with logical ID {logical_id}, held by live instance {first}, to fail \
             with InstanceError::Conflict"
        );
        let second = self.call("provision", self.plugin.provision(spec)).await;
        match second {
            Ok(Err(InstanceError::Conflict { .. })) => {}
            Ok(Ok(id)) => {
                self.created.push(id.clone());
                return Err(Outcome::failed(expected, format!("Ok({id})")));
            }
            other => return Err(Outcome::failed(expected, show_result(&other))),
        }
        let found = self.describe(&tags).await.map_err(|seen| {
            Outcome::failed(format!("describe({}) to answer", show_tags(&tags)), seen)
        })?;
        let holders: Vec<&InstanceId> = found
            .iter()
            .filter(|d| d.effective_logical_id().as_ref() == Some(&logical_id))
            .map(|d| &d.id)
            .collect();
        if holders.len() > 1 {
            self.created.extend(holders.iter().map(|id| (*id).clone()));
            return Err(Outcome::failed(
                format!("only {first} to hold logical ID {logical_id} after the conflict"),
                format!("live instances {}", show_ids(&holders)),
            ));
        }
        Ok(())
    }

    async fn not_found_on_unknown_id(&mut self, rule: InstanceRule) -> Step {
        let unknown = self.fixture.unknown_id.clone();
        let tags = self.tags(rule);
        let destroyed = self.destroy(&unknown).await;
        let labeled = self.call("label", self.plugin.label(&unknown, &tags)).await;
        if is_not_found(&destroyed) && is_not_found(&labeled) {
            return Ok(());
        }
        Err(Outcome::failed(
            format!(
                "destroy({unknown}) and label({unknown}, ..) to fail with InstanceError::NotFound"
            ),
            format!(
                "destroy: {}; label: {}",
                show_result(&destroyed),
                show_result(&labeled)
            ),
        ))
    }

    async fn gone_after_destroy(&mut self, rule: InstanceRule) -> Step {
        let tags = self.tags(rule);
        let id = self.provision_visible(&self.spec(&tags)).await?;
        match self.destroy(&id).await {
            Ok(Ok(())) => self.created.retain(|c| c != &id),
            other => {
                return Err(Outcome::failed(
                    format!("destroy({id}) of a live instance to be Ok"),
                    show_result(&other),
                ));
            }
        }
        self.poll(&tags, |found| {
            if found.iter().any(|d| d.id == id) {
                Err(format!("{id} still listed"))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|seen| {
            Outcome::failed(
                format!(
                    "describe({}) to stop listing {id} within {:?} of its destroy",
                    show_tags(&tags),
                    self.fixture.settle
                ),
                seen,
            )
        })?;
        let again = self.destroy(&id).await;
        if is_not_found(&again) {
            Ok(())
        } else {
            Err(Outcome::failed(
                format!("a second destroy({id}) to fail with InstanceError::NotFound"),
                show_result(&again),
            ))
        }
    }

    async fn label_adds_tags(&mut self, rule: InstanceRule) -> Step {
        let tags = self.tags(rule);
        let id = self.provision_visible(&self.spec(&tags)).await?;
        let label = Tags::new().with(LABEL_TAG, "added");
        match self.call("label", self.plugin.label(&id, &label)).await {
            Ok(Ok(())) => {}
            other => {
                return Err(Outcome::failed(
                    format!(
                        "label({id}, {}) of a live instance to be Ok",
                        show_tags(&label)
                    ),
                    show_result(&other),
                ));
            }
        }
        let mut both = tags.clone();
        both.merge(&label);
        let polled = self
            .poll(&both, |found| match found.iter().find(|d| d.id == id) {
                Some(d) if d.tags.contains_all(&both) => Ok(()),
                Some(d) => Err(format!("{id} listed with tags {}", show_tags(&d.tags))),
                None => Err(not_listed(&id, found)),
            })
            .await;
        let Err(mut seen) = polled else {
            return Ok(());
        };
        // Say what became of its tags, if describe still knows the instance at all.
        if let Ok(all) = self.describe(&Tags::new()).await {
            match all.iter().find(|d| d.id == id) {
                Some(d) => seen.push_str(&format!("; its tags are now {}", show_tags(&d.tags))),
                None => seen.push_str(&format!("; describe({{}}) does not list {id} either")),
            }
        }
        Err(Outcome::failed(
            format!(
                "after label({id}, {}), describe({}) to list it with its old tags and the new \
                 one within {:?}",
                show_tags(&label),
                show_tags(&both),
                self.fixture.settle
            ),
            seen,
        ))
    }

    // ---- calls ----

    /// A call bounded by the fixture's timeout.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, InstanceError>>,
    ) -> Result<Result<T, InstanceError>, NoAnswer> {
        bounded(self.fixture.call_timeout, what, call).await
    }

    /// The rule's own tags: `{infrakit.conformance: <run>-<rule>}`.
    fn tags(&mut self, rule: InstanceRule) -> Tags {
        let value = format!("{}-{}", self.run, rule.name());
        self.values.push(value.clone());
        Tags::new().with(CONFORMANCE_TAG, value)
    }

    fn spec(&self, tags: &Tags) -> InstanceSpec {
        InstanceSpec {
            properties: self.fixture.properties.clone(),
            tags: tags.clone(),
            ..InstanceSpec::default()
        }
    }

    /// Provisions, remembering the instance for the cleanup.
    async fn provision(&mut self, spec: InstanceSpec) -> Step<InstanceId> {
        let expected = format!(
            "provision of {{Tags: {}{}}} with the fixture's properties to be Ok",
            show_tags(&spec.tags),
            spec.logical_id
                .as_ref()
                .map(|l| format!(", LogicalID: {l}"))
                .unwrap_or_default()
        );
        match self.call("provision", self.plugin.provision(spec)).await {
            Ok(Ok(id)) => {
                self.created.push(id.clone());
                Ok(id)
            }
            other => Err(Outcome::failed(expected, show_result(&other))),
        }
    }

    /// Provisions and waits until `describe` by exactly the spec's tags lists the instance: the
    /// precondition of the rules about something else.
    async fn provision_visible(&mut self, spec: &InstanceSpec) -> Step<InstanceId> {
        let id = self.provision(spec.clone()).await?;
        let tags = &spec.tags;
        self.poll(tags, |found| listed(&id, found))
            .await
            .map_err(|seen| {
                Outcome::failed(
                    format!(
                        "describe({}) to list the new instance {id} within {:?} (a precondition)",
                        show_tags(tags),
                        self.fixture.settle
                    ),
                    seen,
                )
            })?;
        Ok(id)
    }

    async fn destroy(&self, id: &InstanceId) -> Result<Result<(), InstanceError>, NoAnswer> {
        self.call(
            "destroy",
            self.plugin.destroy(id, DestroyContext::Terminate),
        )
        .await
    }

    /// One describe, its failures as text.
    async fn describe(&self, query: &Tags) -> Result<Vec<Description>, String> {
        match self
            .call("describe", self.plugin.describe(query, false))
            .await
        {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(format!(
                "describe({}) failed: {}",
                show_tags(query),
                show_error(&e)
            )),
            Err(no) => Err(no.to_string()),
        }
    }

    /// Describes every [`POLL`] until `check` accepts the answer or `settle` has passed; then
    /// the last thing seen.
    async fn poll<T>(
        &self,
        query: &Tags,
        mut check: impl FnMut(&[Description]) -> Result<T, String>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + self.fixture.settle;
        loop {
            let seen = match self.describe(query).await {
                Ok(found) => match check(&found) {
                    Ok(t) => return Ok(t),
                    Err(seen) => seen,
                },
                Err(seen) => seen,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(seen);
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }

    // ---- cleanup ----

    /// Destroys every instance the check created, and any still tagged with one of its tag
    /// values (a provision that failed but happened), checking the tag again before each
    /// destroy so nothing else is touched.
    async fn cleanup(&mut self) {
        let mut done: HashSet<InstanceId> = HashSet::new();
        for id in std::mem::take(&mut self.created) {
            if done.insert(id.clone()) {
                self.remove(&id).await;
            }
        }
        for value in std::mem::take(&mut self.values) {
            let query = Tags::new().with(CONFORMANCE_TAG, value.as_str());
            let found = match self.describe(&query).await {
                Ok(found) => found,
                Err(seen) => {
                    tracing::warn!(%seen, "conformance cleanup: cannot list leftovers");
                    continue;
                }
            };
            for d in found {
                if d.tags.get(CONFORMANCE_TAG) == Some(value.as_str()) && done.insert(d.id.clone())
                {
                    self.remove(&d.id).await;
                }
            }
        }
    }

    async fn remove(&self, id: &InstanceId) {
        match self.destroy(id).await {
            Ok(Ok(())) | Ok(Err(InstanceError::NotFound { .. })) => {
                tracing::debug!(%id, "conformance cleanup: destroyed");
            }
            Ok(Err(e)) => tracing::warn!(%id, error = %e, "conformance cleanup: destroy failed"),
            Err(no) => tracing::warn!(%id, %no, "conformance cleanup: destroy failed"),
        }
    }
}

fn no_logical_ids() -> Outcome {
    Outcome::skipped("the fixture has no logical IDs (InstanceFixture::logical_ids)")
}

fn is_not_found<T>(r: &Result<Result<T, InstanceError>, NoAnswer>) -> bool {
    matches!(r, Ok(Err(InstanceError::NotFound { .. })))
}

fn show_result<T: fmt::Debug>(r: &Result<Result<T, InstanceError>, NoAnswer>) -> String {
    match r {
        Ok(Ok(t)) => format!("Ok({t:?})"),
        Ok(Err(e)) => show_error(e),
        Err(no) => no.to_string(),
    }
}

/// An error with its variant, e.g. `InstanceError::Provider (provider error: boom)`.
fn show_error(e: &InstanceError) -> String {
    let variant = match e {
        InstanceError::InvalidProperties(_) => "InvalidProperties",
        InstanceError::NotFound { .. } => "NotFound",
        InstanceError::Throttled { .. } => "Throttled",
        InstanceError::Unavailable { .. } => "Unavailable",
        InstanceError::Conflict { .. } => "Conflict",
        InstanceError::Unsupported { .. } => "Unsupported",
        InstanceError::TimedOut { .. } => "TimedOut",
        InstanceError::Provider { .. } => "Provider",
    };
    format!("InstanceError::{variant} ({e})")
}

fn show_ids(ids: &[&InstanceId]) -> String {
    let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    format!("[{}]", names.join(", "))
}

/// "Not listed" with what was listed instead (the first few).
/// `Ok` when `found` lists `id`, else what was listed instead.
fn listed(id: &InstanceId, found: &[Description]) -> Result<(), String> {
    if found.iter().any(|d| &d.id == id) {
        Ok(())
    } else {
        Err(not_listed(id, found))
    }
}

fn not_listed(id: &InstanceId, found: &[Description]) -> String {
    const SHOWN: usize = 3;
    if found.is_empty() {
        return format!("{id} not listed (describe returned nothing)");
    }
    let mut shown: Vec<String> = found
        .iter()
        .take(SHOWN)
        .map(|d| format!("{} {}", d.id, show_tags(&d.tags)))
        .collect();
    if found.len() > SHOWN {
        shown.push(format!("and {} more", found.len() - SHOWN));
    }
    format!("{id} not listed (describe returned {})", shown.join(", "))
}
