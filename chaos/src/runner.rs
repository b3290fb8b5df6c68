//! Runs a schedule through rds-csi's CSI API against an in-process rds-sim, as the sidecars and a
//! node would: every call with a short deadline, retried until it succeeds; then checks what the
//! RDS holds against what the workload believes.
//!
//! Determinism: the workload is sequential and every operation is retried until it converges, so
//! the operations, the names they create and the data they write depend on the seed alone; faults
//! are injected between operations, and the simulator draws its own randomness from the seed.
//! What timing still decides is how many attempts a call takes (a call cancelled at its deadline
//! may still be running in the driver when the next attempt arrives), so a one-shot fault aimed
//! at a command may strike a different attempt of the same operation on a replay.
//!
//! Whether the node plugin's steps run depends on the machine, not the seed: with root (loop
//! devices) the first node's stage, publish, expand, unpublish and unstage also go through
//! rds-csi's node service, and even-`fill` writes to a volume published there go through the
//! published block device instead of NVMe/TCP. The schedule, the names and the data are the same
//! either way, so a seed replays the same on machines that agree on [`Stats::node_skipped`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use rds_csi::csi::v1::{
    ControllerExpandVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteSnapshotRequest, DeleteVolumeRequest, VolumeContentSource,
};
use rds_e2e::config::Settings;
use rds_e2e::requests;
use rds_e2e::target::Target;
use rds_sim::faults::Fault;
use rds_sim::sim::Sim;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::kubelet::{self, Kubelet};
use crate::model::{Model, Snapshot, Volume, block_data, checksum, pick};
use crate::node::{Attachment, Endpoint, NodeError};
use crate::schedule::{Chaos, Op, Step, fault_kind};
use crate::{Failure, Plant};

/// The host NQNs of the nodes volumes are published to. The first is the `sim` target's own node,
/// whose node plugin stages what is published to it when the process can attach.
pub const NODE_IDS: [&str; 2] = [
    rds_e2e::target::SIM_NODE_ID,
    "nqn.2014-08.org.nvmexpress:uuid:c4a05000-0000-4000-8000-00000000000b",
];
/// The sidecars' `--timeout`, scaled down.
const DEADLINE: Duration = Duration::from_secs(2);
/// After an operation has retried this long, the lasting faults end (the pool is freed, the
/// latency goes), as they would while a sidecar keeps retrying.
const RELIEF: Duration = Duration::from_secs(3);
/// An operation still failing after this long has not converged.
const BUDGET: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// Which of the schedule's fault steps a run injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Faults {
    All,
    /// Only those at these step indices (a shrunk schedule).
    Only(BTreeSet<usize>),
}

impl Faults {
    fn includes(&self, step: usize) -> bool {
        match self {
            Faults::All => true,
            Faults::Only(kept) => kept.contains(&step),
        }
    }
}

/// Counts of one run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub steps: usize,
    /// Operations by kind, and the node plugin's steps (`node-stage`, `node-write`,
    /// `node-expand`, `node-unstage`) among them.
    pub ops: BTreeMap<&'static str, u64>,
    /// Operations that found nothing to act on (no volume to write, say).
    pub idle: u64,
    pub faults: BTreeMap<&'static str, u64>,
    /// Calls and I/Os made again after a failure.
    pub retries: u64,
    pub elapsed: Duration,
    /// Why the node plugin's steps did not run, when they did not.
    pub node_skipped: Option<String>,
}

impl Stats {
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// Called after each step with the run's counts so far.
pub type Progress<'a> = &'a mut dyn FnMut(&Stats);

pub struct Runner {
    target: Target,
    model: Model,
    endpoints: BTreeMap<String, Endpoint>,
    attached: BTreeMap<String, Attachment>,
    /// Kubelet on the first node, when this process can attach loop devices.
    kubelet: Option<Kubelet>,
    /// Volumes staged and published by the node plugin.
    staged: BTreeSet<String>,
    /// Lasting faults in force, with the operations they have left.
    lasting: Vec<(Fault, u32)>,
    plant: Option<Plant>,
    stats: Stats,
    started: Instant,
}

/// Codes a sidecar would not see for a well-formed call on an object that exists: the driver
/// answered wrongly, and retrying would hide it.
fn is_wrong(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Unimplemented
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

fn with_deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// The simulator's last command lines, oldest first.
fn last_commands(sim: &Sim) -> Vec<String> {
    let log = sim.log_since(0);
    let from = log.len().saturating_sub(30);
    log[from..]
        .iter()
        .map(|r| format!("#{} session {}: {}", r.seq, r.session, r.line))
        .collect()
}

/// The fault that ends a lasting one. Latency rules are only removed all at once.
fn ending(fault: &Fault) -> Fault {
    match fault {
        Fault::PoolFull { .. } => Fault::PoolFull { enabled: false },
        Fault::ExitStatusOnError { .. } => Fault::ExitStatusOnError { enabled: false },
        Fault::NvmeLatency { .. } => Fault::NvmeLatency { latency_ms: 0 },
        Fault::NvmeStall { .. } => Fault::NvmeStall { enabled: false },
        _ => Fault::Clear,
    }
}

impl Runner {
    /// Starts rds-sim (seeded with `seed`) and rds-csi serving the CSI API in-process.
    pub async fn start(seed: u64, plant: Option<Plant>) -> Result<Runner, Failure> {
        let mut settings = Settings::sim_defaults();
        settings.sim.seed = seed;
        settings.sim.max_volumes_per_node = 256;
        let target = Target::start_with(&settings, |config| {
            config.rds.connect_timeout_ms = 1_000;
            config.rds.command_timeout_ms = 5_000;
        })
        .await
        .map_err(|e| Failure::new("start", e.to_string()))?;
        let host = target.node_host();
        let (kubelet, node_skipped) = match host.can_attach() {
            Ok(()) => (Some(Kubelet::new(host.dir())), None),
            Err(skip) => (None, Some(skip.0)),
        };
        Ok(Runner {
            target,
            model: Model::default(),
            endpoints: BTreeMap::new(),
            attached: BTreeMap::new(),
            kubelet,
            staged: BTreeSet::new(),
            lasting: Vec::new(),
            plant,
            stats: Stats {
                node_skipped,
                ..Stats::default()
            },
            started: Instant::now(),
        })
    }

    fn sim(&self) -> &Sim {
        self.target.sim().expect("the sim target has a simulator")
    }

    fn controller(&self) -> ControllerClient<Channel> {
        self.target.controller()
    }

    fn node(&self) -> NodeClient<Channel> {
        self.target.node()
    }

    fn inject(&self, fault: &Fault) -> Result<(), Failure> {
        self.sim()
            .inject(fault)
            .map_err(|e| Failure::new("inject", e.to_string()))
    }

    /// Runs `steps` (the faults `faults` keeps), then checks the invariants, deletes everything
    /// and checks that nothing is left.
    pub async fn run(
        mut self,
        steps: &[Step],
        faults: &Faults,
        progress: Progress<'_>,
    ) -> (Stats, Result<(), Failure>) {
        let result = self.run_steps(steps, faults, progress).await;
        self.stats.elapsed = self.started.elapsed();
        // The node disconnects before the RDS goes away, and a failed run leaves no loop device.
        self.attached.clear();
        self.release_node().await;
        let _ = self.target.shutdown().await;
        (self.stats, result)
    }

    async fn run_steps(
        &mut self,
        steps: &[Step],
        faults: &Faults,
        progress: Progress<'_>,
    ) -> Result<(), Failure> {
        for (i, step) in steps.iter().enumerate() {
            let done = match step {
                Step::Fault(chaos) if faults.includes(i) => self.chaos(chaos),
                Step::Fault(_) => Ok(()),
                Step::Op(op) => match self.op(op).await {
                    Ok(()) => self.count_down(),
                    failed => failed,
                },
            };
            if let Err(mut failure) = done {
                failure.step = Some(i);
                failure.context = last_commands(self.sim());
                return Err(failure);
            }
            self.stats.steps = i + 1;
            self.stats.elapsed = self.started.elapsed();
            progress(&self.stats);
        }
        self.relieve()?;
        self.inject(&Fault::Clear)?;
        self.check()?;
        self.teardown().await?;
        self.check_empty()
    }

    fn chaos(&mut self, chaos: &Chaos) -> Result<(), Failure> {
        self.inject(&chaos.fault)?;
        if matches!(chaos.fault, Fault::Restart { .. } | Fault::NvmeDrop { .. }) {
            self.connections_closed()?;
        }
        *self
            .stats
            .faults
            .entry(fault_kind(&chaos.fault))
            .or_default() += 1;
        if chaos.lasting > 0 {
            self.lasting.push((chaos.fault.clone(), chaos.lasting));
        }
        Ok(())
    }

    /// rds-sim ends the NVMe/TCP connections a restart or a drop cuts in their own tasks, a moment
    /// after the fault returns: wait until every one is closed (the chaos schedules drop them all),
    /// so that the next step meets the cut however loaded the machine is, as a replay of the seed
    /// must (a write sent meanwhile on a connection not yet closed went through in one run and
    /// was lost in the next).
    fn connections_closed(&self) -> Result<(), Failure> {
        const WITHIN: Duration = Duration::from_secs(10);
        let deadline = Instant::now() + WITHIN;
        tokio::task::block_in_place(|| {
            loop {
                let open = self.sim().state().nvme_connections.len();
                if open == 0 {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(Failure::new(
                        "inject",
                        format!("{open} NVMe/TCP connections still open {WITHIN:?} after the cut"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }

    /// One operation done: lasting faults whose time is up end.
    fn count_down(&mut self) -> Result<(), Failure> {
        for (_, left) in &mut self.lasting {
            *left -= 1;
        }
        let (over, on): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lasting)
            .into_iter()
            .partition(|(_, left)| *left == 0);
        self.lasting = on;
        self.end(over.into_iter().map(|(f, _)| f).collect())
    }

    /// Ends every lasting fault.
    fn relieve(&mut self) -> Result<(), Failure> {
        let all = std::mem::take(&mut self.lasting);
        self.end(all.into_iter().map(|(f, _)| f).collect())
    }

    fn end(&mut self, faults: Vec<Fault>) -> Result<(), Failure> {
        let mut cleared = false;
        for fault in &faults {
            let end = ending(fault);
            cleared |= end == Fault::Clear;
            self.inject(&end)?;
        }
        if cleared {
            // A clear removed the lasting faults still in force too: back they go.
            for (fault, _) in &self.lasting {
                self.inject(fault)?;
            }
        }
        Ok(())
    }

    /// After a failed attempt: relief once the operation has retried long enough, failure once
    /// it has run out of budget, else a backoff.
    async fn retry_after(
        &mut self,
        started: Instant,
        backoff: &mut Duration,
        what: &str,
        last: &str,
    ) -> Result<(), Failure> {
        self.stats.retries += 1;
        if started.elapsed() > RELIEF && !self.lasting.is_empty() {
            self.relieve()?;
        }
        if started.elapsed() > BUDGET {
            return Err(Failure::new(
                "not-converged",
                format!("{what} still failing after {BUDGET:?}: {last}"),
            ));
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_millis(500));
        Ok(())
    }

    /// Calls the controller until it answers, as a sidecar does.
    async fn call<Q, T, F, Fut>(&mut self, what: &str, message: Q, f: F) -> Result<T, Failure>
    where
        Q: Clone,
        F: FnMut(ControllerClient<Channel>, Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let client = self.controller();
        self.call_on(client, what, message, f).await
    }

    /// Calls the node plugin until it answers, as kubelet does.
    async fn node_call<Q, T, F, Fut>(&mut self, what: &str, message: Q, f: F) -> Result<T, Failure>
    where
        Q: Clone,
        F: FnMut(NodeClient<Channel>, Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let client = self.node();
        self.call_on(client, what, message, f).await
    }

    async fn call_on<C, Q, T, F, Fut>(
        &mut self,
        client: C,
        what: &str,
        message: Q,
        mut f: F,
    ) -> Result<T, Failure>
    where
        C: Clone,
        Q: Clone,
        F: FnMut(C, Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            let status = match f(client.clone(), with_deadline(message.clone())).await {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(status) if is_wrong(status.code()) => {
                    return Err(Failure::new(
                        "wrong-answer",
                        format!("{what}: {:?} {}", status.code(), status.message()),
                    ));
                }
                Err(status) => status,
            };
            let last = format!("{:?} {}", status.code(), status.message());
            self.retry_after(started, &mut backoff, what, &last).await?;
        }
    }

    /// Runs `io` on the node's connection to volume `id`, connecting first and reconnecting
    /// after a failure, as the kernel's host does, until it succeeds.
    async fn node_io<T>(
        &mut self,
        id: &str,
        mut io: impl FnMut(&mut Attachment) -> Result<T, NodeError>,
    ) -> Result<T, Failure> {
        let endpoint = self.endpoints[id].clone();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            let attempt = tokio::task::block_in_place(|| {
                if !self.attached.contains_key(id) {
                    self.attached
                        .insert(id.to_owned(), Attachment::connect(&endpoint)?);
                }
                io(self.attached.get_mut(id).expect("just connected"))
            });
            let error = match attempt {
                Ok(done) => return Ok(done),
                Err(e) => e,
            };
            self.attached.remove(id);
            let what = format!("node I/O on {id} as {}", endpoint.host);
            self.retry_after(started, &mut backoff, &what, &error.to_string())
                .await?;
        }
    }

    async fn op(&mut self, op: &Op) -> Result<(), Failure> {
        let acted = match *op {
            Op::Create { mib } => {
                let name = self.model.next_name("vol");
                self.create(name, mib, None, BTreeMap::new()).await?;
                true
            }
            Op::Restore { pick: p } => match pick(self.model.snapshots.keys(), p) {
                Some(id) => {
                    let snapshot = self.model.snapshots[&id].clone();
                    let source = Type::Snapshot(SnapshotSource { snapshot_id: id });
                    let name = self.model.next_name("restore");
                    self.create(name, snapshot.mib, Some(source), snapshot.blocks)
                        .await?;
                    true
                }
                None => false,
            },
            Op::Clone { pick: p } => match pick(self.model.volumes.keys(), p) {
                Some(id) => {
                    let volume = self.model.volumes[&id].clone();
                    let source = Type::Volume(VolumeSource { volume_id: id });
                    let name = self.model.next_name("clone");
                    self.create(name, volume.mib, Some(source), volume.blocks)
                        .await?;
                    true
                }
                None => false,
            },
            Op::Snapshot { pick: p } => match pick(self.model.volumes.keys(), p) {
                Some(id) => self.snapshot(id).await.map(|()| true)?,
                None => false,
            },
            Op::DeleteSnapshot { pick: p } => match pick(self.model.snapshots.keys(), p) {
                Some(id) => self.delete_snapshot(id).await.map(|()| true)?,
                None => false,
            },
            Op::Publish { pick: p, node } => match pick(self.model.volumes.keys(), p) {
                Some(id) => self.publish(id, node).await.map(|()| true)?,
                None => false,
            },
            Op::Write {
                pick: p,
                block,
                fill,
            } => match pick(self.published(), p) {
                Some(id) => self.write(id, block, fill).await.map(|()| true)?,
                None => false,
            },
            Op::Read { pick: p } => match pick(self.published(), p) {
                Some(id) => self.read(id).await.map(|()| true)?,
                None => false,
            },
            Op::Expand { pick: p, mib } => match pick(self.model.volumes.keys(), p) {
                Some(id) => self.expand(id, mib).await.map(|()| true)?,
                None => false,
            },
            Op::Unpublish { pick: p } => match pick(self.published(), p) {
                Some(id) => self.unpublish(&id).await.map(|()| true)?,
                None => false,
            },
            Op::Delete { pick: p } => match pick(self.model.volumes.keys(), p) {
                Some(id) => self.delete(id).await.map(|()| true)?,
                None => false,
            },
        };
        if acted {
            *self.stats.ops.entry(op.kind()).or_default() += 1;
        } else {
            self.stats.idle += 1;
        }
        Ok(())
    }

    fn published(&self) -> impl Iterator<Item = &String> {
        self.model
            .volumes
            .iter()
            .filter(|(_, v)| v.node.is_some())
            .map(|(id, _)| id)
    }

    async fn create(
        &mut self,
        name: String,
        mib: u64,
        source: Option<Type>,
        blocks: crate::model::Blocks,
    ) -> Result<(), Failure> {
        let request = CreateVolumeRequest {
            volume_content_source: source.map(|t| VolumeContentSource { r#type: Some(t) }),
            ..requests::create_volume(&name, mib * MIB, &Default::default())
        };
        let what = format!("CreateVolume {name}");
        let answer = self
            .call(&what, request, |mut c, r| async move {
                c.create_volume(r).await
            })
            .await?;
        let volume = answer
            .volume
            .ok_or_else(|| Failure::new("wrong-answer", format!("{what}: no volume")))?;
        let want = rds_csi::ids::volume_id(&name).to_string();
        if volume.volume_id != want || volume.capacity_bytes < (mib * MIB) as i64 {
            return Err(Failure::new(
                "wrong-answer",
                format!(
                    "{what}: volume {} of {} bytes, expected {want} of {} bytes",
                    volume.volume_id,
                    volume.capacity_bytes,
                    mib * MIB
                ),
            ));
        }
        self.model.volumes.insert(
            want,
            Volume {
                name,
                mib,
                blocks,
                node: None,
            },
        );
        Ok(())
    }

    /// CreateSnapshot, called again until the snapshot is ready to use, as the snapshotter does.
    async fn snapshot(&mut self, source: String) -> Result<(), Failure> {
        let name = self.model.next_name("snap");
        let request = CreateSnapshotRequest {
            source_volume_id: source.clone(),
            name: name.clone(),
            ..Default::default()
        };
        let what = format!("CreateSnapshot {name} of {source}");
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        let snapshot = loop {
            let answer = self
                .call(&what, request.clone(), |mut c, r| async move {
                    c.create_snapshot(r).await
                })
                .await?;
            let snapshot = answer
                .snapshot
                .ok_or_else(|| Failure::new("wrong-answer", format!("{what}: no snapshot")))?;
            if snapshot.ready_to_use {
                break snapshot;
            }
            self.retry_after(started, &mut backoff, &what, "not ready to use")
                .await?;
        };
        let want = rds_csi::ids::snapshot_id(&name).to_string();
        if snapshot.snapshot_id != want || snapshot.source_volume_id != source {
            return Err(Failure::new(
                "wrong-answer",
                format!("{what}: {snapshot:?}, expected {want}"),
            ));
        }
        let volume = &self.model.volumes[&source];
        let taken = Snapshot {
            name,
            source,
            mib: volume.mib,
            blocks: volume.blocks.clone(),
        };
        self.model.snapshots.insert(want, taken);
        Ok(())
    }

    async fn delete_snapshot(&mut self, id: String) -> Result<(), Failure> {
        let request = DeleteSnapshotRequest {
            snapshot_id: id.clone(),
            ..Default::default()
        };
        self.call(
            &format!("DeleteSnapshot {id}"),
            request,
            |mut c, r| async move { c.delete_snapshot(r).await },
        )
        .await?;
        self.model.snapshots.remove(&id);
        Ok(())
    }

    /// ControllerPublishVolume to `node`, then the node connects. A volume published elsewhere is
    /// first unpublished, as the CO does when its Pod moves.
    async fn publish(&mut self, id: String, node: u8) -> Result<(), Failure> {
        match self.model.volumes[&id].node {
            Some(n) if n == node => return Ok(()),
            Some(_) => self.unpublish(&id).await?,
            None => {}
        }
        let host = NODE_IDS[usize::from(node)];
        let what = format!("ControllerPublishVolume {id} to {host}");
        let answer = self
            .call(&what, requests::publish(&id, host), |mut c, r| async move {
                c.controller_publish_volume(r).await
            })
            .await?;
        let context = answer.publish_context;
        self.connect(&id, host, &context, &what)?;
        self.model
            .volumes
            .get_mut(&id)
            .expect("picked from the model")
            .node = Some(node);
        // The node's stage: connected once, before the Pod starts.
        self.node_io(&id, |_| Ok(())).await?;
        match &self.kubelet {
            Some(kubelet) if node == 0 => {
                let kubelet = kubelet.clone();
                self.stage(&kubelet, &id, &context).await
            }
            _ => Ok(()),
        }
    }

    /// Where the node's NVMe/TCP host reaches volume `id`, from its publish context.
    fn connect(
        &mut self,
        id: &str,
        host: &str,
        context: &std::collections::HashMap<String, String>,
        what: &str,
    ) -> Result<(), Failure> {
        let endpoint = (|| {
            let address = context.get("address")?;
            let port: u16 = context.get("port")?.parse().ok()?;
            Some(Endpoint {
                addr: format!("{address}:{port}").parse().ok()?,
                nqn: context.get("nqn")?.clone(),
                host: host.to_owned(),
            })
        })()
        .ok_or_else(|| Failure::new("wrong-answer", format!("{what}: context {context:?}")))?;
        self.endpoints.insert(id.to_owned(), endpoint);
        Ok(())
    }

    /// NodeStageVolume, then NodePublishVolume, each retried as kubelet does.
    async fn stage(
        &mut self,
        kubelet: &Kubelet,
        id: &str,
        context: &std::collections::HashMap<String, String>,
    ) -> Result<(), Failure> {
        let request = kubelet
            .stage(id, context)
            .map_err(|e| Failure::new("node-host", format!("staging {id}: {e}")))?;
        self.node_call(
            &format!("NodeStageVolume {id}"),
            request,
            |mut c, r| async move { c.node_stage_volume(r).await },
        )
        .await?;
        self.staged.insert(id.to_owned());
        *self.stats.ops.entry("node-stage").or_default() += 1;
        self.node_call(
            &format!("NodePublishVolume {id}"),
            kubelet.publish(id, context),
            |mut c, r| async move { c.node_publish_volume(r).await },
        )
        .await?;
        Ok(())
    }

    /// NodeUnpublishVolume, then NodeUnstageVolume, each retried as kubelet does.
    async fn unstage(&mut self, kubelet: &Kubelet, id: &str) -> Result<(), Failure> {
        self.node_call(
            &format!("NodeUnpublishVolume {id}"),
            kubelet.unpublish(id),
            |mut c, r| async move { c.node_unpublish_volume(r).await },
        )
        .await?;
        self.node_call(
            &format!("NodeUnstageVolume {id}"),
            kubelet.unstage(id),
            |mut c, r| async move { c.node_unstage_volume(r).await },
        )
        .await?;
        self.staged.remove(id);
        *self.stats.ops.entry("node-unstage").or_default() += 1;
        Ok(())
    }

    /// After a failed run: one unpublish and unstage of whatever is still staged, so that no loop
    /// device outlives the run.
    async fn release_node(&mut self) {
        let Some(kubelet) = self.kubelet.clone() else {
            return;
        };
        let mut node = self.node();
        for id in std::mem::take(&mut self.staged) {
            let _ = node
                .node_unpublish_volume(with_deadline(kubelet.unpublish(&id)))
                .await;
            let _ = node
                .node_unstage_volume(with_deadline(kubelet.unstage(&id)))
                .await;
        }
    }

    async fn write(&mut self, id: String, block: u32, fill: u64) -> Result<(), Failure> {
        let data = block_data(fill);
        let sum = checksum(&data);
        if let Some(kubelet) = self.kubelet.as_ref().filter(|_| fill.is_multiple_of(2))
            && self.staged.contains(&id)
        {
            let device = kubelet.device(&id);
            tokio::task::block_in_place(|| kubelet::write_block(&device, block, &data)).map_err(
                |e| {
                    Failure::new(
                        "node-io",
                        format!("writing block {block} of {}: {e}", device.display()),
                    )
                },
            )?;
            self.model
                .volumes
                .get_mut(&id)
                .expect("picked")
                .blocks
                .insert(block, sum);
            *self.stats.ops.entry("node-write").or_default() += 1;
            return Ok(());
        }
        let ack_anyway = self.plant == Some(Plant::AckLostWrite);
        self.node_io(&id, |a| match a.write(block, data.clone()) {
            Err(_) if ack_anyway => Ok(()),
            done => done,
        })
        .await?;
        let volume = self.model.volumes.get_mut(&id).expect("picked");
        volume.blocks.insert(block, sum);
        Ok(())
    }

    async fn read(&mut self, id: String) -> Result<(), Failure> {
        let blocks = self.model.volumes[&id].blocks.clone();
        for (block, want) in blocks {
            let data = self.node_io(&id, |a| a.read(block)).await?;
            let got = checksum(&data);
            if got != want {
                return Err(Failure::new(
                    "lost-write",
                    format!(
                        "volume {id} block {block} reads back {got:08x} over NVMe/TCP, acknowledged {want:08x}"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn expand(&mut self, id: String, mib: u64) -> Result<(), Failure> {
        let total = self.model.volumes[&id].mib + mib;
        let request = ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(requests::exact_capacity(total * MIB)),
            volume_capability: Some(requests::single_node_writer()),
            ..Default::default()
        };
        let what = format!("ControllerExpandVolume {id} to {total} MiB");
        let answer = self
            .call(&what, request, |mut c, r| async move {
                c.controller_expand_volume(r).await
            })
            .await?;
        if answer.capacity_bytes < (total * MIB) as i64 {
            return Err(Failure::new(
                "wrong-answer",
                format!("{what}: {} bytes", answer.capacity_bytes),
            ));
        }
        self.model.volumes.get_mut(&id).expect("picked").mib = total;
        match self.kubelet.clone() {
            Some(kubelet) if self.staged.contains(&id) => {
                self.node_expand(&kubelet, &id, total * MIB).await
            }
            _ => Ok(()),
        }
    }

    /// NodeExpandVolume on the published device, as kubelet calls it after the resizer: then the
    /// Pod sees the new size.
    async fn node_expand(
        &mut self,
        kubelet: &Kubelet,
        id: &str,
        bytes: u64,
    ) -> Result<(), Failure> {
        let what = format!("NodeExpandVolume {id} to {bytes} bytes");
        self.node_call(&what, kubelet.expand(id, bytes), |mut c, r| async move {
            c.node_expand_volume(r).await
        })
        .await?;
        let device = kubelet.device(id);
        let seen = tokio::task::block_in_place(|| kubelet::device_bytes(&device))
            .map_err(|e| Failure::new("node-io", format!("{}: {e}", device.display())))?;
        if seen < bytes {
            return Err(Failure::new(
                "size",
                format!("{what}: the published device is {seen} bytes"),
            ));
        }
        *self.stats.ops.entry("node-expand").or_default() += 1;
        Ok(())
    }

    /// Kubelet unpublishes and unstages, the node disconnects, then ControllerUnpublishVolume.
    async fn unpublish(&mut self, id: &str) -> Result<(), Failure> {
        let Some(node) = self.model.volumes[id].node else {
            return Ok(());
        };
        if let Some(kubelet) = self.kubelet.clone().filter(|_| self.staged.contains(id)) {
            self.unstage(&kubelet, id).await?;
        }
        self.attached.remove(id);
        self.endpoints.remove(id);
        let host = NODE_IDS[usize::from(node)];
        let what = format!("ControllerUnpublishVolume {id} from {host}");
        self.call(
            &what,
            requests::unpublish(id, host),
            |mut c, r| async move { c.controller_unpublish_volume(r).await },
        )
        .await?;
        self.model.volumes.get_mut(id).expect("picked").node = None;
        Ok(())
    }

    async fn delete(&mut self, id: String) -> Result<(), Failure> {
        self.unpublish(&id).await?;
        let request = DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        };
        self.call(
            &format!("DeleteVolume {id}"),
            request,
            |mut c, r| async move { c.delete_volume(r).await },
        )
        .await?;
        self.model.volumes.remove(&id);
        Ok(())
    }

    /// Everything the workload made, unpublished and deleted.
    async fn teardown(&mut self) -> Result<(), Failure> {
        let volumes: Vec<String> = self.model.volumes.keys().cloned().collect();
        for id in volumes {
            self.delete(id).await?;
        }
        let snapshots: Vec<String> = self.model.snapshots.keys().cloned().collect();
        for id in snapshots {
            self.delete_snapshot(id).await?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Failure> {
        crate::invariants::check(self.sim(), &self.model, &NODE_IDS)?;
        self.check_host()
    }

    fn check_empty(&self) -> Result<(), Failure> {
        crate::invariants::check_empty(self.sim())?;
        self.check_host()
    }

    /// What the node plugin left on the host matches what is staged (nothing, after teardown).
    fn check_host(&self) -> Result<(), Failure> {
        let Some(kubelet) = &self.kubelet else {
            return Ok(());
        };
        let state = self
            .target
            .node_host()
            .state()
            .map_err(|e| Failure::new("node-host", e.to_string()))?;
        crate::invariants::check_host(&state, kubelet, &self.staged)
    }
}
