//! Finding plugins: every socket in the plugin directory is a plugin named after its file.

use crate::client::{
    Client, RemoteFlavor, RemoteGroup, RemoteInstance, RemoteMetadata, split_reference,
};
use infrakit_core::{Flavor, Instance, PluginResolver, PluginSpec};
use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The environment variable naming the plugin directory.
pub const PLUGINS_DIR_ENV: &str = "INFRAKIT_PLUGINS_DIR";

/// A directory of plugin sockets (`$INFRAKIT_PLUGINS_DIR`, default `~/.infrakit/plugins`).
///
/// A reference `name/subtype` picks the socket `name` and sends `subtype` as the call's `Type`.
/// As a [`PluginResolver`] it lets a manager's [`Plugins`](infrakit_core::Plugins) fall back to
/// sockets for names not registered in-process.
#[derive(Debug, Clone)]
pub struct PluginDir {
    dir: PathBuf,
    timeout: Duration,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl PluginDir {
    /// The directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            timeout: Duration::from_secs(30),
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `$INFRAKIT_PLUGINS_DIR`, else `$HOME/.infrakit/plugins`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os(PLUGINS_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                home.join(".infrakit").join("plugins")
            });
        Self::new(dir)
    }

    /// The timeout of each call made through this directory's clients.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the socket of plugin `name` is.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The names of the plugins whose sockets are in the directory, sorted.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_socket()
                && let Some(n) = entry.file_name().to_str()
            {
                names.push(n.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The (shared, keep-alive) client of plugin `name`.
    pub fn client(&self, name: &str) -> Client {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Client::with_timeout(name, self.socket(name), self.timeout))
            .clone()
    }

    /// The instance plugin `name/subtype`.
    pub fn instance(&self, reference: &str) -> RemoteInstance {
        let (name, subtype) = split_reference(reference);
        RemoteInstance::new(self.client(name), subtype)
    }

    /// The flavor plugin `name/subtype`.
    pub fn flavor(&self, reference: &str) -> RemoteFlavor {
        let (name, subtype) = split_reference(reference);
        RemoteFlavor::new(self.client(name), subtype)
    }

    /// The group plugin `name/subtype`.
    pub fn group(&self, reference: &str) -> RemoteGroup {
        let (name, subtype) = split_reference(reference);
        RemoteGroup::new(self.client(name), subtype)
    }

    /// The metadata plugin `name/subtype`.
    pub fn metadata(&self, reference: &str) -> RemoteMetadata {
        let (name, subtype) = split_reference(reference);
        RemoteMetadata::new(self.client(name), subtype)
    }

    fn has(&self, reference: &str) -> bool {
        let (name, _) = split_reference(reference);
        std::fs::metadata(self.socket(name)).is_ok_and(|m| m.file_type().is_socket())
    }
}

impl PluginResolver for PluginDir {
    fn instance(&self, spec: &PluginSpec) -> Option<Arc<dyn Instance>> {
        self.has(&spec.plugin)
            .then(|| Arc::new(PluginDir::instance(self, &spec.plugin)) as Arc<dyn Instance>)
    }

    fn flavor(&self, spec: &PluginSpec) -> Option<Arc<dyn Flavor>> {
        self.has(&spec.plugin)
            .then(|| Arc::new(PluginDir::flavor(self, &spec.plugin)) as Arc<dyn Flavor>)
    }
}
