//! The user's spec kept in the swarm itself.

use async_trait::async_trait;
use base64::Engine as _;
use bollard::Docker;
use bollard::query_parameters::UpdateSwarmOptions;
use infrakit_core::{GlobalSpec, Store, StoreError, Version, Versioned};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The cluster-spec label holding the spec.
pub const SPEC_LABEL: &str = "infrakit.spec";

/// The largest encoded spec stored (the swarm refuses a cluster spec of 2 MiB: "raft message
/// is too large"; 1 MiB of labels works). Specs are compressed first, so this is several MiB
/// of JSON.
pub const MAX_ENCODED_BYTES: usize = 768 * 1024;

/// A [`Store`] in the swarm's cluster spec labels, replicated by the swarm's Raft log: any
/// manager reads it, and it survives the loss of managers as long as the quorum does.
///
/// - The spec is stored as `{"Version": n, "Spec": ..}`, gzip-compressed and base64-encoded,
///   in the label [`SPEC_LABEL`]; at most [`MAX_ENCODED_BYTES`] ([`StoreError::TooLarge`]
///   past it).
/// - Writes are compare-and-swap on our version, and applied with the swarm's own object
///   version, retried when another writer moved it ("update out of sequence").
/// - Other labels of the cluster spec are left as they are.
#[derive(Clone)]
pub struct SwarmStore {
    docker: Docker,
}

impl std::fmt::Debug for SwarmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmStore").finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(rename = "Version")]
    version: Version,
    #[serde(rename = "Spec")]
    spec: GlobalSpec,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        message: e.to_string(),
    }
}

fn encode(record: &Record) -> Result<String, StoreError> {
    let json = serde_json::to_vec(record).map_err(|e| StoreError::Other {
        message: format!("cannot encode the spec: {e}"),
        transient: false,
    })?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json).map_err(unavailable)?;
    let packed = gz.finish().map_err(unavailable)?;
    let text = base64::engine::general_purpose::STANDARD.encode(packed);
    if text.len() > MAX_ENCODED_BYTES {
        return Err(StoreError::TooLarge {
            size: text.len(),
            limit: MAX_ENCODED_BYTES,
        });
    }
    Ok(text)
}

fn decode(text: &str) -> Result<Record, StoreError> {
    let corrupt = |m: String| StoreError::Corrupt {
        message: format!("label {SPEC_LABEL}: {m}"),
    };
    let packed = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut json)
        .map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
}

impl SwarmStore {
    /// The store of the swarm the engine behind `docker` (a manager) belongs to.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }
}

#[async_trait]
impl Store for SwarmStore {
    async fn load(&self) -> Result<Option<Versioned<GlobalSpec>>, StoreError> {
        let swarm = self.docker.inspect_swarm().await.map_err(unavailable)?;
        let label = swarm
            .spec
            .and_then(|s| s.labels)
            .and_then(|mut l| l.remove(SPEC_LABEL));
        match label {
            None => Ok(None),
            Some(text) => {
                let r = decode(&text)?;
                Ok(Some(Versioned {
                    version: r.version,
                    value: r.spec,
                }))
            }
        }
    }

    async fn save(
        &self,
        spec: &GlobalSpec,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        for _ in 0..10 {
            let swarm = self.docker.inspect_swarm().await.map_err(unavailable)?;
            let mut swarm_spec = swarm.spec.unwrap_or_default();
            let mut labels = swarm_spec.labels.take().unwrap_or_default();
            let actual = labels
                .get(SPEC_LABEL)
                .map(|t| decode(t))
                .transpose()?
                .map(|r| r.version);
            if actual != expected {
                return Err(StoreError::Conflict { expected, actual });
            }
            let version = actual.map_or(Version(1), Version::next);
            labels.insert(
                SPEC_LABEL.to_owned(),
                encode(&Record {
                    version,
                    spec: spec.clone(),
                })?,
            );
            swarm_spec.labels = Some(labels);
            let object_version = swarm.version.and_then(|v| v.index).unwrap_or_default();
            let options = UpdateSwarmOptions {
                version: i64::try_from(object_version).unwrap_or(i64::MAX),
                ..UpdateSwarmOptions::default()
            };
            match self.docker.update_swarm(swarm_spec, options).await {
                Ok(()) => return Ok(version),
                Err(e) if e.to_string().contains("out of sequence") => {
                    tracing::debug!("swarm spec moved meanwhile; re-reading");
                    continue;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Other {
            message: "the swarm spec kept changing; gave up after 10 tries".into(),
            transient: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_compresses() {
        let mut spec = GlobalSpec::default();
        for i in 0..50 {
            spec.put(infrakit_core::GroupSpec::new(
                format!("g{i}").as_str(),
                infrakit_core::PluginSpec::new(
                    "container",
                    serde_json::json!({"Image": "busybox", "Init": "x".repeat(500)}),
                ),
                infrakit_core::PluginSpec::new("vanilla", serde_json::json!({})),
                infrakit_core::Allocation::size(3),
            ));
        }
        let record = Record {
            version: Version(7),
            spec: spec.clone(),
        };
        let text = encode(&record).unwrap();
        let json_len = serde_json::to_vec(&record).unwrap().len();
        assert!(
            text.len() * 5 < json_len,
            "{} encoded vs {} JSON",
            text.len(),
            json_len
        );
        let back = decode(&text).unwrap();
        assert_eq!(back.version, Version(7));
        assert_eq!(back.spec, spec);
        assert!(matches!(
            decode("not base64!"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
