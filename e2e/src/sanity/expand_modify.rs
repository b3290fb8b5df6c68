//! csi-sanity's ExpandVolume and ModifyVolume refusals, kept beside the real csi-sanity for what
//! they add: the exact gRPC code and an RDS left unchanged.

use anyhow::Context;
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc;
use rds_csi::csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerModifyVolumeRequest,
    CreateVolumeRequest,
};
use tonic::Code;

use super::{absent_volume_id, unsupported_mutable_parameters};
use crate::fixture::Fixture;
use crate::requests::unique_name;
use crate::suite::trial;

/// csi-sanity's `DefTestExpandIncrement`.
const EXPAND_INCREMENT: u64 = 1 << 30;

pub fn trials() -> Vec<Trial> {
    const EV: &str = "ExpandVolume [Controller Server]";
    const MV: &str = "ModifyVolume [Controller Server]";
    vec![
        trial(
            &format!("{EV} should fail if no volume id is given"),
            expand_without_id,
        ),
        trial(
            &format!("{EV} should fail if no capacity range is given"),
            expand_without_capacity,
        ),
        trial(
            &format!("{MV} should fail if no volume id is given"),
            modify_without_id,
        ),
        trial(
            &format!("{MV} should fail if volume does not exist"),
            modify_absent_volume,
        ),
        trial(
            &format!(
                "{MV} should fail if specified mutable parameters are not supported by the volume"
            ),
            modify_unsupported_parameters,
        ),
        trial(
            &format!(
                "{MV} should fail to modify a volume created with a volume attribute class if new mutable parameters are not supported by volume"
            ),
            modify_class_volume_unsupported,
        ),
    ]
}

fn required(bytes: u64) -> CapacityRange {
    CapacityRange {
        required_bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        limit_bytes: 0,
    }
}

async fn expand_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ExpandVolume).await?;
    let request = ControllerExpandVolumeRequest {
        capacity_range: Some(required(fx.volume_size() + EXPAND_INCREMENT)),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

/// csi-sanity sends neither an id nor a range here; naming an existing volume makes the missing
/// range the only fault.
async fn expand_without_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ExpandVolume).await?;
    let volume = fx
        .must_create(&unique_name("sanity-expand-no-capacity"))
        .await?;
    let request = ControllerExpandVolumeRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

async fn modify_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let request = ControllerModifyVolumeRequest {
        mutable_parameters: fx.volume_mutable_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_modify_volume(request),
    )
    .await?;
    Ok(())
}

async fn modify_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let request = ControllerModifyVolumeRequest {
        volume_id: absent_volume_id(),
        mutable_parameters: fx.volume_mutable_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::NotFound,
        fx.controller().controller_modify_volume(request),
    )
    .await?;
    Ok(())
}

async fn modify_unsupported_parameters(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let volume = fx
        .must_create(&unique_name("sanity-modify-unsupported"))
        .await?;
    let request = ControllerModifyVolumeRequest {
        volume_id: volume.volume_id,
        mutable_parameters: unsupported_mutable_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_modify_volume(request),
    )
    .await?;
    Ok(())
}

async fn modify_class_volume_unsupported(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::ModifyVolume).await?;
    let volume = create_with_class(fx).await?;
    let request = ControllerModifyVolumeRequest {
        volume_id: volume,
        mutable_parameters: unsupported_mutable_parameters(),
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_modify_volume(request),
    )
    .await?;
    Ok(())
}

/// A volume created with the configured mutable parameters (a volume attribute class).
async fn create_with_class(fx: &mut Fixture) -> anyhow::Result<String> {
    let request = CreateVolumeRequest {
        mutable_parameters: fx.volume_mutable_parameters(),
        ..fx.create_request(&unique_name("sanity-modify"))
    };
    Ok(fx
        .create_volume(request)
        .await
        .context("CreateVolume")?
        .volume_id)
}
