//! Snapshot cases named as csi-sanity's specs (CreateSnapshot, DeleteSnapshot, GetSnapshot,
//! CreateVolume from a snapshot), kept beside the real csi-sanity for what they check beyond it:
//! the exact gRPC code and an RDS left unchanged by a refusal, and answers equal in every field
//! (a repeated CreateSnapshot, GetSnapshot against CreateSnapshot).

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc;
use rds_csi::csi::v1::{
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, GetSnapshotRequest, Snapshot,
};
use tonic::Code;

use super::{list_volumes, snapshot_source, volume_source};
use crate::fixture::Fixture;
use crate::requests::unique_name;
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    const CS: &str = "Controller Service [Controller Server]";
    const GS: &str = "GetSnapshot [Controller Server]";
    const DS: &str = "DeleteSnapshot [Controller Server]";
    const CR: &str = "CreateSnapshot [Controller Server]";
    vec![
        trial(
            &format!("{CS} CreateVolume should fail when the volume source snapshot is not found"),
            create_from_absent_snapshot,
        ),
        trial(
            "CSI spec [Controller Server] CreateVolume names the snapshot or volume it copied in \
             content_source, on a repeat and in ListVolumes too",
            created_volumes_name_their_source,
        ),
        trial(&format!("{GS} should return an error"), get_without_id),
        trial(
            &format!("{GS} should return snapshot that match the specified snapshot id"),
            get_by_id,
        ),
        trial(
            &format!("{GS} should return an error when the specified snapshot id does not exist"),
            get_absent,
        ),
        trial(
            &format!("{DS} should fail when no snapshot id is provided"),
            delete_without_id,
        ),
        trial(
            &format!("{DS} should succeed when an invalid snapshot id is used"),
            delete_invalid_id,
        ),
        trial(
            &format!("{CR} should fail when no name is provided"),
            create_without_name,
        ),
        trial(
            &format!("{CR} should fail when no source volume id is provided"),
            create_without_source,
        ),
        trial(
            &format!(
                "{CR} should succeed when requesting to create a snapshot with already existing name and same source volume ID"
            ),
            create_twice_same_source,
        ),
        trial(
            &format!(
                "{CR} should fail when requesting to create a snapshot with already existing name and different source volume ID"
            ),
            create_twice_other_source,
        ),
    ]
}

/// csi-sanity's `GenerateInvalidSnapshotID`-style id: nothing this driver makes.
const INVALID_SNAPSHOT_ID: &str = "fake-snapshot-id";

fn snapshot_request(name: &str, source_volume_id: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        name: name.to_owned(),
        source_volume_id: source_volume_id.to_owned(),
        ..Default::default()
    }
}

/// A new volume and a snapshot of it; both cleaned up with the case.
async fn volume_and_snapshot(fx: &mut Fixture, prefix: &str) -> anyhow::Result<Snapshot> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let volume = fx
        .must_create(&unique_name(&format!("{prefix}-vol")))
        .await?;
    let name = unique_name(&format!("{prefix}-snap"));
    let snapshot = fx
        .create_snapshot(snapshot_request(&name, &volume.volume_id))
        .await
        .with_context(|| format!("CreateSnapshot {name:?}"))?;
    check_snapshot(&snapshot, &volume.volume_id)?;
    Ok(snapshot)
}

fn check_snapshot(snapshot: &Snapshot, source_volume_id: &str) -> anyhow::Result<()> {
    ensure!(!snapshot.snapshot_id.is_empty(), "the snapshot has no id");
    ensure!(
        snapshot.source_volume_id == source_volume_id,
        "the snapshot's source is {:?}, not {source_volume_id:?}",
        snapshot.source_volume_id
    );
    ensure!(
        snapshot.creation_time.is_some(),
        "the snapshot has no creation time"
    );
    Ok(())
}

/// The spec: a volume pre-populated from a source says so in `content_source`. csi-sanity checks
/// the first answer for a snapshot only; a repeated CreateVolume (a CO retrying) and ListVolumes
/// must describe the volume the same way, for a volume source too.
async fn created_volumes_name_their_source(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CloneVolume).await?;
    let snapshot = volume_and_snapshot(fx, "sanity-named-source").await?;
    for source in [
        snapshot_source(&snapshot.snapshot_id),
        volume_source(&snapshot.source_volume_id),
    ] {
        let request = CreateVolumeRequest {
            volume_content_source: Some(source.clone()),
            ..fx.create_request(&unique_name("sanity-named-source-copy"))
        };
        let mut volume_id = String::new();
        for call in ["CreateVolume", "the repeated CreateVolume"] {
            let volume = fx
                .create_volume(request.clone())
                .await
                .with_context(|| format!("{call} from {source:?}"))?;
            ensure!(
                volume.content_source.as_ref() == Some(&source),
                "{call} from {source:?} answered content_source {:?}",
                volume.content_source
            );
            volume_id = volume.volume_id;
        }
        let listed = list_volumes(fx, 0, "").await?.entries;
        let entry = listed
            .iter()
            .filter_map(|entry| entry.volume.as_ref())
            .find(|volume| volume.volume_id == volume_id)
            .with_context(|| format!("ListVolumes does not list {volume_id}"))?;
        ensure!(
            entry.content_source.as_ref() == Some(&source),
            "ListVolumes gives {volume_id} content_source {:?}, not {source:?}",
            entry.content_source
        );
    }
    Ok(())
}

async fn create_from_absent_snapshot(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let absent = rds_csi::ids::snapshot_id(&unique_name("sanity-absent-snap")).to_string();
    let request = CreateVolumeRequest {
        volume_content_source: Some(snapshot_source(&absent)),
        ..fx.create_request(&unique_name("sanity-controller-vol-from-snap"))
    };
    fx.rejects(Code::NotFound, fx.controller().create_volume(request))
        .await?;
    Ok(())
}

async fn get_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::GetSnapshot).await?;
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().get_snapshot(GetSnapshotRequest::default()),
    )
    .await?;
    Ok(())
}

async fn get_by_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::GetSnapshot).await?;
    let snapshot = volume_and_snapshot(fx, "sanity-get").await?;
    let request = GetSnapshotRequest {
        snapshot_id: snapshot.snapshot_id.clone(),
        ..Default::default()
    };
    let got = fx
        .controller()
        .get_snapshot(request)
        .await
        .context("GetSnapshot")?
        .into_inner()
        .snapshot
        .context("GetSnapshot answered no snapshot")?;
    ensure!(
        got == snapshot,
        "GetSnapshot answered {got:?}, not {snapshot:?}"
    );
    Ok(())
}

async fn get_absent(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::GetSnapshot).await?;
    let request = GetSnapshotRequest {
        snapshot_id: rds_csi::ids::snapshot_id(&unique_name("sanity-absent-snap")).to_string(),
        ..Default::default()
    };
    fx.rejects(Code::NotFound, fx.controller().get_snapshot(request))
        .await?;
    Ok(())
}

async fn delete_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    fx.rejects(
        Code::InvalidArgument,
        fx.controller()
            .delete_snapshot(DeleteSnapshotRequest::default()),
    )
    .await?;
    Ok(())
}

async fn delete_invalid_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let request = DeleteSnapshotRequest {
        snapshot_id: INVALID_SNAPSHOT_ID.to_owned(),
        ..Default::default()
    };
    fx.succeeds_without_change(fx.controller().delete_snapshot(request))
        .await?;
    Ok(())
}

async fn create_without_name(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let volume = fx
        .must_create(&unique_name("sanity-snap-noname-vol"))
        .await?;
    fx.rejects(
        Code::InvalidArgument,
        fx.controller()
            .create_snapshot(snapshot_request("", &volume.volume_id)),
    )
    .await?;
    Ok(())
}

async fn create_without_source(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    fx.rejects(
        Code::InvalidArgument,
        fx.controller()
            .create_snapshot(snapshot_request(&unique_name("sanity-snap-nosource"), "")),
    )
    .await?;
    Ok(())
}

async fn create_twice_same_source(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let volume = fx
        .must_create(&unique_name("sanity-snap-twice-vol"))
        .await?;
    let name = unique_name("sanity-snap-twice");
    let first = fx
        .create_snapshot(snapshot_request(&name, &volume.volume_id))
        .await
        .context("the first CreateSnapshot")?;
    let second = fx
        .create_snapshot(snapshot_request(&name, &volume.volume_id))
        .await
        .context("the second CreateSnapshot")?;
    ensure!(
        first == second,
        "the same request answered {first:?}, then {second:?}"
    );
    Ok(())
}

async fn create_twice_other_source(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let volume = fx.must_create(&unique_name("sanity-snap-other-a")).await?;
    let other = fx.must_create(&unique_name("sanity-snap-other-b")).await?;
    let name = unique_name("sanity-snap-other");
    fx.create_snapshot(snapshot_request(&name, &volume.volume_id))
        .await
        .context("the first CreateSnapshot")?;
    fx.rejects(
        Code::AlreadyExists,
        fx.controller()
            .create_snapshot(snapshot_request(&name, &other.volume_id)),
    )
    .await?;
    Ok(())
}
