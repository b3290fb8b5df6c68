//! The suite's rig: rds-sim in its container (testcontainers), the controller on the host, and
//! `rds-csi node` (fabric "kernel") in a QEMU guest, which reaches the container's address
//! through the host.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rds_csi::csi::v1::NodeGetVolumeStatsRequest;
use rds_csi::csi::v1::VolumeCondition;
use rds_e2e::container::rds::RdsContainer;
use rds_e2e::container::rig::ContainerRds;
use rds_e2e::qemu::kernel_node::KernelNodeRig;
use rds_e2e::qemu::kubelet_calls::Kubelet;
use rds_e2e::qemu::node_plugin::NodePluginConfig;
use rds_e2e::requests;

pub type Rig = KernelNodeRig<ContainerRds>;

pub const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:7e5c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
pub const SIZE: u64 = 256 << 20;
pub const FS: &str = "ext4";

/// Why a rig did not start.
pub enum NotStarted {
    /// This machine cannot run the rig and `CI` is not `true`.
    Skip(String),
    Failed(String),
}

pub fn start(dir: &Path) -> Result<Rig, NotStarted> {
    let rds = ContainerRds::start(dir).map_err(|e| match e.skip_reason() {
        Some(reason) => NotStarted::Skip(reason),
        None => NotStarted::Failed(e.to_string()),
    })?;
    let plugin = NodePluginConfig {
        binary: None,
        node: toml::Table::new(),
        extra_files: Vec::new(),
        memory_mb: 1024,
    };
    KernelNodeRig::start_on(rds, dir, HOST_NQN, plugin).map_err(|e| match e.skip_reason() {
        Some(reason) => NotStarted::Skip(reason),
        None => NotStarted::Failed(e.to_string()),
    })
}

pub fn rds(rig: &Rig) -> &RdsContainer {
    rig.sim.rds()
}

/// Runs `command` in the guest; its stdout.
pub fn guest(rig: &Rig, command: &str) -> anyhow::Result<String> {
    rig.plugin.run_ok(command).map_err(anyhow::Error::msg)
}

/// A file system volume created with StorageClass `parameters`, published to the guest, staged
/// and published in pod `pod` as kubelet does.
pub fn mounted_volume(
    rig: &Rig,
    name: &str,
    parameters: &[(&str, &str)],
    pod: &str,
) -> anyhow::Result<Kubelet> {
    let parameters: HashMap<String, String> = parameters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let capability = requests::fs_capability(FS);
    let volume = rig
        .create_and_publish(name, SIZE, &parameters, capability.clone())
        .with_context(|| format!("creating and publishing {name}"))?;
    let kubelet = Kubelet::new(volume, capability, pod);
    kubelet.stage(rig).context("NodeStageVolume")?;
    kubelet.publish(rig).context("NodePublishVolume")?;
    Ok(kubelet)
}

/// NodeGetVolumeStats of the volume at its target path, as kubelet asks.
pub fn condition(rig: &Rig, kubelet: &Kubelet) -> anyhow::Result<VolumeCondition> {
    let mut node = rig.node.clone();
    let stats = rig
        .block_on(node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: kubelet.volume.id.clone(),
            volume_path: kubelet.target.clone(),
            staging_target_path: kubelet.staging.clone(),
        }))
        .context("NodeGetVolumeStats")?
        .into_inner();
    stats
        .volume_condition
        .context("NodeGetVolumeStats answered without a volume condition")
}

/// The guest's NVMe controllers of subsystem `nqn`, with their states (`nvme0 live`).
pub fn controllers(rig: &Rig, nqn: &str) -> anyhow::Result<Vec<String>> {
    let text = guest(
        rig,
        &format!(
            "for c in /sys/class/nvme/*; do
               [ -e \"$c/subsysnqn\" ] && [ \"$(cat $c/subsysnqn)\" = {nqn} ] \
                 && echo \"${{c##*/}} $(cat $c/state)\"
             done; true"
        ),
    )?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// The guest kernel's log from line `from` on (`dmesg | wc -l` taken earlier).
pub fn dmesg_since(rig: &Rig, from: usize) -> anyhow::Result<String> {
    guest(rig, &format!("dmesg | tail -n +{}", from + 1))
}

pub fn dmesg_lines(rig: &Rig) -> anyhow::Result<usize> {
    let text = guest(rig, "dmesg | wc -l")?;
    text.trim()
        .parse()
        .with_context(|| format!("dmesg | wc -l printed {text:?}"))
}

/// Calls `step` until it succeeds, as kubelet retries with a backoff, for at most `limit`.
pub fn retried<T>(
    what: &str,
    limit: Duration,
    mut step: impl FnMut() -> Result<T, tonic::Status>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(200);
    loop {
        match step() {
            Ok(value) => return Ok(value),
            Err(status) => ensure!(
                Instant::now() < deadline,
                "{what} never succeeded within {limit:?}; last: {status:?}"
            ),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
