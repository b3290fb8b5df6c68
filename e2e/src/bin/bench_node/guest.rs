//! Kernel mode of bench-node: the node plugin under the real kernel NVMe/TCP initiator in the QEMU
//! guest, rds-sim's target and the controller on the host (the rig of e2e/tests/node_qemu.rs).
//!
//! Per iteration, on fresh volumes and in alternating order:
//! - by hand in the guest: one shell script connects through /dev/nvme-fabrics with the driver's
//!   options, polls sysfs for the namespace's block device (10 ms sleeps, as a person would),
//!   runs the driver's `mkfs.ext4` and mounts; each step timed on the guest kernel's clock;
//! - NodeStageVolume from the host through the forwarded gRPC port, timed on the host, beside a
//!   NodeGetCapabilities round trip over the same channel (the forwarding's share); the split of
//!   its steps comes from the plugin's own log (`step=… ms=…`, which `qemu::node_plugin` enables).
//!
//! `--rds-csi` picks the plugin binary copied into the guest (a release build, for its memory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rds_csi::contract::{ADDRESS, NQN, PORT};
use rds_csi::csi::v1::{
    NodeGetCapabilitiesRequest, NodeStageVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use rds_csi::node::NodeSettings;
use rds_csi::node::host::fabric::kernel::connect_options;
use rds_csi::node::host::{FsType, Target, Tunables};
use rds_e2e::qemu::kernel_node::{KernelNodeRig, PublishedVolume};
use rds_e2e::qemu::node_plugin::NodePluginConfig;
use rds_e2e::requests;

use super::{Args, HOST_NQN, median, ms};

/// Enough for mkfs's page cache beside the plugin; the guest has no swap.
const GUEST_MEMORY_MB: u32 = 512;
const STAGING_ROOT: &str = "/var/lib/kubelet/plugins/rds/staging";

/// The rig and what the bench needs beside it.
struct Rig {
    rig: KernelNodeRig,
    /// The connect options the plugin uses for a volume without per-volume overrides.
    tunables: Tunables,
    size: u64,
}

/// One by-hand run, timed on the guest's clock.
struct ByHand {
    /// Connect, device found, mkfs, mount.
    steps: [Duration; 4],
    /// Two clock reads in a row: what each step's figure carries beside the step itself.
    clock_read: Duration,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("bench-node-guest-")
        .tempdir()?;
    let rig = Rig::start(dir.path(), args.size_mib << 20, args.rds_csi.clone())?;
    let idle_rss_kib = rig.memory("VmRSS")?;
    let (mut by_hand, mut stages, mut round_trips) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.iterations {
        // Alternating which goes first, so neither always follows the other's disconnect.
        if i % 2 == 0 {
            by_hand.push(rig.by_hand(&format!("bench-hand-{i}"))?);
            stages.push(rig.node_stage(&format!("bench-stage-{i}"))?);
        } else {
            stages.push(rig.node_stage(&format!("bench-stage-{i}"))?);
            by_hand.push(rig.by_hand(&format!("bench-hand-{i}"))?);
        }
        round_trips.push(rig.round_trip()?);
    }
    let rss_kib = rig.memory("VmRSS")?;
    let hwm_kib = rig.memory("VmHWM")?;
    let split = step_split(&rig.rig.plugin.log().map_err(anyhow::Error::msg)?);
    rig.rig.shutdown();

    let column = |step: usize| ms(median(by_hand.iter().map(|run| run.steps[step])));
    let total = median(by_hand.iter().map(|run| run.steps.iter().sum()));
    let stage = median(stages.iter().copied());
    println!(
        "NodeStage of a fresh {} MiB ext4 volume under the guest kernel's NVMe/TCP initiator \
         (QEMU TCG, 1 vCPU; rds-sim's target on the host), median of {}",
        args.size_mib, args.iterations
    );
    let logged = |step: &str| {
        split
            .get(step)
            .map_or("(not logged)".to_owned(), |t| ms(*t))
    };
    println!("| step | by hand in the guest | NodeStage, the plugin's log |");
    println!("|---|---|---|");
    println!(
        "| connect (write to /dev/nvme-fabrics) | {} | {} |",
        column(0),
        logged("connect")
    );
    println!(
        "| device found (by hand: sysfs poll, 10 ms sleeps) | {} | {} |",
        column(1),
        logged("device")
    );
    println!("| probe | (none) | {} |", logged("probe"));
    println!("| mkfs.ext4 | {} | {} |", column(2), logged("mkfs"));
    println!("| mount | {} | {} |", column(3), logged("mount"));
    println!("| total | {} | |", ms(total));
    println!(
        "(timed with the guest kernel's monotonic clock from /proc/timer_list; each step's figure \
         includes one clock read, {} by itself)",
        ms(median(by_hand.iter().map(|run| run.clock_read)))
    );
    let round_trip = median(round_trips.iter().copied());
    let ratio = |stage: Duration| stage.as_secs_f64() / total.as_secs_f64();
    println!(
        "NodeStageVolume from the host through the forwarded gRPC port: {} (ratio to the steps by \
         hand: {:.2}); it includes one gRPC round trip through QEMU's port forward, \
         NodeGetCapabilities on the same channel: {} (without it: {:.2})",
        ms(stage),
        ratio(stage),
        ms(round_trip),
        ratio(stage.saturating_sub(round_trip))
    );
    println!(
        "rds-csi node memory in the guest: VmRSS {:.1} MiB idle, {:.1} MiB after {} stages and \
         unstages; VmHWM {:.1} MiB",
        idle_rss_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0,
        args.iterations,
        hwm_kib as f64 / 1024.0
    );
    Ok(())
}

impl Rig {
    /// rds-sim, the guest with `rds-csi node`, and a controller served in this process.
    fn start(dir: &Path, size: u64, binary: Option<PathBuf>) -> anyhow::Result<Rig> {
        let plugin = NodePluginConfig {
            binary,
            node: toml::Table::new(),
            extra_files: Vec::new(),
            memory_mb: GUEST_MEMORY_MB,
        };
        let rig =
            KernelNodeRig::start(dir, HOST_NQN, plugin).or_else(|e| match e.skip_reason() {
                Some(reason) => bail!("cannot run the guest benchmark: {reason}"),
                None => {
                    Err(e).context("starting rds-sim, the guest's node plugin and the controller")
                }
            })?;
        let tunables = NodeSettings::from_config(&rig.config.node).tunables;
        Ok(Rig {
            rig,
            tunables,
            size,
        })
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rig.block_on(future)
    }

    fn guest(&self, script: &str) -> anyhow::Result<String> {
        self.rig.plugin.run_ok(script).map_err(anyhow::Error::msg)
    }

    fn memory(&self, field: &str) -> anyhow::Result<u64> {
        self.rig
            .plugin
            .memory_kib(field)
            .map_err(anyhow::Error::msg)
    }

    fn create_and_publish(&self, name: &str) -> anyhow::Result<PublishedVolume> {
        let volume =
            self.rig
                .create_and_publish(name, self.size, &HashMap::new(), ext4_capability())?;
        Ok(volume)
    }

    /// Unpublishes and deletes, so the simulator's pool never fills however many iterations run.
    fn remove(&self, volume: &PublishedVolume) -> anyhow::Result<()> {
        self.rig.unpublish_and_delete(volume)?;
        Ok(())
    }

    /// Connect, device found, mkfs and mount by hand in the guest, timed there; then undone.
    fn by_hand(&self, name: &str) -> anyhow::Result<ByHand> {
        let volume = self.create_and_publish(name)?;
        let published = |key: &str| {
            volume
                .publish
                .get(key)
                .with_context(|| format!("publish_context lacks {key:?}"))
        };
        let nqn = published(NQN)?;
        let target = Target {
            volume_id: volume.id.clone(),
            nqn: nqn.clone(),
            address: published(ADDRESS)?.clone(),
            port: published(PORT)?.parse()?,
            host_nqn: HOST_NQN.to_owned(),
            file_path: None,
            tunables: self.tunables,
        };
        let line = connect_options(&target, target.address.parse()?)?;
        let (program, mkfs_options) = FsType::Ext4.mkfs_command();
        let mkfs = format!("{program} {}", mkfs_options.join(" "));
        let mnt = format!("/mnt/{name}");
        // busybox's date has no %N, and a copied coreutils date takes ~70 ms to start under TCG;
        // the kernel's monotonic clock in /proc/timer_list's third line costs 1.5–3 ms to read
        // with shell builtins (no process), and the script reads it twice in a row to show that.
        let output = self.guest(&format!(
            "now() {{ {{ read -r _; read -r _; read -r _ _ ns _; }} </proc/timer_list; }}
             mkdir -p {mnt}
             now; c0=$ns; now; c1=$ns
             now; t0=$ns
             exec 4<>/dev/nvme-fabrics
             echo {line} >&4 || exit 1
             read -r reply <&4
             exec 4<&-
             now; t1=$ns
             dev=
             polls=0
             while [ -z \"$dev\" ]; do
               for subsys in /sys/class/nvme-subsystem/*; do
                 read -r nqn 2>/dev/null <$subsys/subsysnqn || continue
                 [ \"$nqn\" = {nqn} ] || continue
                 for ns in $subsys/nvme*n*; do
                   [ -b /dev/${{ns##*/}} ] && dev=/dev/${{ns##*/}} && break
                 done
               done
               [ -n \"$dev\" ] && break
               polls=$((polls + 1))
               [ $polls -lt 1000 ] || {{ echo 'no namespace of {nqn} after 10 s' >&2; exit 1; }}
               sleep 0.01
             done
             now; t2=$ns
             {mkfs} $dev || exit 1
             now; t3=$ns
             mount -t ext4 $dev {mnt} || exit 1
             now; t4=$ns
             echo $c0 $c1 $t0 $t1 $t2 $t3 $t4
             [ -d {mnt}/lost+found ] || {{ echo 'no fresh ext4 at {mnt}' >&2; exit 1; }}
             umount {mnt}
             controller=nvme${{reply#instance=}}
             controller=${{controller%%,*}}
             echo 1 >/sys/class/nvme/$controller/delete_controller
             for i in $(seq 100); do [ -e /sys/class/nvme/$controller ] || exit 0; sleep 0.1; done
             echo \"$controller still present after delete_controller\" >&2; exit 1"
        ))?;
        self.remove(&volume)?;
        let printed = || format!("the by-hand script printed {output:?}, not 7 clock readings");
        let stamps: Vec<u64> = output
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(printed)?;
        let stamps: [u64; 7] = stamps.try_into().map_err(|_| anyhow::anyhow!(printed()))?;
        let between =
            |from: usize| Duration::from_nanos(stamps[from + 1].saturating_sub(stamps[from]));
        Ok(ByHand {
            steps: std::array::from_fn(|step| between(step + 2)),
            clock_read: between(0),
        })
    }

    /// NodeStageVolume timed at this end, checked for a fresh ext4, then unstaged.
    fn node_stage(&self, name: &str) -> anyhow::Result<Duration> {
        let volume = self.create_and_publish(name)?;
        let staging = format!("{STAGING_ROOT}/{}", volume.id);
        let mut node = self.rig.node.clone();
        let request = NodeStageVolumeRequest {
            volume_id: volume.id.clone(),
            publish_context: volume.publish.clone(),
            staging_target_path: staging.clone(),
            volume_capability: Some(ext4_capability()),
            volume_context: volume.context.clone(),
            ..Default::default()
        };
        let start = Instant::now();
        self.block_on(node.node_stage_volume(request))?;
        let took = start.elapsed();
        self.guest(&format!(
            "[ -d {staging}/lost+found ] || {{ echo 'NodeStageVolume mounted no fresh ext4 at \
             {staging}' >&2; exit 1; }}"
        ))?;
        self.block_on(node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: volume.id.clone(),
            staging_target_path: staging,
        }))?;
        self.remove(&volume)?;
        Ok(took)
    }

    /// One cheap call over the plugin's channel: what the forwarded port adds to any call.
    fn round_trip(&self) -> anyhow::Result<Duration> {
        let mut node = self.rig.node.clone();
        let start = Instant::now();
        self.block_on(node.node_get_capabilities(NodeGetCapabilitiesRequest {}))?;
        Ok(start.elapsed())
    }
}

fn ext4_capability() -> VolumeCapability {
    requests::fs_capability(FsType::Ext4.as_str())
}

/// The median time of each step the plugin logged (`step="mkfs" ms=190.2 ok=true`, node/stage.rs),
/// over the successful ones.
fn step_split(log: &str) -> HashMap<String, Duration> {
    let field = |line: &str, name: &str| -> Option<String> {
        let value = line.split(&format!(" {name}=")).nth(1)?;
        Some(
            value
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_owned(),
        )
    };
    let mut steps: HashMap<String, Vec<Duration>> = HashMap::new();
    for line in log.lines() {
        let (Some(step), Some(millis), Some(ok)) =
            (field(line, "step"), field(line, "ms"), field(line, "ok"))
        else {
            continue;
        };
        if let (Ok(millis), "true") = (millis.parse::<f64>(), ok.as_str()) {
            steps
                .entry(step)
                .or_default()
                .push(Duration::from_secs_f64(millis / 1e3));
        }
    }
    steps
        .into_iter()
        .map(|(step, times)| (step, median(times.into_iter())))
        .collect()
}
