//! The spec's error table and rules for ControllerExpandVolume.

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::plugin_capability::{self, volume_expansion};
use rds_csi::csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, GetPluginCapabilitiesRequest,
};
use rds_sim::faults::Fault;
use tonic::Code;

use super::absent_volume_id;
use super::spec_volumes::sim_disk;
use crate::fixture::Fixture;
use crate::requests::{self, exact_capacity, single_node_writer, unique_name};
use crate::suite::{Skip, trial};

pub fn trials() -> Vec<Trial> {
    const EV: &str = "CSI spec [Controller Server] ControllerExpandVolume";
    vec![
        trial(
            &format!("{EV} NOT_FOUND for a volume that does not exist"),
            expand_absent_volume,
        ),
        trial(
            &format!("{EV} OUT_OF_RANGE for a capacity below the volume's size"),
            expand_to_smaller,
        ),
        trial(
            &format!("{EV} OUT_OF_RANGE for a capacity larger than any volume"),
            expand_too_large,
        ),
        trial(
            &format!("{EV} RESOURCE_EXHAUSTED when the pool has no space"),
            expand_pool_full,
        ),
        trial(
            &format!("{EV} grows the disk and succeeds again without change"),
            expand_grows_disk,
        ),
        trial(
            &format!("{EV} FAILED_PRECONDITION for a published volume without ONLINE expansion"),
            expand_published_offline_only,
        ),
    ]
}

fn expand(volume_id: &str, range: CapacityRange) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume_id.to_owned(),
        capacity_range: Some(range),
        volume_capability: Some(single_node_writer()),
        ..Default::default()
    }
}

async fn expand_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = expand(&absent_volume_id(), exact_capacity(2 * fx.volume_size()));
    fx.rejects(
        Code::NotFound,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

async fn expand_to_smaller(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx.must_create(&unique_name("sanity-spec-shrink")).await?;
    let request = expand(&volume.volume_id, exact_capacity(fx.volume_size() / 2));
    fx.rejects(
        Code::OutOfRange,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

async fn expand_too_large(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx.must_create(&unique_name("sanity-spec-huge")).await?;
    let request = expand(&volume.volume_id, exact_capacity(i64::MAX as u64));
    fx.rejects(
        Code::OutOfRange,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

async fn expand_pool_full(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx.must_create(&unique_name("sanity-spec-full")).await?;
    fx.require_sim("to fill the pool")?
        .inject(&Fault::PoolFull { enabled: true })?;
    let request = expand(&volume.volume_id, exact_capacity(2 * fx.volume_size()));
    fx.rejects(
        Code::ResourceExhausted,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}

async fn expand_grows_disk(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx.must_create(&unique_name("sanity-spec-grow")).await?;
    let wanted = 2 * fx.volume_size();
    let request = expand(&volume.volume_id, exact_capacity(wanted));
    let first = fx
        .controller()
        .controller_expand_volume(request.clone())
        .await
        .context("ControllerExpandVolume")?
        .into_inner();
    ensure!(
        u64::try_from(first.capacity_bytes) == Ok(wanted),
        "expanded to {} bytes, {wanted} were asked for",
        first.capacity_bytes
    );
    if fx.target().sim().is_some() {
        let disk = sim_disk(fx, &volume.volume_id)?
            .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
        ensure!(
            disk.file_size == wanted,
            "the disk is {} bytes after expanding to {wanted}",
            disk.file_size
        );
    }
    let again = fx
        .succeeds_without_change(fx.controller().controller_expand_volume(request))
        .await
        .context("expanding to the same size again")?;
    ensure!(
        again.capacity_bytes == first.capacity_bytes,
        "the repeated expansion reports {} bytes, the first {}",
        again.capacity_bytes,
        first.capacity_bytes
    );
    Ok(())
}

async fn expand_published_offline_only(fx: &mut Fixture) -> anyhow::Result<()> {
    let capabilities = fx
        .identity()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .context("GetPluginCapabilities")?
        .into_inner()
        .capabilities;
    let online = capabilities.iter().any(|c| {
        matches!(c.r#type, Some(plugin_capability::Type::VolumeExpansion(e))
            if e.r#type == volume_expansion::Type::Online as i32)
    });
    if online {
        return Err(Skip("the plugin advertises ONLINE volume expansion".to_owned()).into());
    }
    let node = fx.node_info().await?;
    let volume = fx.must_create(&unique_name("sanity-spec-offline")).await?;
    fx.publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("ControllerPublishVolume")?;
    let request = expand(&volume.volume_id, exact_capacity(2 * fx.volume_size()));
    fx.rejects(
        Code::FailedPrecondition,
        fx.controller().controller_expand_volume(request),
    )
    .await?;
    Ok(())
}
