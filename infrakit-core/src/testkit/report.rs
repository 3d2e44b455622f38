//! What a check found: one [`Outcome`] per [`Rule`], and the error a test can return.

use super::flavor::FlavorRule;
use super::instance::InstanceRule;
use std::fmt;

/// Which kind of plugin a [`Report`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginKind {
    /// An [`Instance`](crate::Instance) plugin (a provider), checked by
    /// [`check_instance`](super::check_instance).
    Instance,
    /// A [`Flavor`](crate::Flavor) plugin, checked by [`check_flavor`](super::check_flavor).
    Flavor,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Instance => "instance",
            PluginKind::Flavor => "flavor",
        })
    }
}

/// One rule of the contract, of either kind of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A rule of the [`Instance`](crate::Instance) contract.
    Instance(InstanceRule),
    /// A rule of the [`Flavor`](crate::Flavor) contract.
    Flavor(FlavorRule),
}

impl Rule {
    /// The rule's stable snake_case name, as printed in a [`Report`].
    pub fn name(self) -> &'static str {
        match self {
            Rule::Instance(r) => r.name(),
            Rule::Flavor(r) => r.name(),
        }
    }

    /// What the rule requires, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Rule::Instance(r) => r.description(),
            Rule::Flavor(r) => r.description(),
        }
    }
}

impl From<InstanceRule> for Rule {
    fn from(r: InstanceRule) -> Self {
        Rule::Instance(r)
    }
}

impl From<FlavorRule> for Rule {
    fn from(r: FlavorRule) -> Self {
        Rule::Flavor(r)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the plugin fared on one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The plugin keeps the rule.
    Passed,
    /// The plugin breaks the rule.
    Failed {
        /// What the contract requires.
        expected: String,
        /// What the plugin did instead (an answer, an error, a timeout).
        seen: String,
    },
    /// The rule was not checked.
    Skipped {
        /// Why (e.g. the fixture has no logical IDs to use).
        why: String,
    },
}

impl Outcome {
    /// A failure: the contract requires `expected`, the plugin did `seen`.
    pub fn failed(expected: impl Into<String>, seen: impl Into<String>) -> Self {
        Outcome::Failed {
            expected: expected.into(),
            seen: seen.into(),
        }
    }

    /// A skipped rule.
    pub fn skipped(why: impl Into<String>) -> Self {
        Outcome::Skipped { why: why.into() }
    }

    /// True for [`Outcome::Passed`].
    pub fn is_passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// True for [`Outcome::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// True for [`Outcome::Skipped`].
    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped { .. })
    }
}

/// One rule and how the plugin fared on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleResult {
    /// The rule.
    pub rule: Rule,
    /// The outcome.
    pub outcome: Outcome,
}

impl RuleResult {
    /// A rule's result.
    pub fn new(rule: impl Into<Rule>, outcome: Outcome) -> Self {
        Self {
            rule: rule.into(),
            outcome,
        }
    }
}

impl fmt::Display for RuleResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed => write!(f, "ok   {}", self.rule),
            Outcome::Failed { expected, seen } => {
                write!(f, "FAIL {}: expected {expected}, saw {seen}", self.rule)
            }
            Outcome::Skipped { why } => write!(f, "skip {}: {why}", self.rule),
        }
    }
}

/// The result of a check: every rule of the contract, in order, with its [`Outcome`].
///
/// Its [`Display`](fmt::Display) form is one line per rule:
///
/// ```text
/// ok   validate_accepts_fixture
/// FAIL tags_set_at_creation: expected describe({…}) to list sim-000001 with every spec tag within 5s, saw …
/// skip logical_id_reported: the fixture has no logical IDs (InstanceFixture::logical_ids)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The kind of plugin checked.
    pub kind: PluginKind,
    /// One result per rule, in the order the rules were checked.
    pub results: Vec<RuleResult>,
}

impl Report {
    /// An empty report about a kind of plugin.
    pub fn new(kind: PluginKind) -> Self {
        Self {
            kind,
            results: Vec::new(),
        }
    }

    /// Adds a rule's result.
    pub fn push(&mut self, rule: impl Into<Rule>, outcome: Outcome) {
        self.results.push(RuleResult::new(rule, outcome));
    }

    /// True when no rule failed (skipped rules do not count as failures).
    pub fn passed(&self) -> bool {
        !self.results.iter().any(|r| r.outcome.is_failed())
    }

    /// The rules the plugin breaks.
    pub fn failures(&self) -> Vec<&RuleResult> {
        self.results
            .iter()
            .filter(|r| r.outcome.is_failed())
            .collect()
    }

    /// The outcome of one rule, or `None` if the report does not cover it (a rule of the
    /// other kind of plugin).
    pub fn outcome(&self, rule: impl Into<Rule>) -> Option<&Outcome> {
        let rule = rule.into();
        self.results
            .iter()
            .find(|r| r.rule == rule)
            .map(|r| &r.outcome)
    }

    /// `Ok(self)` when no rule failed, else a [`ConformanceError`] naming the broken rules, so
    /// a test can end with `check_instance(&plugin, &fixture).await.into_result()?;`.
    pub fn into_result(self) -> Result<Report, ConformanceError> {
        if self.passed() {
            Ok(self)
        } else {
            Err(ConformanceError { report: self })
        }
    }

    fn broken_names(&self) -> String {
        self.failures()
            .iter()
            .map(|r| r.rule.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A plugin breaks rules of its contract; the message names them. The whole [`Report`] is
/// kept ([`report`](Self::report)), and the `Debug` form prints it line by line, so a test that
/// returns this error shows every rule.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {} plugin breaks {} of {} conformance rules: {}",
    .report.kind,
    .report.failures().len(),
    .report.results.len(),
    .report.broken_names()
)]
pub struct ConformanceError {
    report: Report,
}

impl ConformanceError {
    /// The full report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The full report, by value.
    pub fn into_report(self) -> Report {
        self.report
    }

    /// The names of the broken rules, in order.
    pub fn broken(&self) -> Vec<&'static str> {
        self.report
            .failures()
            .iter()
            .map(|r| r.rule.name())
            .collect()
    }
}

impl fmt::Debug for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}\n{}", self.report)
    }
}
