//! Controller cases for capabilities, listing, creating and deleting that the real csi-sanity
//! (`crate::csi_sanity`) does not cover: the ones named as its specs check more (the exact gRPC
//! code and an RDS left unchanged), or run what it does not (ListVolumes pagination, pending
//! there).

use std::collections::HashMap;

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc;
use rds_csi::csi::v1::{CreateVolumeRequest, DeleteVolumeRequest, ListVolumesRequest};
use tonic::Code;

use super::{absent_volume_id, delete, list_volumes, volume_source};
use crate::fixture::Fixture;
use crate::requests::{self, unique_name};
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    const CS: &str = "Controller Service [Controller Server]";
    vec![
        trial(
            &format!("{CS} ListVolumes should fail when an invalid starting_token is passed"),
            list_volumes_invalid_token,
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
                "{CS} CreateVolume should fail when requesting to create a volume with already existing name and different capacity"
            ),
            create_twice_different_capacity,
        ),
        trial(
            &format!("{CS} CreateVolume should fail when the volume source volume is not found"),
            create_from_absent_source_volume,
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
    ]
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
