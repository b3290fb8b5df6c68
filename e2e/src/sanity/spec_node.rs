//! The spec's error table for the Node service beyond csi-sanity's cases: an unsupported file
//! system type, a volume the controller never published here, a second stage asking for another
//! file system type, paths that are not mounts. Every refusal leaves the RDS, the node's mounts
//! and its attachments as they were; the calls the spec makes idempotent succeed changing nothing.

use anyhow::{Context, ensure};
use rds_csi::csi::v1::{NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest};
use tonic::Code;

use super::node::{NodeCall, Prepared, refuses};
use crate::fixture::Fixture;
use crate::requests::{fs_capability, single_node_writer};
use crate::suite::Case;

pub fn cases() -> Vec<Case> {
    const NS: &str = "CSI spec [Node Server]";
    let name = |rest: &str| format!("{NS} {rest}");
    vec![
        Case::new(
            name("NodeStageVolume INVALID_ARGUMENT for an unsupported fsType"),
            stage_unsupported_fs,
        ),
        Case::new(
            name("NodeStageVolume INVALID_ARGUMENT without the controller's publish context"),
            stage_unpublished,
        ),
        Case::new(
            name("NodeStageVolume ALREADY_EXISTS for a staged volume asked for another fsType"),
            restage_other_fs,
        ),
        Case::new(
            name("NodePublishVolume FAILED_PRECONDITION for a staging path that is not a mount"),
            publish_from_unmounted_staging,
        ),
        Case::new(
            name("NodeGetVolumeStats NOT_FOUND for a directory that is not a mount"),
            stats_unmounted_directory,
        ),
        Case::new(
            name("NodeUnstageVolume and NodeUnpublishVolume succeed on paths that are not mounts"),
            undo_on_unmounted_paths,
        ),
    ]
}

async fn stage_unsupported_fs(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = Prepared::new(fx, "sanity-spec-node-zfs").await?;
    let request = volume.stage_request(fs_capability("zfs"));
    let status = fx
        .node_rejects(Code::InvalidArgument, fx.node().node_stage_volume(request))
        .await?;
    ensure!(
        status.message().contains("zfs"),
        "the refusal does not name the file system type: {}",
        status.message()
    );
    Ok(())
}

async fn stage_unpublished(fx: &mut Fixture) -> anyhow::Result<()> {
    let mut volume = Prepared::new(fx, "sanity-spec-node-unpublished").await?;
    volume.publish_context.clear();
    let request = volume.stage_request(single_node_writer());
    refuses(fx, Code::InvalidArgument, NodeCall::Stage(request)).await
}

async fn restage_other_fs(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_node_attach()?;
    let volume = Prepared::new(fx, "sanity-spec-node-restage").await?;
    fx.node_stage(volume.stage_request(fs_capability("ext4")))
        .await
        .context("NodeStageVolume as ext4")?;
    let request = volume.stage_request(fs_capability("xfs"));
    refuses(fx, Code::AlreadyExists, NodeCall::Stage(request))
        .await
        .context("NodeStageVolume again as xfs")
}

async fn publish_from_unmounted_staging(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_node_attach()?;
    let volume = Prepared::new(fx, "sanity-spec-node-publish").await?;
    volume.stage(fx).await?;
    let (elsewhere, _) = fx.node_paths("sanity-spec-node-publish-elsewhere")?;
    let mut request = volume.publish_request(single_node_writer(), &volume.target);
    request.staging_target_path = elsewhere;
    refuses(fx, Code::FailedPrecondition, NodeCall::Publish(request)).await?;
    ensure!(
        !fx.target().node_host().exists(&volume.target)?,
        "the refused NodePublishVolume made the target path {}",
        volume.target
    );
    Ok(())
}

async fn stats_unmounted_directory(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_node_attach()?;
    let volume = Prepared::new(fx, "sanity-spec-node-stats").await?;
    volume.stage(fx).await?;
    // A directory the CO made, where nothing is mounted.
    let (directory, _) = fx.node_paths("sanity-spec-node-stats-unmounted")?;
    let request = volume.stats_request(&directory);
    refuses(fx, Code::NotFound, NodeCall::Stats(request)).await
}

async fn undo_on_unmounted_paths(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = Prepared::new(fx, "sanity-spec-node-undo").await?;
    let before = fx.host_state()?;
    fx.succeeds_without_change(fx.node().node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        target_path: volume.target.clone(),
    }))
    .await
    .context("NodeUnpublishVolume of a target path that does not exist")?;
    fx.succeeds_without_change(fx.node().node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: volume.staging.clone(),
    }))
    .await
    .context("NodeUnstageVolume of a staging path where nothing is mounted")?;
    let after = fx.host_state()?;
    ensure!(
        before == after,
        "the node changed: before {before:?}, after {after:?}"
    );
    Ok(())
}
