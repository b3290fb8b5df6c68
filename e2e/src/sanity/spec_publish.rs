//! The spec's error tables and rules for ControllerPublishVolume, ControllerUnpublishVolume and
//! ValidateVolumeCapabilities, and the fencing they do on the RDS.

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::{
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    ValidateVolumeCapabilitiesRequest,
};
use tonic::Code;

use super::spec_volumes::sim_disk;
use super::{INVALID_VOLUME_ID, OTHER_NODE_ID, absent_volume_id, fake_node_id};
use crate::fixture::Fixture;
use crate::requests::{self, single_node_writer, unique_name};
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    const S: &str = "CSI spec [Controller Server]";
    vec![
        trial(
            &format!(
                "{S} ControllerPublishVolume FAILED_PRECONDITION for a single-node volume published to another node"
            ),
            publish_to_second_node,
        ),
        trial(
            &format!(
                "{S} ControllerPublishVolume ALREADY_EXISTS for a read-only re-publish of a volume published read-write"
            ),
            republish_readonly,
        ),
        trial(
            &format!(
                "{S} ControllerPublishVolume NOT_FOUND for a volume id the driver never makes"
            ),
            publish_invalid_volume_id,
        ),
        trial(
            &format!(
                "{S} ControllerPublishVolume returns address, port and NQN and allows the node on the disk"
            ),
            publish_context_and_fence,
        ),
        trial(
            &format!(
                "{S} ControllerUnpublishVolume succeeds without change when nothing is published"
            ),
            unpublish_nothing,
        ),
        trial(
            &format!("{S} ControllerUnpublishVolume removes the node from the disk's allow list"),
            unpublish_clears_fence,
        ),
        trial(
            &format!("{S} ControllerUnpublishVolume without a node id unpublishes from every node"),
            unpublish_from_every_node,
        ),
        trial(
            &format!(
                "{S} ValidateVolumeCapabilities NOT_FOUND for a volume id the driver never makes"
            ),
            validate_invalid_volume_id,
        ),
        trial(
            &format!(
                "{S} ValidateVolumeCapabilities confirms the capability the volume was created with"
            ),
            validate_confirms,
        ),
    ]
}

async fn publish_to_second_node(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let volume = fx
        .must_create(&unique_name("sanity-spec-two-nodes"))
        .await?;
    fx.publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("publishing to the first node")?;
    let second = requests::publish(&volume.volume_id, OTHER_NODE_ID);
    let status = fx
        .rejects(
            Code::FailedPrecondition,
            fx.controller().controller_publish_volume(second),
        )
        .await?;
    ensure!(
        status.message().contains(&node.node_id),
        "the spec asks the message to name the node the volume is published at ({}): {}",
        node.node_id,
        status.message()
    );
    Ok(())
}

/// The spec's "volume published but is incompatible with the readonly flag", whether or not
/// PUBLISH_READONLY is advertised: the node already holds the volume read-write.
async fn republish_readonly(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let volume = fx.must_create(&unique_name("sanity-spec-readonly")).await?;
    let request = requests::publish(&volume.volume_id, &node.node_id);
    fx.publish(request.clone())
        .await
        .context("publishing read-write")?;
    let readonly = ControllerPublishVolumeRequest {
        readonly: true,
        ..request
    };
    fx.rejects(
        Code::AlreadyExists,
        fx.controller().controller_publish_volume(readonly),
    )
    .await?;
    Ok(())
}

async fn publish_invalid_volume_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let request = requests::publish(INVALID_VOLUME_ID, &node.node_id);
    fx.rejects(
        Code::NotFound,
        fx.controller().controller_publish_volume(request),
    )
    .await?;
    Ok(())
}

async fn publish_context_and_fence(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to read the disk's allow list")?;
    let node = fx.node_info().await?;
    let volume = fx.must_create(&unique_name("sanity-spec-context")).await?;
    let context = fx
        .publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("ControllerPublishVolume")?
        .publish_context;
    let disk = sim_disk(fx, &volume.volume_id)?
        .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
    let rds = &fx.target().driver_config().rds;
    let address = if rds.nvme_address.is_empty() {
        &rds.address
    } else {
        &rds.nvme_address
    };
    let expected = [
        ("address", address.clone()),
        ("port", disk.nvme_tcp_server_port.to_string()),
        ("nqn", disk.nvme_tcp_server_nqn.clone()),
    ];
    for (key, value) in expected {
        ensure!(
            context.get(key) == Some(&value),
            "publish_context {key} is {:?}, the disk says {value:?}: {context:?}",
            context.get(key)
        );
    }
    ensure!(
        disk.nvme_tcp_export,
        "the published disk is not exported over NVMe/TCP"
    );
    ensure!(
        disk.nvme_tcp_server_allow_host_name == node.node_id,
        "the disk allows {:?}, not the node {}",
        disk.nvme_tcp_server_allow_host_name,
        node.node_id
    );
    Ok(())
}

async fn unpublish_nothing(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let volume = fx
        .must_create(&unique_name("sanity-spec-unpublished"))
        .await?;
    let cases = [
        (
            "a volume never published",
            volume.volume_id.clone(),
            node.node_id.clone(),
        ),
        (
            "a volume that does not exist",
            absent_volume_id(),
            node.node_id,
        ),
        (
            "a node that does not exist",
            volume.volume_id,
            fake_node_id(),
        ),
    ];
    for (what, volume_id, node_id) in cases {
        let request = requests::unpublish(&volume_id, &node_id);
        fx.succeeds_without_change(fx.controller().controller_unpublish_volume(request))
            .await
            .context(what)?;
    }
    Ok(())
}

async fn unpublish_clears_fence(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to read the disk's allow list")?;
    let node = fx.node_info().await?;
    let volume = fx.must_create(&unique_name("sanity-spec-unfence")).await?;
    fx.publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("ControllerPublishVolume")?;
    fx.controller()
        .controller_unpublish_volume(requests::unpublish(&volume.volume_id, &node.node_id))
        .await
        .context("ControllerUnpublishVolume")?;
    let disk = sim_disk(fx, &volume.volume_id)?
        .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
    ensure!(
        !disk.nvme_tcp_server_allow_host_name.contains(&node.node_id),
        "the unpublished node is still allowed: {:?}",
        disk.nvme_tcp_server_allow_host_name
    );
    Ok(())
}

async fn unpublish_from_every_node(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let volume = fx
        .must_create(&unique_name("sanity-spec-unpublish-all"))
        .await?;
    fx.publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("publishing to the first node")?;
    let everywhere = ControllerUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        ..Default::default()
    };
    fx.controller()
        .controller_unpublish_volume(everywhere)
        .await
        .context("ControllerUnpublishVolume without node_id")?;
    fx.publish(requests::publish(&volume.volume_id, OTHER_NODE_ID))
        .await
        .context("publishing to another node after unpublishing from every node")?;
    Ok(())
}

async fn validate_invalid_volume_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ValidateVolumeCapabilitiesRequest {
        volume_id: INVALID_VOLUME_ID.to_owned(),
        volume_capabilities: vec![single_node_writer()],
        ..Default::default()
    };
    fx.rejects(
        Code::NotFound,
        fx.controller().validate_volume_capabilities(request),
    )
    .await?;
    Ok(())
}

async fn validate_confirms(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx.must_create(&unique_name("sanity-spec-validate")).await?;
    let request = ValidateVolumeCapabilitiesRequest {
        volume_id: volume.volume_id,
        volume_capabilities: vec![single_node_writer()],
        ..Default::default()
    };
    let response = fx
        .controller()
        .validate_volume_capabilities(request)
        .await
        .context("ValidateVolumeCapabilities")?
        .into_inner();
    let confirmed = response.confirmed.with_context(|| {
        format!(
            "the capability the volume was created with is not confirmed: {}",
            response.message
        )
    })?;
    ensure!(
        confirmed.volume_capabilities == vec![single_node_writer()],
        "confirmed {:?}, asked for a single-node writer",
        confirmed.volume_capabilities
    );
    Ok(())
}
