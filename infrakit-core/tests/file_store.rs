//! FileStore: compare-and-swap on a version, atomic on disk even when the writer is killed.

use infrakit_core::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// When set, [`writer_process`] becomes a writer that saves until it is killed.
const CHILD_ENV: &str = "INFRAKIT_FILESTORE_WRITER";

fn spec_for(version: u64) -> GlobalSpec {
    // Large enough (about 1 MB) that a write takes a while, so kills land mid-write.
    let mut global = GlobalSpec::default();
    for g in 0..(4 + version % 4) {
        global.put(GroupSpec::new(
            format!("group-{g}").as_str(),
            PluginSpec::new(
                "simulator",
                json!({"written_at": version, "pad": "x".repeat(200_000)}),
            ),
            PluginSpec::new("vanilla", json!({})),
            Allocation::size(g as u32),
        ));
    }
    global
}

/// Asserts a loaded spec is exactly what the writer wrote at that version.
fn check(loaded: &Versioned<GlobalSpec>) {
    let v = loaded.version.0;
    assert_eq!(
        loaded.value,
        spec_for(v),
        "spec at {} is not the one written then",
        loaded.version
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Not a test by itself: the body of the child process that
/// `a_writer_killed_mid_write_leaves_the_old_or_the_new_spec` starts and kills. Without the
/// environment variable it returns at once.
#[test]
fn writer_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    runtime().block_on(async {
        let store = FileStore::new(path);
        loop {
            let current = store.load().await.unwrap();
            let expected = current.map(|c| c.version);
            let next = expected.map_or(1, |v| v.0 + 1);
            let spec = spec_for(next);
            println!("saving {next}");
            store.save(&spec, expected).await.unwrap();
            // Tells the parent this round has made progress (it kills only after one).
            println!("saved {next}");
        }
    });
}

/// Whether a writer's temp file is in `dir` (a write under way, or left by a kill).
fn has_temp(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
    })
}

#[test]
fn a_writer_killed_mid_write_leaves_the_old_or_the_new_spec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("specs.json");
    let exe = std::env::current_exe().unwrap();
    let rt = runtime();
    let store = FileStore::new(&path);
    let mut last_version = 0;
    let mut temps_seen = 0;
    // At least 40 rounds, and more (up to 200) until a kill has landed mid-write: where a
    // kill lands is up to the machine's timing.
    for round in 0..200u64 {
        if round >= 40 && temps_seen > 0 {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "writer_process",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Once the writer has saved once this round (however slow the machine is to start
        // it), the kill lands inside its next save, at a point spread over the save's whole
        // length as the last one took (a low-discrepancy sequence over the rounds): right on
        // any machine's speed, and the write itself is a large part of a save.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut next = |what: &str| {
            let mut line = String::new();
            while !line.starts_with(what) {
                line.clear();
                assert!(
                    out.read_line(&mut line).unwrap() > 0,
                    "round {round}: the writer ended before {what:?}"
                );
            }
            line.trim()
                .trim_start_matches(what)
                .trim()
                .parse::<u64>()
                .expect("the writer's progress line")
        };
        next("saving");
        let save_start = std::time::Instant::now();
        let saved = next("saved");
        let save_took = save_start.elapsed();
        next("saving");
        if round % 2 == 0 {
            // Even rounds: the moment a temp file shows, the writer is mid-write.
            let deadline = std::time::Instant::now() + save_took * 4;
            while !has_temp(dir.path()) && std::time::Instant::now() < deadline {
                std::hint::spin_loop();
            }
        } else {
            let fraction = (round as f64 * 0.618_033_988_75).fract();
            std::thread::sleep(save_took.mul_f64(fraction));
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        child.wait().unwrap();

        temps_seen += usize::from(has_temp(dir.path()));

        match rt.block_on(store.load()) {
            Ok(Some(loaded)) => {
                check(&loaded);
                assert!(
                    loaded.version.0 >= last_version,
                    "the version went backwards"
                );
                assert!(
                    loaded.version.0 >= saved,
                    "round {round}: the save of version {saved} was lost in the crash"
                );
                last_version = loaded.version.0;
            }
            Ok(None) => assert_eq!(last_version, 0, "a saved spec disappeared"),
            Err(e) => panic!("round {round}: torn spec after a crash: {e}"),
        }
    }
    assert!(
        last_version >= 40,
        "each round saved at least once, yet the store is at version {last_version}"
    );
    assert!(
        temps_seen > 0,
        "no kill landed mid-write; the test proves nothing"
    );

    // The next save cleans up what crashed writers left behind.
    let current = rt.block_on(store.load()).unwrap().map(|v| v.version);
    rt.block_on(store.save(&GlobalSpec::default(), current))
        .unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("specs.json");
    let a = FileStore::new(&path);
    let b = FileStore::new(&path);
    let v1 = a.save(&spec_for(1), None).await.unwrap();
    assert_eq!(v1, Version(1));
    let v2 = b.save(&spec_for(2), Some(v1)).await.unwrap();
    // `a` still believes v1 is current.
    let err = a.save(&GlobalSpec::default(), Some(v1)).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            expected: Some(v1),
            actual: Some(v2)
        }
    );
    assert!(!err.is_transient());
    let err = a.save(&GlobalSpec::default(), None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: None, .. }));
    let loaded = a.load().await.unwrap().unwrap();
    assert_eq!(loaded.version, v2);
    check(&loaded);
}

#[tokio::test]
async fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("specs.json");
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = FileStore::new(&path);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let current = store.load().await.unwrap();
                let expected = current.as_ref().map(|c| c.version);
                let mut spec = current.map(|c| c.value).unwrap_or_default();
                spec.put(GroupSpec::new(
                    format!("w{w}-{done}").as_str(),
                    PluginSpec::new("simulator", json!({})),
                    PluginSpec::new("vanilla", json!({})),
                    Allocation::size(1),
                ));
                match store.save(&spec, expected).await {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let loaded = FileStore::new(&path).load().await.unwrap().unwrap();
    assert_eq!(loaded.version, Version(40));
    assert_eq!(loaded.value.groups.len(), 40, "an update was lost");
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("specs.json");
    std::fs::write(&path, "{\"Version\": 3, \"Spec\": {\"Gro").unwrap();
    let store = FileStore::new(&path);
    assert!(matches!(
        store.load().await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.save(&GlobalSpec::default(), None).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"Version\": 3, \"Spec\": {\"Gro"
    );
}

#[tokio::test]
async fn memory_store_has_the_same_contract() {
    let store = MemoryStore::new();
    let v1 = store.save(&spec_for(1), None).await.unwrap();
    assert!(matches!(
        store.save(&spec_for(1), None).await,
        Err(StoreError::Conflict { .. })
    ));
    let v2 = store.save(&spec_for(2), Some(v1)).await.unwrap();
    assert!(matches!(
        store.save(&spec_for(3), Some(v1)).await,
        Err(StoreError::Conflict { .. })
    ));
    check(&store.load().await.unwrap().unwrap());
    assert_eq!(store.load().await.unwrap().unwrap().version, v2);
}
