//! csi-sanity's snapshot cases (CreateSnapshot, DeleteSnapshot, ListSnapshots, GetSnapshot) and
//! CreateVolume from a snapshot.

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc;
use rds_csi::csi::v1::volume_content_source::{self, SnapshotSource};
use rds_csi::csi::v1::{
    CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest, GetSnapshotRequest,
    ListSnapshotsRequest, ListSnapshotsResponse, Snapshot, VolumeContentSource,
};
use tonic::Code;

use crate::fixture::Fixture;
use crate::requests::{unique_name, unique_name_of_length};
use crate::suite::trial;

/// csi-sanity's `MaxNameLength`.
const MAX_NAME_LENGTH: usize = 128;

pub fn trials() -> Vec<Trial> {
    const CS: &str = "Controller Service [Controller Server]";
    const LS: &str = "ListSnapshots [Controller Server]";
    const GS: &str = "GetSnapshot [Controller Server]";
    const DS: &str = "DeleteSnapshot [Controller Server]";
    const CR: &str = "CreateSnapshot [Controller Server]";
    vec![
        trial(
            &format!("{CS} CreateVolume should create volume from an existing source snapshot"),
            create_from_snapshot,
        ),
        trial(
            &format!("{CS} CreateVolume should fail when the volume source snapshot is not found"),
            create_from_absent_snapshot,
        ),
        trial(
            &format!("{LS} should return appropriate values (no optional values added)"),
            list_values,
        ),
        trial(
            &format!("{LS} should return snapshots that match the specified snapshot id"),
            async |fx: &mut Fixture| list_filtered(fx, Filter::SnapshotId, true).await,
        ),
        trial(
            &format!("{LS} should return empty when the specified snapshot id does not exist"),
            async |fx: &mut Fixture| list_filtered(fx, Filter::SnapshotId, false).await,
        ),
        trial(
            &format!("{LS} should return snapshots that match the specified source volume id"),
            async |fx: &mut Fixture| list_filtered(fx, Filter::SourceVolumeId, true).await,
        ),
        trial(
            &format!("{LS} should return empty when the specified source volume id does not exist"),
            async |fx: &mut Fixture| list_filtered(fx, Filter::SourceVolumeId, false).await,
        ),
        trial(
            &format!("{LS} check the presence of new snapshots in the snapshot list"),
            list_presence,
        ),
        trial(
            &format!(
                "{LS} should return next token when a limited number of entries are requested"
            ),
            list_pages,
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
            &format!("{DS} should return appropriate values (no optional values added)"),
            delete_values,
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
        trial(
            &format!("{CR} should succeed when creating snapshot with maximum-length name"),
            create_with_max_length_name,
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

async fn list(
    fx: &Fixture,
    request: ListSnapshotsRequest,
) -> anyhow::Result<ListSnapshotsResponse> {
    Ok(fx
        .controller()
        .list_snapshots(request.clone())
        .await
        .with_context(|| format!("ListSnapshots {request:?}"))?
        .into_inner())
}

fn listed_ids(answer: &ListSnapshotsResponse) -> Vec<String> {
    answer
        .entries
        .iter()
        .filter_map(|entry| entry.snapshot.as_ref())
        .map(|snapshot| snapshot.snapshot_id.clone())
        .collect()
}

async fn create_from_snapshot(fx: &mut Fixture) -> anyhow::Result<()> {
    let snapshot = volume_and_snapshot(fx, "sanity-controller-source").await?;
    let request = CreateVolumeRequest {
        volume_content_source: Some(snapshot_source(&snapshot.snapshot_id)),
        ..fx.create_request(&unique_name("sanity-controller-vol-from-snap"))
    };
    fx.create_volume(request)
        .await
        .context("CreateVolume from a snapshot")?;
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

fn snapshot_source(snapshot_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(SnapshotSource {
            snapshot_id: snapshot_id.to_owned(),
        })),
    }
}

async fn list_values(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListSnapshots).await?;
    let answer = list(fx, ListSnapshotsRequest::default()).await?;
    for entry in &answer.entries {
        let snapshot = entry
            .snapshot
            .as_ref()
            .context("an entry without a snapshot")?;
        check_snapshot(snapshot, &snapshot.source_volume_id)?;
    }
    Ok(())
}

/// The ListSnapshots filter a case sets.
#[derive(Clone, Copy)]
enum Filter {
    SnapshotId,
    SourceVolumeId,
}

/// ListSnapshots filtered by `filter`: with the value of a new snapshot (`present`) it lists
/// exactly that snapshot, with a value nothing has it lists nothing.
async fn list_filtered(fx: &mut Fixture, filter: Filter, present: bool) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListSnapshots).await?;
    let (value, expected) = if present {
        let snapshot = volume_and_snapshot(fx, "sanity-list-filtered").await?;
        let value = match filter {
            Filter::SnapshotId => snapshot.snapshot_id.clone(),
            Filter::SourceVolumeId => snapshot.source_volume_id.clone(),
        };
        (value, vec![snapshot.snapshot_id])
    } else {
        let absent = match filter {
            Filter::SnapshotId => "none-exist-id",
            Filter::SourceVolumeId => "none-exist-volume-id",
        };
        (absent.to_owned(), Vec::new())
    };
    let request = match filter {
        Filter::SnapshotId => ListSnapshotsRequest {
            snapshot_id: value,
            ..Default::default()
        },
        Filter::SourceVolumeId => ListSnapshotsRequest {
            source_volume_id: value,
            ..Default::default()
        },
    };
    let answer = list(fx, request).await?;
    ensure!(
        listed_ids(&answer) == expected,
        "listed {:?}, expected {expected:?}",
        listed_ids(&answer)
    );
    Ok(())
}

async fn list_presence(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListSnapshots).await?;
    let before = listed_ids(&list(fx, ListSnapshotsRequest::default()).await?);
    let snapshot = volume_and_snapshot(fx, "sanity-list-presence").await?;
    let during = listed_ids(&list(fx, ListSnapshotsRequest::default()).await?);
    ensure!(
        during.len() == before.len() + 1 && during.contains(&snapshot.snapshot_id),
        "after CreateSnapshot the list is {during:?}, before it was {before:?}"
    );
    delete(fx, &snapshot.snapshot_id).await?;
    let after = listed_ids(&list(fx, ListSnapshotsRequest::default()).await?);
    ensure!(
        after == before,
        "after DeleteSnapshot the list is {after:?}, not {before:?}"
    );
    Ok(())
}

async fn list_pages(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListSnapshots).await?;
    let before = listed_ids(&list(fx, ListSnapshotsRequest::default()).await?).len();
    let volume = fx
        .must_create(&unique_name("sanity-list-pages-vol"))
        .await?;
    for n in 0..3 {
        let name = unique_name(&format!("sanity-list-pages-{n}"));
        fx.create_snapshot(snapshot_request(&name, &volume.volume_id))
            .await
            .with_context(|| format!("CreateSnapshot {name:?}"))?;
    }
    let total = before + 3;
    let first = list(
        fx,
        ListSnapshotsRequest {
            max_entries: 2,
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        first.entries.len() == 2,
        "a page of {} entries",
        first.entries.len()
    );
    ensure!(
        !first.next_token.is_empty(),
        "no next_token with more to come"
    );
    let rest = list(
        fx,
        ListSnapshotsRequest {
            starting_token: first.next_token.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        rest.entries.len() == total - 2,
        "{} entries after the token, expected {}",
        rest.entries.len(),
        total - 2
    );
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

async fn delete(fx: &Fixture, snapshot_id: &str) -> anyhow::Result<()> {
    let request = DeleteSnapshotRequest {
        snapshot_id: snapshot_id.to_owned(),
        ..Default::default()
    };
    fx.controller()
        .delete_snapshot(request)
        .await
        .with_context(|| format!("DeleteSnapshot {snapshot_id}"))?;
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

async fn delete_values(fx: &mut Fixture) -> anyhow::Result<()> {
    let snapshot = volume_and_snapshot(fx, "sanity-delete").await?;
    delete(fx, &snapshot.snapshot_id).await
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

async fn create_with_max_length_name(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteSnapshot)
        .await?;
    let volume = fx
        .must_create(&unique_name("sanity-snap-maxlen-vol"))
        .await?;
    let name = unique_name_of_length("sanity-snap-maxlen", MAX_NAME_LENGTH);
    let snapshot = fx
        .create_snapshot(snapshot_request(&name, &volume.volume_id))
        .await
        .context("CreateSnapshot with a 128-character name")?;
    check_snapshot(&snapshot, &volume.volume_id)
}
