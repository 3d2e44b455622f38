//! EC2 instances as infrakit instances.

use crate::error::{Ec2Error, Ec2ErrorKind};
use crate::properties::{Ec2Properties, attachment_devices, parse_cidr};
use crate::token::TokenPool;
use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification,
    InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType, Placement,
    ResourceType, Tag, TagSpecification, Volume, VolumeState, VolumeType,
};
use infrakit_core::{
    Attachment, Description, DestroyContext, GROUP_TAG, Instance, InstanceError, InstanceId,
    InstanceSpec, LOGICAL_ID_TAG, LogicalId, SpecError, Tags,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The namespace tag every instance of an [`Ec2Instance`] carries (and every describe filters
/// on): two clusters in one account never see each other's instances.
pub const SCOPE_TAG: &str = "infrakit.scope";

/// The tag on an EBS volume naming the attachment it is (`{"ID": "<value>", "Type": "ebs"}`).
pub const ATTACHMENT_TAG: &str = "infrakit.attachment";

/// The tag on an instance listing the volumes attached to it as attachments (comma separated
/// volume IDs), set at launch.
pub const ATTACHED_VOLUMES_TAG: &str = "infrakit.attached_volumes";

/// The largest boot script EC2 accepts as user data, in bytes (before base64).
pub const MAX_USER_DATA: usize = 16 * 1024;

/// The states in which an instance is a member: anything else is gone.
const LIVE_STATES: [&str; 2] = ["pending", "running"];

/// States in which an instance still holds its IP and volumes.
const HOLDING_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];

/// How an [`Ec2Instance`] paces itself: page size 1000, instances `running` and volumes
/// released within 300 s, polled every 2 s. Built from the default, one method per option:
///
/// ```
/// use infrakit_aws::Ec2Options;
/// use std::time::Duration;
/// let fast = Ec2Options::default().page_size(200).poll_interval(Duration::from_millis(200));
/// assert_eq!(fast.page_size, 200);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ec2Options {
    /// Results per `DescribeInstances` page (5 to 1000).
    pub page_size: i32,
    /// How long a new instance may take to be `running` before its volumes are attached, and
    /// how long a volume may take to be released by a terminated instance.
    pub ready_timeout: Duration,
    /// Poll period while waiting for those.
    pub poll_interval: Duration,
}

impl Default for Ec2Options {
    fn default() -> Self {
        Self {
            page_size: 1000,
            ready_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl Ec2Options {
    /// Sets the results per `DescribeInstances` page (clamped to 5..=1000 when used).
    pub fn page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets how long to wait for an instance to be `running`, or a volume to be released.
    pub fn ready_timeout(mut self, ready_timeout: Duration) -> Self {
        self.ready_timeout = ready_timeout;
        self
    }

    /// Sets the poll period while waiting.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }
}

/// An instance plugin whose instances are EC2 instances.
///
/// - **Tags are the only inventory.** Tags (the spec's, the namespace's, the logical ID's) are
///   set by `RunInstances` itself (`TagSpecifications`), never after: there is no moment when
///   an instance exists untagged. `describe` is one paginated `DescribeInstances` filtered on
///   the tags, the namespace and the states `pending`/`running`, followed to its last page.
/// - **A logical ID is the primary private IP** (`NetworkInterfaces[0].PrivateIpAddress`, so
///   that the IP is released when the instance terminates). Before launching, the IP is
///   checked: an instance still holding it (even `shutting-down` or `stopped`) is an
///   [`InstanceError::Conflict`] naming it, which the engine retries.
/// - **Attachments of type `ebs`** name a volume, by its ID (`vol-…`) or by the value of its
///   [`ATTACHMENT_TAG`] tag in this namespace. The volume is checked before launch (one still
///   attached to a live instance is a `Conflict`; one held by a terminating instance is waited
///   for), and attached once the instance is `running`, at `AttachDevice`. If attaching fails
///   the new instance is terminated and the error returned.
/// - **Destroy** terminates the instance (only one of this namespace; anything else is
///   `NotFound`). Volumes attached as attachments are never deleted: with the reason
///   [`DestroyContext::RollingUpdate`] they are detached first, so that the replacement can
///   attach them without waiting for the old instance to finish terminating; with
///   `Terminate`/`ScaleDown` they are released by the termination and stay `available` for
///   whatever takes the logical ID next.
/// - **Launches are idempotent**: each carries a `ClientToken`. A launch whose outcome is
///   unknown (a timeout, a lost answer, a 5xx) keeps its token, and the next launch of the
///   same spec reuses it, so EC2 returns the first instance instead of starting a second; a
///   launch that succeeded or surely failed frees it. (The SDK's own retries reuse it too.)
/// - **Throttling**: the clients built by [`client`](crate::client) retry adaptively; what is
///   still throttled comes back as [`InstanceError::Throttled`]. Every error carries AWS's
///   code and message (see [`Ec2Error`]).
///
/// ```no_run
/// use infrakit_aws::{Ec2Instance, client_from_env};
/// let ec2 = Ec2Instance::new(client_from_env(), "prod-swarm").unwrap();
/// # let _ = ec2;
/// ```
#[derive(Clone)]
pub struct Ec2Instance {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    namespace: Tags,
    options: Ec2Options,
    tokens: TokenPool,
    turn: AtomicUsize,
    subnets: Mutex<BTreeMap<String, (Ipv4Addr, u8)>>,
}

impl std::fmt::Debug for Ec2Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Instance")
            .field("namespace", &self.inner.namespace)
            .field("options", &self.inner.options)
            .finish()
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn filter(name: impl Into<String>, values: &[&str]) -> Filter {
    values
        .iter()
        .fold(Filter::builder().name(name), |b, v| b.values(*v))
        .build()
}

fn tags_of(list: &[Tag]) -> Tags {
    let mut tags = Tags::new();
    for t in list {
        if let (Some(k), Some(v)) = (t.key(), t.value())
            && !k.starts_with("aws:")
        {
            tags.insert(k, v);
        }
    }
    tags
}

fn state_of(i: &aws_sdk_ec2::types::Instance) -> &str {
    i.state()
        .and_then(|s| s.name())
        .map(InstanceStateName::as_str)
        .unwrap_or("unknown")
}

impl Ec2Instance {
    /// Instances of the namespace `{infrakit.scope: scope}`.
    pub fn new(client: Client, scope: &str) -> Result<Self, SpecError> {
        Self::with_namespace(client, Tags::new().with(SCOPE_TAG, scope))
    }

    /// Instances of a namespace of one or more tags.
    pub fn with_namespace(client: Client, namespace: Tags) -> Result<Self, SpecError> {
        if namespace.is_empty() || namespace.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
            return Err(SpecError::new(
                "namespace",
                "at least one tag, with a non-empty key and value",
            ));
        }
        Ok(Self::build(client, namespace, Ec2Options::default()))
    }

    fn build(client: Client, namespace: Tags, options: Ec2Options) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                namespace,
                options: Ec2Options {
                    page_size: options.page_size.clamp(5, 1000),
                    ..options
                },
                tokens: TokenPool::default(),
                turn: AtomicUsize::new(0),
                subnets: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The same plugin with these options (set them before sharing it: pending client tokens
    /// and cached subnets are not carried over).
    #[must_use]
    pub fn options(self, options: Ec2Options) -> Self {
        Self::build(
            self.inner.client.clone(),
            self.inner.namespace.clone(),
            options,
        )
    }

    /// The EC2 client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The namespace tags.
    pub fn namespace(&self) -> &Tags {
        &self.inner.namespace
    }

    fn namespace_filters(&self) -> impl Iterator<Item = Filter> + '_ {
        self.inner
            .namespace
            .iter()
            .map(|(k, v)| filter(format!("tag:{k}"), &[v]))
    }

    /// Every instance matching `filters` (plus the namespace), following pagination.
    async fn list(
        &self,
        filters: Vec<Filter>,
        ids: &[&str],
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, Ec2Error> {
        let mut request = self.inner.client.describe_instances().set_filters(Some(
            filters
                .into_iter()
                .chain(self.namespace_filters())
                .collect(),
        ));
        for id in ids {
            request = request.instance_ids(*id);
        }
        let mut pages = if ids.is_empty() {
            request
                .into_paginator()
                .page_size(self.inner.options.page_size)
                .send()
        } else {
            request.into_paginator().send()
        };
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Ec2Error::from_sdk("DescribeInstances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().cloned());
            }
        }
        Ok(out)
    }

    /// One instance of this namespace by ID, in any state; `None` if there is none.
    async fn find(
        &self,
        id: &InstanceId,
    ) -> Result<Option<aws_sdk_ec2::types::Instance>, Ec2Error> {
        match self.list(Vec::new(), &[id.as_str()]).await {
            Ok(mut found) => Ok(found.pop()),
            Err(e) if e.kind == Ec2ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The CIDR of each subnet, looked up once.
    async fn subnet_cidrs(
        &self,
        subnets: &[String],
    ) -> Result<BTreeMap<String, (Ipv4Addr, u8)>, Ec2Error> {
        let missing: Vec<String> = {
            let known = self.inner.subnets.lock().map_err(|_| poisoned())?;
            subnets
                .iter()
                .filter(|s| !known.contains_key(*s))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let out = self
                .inner
                .client
                .describe_subnets()
                .set_subnet_ids(Some(missing))
                .send()
                .await
                .map_err(|e| Ec2Error::from_sdk("DescribeSubnets", e))?;
            let mut known = self.inner.subnets.lock().map_err(|_| poisoned())?;
            for s in out.subnets() {
                if let (Some(id), Some(cidr)) = (s.subnet_id(), s.cidr_block().and_then(parse_cidr))
                {
                    known.insert(id.to_owned(), cidr);
                }
            }
        }
        let known = self.inner.subnets.lock().map_err(|_| poisoned())?;
        Ok(known.clone())
    }

    /// Fails with a conflict if an instance (of any namespace) holds `ip` in `subnet`.
    async fn check_ip_free(&self, ip: Ipv4Addr, subnet: &str) -> Result<(), InstanceError> {
        let out = self
            .inner
            .client
            .describe_instances()
            .filters(filter("private-ip-address", &[&ip.to_string()]))
            .filters(filter("subnet-id", &[subnet]))
            .filters(filter("instance-state-name", &HOLDING_STATES))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstances", e))?;
        if let Some(holder) = out.reservations().iter().flat_map(|r| r.instances()).next() {
            return Err(InstanceError::Conflict {
                message: format!(
                    "the private IP {ip} is held by {} ({})",
                    holder.instance_id().unwrap_or("an instance"),
                    state_of(holder)
                ),
            });
        }
        Ok(())
    }

    async fn volumes(
        &self,
        filters: Vec<Filter>,
        ids: Vec<String>,
    ) -> Result<Vec<Volume>, Ec2Error> {
        let mut pages = self
            .inner
            .client
            .describe_volumes()
            .set_filters((!filters.is_empty()).then_some(filters))
            .set_volume_ids((!ids.is_empty()).then_some(ids))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Ec2Error::from_sdk("DescribeVolumes", e))?;
            out.extend(page.volumes().iter().cloned());
        }
        Ok(out)
    }

    /// The volume an attachment names, once it is free to attach (waiting for a terminating
    /// instance to release it).
    async fn resolve_volume(&self, index: usize, a: &Attachment) -> Result<String, InstanceError> {
        if a.kind != "ebs" {
            return Err(SpecError::new(
                format!("Attachments[{index}].Type"),
                format!(
                    "unsupported attachment type {:?}; this plugin attaches \"ebs\"",
                    a.kind
                ),
            )
            .into());
        }
        let (filters, ids) = if a.id.starts_with("vol-") {
            (Vec::new(), vec![a.id.clone()])
        } else {
            (
                std::iter::once(filter(format!("tag:{ATTACHMENT_TAG}"), &[&a.id]))
                    .chain(self.namespace_filters())
                    .collect(),
                Vec::new(),
            )
        };
        let deadline = Instant::now() + self.inner.options.ready_timeout;
        loop {
            let found = self
                .volumes(filters.clone(), ids.clone())
                .await
                .map_err(|e| match e.kind {
                    Ec2ErrorKind::NotFound => InstanceError::Provider {
                        message: format!("attachment {:?}: {e}", a.id),
                        transient: false,
                    },
                    _ => e.into(),
                })?;
            let volume = match found.as_slice() {
                [] => {
                    return Err(InstanceError::Provider {
                        message: format!(
                            "attachment {:?}: no EBS volume tagged {ATTACHMENT_TAG}={} in namespace {:?}",
                            a.id,
                            a.id,
                            self.inner.namespace.as_map()
                        ),
                        transient: false,
                    });
                }
                [v] => v,
                many => {
                    return Err(InstanceError::Provider {
                        message: format!(
                            "attachment {:?}: {} volumes match ({}); it must name one",
                            a.id,
                            many.len(),
                            many.iter()
                                .filter_map(|v| v.volume_id())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        transient: false,
                    });
                }
            };
            let vid = volume.volume_id().unwrap_or(&a.id).to_owned();
            let waiting = match volume.state() {
                Some(VolumeState::Available) => return Ok(vid),
                Some(VolumeState::InUse) => {
                    let holder = volume
                        .attachments()
                        .iter()
                        .find_map(|att| att.instance_id())
                        .unwrap_or_default()
                        .to_owned();
                    let state = self.instance_state(&holder).await?;
                    if matches!(
                        state.as_deref(),
                        Some("pending" | "running" | "stopping" | "stopped")
                    ) {
                        return Err(InstanceError::Conflict {
                            message: format!(
                                "EBS volume {vid} (attachment {:?}) is attached to {holder} ({}); \
                                 it must be detached first",
                                a.id,
                                state.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                    format!("to be released by {holder}")
                }
                Some(VolumeState::Creating) => "to be created".to_owned(),
                other => {
                    return Err(InstanceError::Provider {
                        message: format!(
                            "EBS volume {vid} (attachment {:?}) cannot be attached: it is {}",
                            a.id,
                            other
                                .map(VolumeState::as_str)
                                .unwrap_or("in no known state")
                        ),
                        transient: false,
                    });
                }
            };
            if Instant::now() >= deadline {
                return Err(InstanceError::Unavailable {
                    message: format!(
                        "EBS volume {vid} (attachment {:?}): gave up waiting {waiting} after {:?}",
                        a.id, self.inner.options.ready_timeout
                    ),
                });
            }
            tracing::debug!(volume = %vid, "waiting {waiting}");
            tokio::time::sleep(self.inner.options.poll_interval).await;
        }
    }

    /// The state of any instance (of any namespace), `None` if EC2 does not know it.
    async fn instance_state(&self, id: &str) -> Result<Option<String>, InstanceError> {
        if id.is_empty() {
            return Ok(None);
        }
        match self
            .inner
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .map(|i| state_of(i).to_owned())),
            Err(e) => {
                let e = Ec2Error::from_sdk("DescribeInstances", e);
                if e.kind == Ec2ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Waits until `id` is running.
    async fn wait_running(&self, id: &InstanceId) -> Result<(), InstanceError> {
        let deadline = Instant::now() + self.inner.options.ready_timeout;
        loop {
            // Right after RunInstances, EC2 may not know the ID yet: that is "not yet".
            let state = self.find(id).await?.map(|i| state_of(&i).to_owned());
            match state.as_deref() {
                Some("running") => return Ok(()),
                Some("pending") | None => {}
                Some(other) => {
                    return Err(InstanceError::Provider {
                        message: format!("{id} became {other} before it was running"),
                        transient: true,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(InstanceError::Unavailable {
                    message: format!(
                        "{id} was not running after {:?}",
                        self.inner.options.ready_timeout
                    ),
                });
            }
            tokio::time::sleep(self.inner.options.poll_interval).await;
        }
    }

    /// Terminates `id` after a failed provision; logs what it cannot do.
    async fn abandon(&self, id: &InstanceId, why: &InstanceError) {
        tracing::warn!(instance = %id, error = %why, "terminating a new instance whose volumes could not be attached");
        if let Err(e) = self
            .inner
            .client
            .terminate_instances()
            .instance_ids(id.as_str())
            .send()
            .await
        {
            tracing::error!(instance = %id, error = %Ec2Error::from_sdk("TerminateInstances", e), "could not terminate it");
        }
    }

    fn describe_one(
        &self,
        i: &aws_sdk_ec2::types::Instance,
        with_properties: bool,
    ) -> Option<Description> {
        let id = i.instance_id()?;
        let tags = tags_of(i.tags());
        let mut d = Description::new(id, tags);
        d.logical_id = d.tags.get(LOGICAL_ID_TAG).map(LogicalId::from);
        if with_properties {
            d.properties = Some(json!({
                "InstanceId": id,
                "State": state_of(i),
                "InstanceType": i.instance_type().map(InstanceType::as_str),
                "ImageId": i.image_id(),
                "PrivateIpAddress": i.private_ip_address(),
                "PublicIpAddress": i.public_ip_address(),
                "SubnetId": i.subnet_id(),
                "VpcId": i.vpc_id(),
                "AvailabilityZone": i.placement().and_then(|p| p.availability_zone()),
                "LaunchTime": i.launch_time().map(|t| t.to_string()),
                "BlockDevices": i.block_device_mappings().iter().map(|b| json!({
                    "DeviceName": b.device_name(),
                    "VolumeId": b.ebs().and_then(|e| e.volume_id()),
                })).collect::<Vec<_>>(),
            }));
        }
        Some(d)
    }
}

fn poisoned() -> Ec2Error {
    Ec2Error::new(
        "internal",
        Ec2ErrorKind::Unavailable,
        None,
        "a lock was poisoned by a panic",
    )
}

fn user_data(init: &str) -> Result<Option<String>, SpecError> {
    use base64::Engine as _;
    if init.is_empty() {
        return Ok(None);
    }
    if init.len() > MAX_USER_DATA {
        return Err(SpecError::new(
            "Init",
            format!(
                "the boot script is {} bytes; EC2 user data holds at most {MAX_USER_DATA}",
                init.len()
            ),
        ));
    }
    Ok(Some(base64::engine::general_purpose::STANDARD.encode(init)))
}

#[async_trait]
impl Instance for Ec2Instance {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        Ec2Properties::parse(properties).map(|_| ())
    }

    /// EC2's API budget: 50 calls per second, bursts of 50 (the engine's share of a
    /// region's request-rate limits; override with `Plugins::instance_limited` or a spec's
    /// `RateLimit`).
    fn call_limit(&self) -> Option<infrakit_core::CallLimit> {
        Some(infrakit_core::CallLimit::per_second(50))
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        let p = Ec2Properties::parse(&spec.properties)?;
        let user_data = user_data(&spec.init)?;
        let ip = spec
            .logical_id
            .as_ref()
            .map(|l| {
                l.as_str().parse::<Ipv4Addr>().map_err(|_| {
                    SpecError::new(
                        "LogicalID",
                        format!("{l:?} is not an IPv4 address; EC2 logical IDs are private IPs"),
                    )
                })
            })
            .transpose()?;
        let cidrs = match (ip, p.subnet_ids.is_empty()) {
            (Some(_), false) => self.subnet_cidrs(&p.subnet_ids).await?,
            _ => BTreeMap::new(),
        };
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        let subnet = p.subnet_for(ip, &cidrs, turn)?;
        let devices = attachment_devices(
            p.attach_device
                .as_deref()
                .unwrap_or(crate::properties::DEFAULT_ATTACH_DEVICE),
            spec.attachments.len(),
        )
        .map_err(|reason| SpecError::new("AttachDevice", reason))?;

        // Checks before launching: nothing is started that could not be completed.
        let mut volumes = Vec::new();
        for (i, a) in spec.attachments.iter().enumerate() {
            volumes.push(self.resolve_volume(i, a).await?);
        }
        if let (Some(ip), Some(subnet)) = (ip, &subnet) {
            self.check_ip_free(ip, subnet).await?;
        }

        // Tags: the extra ones, then the spec's, then ours (which nothing may override).
        let mut tags = Tags::new();
        for (k, v) in &p.tags {
            tags.insert(k.clone(), v.clone());
        }
        tags.merge(&spec.tags);
        tags.merge(&self.inner.namespace);
        if let Some(ip) = ip {
            tags.insert(LOGICAL_ID_TAG, ip.to_string());
        }
        if !volumes.is_empty() {
            tags.insert(ATTACHED_VOLUMES_TAG, volumes.join(","));
        }
        let mut volume_tags = self.inner.namespace.clone();
        if let Some(g) = spec.tags.get(GROUP_TAG) {
            volume_tags.insert(GROUP_TAG, g);
        }
        let tag_spec = |kind: ResourceType, tags: &Tags| {
            TagSpecification::builder()
                .resource_type(kind)
                .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
                .build()
        };

        let mut request = self
            .inner
            .client
            .run_instances()
            .image_id(&p.image_id)
            .instance_type(InstanceType::from(p.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &volume_tags))
            .set_user_data(user_data)
            .set_key_name(p.key_name.clone());
        match &subnet {
            Some(subnet) => {
                let ni = p.security_group_ids.iter().fold(
                    InstanceNetworkInterfaceSpecification::builder()
                        .device_index(0)
                        .delete_on_termination(true)
                        .subnet_id(subnet)
                        .set_private_ip_address(ip.map(|ip| ip.to_string()))
                        .set_associate_public_ip_address(p.associate_public_ip_address),
                    |b, sg| b.groups(sg),
                );
                request = request.network_interfaces(ni.build());
            }
            None => {
                request = request.set_security_group_ids(
                    (!p.security_group_ids.is_empty()).then(|| p.security_group_ids.clone()),
                );
            }
        }
        if let Some(profile) = &p.iam_instance_profile {
            let b = IamInstanceProfileSpecification::builder();
            request = request.iam_instance_profile(if profile.starts_with("arn:") {
                b.arn(profile).build()
            } else {
                b.name(profile).build()
            });
        }
        if let Some(az) = &p.availability_zone {
            request = request.placement(Placement::builder().availability_zone(az).build());
        }
        for b in &p.block_device_mappings {
            let ebs = EbsBlockDevice::builder()
                .set_volume_size(b.volume_size)
                .set_volume_type(b.volume_type.as_deref().map(VolumeType::from))
                .set_delete_on_termination(b.delete_on_termination)
                .set_encrypted(b.encrypted)
                .build();
            request = request.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&b.device_name)
                    .ebs(ebs)
                    .build(),
            );
        }

        let fingerprint = TokenPool::fingerprint(&spec, &self.inner.namespace);
        let token = self.inner.tokens.take(&fingerprint);
        let launched = request.client_token(&token).send().await;
        let out = match launched {
            Ok(out) => {
                self.inner.tokens.done(&fingerprint, &token);
                out
            }
            Err(e) => {
                let e = Ec2Error::from_sdk("RunInstances", e);
                if e.outcome_unknown() {
                    // The launch may have happened: the next try reuses the token.
                    self.inner.tokens.give_back(&fingerprint, token);
                } else {
                    self.inner.tokens.done(&fingerprint, &token);
                }
                return Err(e.into());
            }
        };
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(InstanceId::from)
            .ok_or_else(|| InstanceError::Provider {
                message: "EC2 RunInstances answered without an instance".into(),
                transient: true,
            })?;
        tracing::info!(instance = %id, ip = ?ip, "launched");

        if !volumes.is_empty() {
            let attached = async {
                self.wait_running(&id).await?;
                for (volume, device) in volumes.iter().zip(&devices) {
                    self.inner
                        .client
                        .attach_volume()
                        .volume_id(volume)
                        .instance_id(id.as_str())
                        .device(device)
                        .send()
                        .await
                        .map_err(|e| Ec2Error::from_sdk("AttachVolume", e))?;
                    tracing::info!(instance = %id, volume = %volume, device = %device, "attached");
                }
                Ok::<(), InstanceError>(())
            }
            .await;
            if let Err(e) = attached {
                self.abandon(&id, &e).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        if self.find(id).await?.is_none() {
            return Err(InstanceError::NotFound { id: id.clone() });
        }
        let mut tags = labels.clone();
        tags.merge(&self.inner.namespace);
        self.inner
            .client
            .create_tags()
            .resources(id.as_str())
            .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateTags", e).into_instance_error(Some(id)))?;
        Ok(())
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        let Some(instance) = self.find(id).await? else {
            return Err(InstanceError::NotFound { id: id.clone() });
        };
        if matches!(state_of(&instance), "terminated" | "shutting-down") {
            return Err(InstanceError::NotFound { id: id.clone() });
        }
        if context == DestroyContext::RollingUpdate {
            let tags = tags_of(instance.tags());
            for volume in tags
                .get(ATTACHED_VOLUMES_TAG)
                .unwrap_or_default()
                .split(',')
                .filter(|v| !v.is_empty())
            {
                match self
                    .inner
                    .client
                    .detach_volume()
                    .volume_id(volume)
                    .instance_id(id.as_str())
                    .send()
                    .await
                {
                    Ok(_) => tracing::info!(instance = %id, volume, "detached for the replacement"),
                    // Already detached or detaching: what we wanted.
                    Err(e) => {
                        let e = Ec2Error::from_sdk("DetachVolume", e);
                        if !matches!(e.kind, Ec2ErrorKind::Conflict | Ec2ErrorKind::NotFound) {
                            return Err(e.into_instance_error(Some(id)));
                        }
                    }
                }
            }
        }
        self.inner
            .client
            .terminate_instances()
            .instance_ids(id.as_str())
            .send()
            .await
            .map_err(|e| {
                Ec2Error::from_sdk("TerminateInstances", e).into_instance_error(Some(id))
            })?;
        tracing::info!(instance = %id, reason = %context, "terminated");
        Ok(())
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        let filters = tags
            .iter()
            .map(|(k, v)| filter(format!("tag:{k}"), &[v]))
            .chain(std::iter::once(filter("instance-state-name", &LIVE_STATES)))
            .collect();
        let found = self.list(filters, &[]).await?;
        Ok(found
            .iter()
            .filter(|i| LIVE_STATES.contains(&state_of(i)))
            .filter_map(|i| self.describe_one(i, with_properties))
            .collect())
    }
}
