//! The [`Flavor`] contract, rule by rule: [`check_flavor`].

use super::call::{NoAnswer, bounded};
use super::fixture::{CONFORMANCE_HASH, FlavorFixture};
use super::report::{Outcome, PluginKind, Report};
use super::show::{show_logical_id, show_tags};
use crate::flavor::{Flavor, FlavorError};
use crate::group::Allocation;
use crate::id::LogicalId;
use crate::instance::{Attachment, InstanceSpec};
use crate::tags::{CONFIG_HASH_TAG, GROUP_TAG, LOGICAL_ID_TAG};
use std::fmt;

/// The logical ID given to `prepare` when the fixture's allocation has none.
const LOGICAL_ID: &str = "infrakit-conformance-logical-id";

/// One rule of the [`Flavor`] contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlavorRule {
    /// `validate(properties, allocation)` accepts the fixture.
    ValidateAcceptsFixture,
    /// `prepare` keeps the controller's tags (`infrakit.group`, `infrakit.config.hash`,
    /// `infrakit.logical_id`, and every other tag it was given) with their values, the logical
    /// ID and the attachments.
    PrepareKeepsControllerTags,
    /// Two `prepare`s of the same input give equal specs (the engine may prepare again after
    /// a failed provision, and compares configurations by hash).
    PrepareIsDeterministic,
    /// `healthy` of the fixture's member answers `Ok` (any [`Health`](crate::Health)) within
    /// the fixture's `settle`.
    HealthyAnswers,
    /// `drain` of the fixture's member returns (`Ok` or an error) within the fixture's
    /// `call_timeout`: it never hangs.
    DrainAnswers,
    /// `healthy_batch` answers within the fixture's `settle`, and when it judges a batch
    /// (`Some`), it gives one health per member, in order, the same as `healthy` does (a
    /// flavor that answers per member, `None`, keeps this rule).
    HealthyBatchAgrees,
}

impl FlavorRule {
    /// Every rule, in the order [`check_flavor`] checks them.
    pub const ALL: &'static [FlavorRule] = &[
        FlavorRule::ValidateAcceptsFixture,
        FlavorRule::PrepareKeepsControllerTags,
        FlavorRule::PrepareIsDeterministic,
        FlavorRule::HealthyAnswers,
        FlavorRule::DrainAnswers,
        FlavorRule::HealthyBatchAgrees,
    ];

    /// The rule's stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FlavorRule::ValidateAcceptsFixture => "validate_accepts_fixture",
            FlavorRule::PrepareKeepsControllerTags => "prepare_keeps_controller_tags",
            FlavorRule::PrepareIsDeterministic => "prepare_is_deterministic",
            FlavorRule::HealthyAnswers => "healthy_answers",
            FlavorRule::DrainAnswers => "drain_answers",
            FlavorRule::HealthyBatchAgrees => "healthy_batch_agrees",
        }
    }

    /// What the rule requires, in one line.
    pub fn description(self) -> &'static str {
        match self {
            FlavorRule::ValidateAcceptsFixture => {
                "validate accepts the fixture's properties and allocation"
            }
            FlavorRule::PrepareKeepsControllerTags => {
                "prepare keeps the tags, logical ID and attachments it was given"
            }
            FlavorRule::PrepareIsDeterministic => "two prepares of one input give equal specs",
            FlavorRule::HealthyAnswers => "healthy answers Ok (any health) in time",
            FlavorRule::DrainAnswers => "drain returns (Ok or an error) in time, never hangs",
            FlavorRule::HealthyBatchAgrees => {
                "healthy_batch, when it judges a batch, gives one health per member, as healthy does"
            }
        }
    }
}

impl fmt::Display for FlavorRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks that a [`Flavor`] plugin keeps the contract the engine relies on: every
/// [`FlavorRule`], independently (a rule failing does not stop the others).
///
/// `prepare` is given what the engine gives it: the fixture's [`spec`](FlavorFixture::spec)
/// with the controller's tags (`infrakit.group` = the index's group, `infrakit.config.hash`,
/// `infrakit.logical_id`), a logical ID and an attachment (the allocation's first logical ID
/// and its attachments for a quorum allocation, made-up ones otherwise). An error, a hang or
/// a panic of the plugin fails the rule being checked, with what was seen.
///
/// See the [module docs](super) for an example.
pub async fn check_flavor<F: Flavor + ?Sized>(flavor: &F, fixture: &FlavorFixture) -> Report {
    tracing::info!("conformance check of a flavor plugin");
    let mut report = Report::new(PluginKind::Flavor);
    let input = prepare_input(fixture);
    for &rule in FlavorRule::ALL {
        let outcome = match check(flavor, fixture, &input, rule).await {
            Ok(()) => Outcome::Passed,
            Err(outcome) => outcome,
        };
        tracing::debug!(rule = rule.name(), ?outcome, "conformance rule checked");
        report.push(rule, outcome);
    }
    report
}

/// What a rule returns early with: its failure.
type Step<T = ()> = Result<T, Outcome>;

async fn check<F: Flavor + ?Sized>(
    flavor: &F,
    fixture: &FlavorFixture,
    input: &InstanceSpec,
    rule: FlavorRule,
) -> Step {
    let limit = fixture.call_timeout;
    let props = &fixture.properties;
    match rule {
        FlavorRule::ValidateAcceptsFixture => {
            let answer = bounded(
                limit,
                "validate",
                flavor.validate(props, &fixture.allocation),
            )
            .await;
            match answer {
                Ok(Ok(())) => Ok(()),
                other => Err(Outcome::failed(
                    "validate(fixture properties, allocation) to be Ok",
                    show_result(&other),
                )),
            }
        }
        FlavorRule::PrepareKeepsControllerTags => {
            let prepared = prepare(flavor, fixture, input).await?;
            kept(input, &prepared).map_err(|lost| {
                Outcome::failed(
                    format!(
                        "prepare to keep the tags {}, logical ID {} and attachments {} it was given",
                        show_tags(&input.tags),
                        show_logical_id(input.logical_id.as_ref()),
                        show_attachments(&input.attachments)
                    ),
                    lost,
                )
            })
        }
        FlavorRule::PrepareIsDeterministic => {
            let first = prepare(flavor, fixture, input).await?;
            let second = prepare(flavor, fixture, input).await?;
            if first == second {
                Ok(())
            } else {
                Err(Outcome::failed(
                    "two prepares of the same input to give equal specs",
                    differences(&first, &second),
                ))
            }
        }
        FlavorRule::HealthyAnswers => {
            let answer = bounded(
                fixture.settle,
                "healthy",
                flavor.healthy(props, &fixture.description),
            )
            .await;
            match answer {
                Ok(Ok(_health)) => Ok(()),
                other => Err(Outcome::failed(
                    format!(
                        "healthy({}) to answer Ok (any health; Unknown when it cannot tell) \
                         within {:?}",
                        fixture.description.id, fixture.settle
                    ),
                    show_result(&other),
                )),
            }
        }
        FlavorRule::DrainAnswers => {
            let answer = bounded(limit, "drain", flavor.drain(props, &fixture.description)).await;
            match answer {
                Ok(_) => Ok(()),
                Err(no) => Err(Outcome::failed(
                    format!(
                        "drain({}) to return, Ok or an error, within {limit:?}",
                        fixture.description.id
                    ),
                    no.to_string(),
                )),
            }
        }
        FlavorRule::HealthyBatchAgrees => {
            let d = &fixture.description;
            let batch = [d.clone(), d.clone()];
            let answer = bounded(
                fixture.settle,
                "healthy_batch",
                flavor.healthy_batch(props, &batch),
            )
            .await;
            let single = bounded(fixture.settle, "healthy", flavor.healthy(props, d)).await;
            let expected = format!(
                "healthy_batch of two copies of {} to answer None, or one health each, as \
                 healthy does, within {:?}",
                d.id, fixture.settle
            );
            match (answer, single) {
                (Err(no), _) => Err(Outcome::failed(expected, no.to_string())),
                (Ok(None), _) => Ok(()),
                // What `healthy` itself answers is another rule's.
                (Ok(Some(_)), Err(_) | Ok(Err(_))) => Ok(()),
                (Ok(Some(Ok(all))), Ok(Ok(h))) if all == [h, h] => Ok(()),
                (Ok(Some(all)), Ok(Ok(h))) => Err(Outcome::failed(
                    expected,
                    format!("{all:?} where healthy says {h:?}"),
                )),
            }
        }
    }
}

/// One bounded prepare of `input`, a failure as the rule's outcome.
async fn prepare<F: Flavor + ?Sized>(
    flavor: &F,
    fixture: &FlavorFixture,
    input: &InstanceSpec,
) -> Step<InstanceSpec> {
    let answer = bounded(
        fixture.call_timeout,
        "prepare",
        flavor.prepare(
            &fixture.properties,
            input.clone(),
            &fixture.allocation,
            &fixture.index,
        ),
    )
    .await;
    match answer {
        Ok(Ok(spec)) => Ok(spec),
        other => Err(Outcome::failed(
            "prepare of the fixture's spec to be Ok",
            show_result(&other),
        )),
    }
}

/// The spec the engine would give `prepare` for the fixture's first member.
fn prepare_input(fixture: &FlavorFixture) -> InstanceSpec {
    let made_up = || Attachment::new("infrakit-conformance-volume", "conformance");
    let (logical_id, attachments) = match &fixture.allocation {
        Allocation::LogicalIds { ids, attachments } => match ids.first() {
            Some(first) => {
                let bound = attachments.get(first).cloned().unwrap_or_default();
                let bound = if bound.is_empty() {
                    vec![made_up()]
                } else {
                    bound
                };
                (first.clone(), bound)
            }
            None => (LogicalId::new(LOGICAL_ID), vec![made_up()]),
        },
        Allocation::Size(_) => (LogicalId::new(LOGICAL_ID), vec![made_up()]),
    };
    let mut spec = fixture.spec.clone();
    spec.tags.insert(GROUP_TAG, fixture.index.group.as_str());
    spec.tags.insert(CONFIG_HASH_TAG, CONFORMANCE_HASH);
    spec.tags.insert(LOGICAL_ID_TAG, logical_id.as_str());
    spec.logical_id = Some(logical_id);
    for a in attachments {
        if !spec.attachments.contains(&a) {
            spec.attachments.push(a);
        }
    }
    spec
}

/// `Err` with what `prepared` lost of `input`.
fn kept(input: &InstanceSpec, prepared: &InstanceSpec) -> Result<(), String> {
    let mut lost = Vec::new();
    for (k, v) in input.tags.iter() {
        match prepared.tags.get(k) {
            Some(now) if now == v => {}
            Some(now) => lost.push(format!("tag {k}={v} became {k}={now}")),
            None => lost.push(format!("tag {k}={v} dropped")),
        }
    }
    if prepared.logical_id != input.logical_id {
        lost.push(format!(
            "logical ID {} became {}",
            show_logical_id(input.logical_id.as_ref()),
            show_logical_id(prepared.logical_id.as_ref())
        ));
    }
    for a in &input.attachments {
        if !prepared.attachments.contains(a) {
            lost.push(format!("attachment {}/{} dropped", a.kind, a.id));
        }
    }
    if lost.is_empty() {
        Ok(())
    } else {
        Err(lost.join(", "))
    }
}

/// The fields in which two specs differ.
fn differences(a: &InstanceSpec, b: &InstanceSpec) -> String {
    let mut diff = Vec::new();
    if a.properties != b.properties {
        diff.push(format!("Properties {} then {}", a.properties, b.properties));
    }
    if a.tags != b.tags {
        diff.push(format!(
            "Tags {} then {}",
            show_tags(&a.tags),
            show_tags(&b.tags)
        ));
    }
    if a.init != b.init {
        diff.push(format!("Init {:?} then {:?}", a.init, b.init));
    }
    if a.logical_id != b.logical_id {
        diff.push(format!(
            "LogicalID {} then {}",
            show_logical_id(a.logical_id.as_ref()),
            show_logical_id(b.logical_id.as_ref())
        ));
    }
    if a.attachments != b.attachments {
        diff.push(format!(
            "Attachments {} then {}",
            show_attachments(&a.attachments),
            show_attachments(&b.attachments)
        ));
    }
    diff.join(", ")
}

fn show_result<T: fmt::Debug>(r: &Result<Result<T, FlavorError>, NoAnswer>) -> String {
    match r {
        Ok(Ok(t)) => format!("Ok({t:?})"),
        Ok(Err(e)) => show_error(e),
        Err(no) => no.to_string(),
    }
}

/// An error with its variant, e.g. `FlavorError::Refused (refused: last manager)`.
fn show_error(e: &FlavorError) -> String {
    let variant = match e {
        FlavorError::InvalidProperties(_) => "InvalidProperties",
        FlavorError::Unavailable { .. } => "Unavailable",
        FlavorError::Refused { .. } => "Refused",
        FlavorError::TimedOut { .. } => "TimedOut",
        FlavorError::Other { .. } => "Other",
    };
    format!("FlavorError::{variant} ({e})")
}

fn show_attachments(a: &[Attachment]) -> String {
    let all: Vec<String> = a.iter().map(|a| format!("{}/{}", a.kind, a.id)).collect();
    format!("[{}]", all.join(", "))
}
