//! csi-sanity's Identity Service cases.

use anyhow::{Context, bail, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::plugin_capability::{self, service, volume_expansion};
use rds_csi::csi::v1::{GetPluginCapabilitiesRequest, GetPluginInfoRequest, ProbeRequest};

use crate::fixture::Fixture;
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "Identity Service GetPluginCapabilities should return appropriate capabilities",
            get_plugin_capabilities,
        ),
        trial(
            "Identity Service Probe should return appropriate information",
            probe,
        ),
        trial(
            "Identity Service GetPluginInfo should return appropriate information",
            get_plugin_info,
        ),
    ]
}

async fn get_plugin_capabilities(fx: &mut Fixture) -> anyhow::Result<()> {
    let capabilities = fx
        .identity()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .context("GetPluginCapabilities")?
        .into_inner()
        .capabilities;
    for capability in &capabilities {
        match capability.r#type {
            Some(plugin_capability::Type::Service(s)) => {
                let known =
                    service::Type::try_from(s.r#type).is_ok_and(|t| t != service::Type::Unknown);
                ensure!(known, "unknown service capability {}", s.r#type);
            }
            Some(plugin_capability::Type::VolumeExpansion(e)) => {
                let known = volume_expansion::Type::try_from(e.r#type)
                    .is_ok_and(|t| t != volume_expansion::Type::Unknown);
                ensure!(known, "unknown volume expansion capability {}", e.r#type);
            }
            None => bail!("a plugin capability with no type: {capability:?}"),
        }
    }
    Ok(())
}

async fn probe(fx: &mut Fixture) -> anyhow::Result<()> {
    let response = fx
        .identity()
        .probe(ProbeRequest {})
        .await
        .context("Probe")?
        .into_inner();
    // Unset means ready; the RDS is up, so the plugin must not say it is still starting.
    ensure!(
        response.ready != Some(false),
        "Probe says not ready although the RDS is reachable"
    );
    Ok(())
}

async fn get_plugin_info(fx: &mut Fixture) -> anyhow::Result<()> {
    let info = fx
        .identity()
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .context("GetPluginInfo")?
        .into_inner();
    ensure!(!info.name.is_empty(), "GetPluginInfo returned no name");
    ensure!(
        !info.vendor_version.is_empty(),
        "GetPluginInfo returned no vendor_version"
    );
    ensure!(
        info.name.len() <= 63,
        "the plugin name {:?} is longer than 63 characters",
        info.name
    );
    let configured = &fx.target().driver_config().driver_name;
    ensure!(
        &info.name == configured,
        "GetPluginInfo names the plugin {:?}, but the driver is configured as {configured:?}",
        info.name
    );
    Ok(())
}
