//! The embedder's view: your own provider, your own flavor, composed into a manager.
//!
//! `cargo run --example custom_controller`
//!
//! A downstream program writes an `Instance` plugin (one JSON file per instance in a directory)
//! and a `Flavor` (boot script and health from a greeting kept in metadata), composes a manager
//! with `FileLeadership` and `FileStore`, converges a group of three, and heals it after an
//! instance file is deleted "by hand". At the bottom: a unit test of the flavor with the mocks
//! (`cargo test --example custom_controller --features mocks`).
//!
//! Copy this file to start your own controller.

use async_trait::async_trait;
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

    /// Writes atomically: a reader never sees half a file.
    fn write(&self, record: &Record) -> Result<(), InstanceError> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| provider(e, false))?;
        let temp = self.dir.join(format!(".{}.tmp", record.id));
        std::fs::write(&temp, body).map_err(|e| provider(e, true))?;
        std::fs::rename(&temp, self.path(&record.id)).map_err(|e| provider(e, true))
    }

    fn read(&self, path: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
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
        })?;
        Ok(id)
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        let mut record = self
            .read(&self.path(id))
            .ok_or_else(|| InstanceError::NotFound { id: id.clone() })?;
        record.spec.tags.merge(labels);
        self.write(&record)
    }

    async fn destroy(&self, id: &InstanceId, _: DestroyContext) -> Result<(), InstanceError> {
        match std::fs::remove_file(self.path(id)) {
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
        for entry in std::fs::read_dir(&self.dir).map_err(|e| provider(e, true))? {
            let path = entry.map_err(|e| provider(e, true))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            // A file that vanished or is half-written is simply not an instance.
            let Some(r) = self.read(&path) else { continue };
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
// 3. Compose a manager and let it work.

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
    std::fs::create_dir_all(&instances)?;

    // Leadership and the spec live in files that several replicas could share.
    let leader_file = work.join("leader");
    FileLeadership::write_leader(&leader_file, "replica-1")?;
    let leadership = FileLeadership::new(&leader_file, "replica-1");
    let store = FileStore::new(work.join("specs.json"));
    let metadata = MemoryMetadata::new(json!({"demo": {"greeting": "bonjour"}}));

    let manager = Manager::builder(leadership, store)
        .plugins(
            Plugins::new()
                .instance("files", DirInstance::new(&instances))
                .flavor(
                    "greeter",
                    Greeter {
                        metadata: Arc::new(metadata),
                    },
                ),
        )
        .options(EngineOptions {
            // No events from this provider: the resync is how changes are seen.
            resync: Duration::from_millis(300),
            ..EngineOptions::default()
        })
        .build();
    manager.start();
    let term = manager.wait_leading().await;
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

    println!("commit: {}", manager.commit(spec, false).await?);
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
    std::fs::remove_file(instances.join(format!("{victim}.json")))?;
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
    let record: Record = serde_json::from_slice(&std::fs::read(
        instances.join(format!("{}.json", healed.instances[2].id)),
    )?)?;
    println!("its boot script: {}", record.spec.init);

    manager.shutdown().await;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Unit-test the flavor with the mocks (`--features mocks`).

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

    #[tokio::test]
    async fn the_provider_matches_tags_as_a_subset() {
        let dir =
            std::env::temp_dir().join(format!("infrakit-dirinstance-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = DirInstance::new(&dir);
        let id = p
            .provision(
                InstanceSpec::default()
                    .with_tag("a", "1")
                    .with_tag("b", "2"),
            )
            .await
            .unwrap();
        assert_eq!(
            p.describe(&Tags::new().with("a", "1"), false)
                .await
                .unwrap()[0]
                .id,
            id
        );
        assert!(
            p.describe(&Tags::new().with("c", "3"), false)
                .await
                .unwrap()
                .is_empty()
        );
        p.destroy(&id, DestroyContext::Terminate).await.unwrap();
        assert!(matches!(
            p.destroy(&id, DestroyContext::Terminate).await,
            Err(InstanceError::NotFound { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
