//! The conformance kit across the wire: the simulator and the vanilla flavor, served by a
//! `PluginServer` on a Unix socket and driven through `RemoteInstance` and `RemoteFlavor`,
//! keep the contract the engine relies on — the protocol loses none of it (typed errors
//! such as `Conflict` and `NotFound`, tags, logical IDs, attachments).

use infrakit_core::testkit::{FlavorFixture, InstanceFixture, check_flavor, check_instance};
use infrakit_core::{Allocation, Attachment, Simulator, flavor::Vanilla};
use infrakit_rpc::{Client, PluginServer, RemoteFlavor, RemoteInstance, ServerHandle};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A plugin process's socket in a temp dir, serving `cloud` (instance, subtype "") and the
/// vanilla flavor (subtype "vanilla").
async fn serve(cloud: &Simulator) -> (tempfile::TempDir, ServerHandle, Client) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("conformance");
    let server = PluginServer::new()
        .instance("", Arc::new(cloud.clone()))
        .flavor("vanilla", Arc::new(Vanilla))
        .serve(&socket)
        .await
        .unwrap();
    let client = Client::with_timeout("conformance", &socket, Duration::from_secs(10));
    (dir, server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_simulator_passes_the_instance_conformance_check() {
    let cloud = Simulator::builder().exclusive(true).build();
    let (_dir, server, client) = serve(&cloud).await;
    let remote = RemoteInstance::new(client, "");
    let fixture = InstanceFixture::new(json!({"Image": "busybox"}))
        .logical_ids("10.0.0.250", "10.0.0.251")
        .settle(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(10));
    let start = Instant::now();
    let report = check_instance(&remote, &fixture).await;
    println!(
        "instance conformance over RPC in {:?}:\n{report}",
        start.elapsed()
    );
    assert!(report.passed(), "{report}");
    assert!(
        cloud.is_empty(),
        "the check destroys what it creates: {:?}",
        cloud.instances()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_vanilla_flavor_passes_the_flavor_conformance_check() {
    let (_dir, server, client) = serve(&Simulator::new()).await;
    let remote = RemoteFlavor::new(client, "vanilla");
    // A scaled group (the default allocation) and a quorum with an attachment bound to its
    // first member: both shapes cross the wire.
    let scaled = FlavorFixture::new(json!({"Init": ["echo hello"], "Tags": {"role": "worker"}}));
    let quorum = FlavorFixture::new(json!({"Init": ["echo hello"], "Tags": {"role": "manager"}}))
        .allocation(
            Allocation::logical_ids(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
                .with_attachment("10.0.0.1", Attachment::new("vol-1", "ebs")),
        );
    for (name, fixture) in [("scaled", scaled), ("quorum", quorum)] {
        let start = Instant::now();
        let report = check_flavor(&remote, &fixture).await;
        println!(
            "flavor conformance over RPC ({name}) in {:?}:\n{report}",
            start.elapsed()
        );
        assert!(report.passed(), "{name}:\n{report}");
    }
    server.stop().await;
}
