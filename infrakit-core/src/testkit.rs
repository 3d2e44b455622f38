//! A conformance kit for your own plugins (feature `testkit`): checks that an [`Instance`]
//! provider or a [`Flavor`] keeps the contract the engine relies on, rule by rule, without
//! reading the engine's tests.
//!
//! Call [`check_instance`] or [`check_flavor`] from a test of your crate with a fixture (valid
//! properties, and for a provider two free logical IDs and how long it may lag), and assert the
//! [`Report`]: [`Report::passed`] with the report as the message, or
//! [`Report::into_result`] and `?`. Here the built-in [`Simulator`](crate::Simulator) and
//! [`flavor::Vanilla`](crate::flavor::Vanilla) stand in for your plugins:
//!
//! ```
//! use infrakit_core::testkit::{FlavorFixture, InstanceFixture, check_flavor, check_instance};
//! use infrakit_core::{Simulator, flavor::Vanilla};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! // In your crate: #[tokio::test] async fn my_provider_keeps_the_contract() { .. }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let provider = Simulator::builder().exclusive(true).build();
//! let fixture = InstanceFixture::new(json!({"Image": "busybox"}))
//!     .logical_ids("10.0.0.250", "10.0.0.251") // free in your subnet
//!     .settle(Duration::from_secs(1)); // how long describe may lag behind a change
//! let report = check_instance(&provider, &fixture).await;
//! assert!(report.passed(), "{report}");
//! assert!(provider.is_empty(), "the check destroys what it creates");
//!
//! // Or fail the test with the names of the broken rules:
//! let fixture = FlavorFixture::new(json!({"Init": ["echo hello"]}));
//! check_flavor(&Vanilla, &fixture).await.into_result()?;
//! # Ok::<(), infrakit_core::testkit::ConformanceError>(())
//! # }).unwrap();
//! ```
//!
//! A report prints one line per rule, `ok`, `FAIL` with what the contract expects and what the
//! plugin did, or `skip` with why:
//!
//! ```text
//! ok   validate_accepts_fixture
//! FAIL label_adds_tags: expected after label(sim-000009, {infrakit.conformance.label=added}), describe(…) to list it with its old tags and the new one within 1s, saw sim-000009 not listed (describe returned nothing); its tags are now {infrakit.conformance.label=added}
//! skip logical_id_reported: the fixture has no logical IDs (InstanceFixture::logical_ids)
//! ```
//!
//! # The instance rules ([`InstanceRule`])
//!
//! Each rule works on instances of its own, tagged [`CONFORMANCE_TAG`]`=<run id>-<rule>`, so
//! it sees nothing else even on a shared account; a rule failing does not stop the others, and
//! every instance the check creates is destroyed at the end, whatever happened. Changes are
//! awaited by polling `describe` every 50 ms for up to the fixture's `settle`, so eventually
//! consistent providers pass; every call is bounded by the fixture's `call_timeout`, and a
//! plugin that errs, hangs or panics fails the rule at hand with what was seen.
//!
//! | rule | the plugin must |
//! |---|---|
//! | `validate_accepts_fixture` | accept the fixture's properties |
//! | `tags_set_at_creation` | carry the spec's tags as soon as `provision` returns, with no `label` call |
//! | `describe_is_subset_match` | list an instance tagged `{a, b, c}` for `{a}`, `{a, b}` and `{}` |
//! | `missing_tag_never_matches` | not list it for `{a, z}` (no `z`) nor `{a, b: other}` |
//! | `logical_id_reported` | describe an instance with the logical ID it was provisioned with |
//! | `exclusive_logical_ids` | refuse a second live instance with one logical ID: `Conflict` |
//! | `not_found_on_unknown_id` | answer `NotFound` to `destroy` and `label` of an unknown ID |
//! | `gone_after_destroy` | stop listing a destroyed instance; `NotFound` to destroying it again |
//! | `label_adds_tags` | keep an instance's tags on `label` and add the new ones |
//!
//! The logical-ID rules are skipped unless the fixture has
//! [`logical_ids`](InstanceFixture::logical_ids).
//!
//! # The flavor rules ([`FlavorRule`])
//!
//! | rule | the plugin must |
//! |---|---|
//! | `validate_accepts_fixture` | accept the fixture's properties and allocation |
//! | `prepare_keeps_controller_tags` | keep the `infrakit.group`, `infrakit.config.hash` (and every other) tags, the logical ID and the attachments |
//! | `prepare_is_deterministic` | give equal specs for two prepares of one input |
//! | `healthy_answers` | answer `Ok` (any health) within the fixture's `settle` |
//! | `drain_answers` | return, `Ok` or an error, within the fixture's `call_timeout` |
//! | `healthy_batch_agrees` | answer `healthy_batch` within `settle`: `None` (per member), or one health per member, in order, as `healthy` says |
//!
//! [`Instance`]: crate::Instance
//! [`Flavor`]: crate::Flavor

mod call;
mod fixture;
mod flavor;
mod instance;
mod report;
mod show;

pub use fixture::{CONFORMANCE_GROUP, FlavorFixture, InstanceFixture, UNKNOWN_INSTANCE_ID};
pub use flavor::{FlavorRule, check_flavor};
pub use instance::{CONFORMANCE_TAG, InstanceRule, check_instance};
pub use report::{ConformanceError, Outcome, PluginKind, Report, Rule, RuleResult};
