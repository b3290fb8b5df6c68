//! The spec's Identity rules and the capability contract: Probe's health, the capabilities the
//! driver must advertise, and UNIMPLEMENTED for what it does not.

use std::time::Duration;

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc::Type as Cap;
use rds_csi::csi::v1::plugin_capability::{self, service};
use rds_csi::csi::v1::{
    ControllerModifyVolumeRequest, CreateSnapshotRequest, DeleteSnapshotRequest,
    GetPluginCapabilitiesRequest, GetSnapshotRequest, ListSnapshotsRequest, ProbeRequest,
};
use rds_sim::faults::Fault;
use tonic::Code;

use super::absent_volume_id;
use crate::fixture::Fixture;
use crate::suite::{Skip, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "CSI spec [Identity Server] Probe reports not ready while the RDS is unreachable",
            probe_while_unreachable,
        ),
        trial(
            "rds-csi [Identity Server] GetPluginCapabilities advertises the controller service",
            plugin_advertises_controller,
        ),
        trial(
            "rds-csi [Controller Server] ControllerGetCapabilities advertises every RPC of issue 3",
            controller_advertises_issue_3,
        ),
        trial(
            "CSI spec [Controller Server] RPCs whose capability is not advertised answer UNIMPLEMENTED",
            unadvertised_rpcs_are_unimplemented,
        ),
    ]
}

/// The simulator refuses connections for this long; the case ends well before.
const OUTAGE: Duration = Duration::from_secs(600);

/// The spec lets a plugin say so with `ready: false` or with FAILED_PRECONDITION ("plugin not
/// healthy").
async fn probe_while_unreachable(fx: &mut Fixture) -> anyhow::Result<()> {
    let sim = fx.require_sim("to take the RDS offline")?;
    sim.inject(&Fault::Restart {
        downtime_ms: OUTAGE.as_millis() as u64,
    })?;
    match fx.identity().probe(ProbeRequest {}).await {
        Ok(response) => ensure!(
            response.get_ref().ready == Some(false),
            "Probe answered {:?} while the RDS refuses every connection",
            response.get_ref()
        ),
        Err(status) => ensure!(
            status.code() == Code::FailedPrecondition,
            "Probe failed with {:?} ({}); the spec's code for an unhealthy plugin is \
             FAILED_PRECONDITION, or answer ready=false",
            status.code(),
            status.message()
        ),
    }
    Ok(())
}

async fn plugin_advertises_controller(fx: &mut Fixture) -> anyhow::Result<()> {
    let capabilities = fx
        .identity()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .context("GetPluginCapabilities")?
        .into_inner()
        .capabilities;
    let controller = capabilities.iter().any(|c| {
        matches!(c.r#type, Some(plugin_capability::Type::Service(s))
            if s.r#type == service::Type::ControllerService as i32)
    });
    ensure!(
        controller,
        "GetPluginCapabilities lacks CONTROLLER_SERVICE: {capabilities:?}"
    );
    Ok(())
}

async fn controller_advertises_issue_3(fx: &mut Fixture) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for capability in [
        Cap::CreateDeleteVolume,
        Cap::PublishUnpublishVolume,
        Cap::ListVolumes,
        Cap::GetCapacity,
        Cap::ExpandVolume,
        Cap::GetVolume,
    ] {
        if !fx.has_capability(capability).await? {
            missing.push(capability.as_str_name());
        }
    }
    ensure!(
        missing.is_empty(),
        "ControllerGetCapabilities lacks {}",
        missing.join(", ")
    );
    Ok(())
}

/// The spec's general error table: "Call not implemented → UNIMPLEMENTED". Pairs whose capability
/// is advertised are left to their own cases.
async fn unadvertised_rpcs_are_unimplemented(fx: &mut Fixture) -> anyhow::Result<()> {
    let mut checked = 0;
    if !fx.has_capability(Cap::CreateDeleteSnapshot).await? {
        let create = CreateSnapshotRequest {
            source_volume_id: absent_volume_id(),
            name: "sanity-unimplemented".to_owned(),
            ..Default::default()
        };
        unimplemented(
            fx,
            "CreateSnapshot",
            fx.controller().create_snapshot(create),
        )
        .await?;
        let delete = DeleteSnapshotRequest {
            snapshot_id: "sanity-unimplemented".to_owned(),
            ..Default::default()
        };
        unimplemented(
            fx,
            "DeleteSnapshot",
            fx.controller().delete_snapshot(delete),
        )
        .await?;
        checked += 2;
    }
    if !fx.has_capability(Cap::ListSnapshots).await? {
        let list = ListSnapshotsRequest::default();
        unimplemented(fx, "ListSnapshots", fx.controller().list_snapshots(list)).await?;
        checked += 1;
    }
    if !fx.has_capability(Cap::GetSnapshot).await? {
        let get = GetSnapshotRequest {
            snapshot_id: "sanity-unimplemented".to_owned(),
            ..Default::default()
        };
        unimplemented(fx, "GetSnapshot", fx.controller().get_snapshot(get)).await?;
        checked += 1;
    }
    if !fx.has_capability(Cap::ModifyVolume).await? {
        let modify = ControllerModifyVolumeRequest {
            volume_id: absent_volume_id(),
            ..Default::default()
        };
        unimplemented(
            fx,
            "ControllerModifyVolume",
            fx.controller().controller_modify_volume(modify),
        )
        .await?;
        checked += 1;
    }
    if checked == 0 {
        return Err(
            Skip("every optional RPC is advertised; nothing is left to check".to_owned()).into(),
        );
    }
    Ok(())
}

async fn unimplemented<T>(
    fx: &Fixture,
    rpc: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<()> {
    fx.rejects(Code::Unimplemented, call)
        .await
        .with_context(|| format!("{rpc}, whose capability is not advertised"))?;
    Ok(())
}
