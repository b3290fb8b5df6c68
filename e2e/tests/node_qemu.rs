//! The node plugin under the real kernel NVMe/TCP initiator: rds-sim and the controller run on the
//! host, `rds-csi node` (fabric "kernel") runs in a QEMU guest, and this test drives the node's gRPC
//! from the host through a forwarded port (`tcp://` endpoint). One boot carries every check, in
//! order: stage → 64 MiB pattern → unstage → stage → verify; a second stage is a no-op; a
//! read-only publish keeps the mount flags, paths through `..` converge and a symlink is refused;
//! online expansion; raw block publish, read-write and read-only (the kernel refuses the writes),
//! which unstage waits for; after the disk was removed on the RDS, the volume is abnormal, NodeUnstage
//! is UNAVAILABLE while the kernel reconnects, and cleans up once it gave up.
//!
//! Needs the plugin binary beside this test's: `cargo build -p rds-csi` first.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::volume_capability::{AccessType, MountVolume};
use rds_csi::csi::v1::{
    ControllerExpandVolumeRequest, NodeExpandVolumeRequest, NodeGetVolumeStatsRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use rds_e2e::qemu::kernel_node::{KernelNodeRig, PublishedVolume};
use rds_e2e::qemu::node_plugin::NodePluginConfig;
use rds_e2e::requests;

const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:0d1e2f30-4a5b-4c6d-8e7f-90a1b2c3d4e5";
const PATTERN_MIB: u64 = 64;
const BLOCK_PATTERN_MIB: u64 = 16;
const VOLUME_SIZE: u64 = 256 << 20;
const EXPANDED_SIZE: u64 = 512 << 20;
const FS: &str = "ext4";
/// Seconds; see where the file system volume is created.
const REMOVED_DISK_CTRL_LOSS_TMO: &str = "10";

/// A volume published to the guest, with its staging path there.
struct Volume {
    published: PublishedVolume,
    staging: String,
}

impl std::ops::Deref for Volume {
    type Target = PublishedVolume;

    fn deref(&self) -> &PublishedVolume {
        &self.published
    }
}

/// The steps and checks of this test on the rig.
trait Steps {
    fn guest_ok(&self, command: &str) -> String;
    fn publish_volume(
        &self,
        name: &str,
        parameters: &HashMap<String, String>,
        capability: VolumeCapability,
    ) -> Volume;
    fn stage(&self, volume: &Volume, capability: VolumeCapability) -> Result<(), tonic::Status>;
    fn unstage(&self, volume: &Volume) -> Result<(), tonic::Status>;
    fn mounts_at(&self, path: &str) -> usize;
    fn controllers(&self) -> Vec<String>;
}

impl Steps for KernelNodeRig {
    fn guest_ok(&self, command: &str) -> String {
        self.plugin
            .run_ok(command)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a volume and publishes it to the guest's host NQN.
    fn publish_volume(
        &self,
        name: &str,
        parameters: &HashMap<String, String>,
        capability: VolumeCapability,
    ) -> Volume {
        let volume = self
            .create_and_publish(name, VOLUME_SIZE, parameters, capability)
            .unwrap();
        Volume {
            staging: format!("/var/lib/kubelet/plugins/rds/staging/{}", volume.id),
            published: volume,
        }
    }

    fn stage(&self, volume: &Volume, capability: VolumeCapability) -> Result<(), tonic::Status> {
        let mut node = self.node.clone();
        let request = volume.stage_request(&volume.staging, capability);
        self.block_on(node.node_stage_volume(request)).map(|_| ())
    }

    fn unstage(&self, volume: &Volume) -> Result<(), tonic::Status> {
        let mut node = self.node.clone();
        let request = NodeUnstageVolumeRequest {
            volume_id: volume.id.clone(),
            staging_target_path: volume.staging.clone(),
        };
        self.block_on(node.node_unstage_volume(request)).map(|_| ())
    }

    /// The guest's mounts at `path` (lines of /proc/mounts).
    fn mounts_at(&self, path: &str) -> usize {
        self.guest_ok(&format!("awk '$2 == \"{path}\"' /proc/mounts"))
            .lines()
            .count()
    }

    /// The NVMe controllers the guest kernel has.
    fn controllers(&self) -> Vec<String> {
        self.guest_ok("ls /sys/class/nvme 2>/dev/null || true")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

fn mount_capability() -> VolumeCapability {
    requests::fs_capability(FS)
}

fn block_capability() -> VolumeCapability {
    requests::block_capability(Mode::SingleNodeWriter)
}

fn start_rig(dir: &Path) -> Option<KernelNodeRig> {
    let pattern_path = dir.join("pattern");
    let mut pattern = vec![0u8; (PATTERN_MIB << 20) as usize];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut pattern)
        .unwrap();
    std::fs::write(&pattern_path, &pattern).unwrap();
    let config = NodePluginConfig {
        binary: None,
        node: toml::Table::new(),
        extra_files: vec![(pattern_path, "/root/pattern".into())],
        memory_mb: 1024,
    };
    match KernelNodeRig::start(dir, HOST_NQN, config) {
        Ok(rig) => Some(rig),
        Err(e) => match e.skip_reason() {
            Some(reason) => {
                eprintln!("SKIPPED: {reason}");
                None
            }
            None => panic!("{e}"),
        },
    }
}

fn timed<T>(name: &str, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = step();
    eprintln!("node_qemu: {name} took {:.1?}", started.elapsed());
    out
}

#[test]
fn node_plugin_under_the_kernel_initiator() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let Some(rig) = start_rig(dir.path()) else {
        return;
    };
    eprintln!("node_qemu: boot took {:.1?}", started.elapsed());
    // A removed disk's controller reconnects in vain until ctrl_loss_tmo, and NodeUnstage waits
    // for that: keep it short so the last check is quick.
    let parameters = HashMap::from([
        (
            "ctrlLossTmo".to_owned(),
            REMOVED_DISK_CTRL_LOSS_TMO.to_owned(),
        ),
        ("reconnectDelay".to_owned(), "1".to_owned()),
    ]);
    let volume = rig.publish_volume("pvc-node-qemu-fs", &parameters, mount_capability());
    timed("stage, pattern, unstage, stage, verify", || {
        data_survives_unstage_and_stage(&rig, &volume)
    });
    timed("second stage", || a_second_stage_is_a_no_op(&rig, &volume));
    timed("read-only publish and paths", || {
        publishes_keep_flags_and_resolve_paths(&rig, &volume)
    });
    timed("expansion", || {
        online_expansion_grows_the_filesystem(&rig, &volume)
    });
    timed("block publish", || block_publish_makes_a_device_node(&rig));
    timed("unstage after removal", || {
        unstage_cleans_up_after_the_disk_was_removed(&rig, &volume)
    });
    eprintln!("node_qemu: total {:.1?}", started.elapsed());
    rig.shutdown();
}

fn data_survives_unstage_and_stage(rig: &KernelNodeRig, volume: &Volume) {
    rig.stage(volume, mount_capability()).unwrap();
    assert_eq!(rig.mounts_at(&volume.staging), 1);
    let fs = rig.guest_ok(&format!("findmnt -n -o FSTYPE {}", volume.staging));
    assert_eq!(fs.trim(), FS);
    rig.guest_ok(&format!(
        "cp /root/pattern {0}/pattern && sync {0}/pattern",
        volume.staging
    ));
    rig.unstage(volume).unwrap();
    assert_eq!(rig.mounts_at(&volume.staging), 0);
    assert_eq!(rig.controllers(), Vec::<String>::new(), "still connected");
    rig.stage(volume, mount_capability()).unwrap();
    rig.guest_ok(&format!("cmp /root/pattern {}/pattern", volume.staging));
}

fn a_second_stage_is_a_no_op(rig: &KernelNodeRig, volume: &Volume) {
    let controllers = rig.controllers();
    assert_eq!(controllers.len(), 1, "{controllers:?}");
    rig.stage(volume, mount_capability()).unwrap();
    assert_eq!(rig.mounts_at(&volume.staging), 1);
    assert_eq!(rig.controllers(), controllers);
}

/// Publishes `volume` at `target` with `capability`.
fn publish(
    rig: &KernelNodeRig,
    volume: &Volume,
    target: &str,
    capability: VolumeCapability,
    readonly: bool,
) -> Result<(), tonic::Status> {
    let mut node = rig.node.clone();
    let request = volume.publish_request(&volume.staging, target, capability, readonly);
    rig.block_on(node.node_publish_volume(request)).map(drop)
}

fn unpublish(rig: &KernelNodeRig, volume: &Volume, target: &str) -> Result<(), tonic::Status> {
    let mut node = rig.node.clone();
    rig.block_on(node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: volume.id.clone(),
        target_path: target.to_owned(),
    }))
    .map(drop)
}

fn publishes_keep_flags_and_resolve_paths(rig: &KernelNodeRig, volume: &Volume) {
    let pods = "/var/lib/kubelet/pods/qemu-fs";
    let hardened = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: FS.into(),
            mount_flags: vec!["nosuid,nodev".into(), "noexec".into()],
            ..Default::default()
        })),
        ..mount_capability()
    };
    let target = format!("{pods}/ro");
    publish(rig, volume, &target, hardened.clone(), true).unwrap();
    publish(rig, volume, &target, hardened, true).unwrap();
    let options = rig.guest_ok(&format!("findmnt -n -o OPTIONS {target}"));
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            options.trim().split(',').any(|o| o == flag),
            "a read-only publish has {options:?}, without {flag}"
        );
    }
    rig.guest_ok(&format!("! touch {target}/x 2>/dev/null"));
    // Through `..`: one mount, which unpublish removes; through a symlink the node did not
    // make: refused, nothing mounted.
    rig.guest_ok(&format!(
        "mkdir -p {pods}/real && ln -sfn {pods}/real {pods}/link"
    ));
    let through = format!("{pods}/other/../real/./rw");
    for _ in 0..2 {
        publish(rig, volume, &through, mount_capability(), false).unwrap();
    }
    assert_eq!(rig.mounts_at(&format!("{pods}/real/rw")), 1);
    let refused = publish(
        rig,
        volume,
        &format!("{pods}/link/rw2"),
        mount_capability(),
        false,
    )
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(rig.mounts_at(&format!("{pods}/real/rw2")), 0);
    unpublish(rig, volume, &through).unwrap();
    assert_eq!(rig.mounts_at(&format!("{pods}/real/rw")), 0);
    unpublish(rig, volume, &target).unwrap();
    assert_eq!(rig.mounts_at(&target), 0);
}

fn online_expansion_grows_the_filesystem(rig: &KernelNodeRig, volume: &Volume) {
    let size = |rig: &KernelNodeRig| -> u64 {
        let text = rig.guest_ok(&format!(
            "df -k {} | awk 'END {{ printf \"%d\\n\", $2 * 1024 }}'",
            volume.staging
        ));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("file system size {text:?}: {e}"))
    };
    let before = size(rig);
    let capacity = Some(requests::exact_capacity(EXPANDED_SIZE));
    let mut controller = rig.controller.clone();
    let mut node = rig.node.clone();
    let expanded = rig.block_on(async {
        let response = controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: volume.id.clone(),
                capacity_range: capacity,
                volume_capability: Some(mount_capability()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response.node_expansion_required);
        node.node_expand_volume(NodeExpandVolumeRequest {
            volume_id: volume.id.clone(),
            volume_path: volume.staging.clone(),
            capacity_range: capacity,
            staging_target_path: volume.staging.clone(),
            volume_capability: Some(mount_capability()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(expanded.capacity_bytes, EXPANDED_SIZE as i64);
    let after = size(rig);
    // The file system's own overhead stays; it grew by about the added space.
    assert!(
        after > before + (EXPANDED_SIZE - VOLUME_SIZE) * 9 / 10,
        "file system size {before} → {after} after expanding the volume to {EXPANDED_SIZE}"
    );
    rig.guest_ok(&format!("cmp /root/pattern {}/pattern", volume.staging));
}

fn block_publish_makes_a_device_node(rig: &KernelNodeRig) {
    let volume = rig.publish_volume("pvc-node-qemu-block", &HashMap::new(), block_capability());
    rig.stage(&volume, block_capability()).unwrap();
    let target = format!("/var/lib/kubelet/pods/qemu/volumeDevices/{}", volume.id);
    publish(rig, &volume, &target, block_capability(), false).unwrap();
    // A device node with the namespace's numbers, not a bind mount of /dev.
    assert_eq!(rig.mounts_at(&target), 0);
    let numbers = rig.guest_ok(&format!(
        "[ -b {target} ] && stat -c %t:%T {target}
         for ns in /sys/class/nvme-subsystem/*/nvme*n*; do
           [ \"$(cat ${{ns%/*}}/subsysnqn)\" = {} ] && stat -c %t:%T /dev/${{ns##*/}}
         done",
        volume.publish["nqn"]
    ));
    let numbers: Vec<&str> = numbers.lines().collect();
    assert_eq!(numbers.len(), 2, "{numbers:?}");
    assert_eq!(numbers[0], numbers[1]);
    rig.guest_ok(&format!(
        "dd if=/root/pattern of={target} bs=1M count={BLOCK_PATTERN_MIB} oflag=direct 2>/dev/null
         dd if={target} bs=1M count={BLOCK_PATTERN_MIB} iflag=direct 2>/dev/null \
           | cmp - /root/pattern -n {}",
        BLOCK_PATTERN_MIB << 20
    ));
    // Read-only: root in the guest cannot write it, and it shows what was written.
    let read_only = format!("{target}-ro");
    publish(rig, &volume, &read_only, block_capability(), true).unwrap();
    rig.guest_ok(&format!(
        "! dd if=/dev/zero of={read_only} bs=1M count=1 oflag=direct 2>/dev/null
         dd if={read_only} bs=1M count={BLOCK_PATTERN_MIB} iflag=direct 2>/dev/null \
           | cmp - /root/pattern -n {}",
        BLOCK_PATTERN_MIB << 20
    ));
    let refused = rig.unstage(&volume).unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    for published in [&target, &read_only] {
        unpublish(rig, &volume, published).unwrap();
        rig.guest_ok(&format!("[ ! -e {published} ]"));
    }
    rig.unstage(&volume).unwrap();
    rig.guest_ok("! grep -qs nvme /sys/block/loop*/loop/backing_file");
}

fn unstage_cleans_up_after_the_disk_was_removed(rig: &KernelNodeRig, volume: &Volume) {
    let output = rig
        .sim
        .routeros(&format!("/disk remove [find where slot=\"{}\"]", volume.id))
        .unwrap();
    assert_eq!(output, "", "removing the disk");
    // The target closed the connection; once the kernel noticed, the volume is abnormal.
    rig.guest_ok(
        "for i in $(seq 300); do
           grep -qv '^live$' /sys/class/nvme/*/state && exit 0
           sleep 0.1
         done
         cat /sys/class/nvme/*/state >&2; exit 1",
    );
    let mut node = rig.node.clone();
    let stats = rig
        .block_on(node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: volume.id.clone(),
            volume_path: volume.staging.clone(),
            staging_target_path: volume.staging.clone(),
        }))
        .unwrap()
        .into_inner();
    let condition = stats.volume_condition.unwrap();
    assert!(condition.abnormal, "{condition:?}");
    assert!(
        condition.message.contains("NVMe controller"),
        "{condition:?}"
    );
    // The unmount would wait in the kernel while the controller reconnects: refused, nothing undone.
    let refused = rig.unstage(volume).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("retry later"), "{refused:?}");
    assert_eq!(rig.mounts_at(&volume.staging), 1);
    // Once ctrl_loss_tmo has passed, the kernel gives the controller up and the retry cleans up.
    rig.guest_ok(&format!(
        "for i in $(seq {}); do
           grep -qsE 'connecting|resetting' /sys/class/nvme/*/state || exit 0
           sleep 0.1
         done
         cat /sys/class/nvme/*/state >&2; exit 1",
        REMOVED_DISK_CTRL_LOSS_TMO.parse::<u32>().unwrap() * 10 * 3
    ));
    rig.unstage(volume).unwrap();
    assert_eq!(rig.mounts_at(&volume.staging), 0);
    assert_eq!(rig.controllers(), Vec::<String>::new(), "still connected");
}
