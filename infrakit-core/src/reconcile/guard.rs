//! The guarded provider path: the only way the engine calls a group's plugins.
//!
//! Invariants: every instance call waits for the plugin's (and the group's) rate limit and is
//! timed into `infrakit_provider_call_seconds`; every plugin call (instance and flavor) is
//! bounded by the group's deadline for its operation and fails with `TimedOut` at it (a
//! timed-out health check is a failed check: unknown, never unhealthy); every mutation (`provision`, `label`,
//! `destroy`, and the flavor's `drain`) passes the term's [`Fence`] right before it is
//! issued; `describe` answers only members (filtered by the group tag again, whatever the
//! provider did); a destroy or drain of a description without the group's tag is refused.
//! A guard without a fence (a preview of a group not controlled here) only reads.

use super::fence::{Fence, Fenced};
use crate::flavor::{FlavorError, Health, Index};
use crate::group::{Allocation, GroupError};
use crate::id::{GroupId, InstanceId};
use crate::instance::{Description, DestroyContext, InstanceError, InstanceSpec};
use crate::plugins::GroupPlugins;
use crate::tags::{GROUP_TAG, Tags};
use crate::timeouts::PluginCall;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// Why a guarded call did not succeed.
#[derive(Debug, Clone)]
pub(crate) enum GuardError {
    /// The fence refused the mutation; nothing was issued.
    Fenced(Fenced),
    /// The plugin (or the tag check) failed.
    Group(GroupError),
}

impl From<InstanceError> for GuardError {
    fn from(e: InstanceError) -> Self {
        GuardError::Group(e.into())
    }
}

impl From<FlavorError> for GuardError {
    fn from(e: FlavorError) -> Self {
        GuardError::Group(e.into())
    }
}

impl From<Fenced> for GuardError {
    fn from(f: Fenced) -> Self {
        GuardError::Fenced(f)
    }
}

/// A group's plugins behind the fence, the limits and the metrics.
#[derive(Clone)]
pub(crate) struct Guarded {
    group: GroupId,
    plugins: GroupPlugins,
    fence: Option<Arc<Fence>>,
}

impl Guarded {
    /// The guarded path of a controller of this term.
    pub(crate) fn new(group: GroupId, plugins: GroupPlugins, fence: Arc<Fence>) -> Self {
        Self {
            group,
            plugins,
            fence: Some(fence),
        }
    }

    /// A read-only path: describe and health only; every mutation is refused.
    pub(crate) fn read_only(group: GroupId, plugins: GroupPlugins) -> Self {
        Self {
            group,
            plugins,
            fence: None,
        }
    }

    /// The same fence and group, other plugins (a commit that changed them).
    pub(crate) fn with_plugins(&self, plugins: GroupPlugins) -> Self {
        Self {
            group: self.group.clone(),
            plugins,
            fence: self.fence.clone(),
        }
    }

    /// The instance plugin.
    pub(crate) fn instance(&self) -> &Arc<dyn crate::instance::Instance> {
        &self.plugins.instance
    }

    /// The replica's own belief that it still leads (no store check): a pass starts only
    /// then.
    pub(crate) fn holds(&self) -> Result<(), Fenced> {
        match &self.fence {
            Some(f) => f.holds(),
            None => Err(Fenced::TermEnded),
        }
    }

    async fn limited(&self) {
        for l in &self.plugins.limits {
            l.acquire().await;
        }
    }

    /// A full fence check (the store's epoch included, within its trust): what a plan hook
    /// is consulted behind.
    pub(crate) async fn check(&self) -> Result<(), Fenced> {
        self.fence().await
    }

    /// An instance call within its deadline, timed.
    async fn instance_call<T>(
        &self,
        op: PluginCall,
        call: impl Future<Output = Result<T, InstanceError>>,
    ) -> Result<T, InstanceError> {
        let after = self.plugins.timeouts.get(op);
        timed(op.as_str(), async {
            match tokio::time::timeout(after, call).await {
                Ok(r) => r,
                Err(_) => Err(InstanceError::TimedOut {
                    operation: op,
                    after,
                }),
            }
        })
        .await
    }

    /// A flavor call within its deadline.
    async fn flavor_call<T>(
        &self,
        op: PluginCall,
        call: impl Future<Output = Result<T, FlavorError>>,
    ) -> Result<T, FlavorError> {
        let after = self.plugins.timeouts.get(op);
        match tokio::time::timeout(after, call).await {
            Ok(r) => r,
            Err(_) => Err(FlavorError::TimedOut {
                operation: op,
                after,
            }),
        }
    }

    async fn fence(&self) -> Result<(), Fenced> {
        match &self.fence {
            Some(f) => f.check().await,
            None => Err(Fenced::TermEnded),
        }
    }

    /// The group's members: one rate-limited, timed `describe` by the group tag, filtered
    /// by the tag again (the provider's filtering is never trusted with what we destroy).
    pub(crate) async fn describe(&self) -> Result<Vec<Description>, InstanceError> {
        self.limited().await;
        let tags = Tags::new().with(GROUP_TAG, self.group.as_str());
        let all = self
            .instance_call(
                PluginCall::Describe,
                self.plugins.instance.describe(&tags, false),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|d| d.tags.get(GROUP_TAG) == Some(self.group.as_str()))
            .collect())
    }

    /// The flavor's answer for each member, `parallelism` at a time, or why the check
    /// itself failed (timed out, the flavor unavailable).
    pub(crate) async fn health(
        &self,
        properties: &Value,
        descriptions: &[Description],
        parallelism: usize,
    ) -> Vec<Result<Health, FlavorError>> {
        let flavor = &self.plugins.flavor;
        // A flavor that judges the group at once is asked once, under one deadline.
        let batch = self
            .flavor_call(PluginCall::Healthy, async {
                flavor
                    .healthy_batch(properties, descriptions)
                    .await
                    .transpose()
            })
            .await;
        match batch {
            Ok(None) => {}
            Ok(Some(all)) if all.len() == descriptions.len() => {
                return all.into_iter().map(Ok).collect();
            }
            Ok(Some(all)) => {
                let e = FlavorError::Other {
                    message: format!(
                        "healthy_batch answered {} healths for {} members",
                        all.len(),
                        descriptions.len()
                    ),
                    transient: false,
                };
                return vec![Err(e); descriptions.len()];
            }
            Err(e) => {
                tracing::debug!(error = %e, "batch health check failed: every member unknown");
                return vec![Err(e); descriptions.len()];
            }
        }
        let this = self;
        let checks: Vec<BoxFuture<'_, Result<Health, FlavorError>>> = descriptions
            .iter()
            .map(|d| -> BoxFuture<'_, Result<Health, FlavorError>> {
                Box::pin(async move {
                    match this
                        .flavor_call(PluginCall::Healthy, flavor.healthy(properties, d))
                        .await
                    {
                        Ok(h) => Ok(h),
                        Err(e) => {
                            tracing::debug!(id = %d.id, error = %e, "health check failed: unknown");
                            Err(e)
                        }
                    }
                })
            })
            .collect();
        futures::stream::iter(checks)
            .buffered(parallelism.max(1))
            .collect()
            .await
    }

    /// The flavor's spec for a new member (a read: nothing is created).
    pub(crate) async fn prepare(
        &self,
        properties: &Value,
        spec: InstanceSpec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<InstanceSpec, FlavorError> {
        self.flavor_call(
            PluginCall::Prepare,
            self.plugins
                .flavor
                .prepare(properties, spec, allocation, index),
        )
        .await
    }

    /// Creates a member.
    pub(crate) async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, GuardError> {
        self.limited().await;
        self.fence().await?;
        Ok(self
            .instance_call(PluginCall::Provision, self.plugins.instance.provision(spec))
            .await?)
    }

    /// Labels a member.
    pub(crate) async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), GuardError> {
        self.limited().await;
        self.fence().await?;
        Ok(self
            .instance_call(PluginCall::Label, self.plugins.instance.label(id, labels))
            .await?)
    }

    /// Drains a member through the flavor, then destroys it; gone already counts as done.
    pub(crate) async fn drain_and_destroy(
        &self,
        properties: &Value,
        member: &Description,
        context: DestroyContext,
    ) -> Result<(), GuardError> {
        self.member(member)?;
        self.fence().await?;
        self.flavor_call(
            PluginCall::Drain,
            self.plugins.flavor.drain(properties, member),
        )
        .await?;
        self.limited().await;
        self.fence().await?;
        match self
            .instance_call(
                PluginCall::Destroy,
                self.plugins.instance.destroy(&member.id, context),
            )
            .await
        {
            Ok(()) | Err(InstanceError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A destroy is irreversible: the description must carry this group's tag.
    fn member(&self, d: &Description) -> Result<(), GuardError> {
        if d.tags.get(GROUP_TAG) == Some(self.group.as_str()) {
            Ok(())
        } else {
            Err(GuardError::Group(GroupError::NotMember {
                group: self.group.clone(),
                ids: vec![d.id.clone()],
            }))
        }
    }
}

async fn timed<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, InstanceError>>,
) -> Result<T, InstanceError> {
    let start = std::time::Instant::now();
    let r = call.await;
    metrics::histogram!("infrakit_provider_call_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    r
}
