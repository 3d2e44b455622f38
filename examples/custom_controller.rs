//! The embedder's view: your own provider, your own flavor, composed into a manager.
//!
//! `cargo run --example custom_controller`
//!
//! A downstream program writes an `Instance` plugin (one JSON file per instance in a directory)
//! and a `Flavor` (boot script and health from a greeting kept in metadata), composes a manager
//! with `FileLeadership` and `FileStore`, wraps the provider in layers (retries of transient
//! errors, logs), puts a business rule into the loop with a plan hook (a floor of two members:
//! scale-ins below it are vetoed), converges a group of three, and heals it after an instance
//! file is deleted "by hand". At the bottom: a unit test of the flavor with the mocks
//! and the conformance kit run on the provider
//! (`cargo test --example custom_controller --features mocks,testkit`).
//!
//! Copy this file to start your own controller.

use infrakit::layer::{PluginExt, RetryPolicy};
use infrakit::reconcile::{Action, Cause, PlanHook, Review};
use infrakit::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// 1. A provider: instances are JSON files in a directory.

/// What one instance file holds.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "ID")]
    id: InstanceId,
    #[serde(rename = "Spec")]
    spec: InstanceSpec,
}

struct DirInstance {
    dir: PathBuf,
    next: AtomicU64,
}

impl DirInstance {
    fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            next: AtomicU64::new(1),
        }
    }

    fn path(&self, id: &InstanceId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes atomically: a reader never sees half a file. (Async file I/O: a plugin never
    /// blocks the runtime's workers.)
    async fn write(&self, record: &Record) -> Result<(), InstanceError> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| provider(e, false))?;
        let temp = self.dir.join(format!(".{}.tmp", record.id));
        tokio::fs::write(&temp, body)
            .await
            .map_err(|e| provider(e, true))?;
        tokio::fs::rename(&temp, self.path(&record.id))
            .await
            .map_err(|e| provider(e, true))
    }

    async fn read(&self, path: &Path) -> Option<Record> {
        serde_json::from_slice(&tokio::fs::read(path).await.ok()?).ok()
    }
}

fn provider(e: impl std::fmt::Display, transient: bool) -> InstanceError {
    InstanceError::Provider {
        message: e.to_string(),
        transient,
    }
}

#[async_trait]
impl Instance for DirInstance {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        match properties.get("Size").and_then(Value::as_str) {
            Some("small" | "large") => Ok(()),
            _ => Err(SpecError::new("Size", "must be \"small\" or \"large\"").into()),
        }
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let id = InstanceId::new(format!(
            "file-{:04}",
            self.next.fetch_add(1, Ordering::SeqCst)
        ));
        self.write(&Record {
            id: id.clone(),
            spec,
        })
        .await?;
        Ok(id)
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        let mut record = self
            .read(&self.path(id))
            .await
            .ok_or_else(|| InstanceError::NotFound { id: id.clone() })?;
        record.spec.tags.merge(labels);
        self.write(&record).await
    }

    async fn destroy(&self, id: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(InstanceError::NotFound { id: id.clone() })
            }
            Err(e) => Err(provider(e, true)),
        }
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let mut found = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| provider(e, true))?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| provider(e, true))? {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            // A file that vanished or is half-written is simply not an instance.
            let Some(r) = self.read(&path).await else {
                continue;
            };
            // The contract: a subset match, and a missing tag never matches.
            if r.spec.tags.contains_all(tags) {
                found.push(Description {
                    id: r.id,
                    logical_id: r.spec.logical_id.clone(),
                    tags: r.spec.tags.clone(),
                    properties: with_properties.then(|| r.spec.properties.clone()),
                });
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A flavor: the boot script greets with what metadata says; members are healthy once tagged.

struct Greeter {
    metadata: Arc<dyn Metadata>,
}

#[async_trait]
impl Flavor for Greeter {
    async fn validate(&self, properties: &Value, _: &Allocation) -> Result<(), FlavorError> {
        match properties.get("Name") {
            Some(Value::String(_)) | None => Ok(()),
            Some(_) => Err(SpecError::new("Name", "must be a string").into()),
        }
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        _: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        let greeting = self
            .metadata
            .get("demo/greeting")
            .await
            .map_err(|e| FlavorError::Unavailable {
                message: e.to_string(),
                retry_after: None,
            })?
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "hello".to_owned());
        let name = properties
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("world");
        Ok(spec
            .with_init(format!(
                "echo '{greeting}, {name}! (member {} of {})'",
                index.sequence, index.group
            ))
            .with_tag("greeter", "yes"))
    }

    async fn healthy(&self, _: &Value, d: &Description) -> Result<Health, FlavorError> {
        Ok(if d.tags.get("greeter") == Some("yes") {
            Health::Healthy
        } else {
            Health::Unknown
        })
    }

    async fn drain(&self, _: &Value, _: &Description) -> Result<(), FlavorError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A business rule in the loop: never scale a group in below two members.

struct Floor(usize);

#[async_trait]
impl PlanHook for Floor {
    async fn review(&self, review: &mut Review<'_>) {
        let mut left = review.members().len();
        for i in 0..review.actions().len() {
            if let Action::Destroy {
                cause: Cause::ScaleDown,
                ..
            } = review.actions()[i]
            {
                if left <= self.0 {
                    review.veto(i, format!("below the floor of {} members", self.0));
                } else {
                    left -= 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Compose a manager and let it work.

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let work =
        std::env::temp_dir().join(format!("infrakit-custom-controller-{}", std::process::id()));
    let instances = work.join("instances");
    tokio::fs::create_dir_all(&instances).await?;

    // Leadership and the spec live in files that several replicas could share.
    let leader_file = work.join("leader");
    FileLeadership::write_leader(&leader_file, "replica-1")?;
    let leadership = FileLeadership::new(&leader_file, "replica-1");
    let store = FileStore::new(work.join("specs.json"));
    let metadata = MemoryMetadata::new(json!({"demo": {"greeting": "bonjour"}}));

    let manager = Manager::builder(leadership, store)
        .plugins(
            Plugins::new()
                // Layers, from the inside out: transient errors retried with backoff, then
                // every call logged (`RUST_LOG=debug` shows them).
                .instance(
                    "files",
                    DirInstance::new(&instances)
                        .with_retry(RetryPolicy::default())
                        .logged("files"),
                )
                .flavor(
                    "greeter",
                    Greeter {
                        metadata: Arc::new(metadata),
                    },
                ),
        )
        .options(
            EngineOptions::default()
                // No events from this provider: the resync is how changes are seen.
                .resync(Duration::from_millis(300)),
        )
        .plan_hook(Floor(2))
        .build();
    manager.start();
    let term = manager.wait_leading(Duration::from_secs(30)).await?;
    println!("leading ({term})");

    let spec = GroupSpec::from_json(
        r#"{"ID": "web", "Properties": {
              "Allocation": {"Size": 3},
              "Instance": {"Plugin": "files", "Properties": {"Size": "small"}},
              "Flavor": {"Plugin": "greeter", "Properties": {"Name": "web"}}}}"#,
    )?;
    // Bad properties are refused by your own plugin, naming the field.
    let mut bad = spec.clone();
    bad.instance.properties = json!({"Size": "huge"});
    println!("refused: {}", manager.commit(bad, false).await.unwrap_err());

    println!("commit: {}", manager.commit(spec.clone(), false).await?);
    let d = manager
        .wait_converged(&"web".into(), Duration::from_secs(10))
        .await?;
    println!(
        "converged: {:?}",
        d.instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
    );

    // Someone deletes an instance by hand.
    let victim = manager.describe(&"web".into()).await?.instances[0]
        .id
        .clone();
    tokio::fs::remove_file(instances.join(format!("{victim}.json"))).await?;
    println!("deleted {victim} by hand");
    let healed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let d = manager.describe(&"web".into()).await?;
            if d.converged && d.instances.iter().all(|i| i.id != victim) {
                return Ok::<_, GroupError>(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    println!(
        "healed: {:?}",
        healed
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
    );
    let record: Record = serde_json::from_slice(
        &tokio::fs::read(instances.join(format!("{}.json", healed.instances[2].id))).await?,
    )?;
    println!("its boot script: {}", record.spec.init);

    // Scale in to one: the hook keeps two and says why.
    let mut one = spec;
    one.allocation = Allocation::size(1);
    println!("commit size 1: {}", manager.commit(one, false).await?);
    let held = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let d = manager.describe(&"web".into()).await?;
            if d.instances.len() == 2 && !d.held.is_empty() {
                return Ok::<_, GroupError>(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    println!(
        "kept {} members; held: {}",
        held.instances.len(),
        held.held[0]
    );

    manager.shutdown().await;
    tokio::fs::remove_dir_all(&work).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Unit-test the flavor with the mocks, check the provider with the conformance kit
//    (`--features mocks,testkit`).

#[cfg(all(test, feature = "mocks"))]
mod tests {
    use super::*;
    use infrakit::mocks::MockMetadata;

    #[tokio::test]
    async fn the_boot_script_greets_with_the_metadata_greeting() {
        let mut metadata = MockMetadata::new();
        metadata
            .expect_get()
            .withf(|p| p == "demo/greeting")
            .times(1)
            .returning(|_| Ok(Some(json!("hola"))));
        let flavor = Greeter {
            metadata: Arc::new(metadata),
        };
        let index = Index {
            group: "web".into(),
            sequence: 7,
        };
        let spec = flavor
            .prepare(
                &json!({"Name": "api"}),
                InstanceSpec::default(),
                &Allocation::size(1),
                &index,
            )
            .await
            .unwrap();
        assert_eq!(spec.init, "echo 'hola, api! (member 7 of web)'");
        assert_eq!(spec.tags.get("greeter"), Some("yes"));
        assert_eq!(
            flavor
                .healthy(&json!({}), &Description::new("x", spec.tags))
                .await
                .unwrap(),
            Health::Healthy
        );
    }

    #[tokio::test]
    async fn a_metadata_outage_is_transient() {
        let mut metadata = MockMetadata::new();
        metadata.expect_get().returning(|_| {
            Err(MetadataError::Unavailable {
                message: "down".into(),
            })
        });
        let flavor = Greeter {
            metadata: Arc::new(metadata),
        };
        let err = flavor
            .prepare(
                &json!({}),
                InstanceSpec::default(),
                &Allocation::size(1),
                &Index::default(),
            )
            .await
            .unwrap_err();
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn a_bad_name_is_refused_by_field() {
        let flavor = Greeter {
            metadata: Arc::new(MockMetadata::new()),
        };
        let err = flavor
            .validate(&json!({"Name": 3}), &Allocation::size(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Name"), "{err}");
    }

    /// The conformance kit checks the provider keeps the contract the engine relies on
    /// (subset tag match, tags at creation, `NotFound` for unknown IDs, gone after destroy, ...).
    /// This provider does not make logical IDs exclusive, so the fixture names none and those
    /// rules are skipped.
    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn the_provider_keeps_the_contract() {
        use infrakit::testkit::{InstanceFixture, check_instance};
        let dir =
            std::env::temp_dir().join(format!("infrakit-dir-conformance-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let report = check_instance(
            &DirInstance::new(&dir),
            &InstanceFixture::new(json!({"Size": "small"})),
        )
        .await;
        tokio::fs::remove_dir_all(&dir).await.unwrap();
        assert!(report.passed(), "{report}");
    }
}
