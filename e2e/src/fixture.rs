//! One case's view of a target: CSI clients, the volumes, snapshots and publications the case made (undone
//! by [`Fixture::cleanup`]), and the checks every bad-input case makes — the gRPC code, and the
//! RDS's state before and after.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::controller_service_capability::rpc::Type as ControllerCapability;
use rds_csi::csi::v1::identity_client::IdentityClient;
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::{
    ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteSnapshotRequest, DeleteVolumeRequest, ListVolumesRequest, NodeGetInfoRequest,
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest, Snapshot, Volume,
};
use rds_sim::sim::Sim;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use crate::config::{SanitySettings, Settings};
use crate::node_host::HostState;
use crate::observed::Observed;
use crate::requests;
use crate::suite::Skip;
use crate::target::{Target, TargetError};

/// A target plus what one case created on it.
pub struct Fixture {
    target: Target,
    sanity: SanitySettings,
    volumes: Vec<String>,
    snapshots: Vec<String>,
    publications: Vec<(String, String)>,
    /// Node stagings and publications as (volume id, path), undone before the controller's.
    stagings: Vec<(String, String)>,
    node_publications: Vec<(String, String)>,
}

/// The target as a run of cases on it found it: what [`Fixture::leftovers`] compares with.
#[derive(Debug)]
pub struct Baseline {
    node: HostState,
    rds: Observed,
}

/// The node a case publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    /// How many volumes the controller lets one node attach.
    pub max_volumes: u64,
}

impl Fixture {
    /// Starts the target `settings` name.
    pub async fn start(settings: &Settings) -> Result<Fixture, TargetError> {
        Ok(Fixture::new(
            Target::start(settings).await?,
            settings.sanity.clone(),
        ))
    }

    pub fn new(target: Target, sanity: SanitySettings) -> Fixture {
        Fixture {
            target,
            sanity,
            volumes: Vec::new(),
            snapshots: Vec::new(),
            publications: Vec::new(),
            stagings: Vec::new(),
            node_publications: Vec::new(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The simulator, or a [`Skip`] naming `why` it is needed on targets without one.
    pub fn require_sim(&self, why: &str) -> Result<&Arc<Sim>, Skip> {
        self.target.sim().ok_or_else(|| {
            Skip(format!(
                "needs rds-sim ({why}); the {} target has no simulator handle",
                self.target.kind()
            ))
        })
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        self.target.identity()
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        self.target.controller()
    }

    pub fn node(&self) -> NodeClient<Channel> {
        self.target.node()
    }

    /// Capacity of the volumes the cases create.
    pub fn volume_size(&self) -> u64 {
        self.sanity.volume_size
    }

    /// The StorageClass parameters every case's volume carries.
    pub fn volume_parameters(&self) -> HashMap<String, String> {
        self.sanity
            .volume_parameters
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// The mutable parameters (a VolumeAttributeClass) of the ModifyVolume cases.
    pub fn volume_mutable_parameters(&self) -> HashMap<String, String> {
        self.sanity
            .volume_mutable_parameters
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// The sanity settings the fixture was started with.
    pub fn sanity(&self) -> &SanitySettings {
        &self.sanity
    }

    /// csi-sanity's `MakeCreateVolumeReq`: exactly the test size, single-node writer.
    pub fn create_request(&self, name: &str) -> CreateVolumeRequest {
        requests::create_volume(name, self.volume_size(), &self.volume_parameters())
    }

    /// CreateVolume, remembering the volume for cleanup when it succeeds.
    pub async fn create_volume(&mut self, request: CreateVolumeRequest) -> Result<Volume, Status> {
        let response = self.controller().create_volume(request).await?.into_inner();
        let volume = response
            .volume
            .ok_or_else(|| Status::internal("CreateVolumeResponse carries no volume"))?;
        self.track_volume(&volume.volume_id);
        Ok(volume)
    }

    /// CreateSnapshot, remembering the snapshot for cleanup when it succeeds.
    pub async fn create_snapshot(
        &mut self,
        request: CreateSnapshotRequest,
    ) -> Result<Snapshot, Status> {
        let response = self
            .controller()
            .create_snapshot(request)
            .await?
            .into_inner();
        let snapshot = response
            .snapshot
            .ok_or_else(|| Status::internal("CreateSnapshotResponse carries no snapshot"))?;
        if !self.snapshots.contains(&snapshot.snapshot_id) {
            self.snapshots.push(snapshot.snapshot_id.clone());
        }
        Ok(snapshot)
    }

    /// Remembers a volume the case created by other means, for cleanup.
    pub fn track_volume(&mut self, volume_id: &str) {
        if !self.volumes.iter().any(|v| v == volume_id) {
            self.volumes.push(volume_id.to_owned());
        }
    }

    /// Creates a volume named `name` from [`Fixture::create_request`]; any error fails the case.
    pub async fn must_create(&mut self, name: &str) -> anyhow::Result<Volume> {
        let request = self.create_request(name);
        let volume = self
            .create_volume(request)
            .await
            .with_context(|| format!("CreateVolume {name:?}"))?;
        ensure!(
            !volume.volume_id.is_empty(),
            "CreateVolume {name:?} returned an empty volume_id"
        );
        Ok(volume)
    }

    /// ControllerPublishVolume, remembering the publication for cleanup when it succeeds.
    pub async fn publish(
        &mut self,
        request: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse, Status> {
        let publication = (request.volume_id.clone(), request.node_id.clone());
        let response = self
            .controller()
            .controller_publish_volume(request)
            .await?
            .into_inner();
        if !self.publications.contains(&publication) {
            self.publications.push(publication);
        }
        Ok(response)
    }

    /// A fresh staging path and target path for one volume, under the target's node directory
    /// (csi-sanity's `--csi.stagingdir` and `--csi.mountdir`). The staging directory exists, as
    /// the CO makes it; the target path's parent exists, as the CO makes it.
    pub fn node_paths(&self, name: &str) -> anyhow::Result<(String, String)> {
        let host = self.target.node_host();
        let base = host.dir().join(requests::unique_name(name));
        let staging = base.join("staging");
        host.create_dir_all(&staging)?;
        host.create_dir_all(&base.join("pod"))?;
        let target = base.join("pod").join("mount");
        Ok((staging.display().to_string(), target.display().to_string()))
    }

    /// Skips the case when the node cannot attach volumes here: on `sim`, loop mode needs root
    /// and loop devices.
    pub fn require_node_attach(&self) -> Result<(), Skip> {
        self.target.node_host().can_attach()
    }

    /// NodeStageVolume, remembering the staging for cleanup when it succeeds.
    pub async fn node_stage(&mut self, request: NodeStageVolumeRequest) -> Result<(), Status> {
        let staging = (
            request.volume_id.clone(),
            request.staging_target_path.clone(),
        );
        self.node().node_stage_volume(request).await?;
        if !self.stagings.contains(&staging) {
            self.stagings.push(staging);
        }
        Ok(())
    }

    /// NodePublishVolume, remembering the publication for cleanup when it succeeds.
    pub async fn node_publish(&mut self, request: NodePublishVolumeRequest) -> Result<(), Status> {
        let publication = (request.volume_id.clone(), request.target_path.clone());
        self.node().node_publish_volume(request).await?;
        if !self.node_publications.contains(&publication) {
            self.node_publications.push(publication);
        }
        Ok(())
    }

    /// The node's mounts and attachments now.
    pub fn host_state(&self) -> anyhow::Result<HostState> {
        self.target.node_host().state()
    }

    /// Runs a Node call, which must fail with `code` and leave the RDS and the node's mounts and
    /// attachments exactly as they were.
    pub async fn node_rejects<T>(
        &self,
        code: Code,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> anyhow::Result<Status> {
        let before = self.host_state()?;
        let status = self.rejects(code, call).await?;
        let after = self.host_state()?;
        ensure!(
            before == after,
            "the refused call changed the node: before {before:?}, after {after:?}"
        );
        Ok(status)
    }

    /// The node to publish to: what NodeGetInfo reports, or, while the driver serves no node
    /// service, the target's node ID and the controller's configured attach limit.
    pub async fn node_info(&self) -> anyhow::Result<NodeInfo> {
        let configured = self.target.driver_config().controller.max_volumes_per_node;
        match self.node().node_get_info(NodeGetInfoRequest {}).await {
            Ok(response) => {
                let info = response.into_inner();
                ensure!(!info.node_id.is_empty(), "NodeGetInfo returned no node_id");
                Ok(NodeInfo {
                    node_id: info.node_id,
                    max_volumes: u64::try_from(info.max_volumes_per_node)
                        .ok()
                        .filter(|n| *n > 0)
                        .unwrap_or(configured),
                })
            }
            Err(status) if status.code() == Code::Unimplemented => Ok(NodeInfo {
                node_id: self.target.node_id().to_owned(),
                max_volumes: configured,
            }),
            Err(status) => Err(status).context("NodeGetInfo"),
        }
    }

    /// Whether ControllerGetCapabilities lists `capability`.
    pub async fn has_capability(&self, capability: ControllerCapability) -> anyhow::Result<bool> {
        let capabilities = self
            .controller()
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .context("ControllerGetCapabilities")?
            .into_inner()
            .capabilities;
        Ok(capabilities.iter().any(|c| {
            matches!(
                c.r#type,
                Some(rds_csi::csi::v1::controller_service_capability::Type::Rpc(rpc))
                    if rpc.r#type == capability as i32
            )
        }))
    }

    /// Skips the case, as csi-sanity does, when the controller does not advertise `capability`.
    pub async fn require_capability(&self, capability: ControllerCapability) -> anyhow::Result<()> {
        if self.has_capability(capability).await? {
            Ok(())
        } else {
            Err(Skip(format!(
                "the controller does not advertise {}",
                capability.as_str_name()
            ))
            .into())
        }
    }

    /// The RDS's contents now: rds-sim's disks and files, or the driver's volume list.
    pub async fn observe(&self) -> anyhow::Result<Observed> {
        if let Some(sim) = self.target.sim() {
            return Ok(Observed::of_sim(sim));
        }
        let mut listed = BTreeMap::new();
        let mut token = String::new();
        loop {
            let page = self
                .controller()
                .list_volumes(ListVolumesRequest {
                    max_entries: 0,
                    starting_token: token,
                })
                .await
                .context("ListVolumes, to observe the RDS")?
                .into_inner();
            for entry in page.entries {
                let volume = entry
                    .volume
                    .context("a ListVolumes entry without a volume")?;
                listed.insert(volume.volume_id, volume.capacity_bytes);
            }
            if page.next_token.is_empty() {
                return Ok(Observed::Listed(listed));
            }
            token = page.next_token;
        }
    }

    /// The node's mounts and attachments and the RDS's contents now, for
    /// [`Fixture::leftovers`].
    pub async fn baseline(&self) -> anyhow::Result<Baseline> {
        Ok(Baseline {
            node: self.host_state()?,
            rds: self.observe_without_volume_dir().await?,
        })
    }

    /// What the target holds beyond `baseline`, one line each: mounts under the node's directory,
    /// attachments (loop devices over rds-sim's files, or NVMe/TCP controllers of the driver's
    /// subsystems), disks and files on the RDS; and a node that no longer answers. Empty when
    /// the target is as `baseline` found it, so a case after this one starts as the first did.
    pub async fn leftovers(&self, baseline: &Baseline) -> anyhow::Result<Vec<String>> {
        let mut left = Vec::new();
        if let Err(e) = self.node_info().await {
            left.push(format!("the node does not answer: {e:#}"));
        }
        let node = self.host_state()?;
        let added = |what: &str, before: &[String], now: Vec<String>| {
            now.into_iter()
                .filter(|item| !before.contains(item))
                .map(|item| format!("+ {what} {item}"))
                .collect::<Vec<_>>()
        };
        left.extend(added("mount", &baseline.node.mounts, node.mounts));
        left.extend(added(
            "attachment",
            &baseline.node.attachments,
            node.attachments,
        ));
        let rds = self.observe_without_volume_dir().await?;
        left.extend(rds.changes_since(&baseline.rds));
        Ok(left)
    }

    /// The RDS's contents less the driver's volume directory (`<pool>/<baseDir>`), which the
    /// driver makes for its first volume and keeps for the next: no case's leftover.
    async fn observe_without_volume_dir(&self) -> anyhow::Result<Observed> {
        let mut observed = self.observe().await?;
        if let Observed::Sim { files, .. } = &mut observed {
            let rds = &self.target.driver_config().rds;
            files.remove(&format!("{}/{}", rds.pool, rds.base_dir));
        }
        Ok(observed)
    }

    /// Runs `call`, which must fail with `code` and leave the RDS exactly as it was.
    pub async fn rejects<T>(
        &self,
        code: Code,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> anyhow::Result<Status> {
        let before = self.observe().await?;
        let result = call.await;
        let changed = changes(&before, &self.observe().await?);
        let answered = match result {
            Ok(_) => Err(format!("expected {code:?}, but the call succeeded")),
            Err(status) if status.code() == code => Ok(status),
            Err(status) => Err(format!(
                "expected {code:?}, got {:?}: {}",
                status.code(),
                status.message()
            )),
        };
        match (answered, changed) {
            (Ok(status), None) => Ok(status),
            (Ok(_), Some(changed)) => bail!("{changed}"),
            (Err(wrong), None) => bail!("{wrong}"),
            (Err(wrong), Some(changed)) => bail!("{wrong}; and {changed}"),
        }
    }

    /// Runs `call`, which must succeed and leave the RDS exactly as it was.
    pub async fn succeeds_without_change<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> anyhow::Result<T> {
        let before = self.observe().await?;
        let result = call.await;
        let changed = changes(&before, &self.observe().await?);
        match (result, changed) {
            (Ok(response), None) => Ok(response.into_inner()),
            (Ok(_), Some(changed)) => bail!("{changed}"),
            (Err(status), changed) => bail!(
                "expected success, got {:?}: {}{}",
                status.code(),
                status.message(),
                changed.map(|c| format!("; and {c}")).unwrap_or_default()
            ),
        }
    }

    /// Undoes what the case made on the node, then unpublishes and deletes its volumes; reports
    /// every failure.
    pub async fn cleanup(&mut self) -> anyhow::Result<()> {
        let mut failures = Failures::default();
        for (volume_id, target_path) in std::mem::take(&mut self.node_publications) {
            let request = NodeUnpublishVolumeRequest {
                volume_id: volume_id.clone(),
                target_path: target_path.clone(),
            };
            let outcome = self.node().node_unpublish_volume(request).await;
            failures.note(outcome, || {
                format!("NodeUnpublishVolume {volume_id} at {target_path}")
            });
        }
        for (volume_id, staging_target_path) in std::mem::take(&mut self.stagings) {
            let request = NodeUnstageVolumeRequest {
                volume_id: volume_id.clone(),
                staging_target_path: staging_target_path.clone(),
            };
            let outcome = self.node().node_unstage_volume(request).await;
            failures.note(outcome, || {
                format!("NodeUnstageVolume {volume_id} at {staging_target_path}")
            });
        }
        for (volume_id, node_id) in std::mem::take(&mut self.publications) {
            let request = requests::unpublish(&volume_id, &node_id);
            let outcome = self.controller().controller_unpublish_volume(request).await;
            failures.note(outcome, || {
                format!("ControllerUnpublishVolume {volume_id} from {node_id}")
            });
        }
        // Snapshots first: on some methods a snapshot's data lives next to its volume's.
        for snapshot_id in std::mem::take(&mut self.snapshots) {
            let request = DeleteSnapshotRequest {
                snapshot_id: snapshot_id.clone(),
                ..Default::default()
            };
            let outcome = self.controller().delete_snapshot(request).await;
            failures.note(outcome, || format!("DeleteSnapshot {snapshot_id}"));
        }
        for volume_id in std::mem::take(&mut self.volumes) {
            let request = DeleteVolumeRequest {
                volume_id: volume_id.clone(),
                ..Default::default()
            };
            let outcome = self.controller().delete_volume(request).await;
            failures.note(outcome, || format!("DeleteVolume {volume_id}"));
        }
        ensure!(
            failures.0.is_empty(),
            "cleanup failed:\n  {}",
            failures.0.join("\n  ")
        );
        Ok(())
    }

    /// Cleans up, then stops the target.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let cleaned = self.cleanup().await;
        let stopped = self.target.shutdown().await;
        cleaned?;
        stopped.context("stopping the target")
    }
}

/// The cleanup steps that failed, each with what it was undoing; cleanup goes on past a failure
/// so one stuck volume does not leak the rest.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn note<T>(&mut self, outcome: Result<T, Status>, what: impl FnOnce() -> String) {
        if let Err(status) = outcome {
            self.0.push(format!(
                "{}: {:?}: {}",
                what(),
                status.code(),
                status.message()
            ));
        }
    }
}

/// What changed from `before` to `after`, as a message; `None` when nothing did.
fn changes(before: &Observed, after: &Observed) -> Option<String> {
    let changes = after.changes_since(before);
    (!changes.is_empty()).then(|| {
        format!(
            "the RDS changed although it must not have:\n  {}",
            changes.join("\n  ")
        )
    })
}
