//! The conformance kit: the built-in plugins pass every rule, and a plugin broken in exactly
//! one way fails exactly that rule, by name.

use async_trait::async_trait;
use infrakit_core::testkit::{
    ConformanceError, FlavorFixture, FlavorRule, InstanceFixture, InstanceRule, Outcome, Report,
    Rule, check_flavor, check_instance,
};
use infrakit_core::{
    Allocation, Description, DestroyContext, Flavor, FlavorError, GROUP_TAG, Health, Index,
    Instance, InstanceError, InstanceId, InstanceSpec, LOGICAL_ID_TAG, Simulator, Tags,
    flavor::Vanilla,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// ---- helpers ----

fn fixture() -> InstanceFixture {
    InstanceFixture::new(json!({"Image": "busybox"}))
        .logical_ids("10.0.0.250", "10.0.0.251")
        .settle(Duration::from_secs(1))
}

fn flavor_fixture() -> FlavorFixture {
    FlavorFixture::new(json!({"Init": ["echo hello"], "Tags": {"role": "worker"}}))
}

/// The listed rules failed and every other rule passed.
fn assert_only_failed(report: &Report, broken: &[Rule]) {
    for r in &report.results {
        if broken.contains(&r.rule) {
            assert!(r.outcome.is_failed(), "{} should fail:\n{report}", r.rule);
        } else {
            assert!(r.outcome.is_passed(), "{} should pass:\n{report}", r.rule);
        }
    }
    for rule in broken {
        assert!(report.outcome(*rule).is_some(), "{rule} not in the report");
    }
}

fn assert_failed(report: &Report, rule: impl Into<Rule>) {
    let rule = rule.into();
    assert!(
        report.outcome(rule).is_some_and(Outcome::is_failed),
        "{rule} should fail:\n{report}"
    );
}

fn assert_send<T: Send>(_: &T) {}

// ---- a provider broken in one way ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    /// `validate` rejects everything.
    ValidateRejects,
    /// Tags come in a second call, long after `provision` returned.
    TagsLater,
    /// The query must contain every tag of the instance (a superset match).
    SupersetDescribe,
    /// A query tag the instance lacks counts as matching.
    MissingTagMatches,
    /// Any one matching query tag is enough.
    AnyOneTagMatches,
    /// Logical IDs are not reported.
    DropsLogicalIds,
    /// Unknown IDs: `destroy` is `Ok`, `label` a `Provider` error.
    UnknownIsNotNotFound,
    /// Destroyed instances stay listed.
    ListsDestroyed,
    /// `label` replaces the tags instead of adding to them.
    LabelReplaces,
}

/// The simulator with one contract broken.
struct Broken {
    sim: Simulator,
    mode: Break,
    /// IDs provisioned through this wrapper.
    known: Mutex<HashSet<InstanceId>>,
    /// Descriptions of destroyed instances (for `ListsDestroyed`).
    destroyed: Mutex<Vec<Description>>,
    /// Tags set by a replacing `label` (for `LabelReplaces`).
    replaced: Mutex<HashMap<InstanceId, Tags>>,
}

impl Broken {
    fn new(mode: Break) -> Self {
        Self {
            sim: Simulator::builder().exclusive(true).build(),
            mode,
            known: Mutex::default(),
            destroyed: Mutex::default(),
            replaced: Mutex::default(),
        }
    }

    fn matches(&self, tags: &Tags, query: &Tags) -> bool {
        match self.mode {
            Break::SupersetDescribe => query.contains_all(tags),
            Break::MissingTagMatches => query
                .iter()
                .all(|(k, v)| tags.get(k).is_none_or(|have| have == v)),
            Break::AnyOneTagMatches => query.iter().any(|(k, v)| tags.get(k) == Some(v)),
            _ => tags.contains_all(query),
        }
    }
}

#[async_trait]
impl Instance for Broken {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        if self.mode == Break::ValidateRejects {
            return Err(infrakit_core::SpecError::new("Image", "no such image").into());
        }
        self.sim.validate(properties).await
    }

    async fn provision(&self, mut spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let later = (self.mode == Break::TagsLater).then(|| std::mem::take(&mut spec.tags));
        let id = self.sim.provision(spec).await?;
        self.known.lock().unwrap().insert(id.clone());
        if let Some(tags) = later {
            let (sim, id) = (self.sim.clone(), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = sim.label(&id, &tags).await;
            });
        }
        Ok(id)
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        if self.mode == Break::UnknownIsNotNotFound && !self.known.lock().unwrap().contains(id) {
            return Err(InstanceError::Provider {
                message: format!("cannot label {id}"),
                transient: false,
            });
        }
        if self.mode == Break::LabelReplaces {
            if self.sim.get(id).is_none() {
                return Err(InstanceError::NotFound { id: id.clone() });
            }
            self.replaced
                .lock()
                .unwrap()
                .insert(id.clone(), labels.clone());
            return Ok(());
        }
        self.sim.label(id, labels).await
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        if self.mode == Break::UnknownIsNotNotFound && !self.known.lock().unwrap().contains(id) {
            return Ok(());
        }
        let before = self.sim.get(id);
        self.sim.destroy(id, context).await?;
        if let (Break::ListsDestroyed, Some(inst)) = (self.mode, before) {
            let mut d = Description::new(inst.id, inst.spec.tags);
            d.logical_id = inst.spec.logical_id;
            self.destroyed.lock().unwrap().push(d);
        }
        Ok(())
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let mut all = self.sim.describe(&Tags::new(), with_properties).await?;
        all.extend(self.destroyed.lock().unwrap().iter().cloned());
        let replaced = self.replaced.lock().unwrap();
        for d in &mut all {
            if let Some(t) = replaced.get(&d.id) {
                d.tags = t.clone();
            }
            if self.mode == Break::DropsLogicalIds {
                d.logical_id = None;
                d.tags.remove(LOGICAL_ID_TAG);
            }
        }
        all.retain(|d| self.matches(&d.tags, tags));
        Ok(all)
    }
}

// ---- a flavor broken in one way ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlavorBreak {
    ValidateRejects,
    DropsGroupTag,
    DropsLogicalIdAndAttachments,
    NonDeterministic,
    HealthyErrors,
    DrainHangs,
    /// Judges batches right: not broken (the rule's passing case).
    BatchesRight,
    /// Judges a batch of two with one health.
    BatchMiscounts,
}

struct BrokenFlavor {
    mode: FlavorBreak,
    prepared: AtomicU64,
}

impl BrokenFlavor {
    fn new(mode: FlavorBreak) -> Self {
        Self {
            mode,
            prepared: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Flavor for BrokenFlavor {
    async fn validate(
        &self,
        properties: &Value,
        allocation: &Allocation,
    ) -> Result<(), FlavorError> {
        if self.mode == FlavorBreak::ValidateRejects {
            return Err(FlavorError::Refused {
                message: "never".into(),
            });
        }
        Vanilla.validate(properties, allocation).await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let mut spec = Vanilla.prepare(properties, spec, allocation, index).await?;
        match self.mode {
            FlavorBreak::DropsGroupTag => {
                spec.tags.remove(GROUP_TAG);
            }
            FlavorBreak::DropsLogicalIdAndAttachments => {
                spec.logical_id = None;
                spec.attachments.clear();
            }
            FlavorBreak::NonDeterministic => {
                let n = self.prepared.fetch_add(1, Ordering::Relaxed);
                spec.init.push_str(&format!("\necho boot {n}"));
            }
            _ => {}
        }
        Ok(spec)
    }

    async fn healthy(&self, properties: &Value, d: &Description) -> Result<Health, FlavorError> {
        if self.mode == FlavorBreak::HealthyErrors {
            return Err(FlavorError::Other {
                message: "health endpoint unreachable".into(),
                transient: true,
            });
        }
        Vanilla.healthy(properties, d).await
    }

    async fn drain(&self, properties: &Value, d: &Description) -> Result<(), FlavorError> {
        if self.mode == FlavorBreak::DrainHangs {
            futures::future::pending::<()>().await;
        }
        Vanilla.drain(properties, d).await
    }

    async fn healthy_batch(
        &self,
        properties: &Value,
        descriptions: &[Description],
    ) -> Option<Result<Vec<Health>, FlavorError>> {
        let mut all = Vec::new();
        match self.mode {
            FlavorBreak::BatchesRight => {
                for d in descriptions {
                    all.push(Vanilla.healthy(properties, d).await.ok()?);
                }
            }
            FlavorBreak::BatchMiscounts => all.push(Health::Healthy),
            _ => return None,
        }
        Some(Ok(all))
    }
}

// ---- (a) the built-in plugins keep the contract ----

#[tokio::test]
async fn the_exclusive_simulator_keeps_every_instance_rule() {
    let sim = Simulator::builder().exclusive(true).build();
    let bystander = sim.insert(InstanceSpec::default().with_tag(GROUP_TAG, "web"));
    let fixture = fixture();
    let check = check_instance(&sim, &fixture);
    assert_send(&check);
    let report = check.await;
    assert_eq!(report.results.len(), InstanceRule::ALL.len());
    for (r, rule) in report.results.iter().zip(InstanceRule::ALL) {
        assert_eq!(r.rule, Rule::from(*rule));
        assert!(r.outcome.is_passed(), "{report}");
    }
    assert!(report.passed());
    let left: Vec<_> = sim.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(
        left,
        [bystander],
        "the check destroys what it creates, only that"
    );
}

#[tokio::test]
async fn vanilla_keeps_every_flavor_rule() {
    let report = check_flavor(&Vanilla, &flavor_fixture()).await;
    assert_eq!(report.results.len(), FlavorRule::ALL.len());
    assert!(
        report.results.iter().all(|r| r.outcome.is_passed()),
        "{report}"
    );
    // A quorum allocation: prepare gets its first logical ID and attachments.
    let quorum = flavor_fixture().allocation(
        Allocation::logical_ids(["10.0.0.1", "10.0.0.2"])
            .with_attachment("10.0.0.1", infrakit_core::Attachment::new("vol-1", "ebs")),
    );
    check_flavor(&Vanilla, &quorum).await.into_result().unwrap();
}

#[tokio::test]
async fn without_logical_ids_the_logical_id_rules_are_skipped_with_the_reason() {
    let sim = Simulator::new();
    let fixture = InstanceFixture::new(json!({}));
    let report = check_instance(&sim, &fixture).await;
    assert!(report.passed(), "{report}");
    for rule in [
        InstanceRule::LogicalIdReported,
        InstanceRule::ExclusiveLogicalIds,
    ] {
        let Some(Outcome::Skipped { why }) = report.outcome(rule) else {
            panic!("{rule} should be skipped:\n{report}");
        };
        assert!(why.contains("logical IDs"), "{why}");
    }
    assert!(sim.is_empty());
}

// ---- (b) one broken provider per instance rule ----

#[tokio::test(start_paused = true)]
async fn a_validate_that_rejects_fails_validate_accepts_fixture() {
    let p = Broken::new(Break::ValidateRejects);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::ValidateAcceptsFixture.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(InstanceRule::ValidateAcceptsFixture)
    else {
        unreachable!()
    };
    assert!(seen.contains("InstanceError::InvalidProperties"), "{seen}");
}

#[tokio::test(start_paused = true)]
async fn tags_added_after_creation_fail_tags_set_at_creation() {
    let p = Broken::new(Break::TagsLater);
    let report = check_instance(&p, &fixture()).await;
    // Every rule that finds its instance by tag suffers; the one about it is named.
    assert_failed(&report, InstanceRule::TagsSetAtCreation);
    assert!(
        report
            .outcome(InstanceRule::ValidateAcceptsFixture)
            .is_some_and(Outcome::is_passed)
    );
    assert!(p.sim.is_empty(), "untagged instances are destroyed too");
}

#[tokio::test(start_paused = true)]
async fn a_superset_describe_fails_describe_is_subset_match() {
    let p = Broken::new(Break::SupersetDescribe);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::DescribeIsSubsetMatch.into()]);
    assert!(p.sim.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_describe_matching_a_missing_tag_fails_missing_tag_never_matches() {
    let p = Broken::new(Break::MissingTagMatches);
    // Its describe lists this one for any query about tags it lacks: the cleanup must not
    // destroy it.
    let bystander = p
        .sim
        .insert(InstanceSpec::default().with_tag(GROUP_TAG, "web"));
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::MissingTagNeverMatches.into()]);
    let left: Vec<_> = p.sim.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(left, [bystander]);
}

#[tokio::test(start_paused = true)]
async fn a_describe_matching_any_one_tag_fails_missing_tag_never_matches() {
    let p = Broken::new(Break::AnyOneTagMatches);
    let report = check_instance(&p, &fixture()).await;
    assert_failed(&report, InstanceRule::MissingTagNeverMatches);
    assert!(p.sim.is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropped_logical_ids_fail_logical_id_reported() {
    let p = Broken::new(Break::DropsLogicalIds);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::LogicalIdReported.into()]);
}

#[tokio::test(start_paused = true)]
async fn duplicate_logical_ids_fail_exclusive_logical_ids() {
    let sim = Simulator::builder().exclusive(false).build();
    let report = check_instance(&sim, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::ExclusiveLogicalIds.into()]);
    assert!(sim.is_empty(), "the duplicate is destroyed too");
}

#[tokio::test(start_paused = true)]
async fn ok_or_a_provider_error_for_unknown_ids_fails_not_found_on_unknown_id() {
    let p = Broken::new(Break::UnknownIsNotNotFound);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::NotFoundOnUnknownId.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(InstanceRule::NotFoundOnUnknownId)
    else {
        unreachable!()
    };
    assert!(seen.contains("destroy: Ok(())"), "{seen}");
    assert!(seen.contains("label: InstanceError::Provider"), "{seen}");
}

#[tokio::test(start_paused = true)]
async fn destroyed_instances_still_listed_fail_gone_after_destroy() {
    let p = Broken::new(Break::ListsDestroyed);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::GoneAfterDestroy.into()]);
}

#[tokio::test(start_paused = true)]
async fn a_label_that_replaces_tags_fails_label_adds_tags() {
    let p = Broken::new(Break::LabelReplaces);
    let report = check_instance(&p, &fixture()).await;
    assert_only_failed(&report, &[InstanceRule::LabelAddsTags.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(InstanceRule::LabelAddsTags) else {
        unreachable!()
    };
    assert!(
        seen.contains("its tags are now {infrakit.conformance.label=added}"),
        "{seen}"
    );
    assert!(p.sim.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_always_fails_fails_every_rule_with_the_error() {
    let sim = Simulator::builder().error_rate(1.0).build();
    let report = check_instance(&sim, &fixture()).await;
    for r in &report.results {
        let Outcome::Failed { seen, .. } = &r.outcome else {
            panic!("{} should fail:\n{report}", r.rule);
        };
        assert!(
            seen.contains("InstanceError::Unavailable"),
            "{}: {seen}",
            r.rule
        );
    }
}

/// Hangs on every call but `validate`.
struct Hanging;

#[async_trait]
impl Instance for Hanging {
    async fn validate(&self, _: &Value) -> Result<(), InstanceError> {
        Ok(())
    }
    async fn provision(&self, _: InstanceSpec) -> Result<InstanceId, InstanceError> {
        futures::future::pending().await
    }
    async fn label(&self, _: &InstanceId, _: &Tags) -> Result<(), InstanceError> {
        futures::future::pending().await
    }
    async fn destroy(&self, _: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
        futures::future::pending().await
    }
    async fn describe(&self, _: &Tags, _: bool) -> Result<Vec<Description>, InstanceError> {
        futures::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_fails_rules_instead_of_hanging_the_test() {
    let fixture = fixture().call_timeout(Duration::from_secs(2));
    let report = check_instance(&Hanging, &fixture).await;
    assert!(
        report
            .outcome(InstanceRule::ValidateAcceptsFixture)
            .is_some_and(Outcome::is_passed)
    );
    assert_eq!(
        report.failures().len(),
        InstanceRule::ALL.len() - 1,
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("no answer from provision within 2s"),
        "{report}"
    );
}

// ---- (b) one broken flavor per flavor rule ----

#[tokio::test(start_paused = true)]
async fn a_flavor_validate_that_rejects_fails_validate_accepts_fixture() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::ValidateRejects),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::ValidateAcceptsFixture.into()]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_group_tag_fails_prepare_keeps_controller_tags() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::DropsGroupTag),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::PrepareKeepsControllerTags.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(FlavorRule::PrepareKeepsControllerTags)
    else {
        unreachable!()
    };
    assert_eq!(seen, "tag infrakit.group=infrakit-conformance dropped");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_logical_id_and_attachments_fails_prepare_keeps_controller_tags() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::DropsLogicalIdAndAttachments),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::PrepareKeepsControllerTags.into()]);
    let text = report.to_string();
    assert!(
        text.contains("logical ID infrakit-conformance-logical-id became none"),
        "{text}"
    );
    assert!(
        text.contains("attachment conformance/infrakit-conformance-volume dropped"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_non_deterministic_prepare_fails_prepare_is_deterministic() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::NonDeterministic),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::PrepareIsDeterministic.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(FlavorRule::PrepareIsDeterministic)
    else {
        unreachable!()
    };
    assert!(seen.starts_with("Init "), "{seen}");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_that_errors_fails_healthy_answers() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::HealthyErrors),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::HealthyAnswers.into()]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_health_that_agrees_with_healthy_keeps_every_rule_and_one_that_miscounts_fails() {
    let right = check_flavor(
        &BrokenFlavor::new(FlavorBreak::BatchesRight),
        &flavor_fixture(),
    )
    .await;
    assert!(right.passed(), "{right}");
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::BatchMiscounts),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::HealthyBatchAgrees.into()]);
    let Some(Outcome::Failed { seen, .. }) = report.outcome(FlavorRule::HealthyBatchAgrees) else {
        unreachable!()
    };
    assert!(seen.contains("[Healthy]"), "{seen}");
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_never_returns_fails_drain_answers() {
    let started = tokio::time::Instant::now();
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::DrainHangs),
        &flavor_fixture(),
    )
    .await;
    assert_only_failed(&report, &[FlavorRule::DrainAnswers.into()]);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(30),
        "the default call timeout"
    );
    let Some(Outcome::Failed { seen, .. }) = report.outcome(FlavorRule::DrainAnswers) else {
        unreachable!()
    };
    assert_eq!(seen, "no answer from drain within 30s");
}

// ---- (c) the display, (d) the error ----

#[tokio::test(start_paused = true)]
async fn the_display_names_the_broken_rule_with_expected_and_seen() {
    let report = check_flavor(
        &BrokenFlavor::new(FlavorBreak::DropsGroupTag),
        &flavor_fixture(),
    )
    .await;
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), FlavorRule::ALL.len(), "{text}");
    assert_eq!(lines[0], "ok   validate_accepts_fixture");
    assert!(
        lines[1]
            .starts_with("FAIL prepare_keeps_controller_tags: expected prepare to keep the tags {"),
        "{text}"
    );
    assert!(
        lines[1].ends_with(", saw tag infrakit.group=infrakit-conformance dropped"),
        "{text}"
    );
    assert_eq!(lines[2], "ok   prepare_is_deterministic");

    let sim = Simulator::new();
    let report = check_instance(&sim, &InstanceFixture::new(json!({}))).await;
    let text = report.to_string();
    assert!(
        text.contains(
            "skip logical_id_reported: the fixture has no logical IDs (InstanceFixture::logical_ids)"
        ),
        "{text}"
    );

    let p = Broken::new(Break::UnknownIsNotNotFound);
    let text = check_instance(&p, &fixture()).await.to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL "))
        .expect("a failure");
    assert_eq!(
        line,
        "FAIL not_found_on_unknown_id: expected destroy(infrakit-conformance-no-such-instance) \
         and label(infrakit-conformance-no-such-instance, ..) to fail with \
         InstanceError::NotFound, saw destroy: Ok(()); label: InstanceError::Provider \
         (provider error: cannot label infrakit-conformance-no-such-instance)"
    );
}

#[tokio::test(start_paused = true)]
async fn into_result_is_an_error_listing_the_broken_rules() {
    let p = Broken::new(Break::LabelReplaces);
    let err: ConformanceError = check_instance(&p, &fixture())
        .await
        .into_result()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the instance plugin breaks 1 of 9 conformance rules: label_adds_tags"
    );
    assert_eq!(err.broken(), ["label_adds_tags"]);
    assert!(format!("{err:?}").contains("FAIL label_adds_tags: expected"));

    let flavor = BrokenFlavor::new(FlavorBreak::HealthyErrors);
    let fixture = flavor_fixture().settle(Duration::from_millis(100));
    let err = check_flavor(&flavor, &fixture)
        .await
        .into_result()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the flavor plugin breaks 1 of 6 conformance rules: healthy_answers"
    );
    assert_eq!(err.report().failures().len(), 1);

    // A passing report comes back whole.
    let ok = check_flavor(&Vanilla, &flavor_fixture())
        .await
        .into_result();
    assert!(ok.is_ok_and(|r| r.passed()));
}

#[test]
fn rules_have_stable_names_and_descriptions() {
    let names: Vec<&str> = InstanceRule::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "validate_accepts_fixture",
            "tags_set_at_creation",
            "describe_is_subset_match",
            "missing_tag_never_matches",
            "logical_id_reported",
            "exclusive_logical_ids",
            "not_found_on_unknown_id",
            "gone_after_destroy",
            "label_adds_tags",
        ]
    );
    let names: Vec<&str> = FlavorRule::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "validate_accepts_fixture",
            "prepare_keeps_controller_tags",
            "prepare_is_deterministic",
            "healthy_answers",
            "drain_answers",
            "healthy_batch_agrees",
        ]
    );
    for rule in InstanceRule::ALL
        .iter()
        .map(|r| Rule::from(*r))
        .chain(FlavorRule::ALL.iter().map(|r| Rule::from(*r)))
    {
        assert!(!rule.description().is_empty());
        assert!(!rule.description().contains('\n'));
        assert_eq!(rule.to_string(), rule.name());
    }
}
