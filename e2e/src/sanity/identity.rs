//! Identity Service cases named as csi-sanity's specs, kept for what they check beyond it: Probe
//! says ready while the RDS is reachable, GetPluginInfo names the configured driver.

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::{GetPluginInfoRequest, ProbeRequest};

use crate::fixture::Fixture;
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    vec![
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
