//! The embedded default provider: an in-process simulated cloud with fault injection.
//!
//! Use it to try the engine without any infrastructure, and to test your own controllers and
//! flavors against a provider that misbehaves on demand: latency, an error rate, throttling,
//! "the next N calls fail", lost responses (the provider did it but the caller got an error),
//! and outages (killing instances behind the controller's back). Deterministic given a seed.

use crate::error::Classify;
use crate::id::{InstanceId, LogicalId};
use crate::instance::{
    Description, DestroyContext, Instance, InstanceError, InstanceEvent, InstanceEvents,
    InstanceSpec,
};
use crate::spec_error::SpecError;
use crate::tags::Tags;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// One kind of simulator call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `validate`.
    Validate,
    /// `provision`.
    Provision,
    /// `label`.
    Label,
    /// `destroy`.
    Destroy,
    /// `describe`.
    Describe,
}

impl Op {
    /// True for calls that change infrastructure (provision, label, destroy).
    pub fn is_mutation(self) -> bool {
        matches!(self, Op::Provision | Op::Label | Op::Destroy)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Validate => "validate",
            Op::Provision => "provision",
            Op::Label => "label",
            Op::Destroy => "destroy",
            Op::Describe => "describe",
        })
    }
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The provider cannot be reached (transient).
    Unavailable,
    /// The provider throttles (transient, with a retry-after hint).
    Throttled,
    /// A permanent provider error.
    Permanent,
}

impl Fault {
    fn error(self, op: Op) -> InstanceError {
        match self {
            Fault::Unavailable => InstanceError::Unavailable {
                message: format!("simulated outage during {op}"),
            },
            Fault::Throttled => InstanceError::Throttled {
                message: format!("simulated throttling of {op}: Rate exceeded"),
                retry_after: Some(Duration::from_millis(20)),
            },
            Fault::Permanent => InstanceError::Provider {
                message: format!("simulated permanent failure of {op}"),
                transient: false,
            },
        }
    }
}

/// One call the simulator received, in order. The log is how tests assert what a controller
/// did (e.g. "no mutation after the term ended") without sleeping.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Call {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it was received.
    pub at: Instant,
    /// Who called (see [`Simulator::with_caller`]).
    pub caller: Option<String>,
    /// What was called.
    pub op: Op,
    /// The instance concerned: the one created, labeled or destroyed.
    pub instance: Option<InstanceId>,
    /// The logical ID of a provision.
    pub logical_id: Option<LogicalId>,
    /// The tags of a provision or describe query.
    pub tags: Tags,
    /// The destroy reason.
    pub context: Option<DestroyContext>,
    /// `Err` with the error text if the call failed.
    pub outcome: Result<(), String>,
}

/// A simulated instance.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SimInstance {
    /// Its ID.
    pub id: InstanceId,
    /// The spec it was provisioned with (tags updated by `label`).
    pub spec: InstanceSpec,
    /// Creation order.
    pub created: u64,
}

impl SimInstance {
    fn describe(&self, with_properties: bool) -> Description {
        Description {
            id: self.id.clone(),
            logical_id: self.spec.logical_id.clone(),
            tags: self.spec.tags.clone(),
            properties: with_properties.then(|| {
                json!({
                    "State": "running",
                    "Created": self.created,
                    "Properties": self.spec.properties,
                    "Attachments": self.spec.attachments,
                    "Init": self.spec.init,
                })
            }),
        }
    }
}

/// Configuration of a [`Simulator`]; see [`Simulator::builder`].
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    seed: u64,
    latency: Duration,
    jitter: Duration,
    error_rate: f64,
    throttle_rate: f64,
    lost_response_rate: f64,
    exclusive: bool,
    id_prefix: String,
    event_capacity: usize,
    log_calls: bool,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        Self {
            seed: 0x5eed,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            error_rate: 0.0,
            throttle_rate: 0.0,
            lost_response_rate: 0.0,
            exclusive: true,
            id_prefix: "sim-".into(),
            event_capacity: 4096,
            log_calls: true,
        }
    }
}

impl SimulatorBuilder {
    /// Seed of the fault and jitter decisions (same seed, same calls: same outcomes).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Latency added to every call.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Up to this much extra random latency per call.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Fraction (0..=1) of calls that fail with [`Fault::Unavailable`].
    #[must_use]
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Fraction (0..=1) of calls that fail with [`Fault::Throttled`].
    #[must_use]
    pub fn throttle_rate(mut self, rate: f64) -> Self {
        self.throttle_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Fraction (0..=1) of successful provisions whose answer is lost: the instance exists
    /// but the caller gets [`InstanceError::Unavailable`].
    #[must_use]
    pub fn lost_response_rate(mut self, rate: f64) -> Self {
        self.lost_response_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Whether a logical ID and an attachment can belong to one live instance only, as an
    /// IP address or an EBS volume can (default true). A provision that breaks this fails
    /// with [`InstanceError::Conflict`].
    #[must_use]
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Prefix of instance IDs (default `sim-`).
    #[must_use]
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = prefix.into();
        self
    }

    /// Whether to keep the call log (default true; turn off for long benchmarks).
    #[must_use]
    pub fn log_calls(mut self, on: bool) -> Self {
        self.log_calls = on;
        self
    }

    /// Builds the simulator.
    pub fn build(self) -> Simulator {
        let (events, _) = broadcast::channel(self.event_capacity.max(1));
        Simulator {
            inner: Arc::new(Inner {
                events,
                state: Mutex::new(State {
                    rng: SplitMix64(self.seed),
                    next_id: 1,
                    instances: BTreeMap::new(),
                    holders: HashMap::new(),
                    fail_next: VecDeque::new(),
                    calls: Vec::new(),
                    error_rate: self.error_rate,
                    throttle_rate: self.throttle_rate,
                    lost_response_rate: self.lost_response_rate,
                    latency: self.latency,
                    jitter: self.jitter,
                    log_calls: self.log_calls,
                }),
                exclusive: self.exclusive,
                id_prefix: self.id_prefix,
            }),
            caller: None,
        }
    }
}

/// The embedded simulated provider. Clones (and [`with_caller`](Self::with_caller) views)
/// share one simulated cloud.
///
/// ```
/// use infrakit_core::{Instance, InstanceSpec, Simulator, Tags, simulator::Fault};
/// use futures::StreamExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let sim = Simulator::builder().seed(7).build();
/// let mut events = sim.events().unwrap();
/// let id = sim
///     .provision(InstanceSpec::default().with_tag("infrakit.group", "workers"))
///     .await
///     .unwrap();
///
/// // An outage: the instance dies behind the controller's back, and says so.
/// assert!(sim.kill(&id));
/// let _provisioned = events.next().await;
/// assert!(matches!(events.next().await, Some(infrakit_core::InstanceEvent::Gone { .. })));
///
/// // The next call fails, then the provider recovers.
/// sim.fail_next(1, Fault::Throttled);
/// assert!(sim.describe(&Tags::new(), false).await.is_err());
/// assert!(sim.describe(&Tags::new(), false).await.unwrap().is_empty());
/// # });
/// ```
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    caller: Option<Arc<str>>,
}

struct Inner {
    events: broadcast::Sender<InstanceEvent>,
    state: Mutex<State>,
    exclusive: bool,
    id_prefix: String,
}

struct State {
    rng: SplitMix64,
    next_id: u64,
    instances: BTreeMap<InstanceId, SimInstance>,
    /// Who holds each logical ID and attachment (for the exclusivity check in O(1)).
    holders: HashMap<Holding, InstanceId>,
    fail_next: VecDeque<Fault>,
    calls: Vec<Call>,
    error_rate: f64,
    throttle_rate: f64,
    lost_response_rate: f64,
    latency: Duration,
    jitter: Duration,
    log_calls: bool,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Simulator")
            .field("caller", &self.caller)
            .field("instances", &st.instances.len())
            .field("calls", &st.calls.len())
            .finish()
    }
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    /// A simulator with no latency and no faults.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a simulator.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// A view of the same simulated cloud whose calls are logged as made by `caller`
    /// (e.g. one view per replica).
    #[must_use]
    pub fn with_caller(&self, caller: impl Into<String>) -> Simulator {
        Simulator {
            inner: Arc::clone(&self.inner),
            caller: Some(Arc::from(caller.into())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation of the state completes under the lock without panicking paths, so a
        // poisoned lock (a panic elsewhere in the holder) leaves consistent data.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- fault injection and outages ----

    /// The next `n` calls (of any kind) fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.lock().fail_next.extend(std::iter::repeat_n(fault, n));
    }

    /// Sets the fraction of calls failing with [`Fault::Unavailable`].
    pub fn set_error_rate(&self, rate: f64) {
        self.lock().error_rate = rate.clamp(0.0, 1.0);
    }

    /// Sets the fraction of calls failing with [`Fault::Throttled`].
    pub fn set_throttle_rate(&self, rate: f64) {
        self.lock().throttle_rate = rate.clamp(0.0, 1.0);
    }

    /// Sets the fraction of provisions whose answer is lost.
    pub fn set_lost_response_rate(&self, rate: f64) {
        self.lock().lost_response_rate = rate.clamp(0.0, 1.0);
    }

    /// Sets the latency of every call.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Kills an instance outside anyone's control (an outage). Returns false if it was not
    /// alive. Emits [`InstanceEvent::Gone`].
    pub fn kill(&self, id: &InstanceId) -> bool {
        let removed = self.lock().take(id);
        match removed {
            Some(inst) => {
                tracing::debug!(%id, "simulator: instance killed");
                self.emit(InstanceEvent::Gone {
                    id: inst.id,
                    tags: inst.spec.tags,
                });
                true
            }
            None => false,
        }
    }

    /// Kills every instance whose tags contain `tags`; returns their IDs.
    pub fn kill_where(&self, tags: &Tags) -> Vec<InstanceId> {
        let victims: Vec<SimInstance> = {
            let mut st = self.lock();
            let ids: Vec<InstanceId> = st
                .instances
                .values()
                .filter(|i| i.spec.tags.contains_all(tags))
                .map(|i| i.id.clone())
                .collect();
            ids.iter().filter_map(|id| st.take(id)).collect()
        };
        victims
            .into_iter()
            .map(|inst| {
                self.emit(InstanceEvent::Gone {
                    id: inst.id.clone(),
                    tags: inst.spec.tags,
                });
                inst.id
            })
            .collect()
    }

    /// Creates an instance directly, as if made by hand outside infrakit (no call logged,
    /// no fault applied). Useful to test adoption and "never touch what you don't own".
    pub fn insert(&self, spec: InstanceSpec) -> InstanceId {
        let inst = {
            let mut st = self.lock();
            let id = self.next_id(&mut st);
            let created = st.next_id;
            let inst = SimInstance {
                id: id.clone(),
                spec,
                created,
            };
            st.add(inst.clone());
            inst
        };
        self.emit(InstanceEvent::Provisioned {
            id: inst.id.clone(),
            tags: inst.spec.tags,
        });
        inst.id
    }

    // ---- inspection ----

    /// Every live instance, in creation order.
    pub fn instances(&self) -> Vec<SimInstance> {
        let mut all: Vec<SimInstance> = self.lock().instances.values().cloned().collect();
        all.sort_by_key(|i| i.created);
        all
    }

    /// One live instance.
    pub fn get(&self, id: &InstanceId) -> Option<SimInstance> {
        self.lock().instances.get(id).cloned()
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.lock().instances.len()
    }

    /// True if no instance is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The call log so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    // ---- internals ----

    fn next_id(&self, st: &mut State) -> InstanceId {
        let n = st.next_id;
        st.next_id += 1;
        InstanceId::new(format!("{}{n:06}", self.inner.id_prefix))
    }

    fn emit(&self, event: InstanceEvent) {
        // No subscriber is not an error: events are hints.
        let _ = self.inner.events.send(event);
    }

    async fn delay(&self) {
        let d = {
            let mut st = self.lock();
            let jitter = if st.jitter.is_zero() {
                Duration::ZERO
            } else {
                st.jitter.mul_f64(st.rng.next_f64())
            };
            st.latency + jitter
        };
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Decides whether this call fails.
    fn fault(st: &mut State) -> Option<Fault> {
        if let Some(f) = st.fail_next.pop_front() {
            return Some(f);
        }
        if st.error_rate > 0.0 && st.rng.next_f64() < st.error_rate {
            return Some(Fault::Unavailable);
        }
        if st.throttle_rate > 0.0 && st.rng.next_f64() < st.throttle_rate {
            return Some(Fault::Throttled);
        }
        None
    }

    fn log(&self, st: &mut State, mut call: Call) {
        if st.log_calls {
            call.seq = st.calls.len() as u64;
            call.caller = self.caller.as_deref().map(str::to_owned);
            st.calls.push(call);
        }
    }

    fn call(op: Op) -> Call {
        Call {
            seq: 0,
            at: Instant::now(),
            caller: None,
            op,
            instance: None,
            logical_id: None,
            tags: Tags::new(),
            context: None,
            outcome: Ok(()),
        }
    }

    fn conflict(&self, st: &State, spec: &InstanceSpec) -> Option<InstanceError> {
        if !self.inner.exclusive {
            return None;
        }
        holdings(spec).find_map(|h| {
            let holder = st.holders.get(&h)?;
            Some(InstanceError::Conflict {
                message: match h {
                    Holding::LogicalId(l) => format!("logical ID {l} is in use by {holder}"),
                    Holding::Attachment(a) => {
                        format!("attachment {} is attached to {holder}", a.id)
                    }
                },
            })
        })
    }
}

#[async_trait]
impl Instance for Simulator {
    async fn validate(&self, properties: &Value) -> Result<(), InstanceError> {
        self.delay().await;
        let mut st = self.lock();
        let mut call = Self::call(Op::Validate);
        let result = match Self::fault(&mut st) {
            Some(f) => Err(f.error(Op::Validate)),
            None if properties.is_object() || properties.is_null() => Ok(()),
            None => Err(InstanceError::InvalidProperties(SpecError::new(
                "",
                "the simulator takes a JSON object (or null)",
            ))),
        };
        call.outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        self.log(&mut st, call);
        result
    }

    async fn provision(&self, spec: InstanceSpec) -> Result<InstanceId, InstanceError> {
        self.delay().await;
        let (result, event) = {
            let mut st = self.lock();
            let mut call = Self::call(Op::Provision);
            // What nobody records or watches is not copied.
            if st.log_calls {
                call.logical_id = spec.logical_id.clone();
                call.tags = spec.tags.clone();
            }
            let watched = self.inner.events.receiver_count() > 0;
            let outcome = if let Some(f) = Self::fault(&mut st) {
                (Err(f.error(Op::Provision)), None)
            } else if let Some(conflict) = self.conflict(&st, &spec) {
                (Err(conflict), None)
            } else {
                let id = self.next_id(&mut st);
                let created = st.next_id;
                let tags = watched.then(|| spec.tags.clone());
                st.add(SimInstance {
                    id: id.clone(),
                    spec,
                    created,
                });
                if st.log_calls {
                    call.instance = Some(id.clone());
                }
                let lost = st.lost_response_rate > 0.0 && st.rng.next_f64() < st.lost_response_rate;
                let event = tags.map(|tags| InstanceEvent::Provisioned {
                    id: id.clone(),
                    tags,
                });
                if lost {
                    let err = InstanceError::Unavailable {
                        message: "simulated lost response: the provision may have happened".into(),
                    };
                    (Err(err), event)
                } else {
                    (Ok(id), event)
                }
            };
            if st.log_calls {
                call.outcome = outcome.0.as_ref().map(|_| ()).map_err(ToString::to_string);
                self.log(&mut st, call);
            }
            outcome
        };
        if let Some(e) = event {
            self.emit(e);
        }
        if let Err(e) = &result {
            tracing::debug!(error = %e, transient = e.is_transient(), "simulator: provision failed");
        }
        result
    }

    async fn label(&self, id: &InstanceId, labels: &Tags) -> Result<(), InstanceError> {
        self.delay().await;
        let (result, event) = {
            let mut st = self.lock();
            let mut call = Self::call(Op::Label);
            call.instance = Some(id.clone());
            call.tags = labels.clone();
            let outcome = if let Some(f) = Self::fault(&mut st) {
                (Err(f.error(Op::Label)), None)
            } else if let Some(inst) = st.instances.get_mut(id) {
                inst.spec.tags.merge(labels);
                let event = InstanceEvent::Relabeled {
                    id: id.clone(),
                    tags: inst.spec.tags.clone(),
                };
                (Ok(()), Some(event))
            } else {
                (Err(InstanceError::NotFound { id: id.clone() }), None)
            };
            call.outcome = outcome.0.clone().map_err(|e| e.to_string());
            self.log(&mut st, call);
            outcome
        };
        if let Some(e) = event {
            self.emit(e);
        }
        result
    }

    async fn destroy(&self, id: &InstanceId, context: DestroyContext) -> Result<(), InstanceError> {
        self.delay().await;
        let (result, event) = {
            let mut st = self.lock();
            let mut call = Self::call(Op::Destroy);
            call.instance = Some(id.clone());
            call.context = Some(context);
            let outcome = if let Some(f) = Self::fault(&mut st) {
                (Err(f.error(Op::Destroy)), None)
            } else if let Some(inst) = st.take(id) {
                call.tags = inst.spec.tags.clone();
                let event = InstanceEvent::Gone {
                    id: inst.id,
                    tags: inst.spec.tags,
                };
                (Ok(()), Some(event))
            } else {
                (Err(InstanceError::NotFound { id: id.clone() }), None)
            };
            call.outcome = outcome.0.clone().map_err(|e| e.to_string());
            self.log(&mut st, call);
            outcome
        };
        if let Some(e) = event {
            self.emit(e);
        }
        result
    }

    async fn describe(
        &self,
        tags: &Tags,
        with_properties: bool,
    ) -> Result<Vec<Description>, InstanceError> {
        self.delay().await;
        let mut st = self.lock();
        let mut call = Self::call(Op::Describe);
        if st.log_calls {
            call.tags = tags.clone();
        }
        let result = match Self::fault(&mut st) {
            Some(f) => Err(f.error(Op::Describe)),
            None => {
                let mut found: Vec<&SimInstance> = st
                    .instances
                    .values()
                    .filter(|i| i.spec.tags.contains_all(tags))
                    .collect();
                found.sort_by_key(|i| i.created);
                Ok(found
                    .into_iter()
                    .map(|i| i.describe(with_properties))
                    .collect())
            }
        };
        call.outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        self.log(&mut st, call);
        result
    }

    fn events(&self) -> Option<InstanceEvents> {
        let stream = BroadcastStream::new(self.inner.events.subscribe()).map(|item| match item {
            Ok(event) => event,
            Err(_lagged) => InstanceEvent::Lagged,
        });
        Some(Box::pin(stream))
    }
}

/// Something only one live instance can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holding {
    LogicalId(LogicalId),
    Attachment(crate::instance::Attachment),
}

fn holdings(spec: &InstanceSpec) -> impl Iterator<Item = Holding> + '_ {
    spec.logical_id
        .iter()
        .cloned()
        .map(Holding::LogicalId)
        .chain(spec.attachments.iter().cloned().map(Holding::Attachment))
}

impl State {
    fn add(&mut self, inst: SimInstance) {
        for h in holdings(&inst.spec) {
            self.holders.insert(h, inst.id.clone());
        }
        self.instances.insert(inst.id.clone(), inst);
    }

    fn take(&mut self, id: &InstanceId) -> Option<SimInstance> {
        let inst = self.instances.remove(id)?;
        for h in holdings(&inst.spec) {
            if self.holders.get(&h) == Some(id) {
                self.holders.remove(&h);
            }
        }
        Some(inst)
    }
}

/// A small, fast, deterministic generator (SplitMix64): reproducible faults without a
/// dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
