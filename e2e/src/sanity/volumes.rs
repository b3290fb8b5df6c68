//! csi-sanity's Controller cases for capabilities, capacity, listing, creating and deleting.

use std::collections::HashMap;

use anyhow::{Context, bail, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::{self, rpc};
use rds_csi::csi::v1::volume_content_source::{self, VolumeSource};
use rds_csi::csi::v1::{
    CapacityRange, ControllerGetCapabilitiesRequest, CreateVolumeRequest, DeleteVolumeRequest,
    GetCapacityRequest, ListVolumesRequest, VolumeContentSource,
};
use tonic::Code;

use super::{absent_volume_id, delete, list_volumes};
use crate::fixture::Fixture;
use crate::requests::{self, unique_name, unique_name_of_length};
use crate::suite::{Skip, trial};

/// csi-sanity's `MaxNameLength`.
const MAX_NAME_LENGTH: usize = 128;

pub fn trials() -> Vec<Trial> {
    const CS: &str = "Controller Service [Controller Server]";
    vec![
        trial(
            &format!("{CS} ControllerGetCapabilities should return appropriate capabilities"),
            controller_get_capabilities,
        ),
        trial(
            &format!("{CS} GetCapacity should return capacity (no optional values added)"),
            get_capacity,
        ),
        trial(
            &format!(
                "{CS} ListVolumes should return appropriate values (no optional values added)"
            ),
            list_volumes_values,
        ),
        trial(
            &format!("{CS} ListVolumes should fail when an invalid starting_token is passed"),
            list_volumes_invalid_token,
        ),
        trial(
            &format!(
                "{CS} ListVolumes check the presence of new volumes and absence of deleted ones in the volume list"
            ),
            list_volumes_presence,
        ),
        trial(
            &format!(
                "{CS} ListVolumes pagination should detect volumes added between pages and accept tokens when the last volume from a page is deleted"
            ),
            list_volumes_pagination,
        ),
        trial(
            &format!("{CS} CreateVolume should fail when no name is provided"),
            create_without_name,
        ),
        trial(
            &format!("{CS} CreateVolume should fail when no volume capabilities are provided"),
            create_without_capabilities,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should return appropriate values SingleNodeWriter NoCapacity"
            ),
            create_single_node_writer_no_capacity,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should return appropriate values SingleNodeWriter WithCapacity 1Gi"
            ),
            create_single_node_writer_with_capacity,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should not fail when requesting to create a volume with already existing name and same capacity"
            ),
            create_twice_same_capacity,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should fail when requesting to create a volume with already existing name and different capacity"
            ),
            create_twice_different_capacity,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should not fail when creating volume with maximum-length name"
            ),
            create_max_length_name,
        ),
        trial(
            &format!("{CS} CreateVolume should create volume from an existing source volume"),
            create_from_source_volume,
        ),
        trial(
            &format!("{CS} CreateVolume should fail when the volume source volume is not found"),
            create_from_absent_source_volume,
        ),
        trial(
            &format!("{CS} CreateVolume should create volume with a volume attribute class"),
            create_with_volume_attribute_class,
        ),
        trial(
            &format!(
                "{CS} CreateVolume should not create volume with an invalid volume attribute class"
            ),
            create_with_invalid_volume_attribute_class,
        ),
        trial(
            &format!("{CS} DeleteVolume should fail when no volume id is provided"),
            delete_without_id,
        ),
        trial(
            &format!("{CS} DeleteVolume should succeed when an invalid volume id is used"),
            delete_invalid_id,
        ),
        trial(
            &format!(
                "{CS} DeleteVolume should return appropriate values (no optional values added)"
            ),
            delete_values,
        ),
    ]
}

async fn controller_get_capabilities(fx: &mut Fixture) -> anyhow::Result<()> {
    let capabilities = fx
        .controller()
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .context("ControllerGetCapabilities")?
        .into_inner()
        .capabilities;
    for capability in &capabilities {
        let Some(controller_service_capability::Type::Rpc(rpc)) = capability.r#type else {
            bail!("a controller capability that is not an RPC: {capability:?}");
        };
        let known = rpc::Type::try_from(rpc.r#type).is_ok_and(|t| t != rpc::Type::Unknown);
        ensure!(known, "unknown controller capability {}", rpc.r#type);
    }
    Ok(())
}

async fn get_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::GetCapacity).await?;
    let capacity = fx
        .controller()
        .get_capacity(GetCapacityRequest::default())
        .await
        .context("GetCapacity")?
        .into_inner();
    ensure!(
        capacity.available_capacity >= 0,
        "negative available_capacity {}",
        capacity.available_capacity
    );
    Ok(())
}

async fn list_volumes_values(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListVolumes).await?;
    for entry in list_volumes(fx, 0, "").await?.entries {
        let volume = entry
            .volume
            .context("a ListVolumes entry without a volume")?;
        ensure!(!volume.volume_id.is_empty(), "a listed volume has no id");
    }
    Ok(())
}

async fn list_volumes_invalid_token(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListVolumes).await?;
    let request = ListVolumesRequest {
        max_entries: 0,
        starting_token: "invalid-token".to_owned(),
    };
    fx.rejects(Code::Aborted, fx.controller().list_volumes(request))
        .await?;
    Ok(())
}

async fn list_volumes_presence(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListVolumes).await?;
    let before = list_volumes(fx, 0, "").await?.entries.len();

    let volume = fx.must_create(&unique_name("sanity")).await?;
    let listed = list_volumes(fx, 0, "").await?.entries;
    ensure!(
        listed.len() == before + 1,
        "{} volumes listed after creating one, {before} before",
        listed.len()
    );
    ensure!(
        listed.iter().any(|e| e
            .volume
            .as_ref()
            .is_some_and(|v| v.volume_id == volume.volume_id)),
        "the new volume {} is not listed",
        volume.volume_id
    );

    delete(fx, &volume.volume_id).await?;
    let listed = list_volumes(fx, 0, "").await?.entries;
    ensure!(
        listed.len() == before,
        "{} volumes listed after deleting the new one, {before} before it was created",
        listed.len()
    );
    Ok(())
}

async fn list_volumes_pagination(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ListVolumes).await?;
    let max_entries = 2;
    let mut existing: HashMap<String, bool> = HashMap::new();
    for entry in list_volumes(fx, 0, "").await?.entries {
        let volume = entry
            .volume
            .context("a ListVolumes entry without a volume")?;
        existing.insert(volume.volume_id, true);
    }
    let min_volumes = existing.len().max(3);
    for i in existing.len()..min_volumes {
        let volume = fx.must_create(&unique_name(&format!("sanity{i}"))).await?;
        existing.insert(volume.volume_id, true);
    }

    let page = list_volumes(fx, max_entries, "").await?;
    ensure!(
        page.entries.len() == max_entries as usize,
        "ListVolumes with max_entries {max_entries} returned {} entries",
        page.entries.len()
    );
    ensure!(
        !page.next_token.is_empty(),
        "ListVolumes returned no next_token although more volumes exist"
    );
    for entry in &page.entries {
        let id = &entry
            .volume
            .as_ref()
            .context("an entry without a volume")?
            .volume_id;
        ensure!(
            existing.get(id) == Some(&true),
            "listed {id}, which does not exist"
        );
        delete(fx, id).await?;
        existing.insert(id.clone(), false);
    }

    let added = fx.must_create(&unique_name("new-addition")).await?;
    existing.insert(added.volume_id, true);

    let rest = list_volumes(fx, 0, &page.next_token).await?;
    let expected = min_volumes - max_entries as usize + 1;
    ensure!(
        rest.entries.len() <= expected,
        "the rest of the list has {} entries, at most {expected} may remain",
        rest.entries.len()
    );
    for entry in &rest.entries {
        let id = &entry
            .volume
            .as_ref()
            .context("an entry without a volume")?
            .volume_id;
        ensure!(
            existing.get(id) == Some(&true),
            "listed {id}, which was deleted, never existed, or was listed twice"
        );
        existing.insert(id.clone(), false);
    }
    Ok(())
}

async fn create_without_name(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = CreateVolumeRequest {
        parameters: fx.volume_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().create_volume(request),
    )
    .await?;
    Ok(())
}

async fn create_without_capabilities(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = CreateVolumeRequest {
        name: unique_name("sanity-controller-create-no-volume-capabilities"),
        parameters: fx.volume_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().create_volume(request),
    )
    .await?;
    Ok(())
}

/// csi-sanity's request of this name does carry a capacity (its comment calls the no-capacity
/// question driver-specific); the no-capacity case is in the spec section.
async fn create_single_node_writer_no_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = CreateVolumeRequest {
        capacity_range: Some(at_least(fx.volume_size())),
        ..fx.create_request(&unique_name("sanity-controller-create-single-no-capacity"))
    };
    fx.create_volume(request).await.context("CreateVolume")?;
    Ok(())
}

async fn create_single_node_writer_with_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let size = fx.volume_size();
    let request = CreateVolumeRequest {
        capacity_range: Some(at_least(size)),
        ..fx.create_request(&unique_name(
            "sanity-controller-create-single-with-capacity",
        ))
    };
    let volume = match fx.create_volume(request).await {
        Err(status) if matches!(status.code(), Code::OutOfRange | Code::Unimplemented) => {
            return Err(Skip(format!(
                "required bytes not supported: {}",
                status.message()
            ))
            .into());
        }
        other => other.context("CreateVolume")?,
    };
    ensure!(
        !volume.volume_id.is_empty(),
        "CreateVolume returned no volume_id"
    );
    ensure_capacity(volume.capacity_bytes, size)
}

async fn create_twice_same_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let size = fx.volume_size();
    let request = CreateVolumeRequest {
        capacity_range: Some(at_least(size)),
        ..fx.create_request(&unique_name("sanity-controller-create-twice"))
    };
    let first = fx
        .create_volume(request.clone())
        .await
        .context("the first CreateVolume")?;
    ensure_capacity(first.capacity_bytes, size)?;
    let second = fx
        .create_volume(request)
        .await
        .context("the second CreateVolume")?;
    ensure_capacity(second.capacity_bytes, size)?;
    ensure!(
        first.volume_id == second.volume_id,
        "the same name gave two volumes: {} and {}",
        first.volume_id,
        second.volume_id
    );
    Ok(())
}

async fn create_twice_different_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let name = unique_name("sanity-controller-create-twice-different");
    fx.must_create(&name).await?;
    let request = CreateVolumeRequest {
        capacity_range: Some(requests::exact_capacity(2 * fx.volume_size())),
        ..fx.create_request(&name)
    };
    fx.rejects(Code::AlreadyExists, fx.controller().create_volume(request))
        .await?;
    Ok(())
}

async fn create_max_length_name(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let size = fx.volume_size();
    let request = CreateVolumeRequest {
        capacity_range: Some(at_least(size)),
        ..fx.create_request(&unique_name_of_length(
            "sanity-controller-create-maxlen",
            MAX_NAME_LENGTH,
        ))
    };
    let volume = fx.create_volume(request).await.context("CreateVolume")?;
    ensure_capacity(volume.capacity_bytes, size)
}

async fn create_from_source_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CloneVolume).await?;
    let source = fx
        .must_create(&unique_name("sanity-controller-source-vol"))
        .await?;
    let request = CreateVolumeRequest {
        volume_content_source: Some(volume_source(&source.volume_id)),
        ..fx.create_request(&unique_name("sanity-controller-vol-from-vol"))
    };
    fx.create_volume(request)
        .await
        .context("CreateVolume from a source volume")?;
    Ok(())
}

async fn create_from_absent_source_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CloneVolume).await?;
    let request = CreateVolumeRequest {
        volume_content_source: Some(volume_source(&absent_volume_id())),
        ..fx.create_request(&unique_name("sanity-controller-vol-from-snap"))
    };
    fx.rejects(Code::NotFound, fx.controller().create_volume(request))
        .await?;
    Ok(())
}

async fn create_with_volume_attribute_class(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let request = CreateVolumeRequest {
        mutable_parameters: fx.volume_mutable_parameters(),
        ..fx.create_request(&unique_name("sanity-controller-create-vac"))
    };
    fx.create_volume(request)
        .await
        .context("CreateVolume with mutable parameters")?;
    Ok(())
}

async fn create_with_invalid_volume_attribute_class(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let request = CreateVolumeRequest {
        mutable_parameters: super::unsupported_mutable_parameters(),
        ..fx.create_request(&unique_name("sanity-controller-create-invalid-vac"))
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().create_volume(request),
    )
    .await?;
    Ok(())
}

async fn delete_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = DeleteVolumeRequest::default();
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().delete_volume(request),
    )
    .await?;
    Ok(())
}

async fn delete_invalid_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = DeleteVolumeRequest {
        volume_id: super::INVALID_VOLUME_ID.to_owned(),
        ..Default::default()
    };
    fx.succeeds_without_change(fx.controller().delete_volume(request))
        .await?;
    Ok(())
}

async fn delete_values(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::CreateDeleteVolume).await?;
    let request = CreateVolumeRequest {
        capacity_range: Some(at_least(fx.volume_size())),
        ..fx.create_request(&unique_name("sanity-controller-create-appropriate"))
    };
    let volume = fx.create_volume(request).await.context("CreateVolume")?;
    delete(fx, &volume.volume_id).await
}

/// `bytes` or more: csi-sanity's requests that set only `required_bytes`.
fn at_least(bytes: u64) -> CapacityRange {
    CapacityRange {
        required_bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        limit_bytes: 0,
    }
}

fn volume_source(volume_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(VolumeSource {
            volume_id: volume_id.to_owned(),
        })),
    }
}

/// csi-sanity accepts the requested size or more, or 0 for "unknown".
fn ensure_capacity(capacity: i64, requested: u64) -> anyhow::Result<()> {
    ensure!(
        capacity == 0 || u64::try_from(capacity).is_ok_and(|c| c >= requested),
        "the volume's capacity {capacity} is below the {requested} bytes requested"
    );
    Ok(())
}
