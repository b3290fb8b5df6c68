//! The node service for real in loop mode: backing files behind loop devices, mkfs, mount,
//! publish, stats, expansion and raw block, as root. Elsewhere each test says loudly why it
//! skipped; CI runs as root.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rds_csi::csi::v1::node_server::Node;
use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use rds_csi::csi::v1::*;
use rds_csi::node::host::{Fabric, Host, LinuxMounts, LoopFabric, Mounts, Tunables};
use rds_csi::node::{NodeService, NodeSettings};
use tonic::Request;

const MIB: u64 = 1 << 20;

/// Why loop devices cannot be used here, if they cannot.
fn unavailable() -> Option<String> {
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Some("needs root (mount, loop devices)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("/dev/loop-control does not exist (no loop driver)".into());
    }
    None
}

macro_rules! require_loop {
    () => {
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

#[path = "node_loop/faults.rs"]
mod faults;

/// A simulator-like data directory with one volume's backing file, a node service in loop mode
/// over it, and cleanup of every mount and loop device under it, even after a failed assert.
struct Bench {
    dir: tempfile::TempDir,
    volume: String,
    node: NodeService,
    fabric: LoopFabric,
}

impl Bench {
    fn new(size: u64) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let volume = format!("pvc-{}", &uuid_hex()[..28]);
        let files = dir.path().join("files");
        let pool = files.join("storage-pool/csi");
        std::fs::create_dir_all(&pool).unwrap();
        File::create(pool.join(format!("{volume}.img")))
            .unwrap()
            .set_len(size)
            .unwrap();
        let fabric = LoopFabric::new(files);
        let settings = NodeSettings {
            node_id: None,
            host_nqn: Some(
                "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-00000000000a".into(),
            ),
            host_nqn_file: std::path::PathBuf::from(rds_csi::node::HOSTNQN_FILE),
            kubelet_dir: Some(std::fs::canonicalize(dir.path()).unwrap()),
            max_volumes: 8,
            topology: Default::default(),
            tunables: Tunables::default(),
        };
        Bench {
            node: NodeService::new(Host::linux(Arc::new(fabric.clone())), settings),
            fabric,
            volume,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn backing_file(&self) -> PathBuf {
        self.path(&format!("files/storage-pool/csi/{}.img", self.volume))
    }

    /// Data that is no file system, where the probe looks, as if the volume held something else.
    fn write_foreign_data(&self) {
        let mut file = OpenOptions::new()
            .write(true)
            .open(self.backing_file())
            .unwrap();
        file.seek(SeekFrom::Start(8192)).unwrap();
        file.write_all(b"precious").unwrap();
    }

    fn publish_context(&self) -> HashMap<String, String> {
        HashMap::from([
            ("address".into(), "127.0.0.1".into()),
            ("port".into(), "4420".into()),
            (
                "nqn".into(),
                format!("nqn.2000-02.com.mikrotik:{}", self.volume),
            ),
            (
                "filePath".into(),
                format!("/storage-pool/csi/{}.img", self.volume),
            ),
        ])
    }

    /// The stage kubelet sends, at `staging` (which it makes first).
    fn stage_request(&self, capability: VolumeCapability) -> NodeStageVolumeRequest {
        std::fs::create_dir_all(self.path("staging")).unwrap();
        NodeStageVolumeRequest {
            volume_id: self.volume.clone(),
            staging_target_path: self.path("staging").display().to_string(),
            volume_capability: Some(capability),
            publish_context: self.publish_context(),
            ..Default::default()
        }
    }

    fn unstage_request(&self) -> NodeUnstageVolumeRequest {
        NodeUnstageVolumeRequest {
            volume_id: self.volume.clone(),
            staging_target_path: self.path("staging").display().to_string(),
        }
    }

    fn publish_request(
        &self,
        target: &str,
        capability: VolumeCapability,
        readonly: bool,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: self.volume.clone(),
            staging_target_path: self.path("staging").display().to_string(),
            target_path: self.path(target).display().to_string(),
            volume_capability: Some(capability),
            readonly,
            ..Default::default()
        }
    }

    fn unpublish_request(&self, target: &str) -> NodeUnpublishVolumeRequest {
        NodeUnpublishVolumeRequest {
            volume_id: self.volume.clone(),
            target_path: self.path(target).display().to_string(),
        }
    }

    async fn stage(&self, capability: VolumeCapability) {
        self.node
            .node_stage_volume(Request::new(self.stage_request(capability)))
            .await
            .unwrap();
    }

    async fn unstage(&self) {
        self.node
            .node_unstage_volume(Request::new(self.unstage_request()))
            .await
            .unwrap();
    }

    async fn publish(&self, target: &str, capability: VolumeCapability, readonly: bool) {
        self.node
            .node_publish_volume(Request::new(
                self.publish_request(target, capability, readonly),
            ))
            .await
            .unwrap();
    }

    async fn unpublish(&self, target: &str) {
        self.node
            .node_unpublish_volume(Request::new(self.unpublish_request(target)))
            .await
            .unwrap();
    }

    async fn stats(&self, path: &str) -> NodeGetVolumeStatsResponse {
        self.node
            .node_get_volume_stats(Request::new(NodeGetVolumeStatsRequest {
                volume_id: self.volume.clone(),
                volume_path: self.path(path).display().to_string(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    fn mounted(&self) -> Vec<PathBuf> {
        LinuxMounts
            .list()
            .unwrap()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(self.dir.path()))
            .collect()
    }

    /// The block device of the attached volume.
    fn device(&self) -> rds_csi::node::host::Device {
        let attached = self.fabric.find(&self.volume).unwrap();
        attached
            .and_then(|a| a.device)
            .expect("the volume is attached")
    }

    fn attached(&self) -> bool {
        self.fabric.find(&self.volume).unwrap().is_some()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for mount in self.mounted().into_iter().rev() {
            let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
        }
        if let Ok(Some(attached)) = self.fabric.find(&self.volume) {
            let _ = self.fabric.disconnect(&attached);
        }
    }
}

fn uuid_hex() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mount_capability(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter.into(),
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

/// A mount capability of `fs` with mount(8) options.
fn mount_with(fs: &str, flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: flags.iter().map(|&f| f.to_owned()).collect(),
            ..Default::default()
        })),
        ..mount_capability(fs)
    }
}

/// The flags statvfs reports for the mount that holds `path`.
fn statvfs_flags(path: &Path) -> rustix::fs::StatVfsMountFlags {
    rustix::fs::statvfs(path).unwrap().f_flag
}

fn block_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        ..mount_capability("")
    }
}

#[tokio::test]
async fn ext4_stage_publish_unstage_and_stage_again_keeps_the_data() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    bench.stage(mount_capability("ext4")).await;
    bench.stage(mount_capability("ext4")).await;
    assert_eq!(bench.mounted(), [bench.path("staging")]);
    bench
        .publish("pod/mount", mount_capability("ext4"), false)
        .await;
    std::fs::write(bench.path("pod/mount/data"), b"kept across stagings").unwrap();

    bench
        .publish("pod/ro", mount_capability("ext4"), true)
        .await;
    let refused = std::fs::write(bench.path("pod/ro/other"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");

    let stats = bench.stats("pod/mount").await;
    let bytes = &stats.usage[0];
    assert!(
        bytes.total > 40 * MIB as i64 && bytes.total <= 64 * MIB as i64,
        "{bytes:?}"
    );
    assert!(stats.usage[1].total > 0, "no inode counts: {stats:?}");
    assert!(!stats.volume_condition.unwrap().abnormal);

    bench.unpublish("pod/ro").await;
    bench.unpublish("pod/mount").await;
    bench.unpublish("pod/mount").await;
    assert!(!bench.path("pod/mount").exists());
    bench.unstage().await;
    bench.unstage().await;
    assert!(bench.mounted().is_empty());
    assert!(!bench.attached(), "unstage left the loop device");

    bench.stage(mount_capability("ext4")).await;
    let kept = std::fs::read(bench.path("staging/data")).unwrap();
    assert_eq!(kept, b"kept across stagings");
    bench.unstage().await;
}

/// Whether the process may resize an ext4 file system online (EXT4_IOC_RESIZE_FS checks
/// CAP_SYS_RESOURCE; containers often drop it).
fn can_resize_ext4() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[tokio::test]
async fn xfs_grows_online_after_the_backing_file_grows() {
    require_loop!();
    // mkfs.xfs refuses file systems under 300 MiB.
    grows_online("xfs", 320 * MIB).await;
}

#[tokio::test]
async fn ext4_grows_online_after_the_backing_file_grows() {
    require_loop!();
    if !can_resize_ext4() {
        eprintln!(
            "SKIPPED ext4 online growth: the process lacks CAP_SYS_RESOURCE, which \
             EXT4_IOC_RESIZE_FS requires (a privileged node plugin has it)"
        );
        return;
    }
    grows_online("ext4", 64 * MIB).await;
}

async fn grows_online(fs: &str, size: u64) {
    let bench = Bench::new(size);
    bench.stage(mount_capability(fs)).await;
    bench
        .publish("pod/mount", mount_capability(fs), false)
        .await;
    let before = bench.stats("pod/mount").await.usage[0].total;

    OpenOptions::new()
        .write(true)
        .open(bench.backing_file())
        .unwrap()
        .set_len(2 * size)
        .unwrap();
    let grown = bench
        .node
        .node_expand_volume(Request::new(NodeExpandVolumeRequest {
            volume_id: bench.volume.clone(),
            volume_path: bench.path("pod/mount").display().to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: (2 * size) as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, (2 * size) as i64);
    let after = bench.stats("pod/mount").await.usage[0].total;
    assert!(after > before + (size * 3 / 4) as i64, "{before} → {after}");
    bench.unpublish("pod/mount").await;
    bench.unstage().await;
    assert!(!bench.attached());
}

#[tokio::test]
async fn a_block_volume_is_a_device_node_that_reads_back_what_was_written() {
    require_loop!();
    let bench = Bench::new(16 * MIB);
    bench.stage(block_capability()).await;
    assert!(
        bench.mounted().is_empty(),
        "a block stage mounted something"
    );
    bench
        .publish("pod/dev/block", block_capability(), false)
        .await;
    bench
        .publish("pod/dev/block", block_capability(), false)
        .await;
    let node = bench.path("pod/dev/block");
    let meta = std::fs::metadata(&node).unwrap();
    assert!(meta.file_type().is_block_device());
    let device = bench.device();
    assert_eq!(
        (
            rustix::fs::major(meta.rdev()),
            rustix::fs::minor(meta.rdev())
        ),
        (device.dev.major, device.dev.minor)
    );
    assert!(
        bench.mounted().is_empty(),
        "block publish mounted something"
    );

    let pattern: Vec<u8> = (0..MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    let mut write = OpenOptions::new().write(true).open(&node).unwrap();
    write.seek(SeekFrom::Start(MIB)).unwrap();
    write.write_all(&pattern).unwrap();
    write.sync_all().unwrap();
    drop(write);
    let mut back = vec![0; pattern.len()];
    {
        // An open device keeps the loop device bound (LOOP_CLR_FD only marks it to clear on
        // close), so the reader is closed before unstaging.
        let mut read = File::open(&node).unwrap();
        read.seek(SeekFrom::Start(MIB)).unwrap();
        read.read_exact(&mut back).unwrap();
    }
    assert!(
        back == pattern,
        "the pattern did not read back through the device node"
    );
    let mut file = File::open(bench.backing_file()).unwrap();
    file.seek(SeekFrom::Start(MIB)).unwrap();
    file.read_exact(&mut back).unwrap();
    assert!(
        back == pattern,
        "the pattern did not reach the backing file"
    );

    let stats = bench.stats("pod/dev/block").await;
    assert_eq!(stats.usage[0].total, (16 * MIB) as i64);

    bench.unpublish("pod/dev/block").await;
    assert!(!node.exists());
    bench.unstage().await;
    assert!(!bench.attached());
}

#[tokio::test]
async fn a_deleted_backing_file_makes_the_condition_abnormal_and_unstage_still_cleans_up() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    bench.stage(mount_capability("")).await;
    std::fs::remove_file(bench.backing_file()).unwrap();
    let condition = bench.stats("staging").await.volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("deleted"),
        "{}",
        condition.message
    );
    bench.unstage().await;
    assert!(bench.mounted().is_empty());
    assert!(!bench.attached());
}

#[tokio::test]
async fn data_that_is_not_a_file_system_is_never_formatted() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    bench.write_foreign_data();
    let status = bench
        .node
        .node_stage_volume(Request::new(NodeStageVolumeRequest {
            volume_id: bench.volume.clone(),
            staging_target_path: bench.path("staging").display().to_string(),
            volume_capability: Some(mount_capability("ext4")),
            publish_context: bench.publish_context(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("refusing to format"),
        "{}",
        status.message()
    );
    assert!(bench.mounted().is_empty());
    assert!(!bench.attached(), "the failed stage left its loop device");
}

/// A remount replaces every flag of a mount: a read-only publish must carry the staging mount's
/// nosuid, nodev and noexec over, or a pod of a hardened volume could run setuid binaries.
#[tokio::test]
async fn a_read_only_publish_keeps_the_staging_mounts_flags() {
    require_loop!();
    use rustix::fs::StatVfsMountFlags as St;
    let bench = Bench::new(64 * MIB);
    let hardened = mount_with("ext4", &["nosuid,nodev", "noexec"]);
    bench.stage(hardened.clone()).await;
    bench.publish("pod/ro", hardened.clone(), true).await;
    bench.publish("pod/ro", hardened.clone(), true).await;
    let flags = statvfs_flags(&bench.path("pod/ro"));
    let wanted = St::RDONLY | St::NOSUID | St::NODEV | St::NOEXEC;
    assert!(flags.contains(wanted), "a read-only publish has {flags:?}");
    // A publish asking for more than the staging mount has gets both.
    bench
        .publish("pod/noatime", mount_with("ext4", &["noatime"]), false)
        .await;
    let flags = statvfs_flags(&bench.path("pod/noatime"));
    assert!(
        flags.contains(St::NOSUID | St::NODEV | St::NOEXEC | St::NOATIME)
            && !flags.contains(St::RDONLY),
        "{flags:?}"
    );
    bench.unpublish("pod/noatime").await;
    bench.unpublish("pod/ro").await;
    bench.unstage().await;
    assert!(bench.mounted().is_empty());
}

/// A publish of a read-only staging mount is read-only whatever it asks; the same call again
/// finds what the first made instead of ALREADY_EXISTS.
#[tokio::test]
async fn a_publish_of_a_read_only_staging_mount_is_idempotent() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    bench.stage(mount_with("ext4", &["ro"])).await;
    bench
        .publish("pod/mount", mount_capability("ext4"), false)
        .await;
    bench
        .publish("pod/mount", mount_capability("ext4"), false)
        .await;
    assert_eq!(
        bench.mounted(),
        [bench.path("staging"), bench.path("pod/mount")]
    );
    let refused = std::fs::write(bench.path("pod/mount/x"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
    bench.unpublish("pod/mount").await;
    bench.unstage().await;
}

/// mount(8) options that are flags (exec, suid, dev) or mount(8)'s own (nouser, _netdev,
/// nofail) stage; one the node cannot honour is INVALID_ARGUMENT before anything is attached or
/// formatted.
#[tokio::test]
async fn mount8_options_are_mapped_or_refused_before_the_host_is_touched() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    let request = |flags: &[&str]| NodeStageVolumeRequest {
        volume_id: bench.volume.clone(),
        staging_target_path: bench.path("staging").display().to_string(),
        volume_capability: Some(mount_with("ext4", flags)),
        publish_context: bench.publish_context(),
        ..Default::default()
    };
    for refused in [&["user"][..], &["nouuid"], &["noexec,no-such-option"]] {
        let status = bench
            .node
            .node_stage_volume(Request::new(request(refused)))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{refused:?}: {status:?}"
        );
        assert!(!bench.attached(), "{refused:?} attached the volume");
    }
    let mut head = [0u8; 4096];
    File::open(bench.backing_file())
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "a refused stage wrote to the volume"
    );

    let mapped = &["exec,suid,dev", "nouser,_netdev,nofail", "auto,defaults"];
    bench
        .node
        .node_stage_volume(Request::new(request(mapped)))
        .await
        .unwrap();
    assert_eq!(bench.mounted(), [bench.path("staging")]);
    bench.unstage().await;
}

/// xfs_growfs needs a writable mount: a volume published only read-only grows through the
/// staging path the CO names.
#[tokio::test]
async fn a_read_only_publication_of_xfs_grows_through_the_staging_path() {
    require_loop!();
    let size = 320 * MIB;
    let bench = Bench::new(size);
    bench.stage(mount_capability("xfs")).await;
    bench.publish("pod/ro", mount_capability("xfs"), true).await;
    let before = bench.stats("pod/ro").await.usage[0].total;
    OpenOptions::new()
        .write(true)
        .open(bench.backing_file())
        .unwrap()
        .set_len(2 * size)
        .unwrap();
    bench
        .node
        .node_expand_volume(Request::new(NodeExpandVolumeRequest {
            volume_id: bench.volume.clone(),
            volume_path: bench.path("pod/ro").display().to_string(),
            staging_target_path: bench.path("staging").display().to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: (2 * size) as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let after = bench.stats("pod/ro").await.usage[0].total;
    assert!(after > before + (size * 3 / 4) as i64, "{before} → {after}");
    bench.unpublish("pod/ro").await;
    bench.unstage().await;
}

/// mountinfo names mounts by their real paths: paths through `..` stage and publish once however
/// often they are retried, and unpublish and unstage through them leave nothing. A path through
/// a symlink the node did not make, or outside node.kubeletDir, is refused before anything is
/// attached.
#[tokio::test]
async fn paths_with_dot_dot_converge_and_symlinks_or_paths_outside_are_refused() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    std::fs::create_dir_all(bench.path("real/staging")).unwrap();
    std::fs::create_dir_all(bench.path("pod")).unwrap();
    let staging = bench.path("real/x/../staging").display().to_string();
    let target = bench.path("pod/../pod/mount").display().to_string();
    let stage = |staging: String| NodeStageVolumeRequest {
        volume_id: bench.volume.clone(),
        staging_target_path: staging,
        volume_capability: Some(mount_capability("ext4")),
        publish_context: bench.publish_context(),
        ..Default::default()
    };
    let publish = |staging: String, target: String| NodePublishVolumeRequest {
        volume_id: bench.volume.clone(),
        staging_target_path: staging,
        target_path: target,
        volume_capability: Some(mount_capability("ext4")),
        ..Default::default()
    };
    // A symlink below the kubelet's directory, or a path outside it: refused, nothing made.
    std::os::unix::fs::symlink(bench.path("real"), bench.path("link")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    for (staging, why) in [
        (bench.path("link/staging"), "symlink"),
        (outside.path().join("staging"), "outside"),
    ] {
        let refused = bench
            .node
            .node_stage_volume(Request::new(stage(staging.display().to_string())))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
        assert!(refused.message().contains(why), "{refused}");
    }
    assert!(!bench.attached() && bench.mounted().is_empty());
    assert!(!outside.path().join("staging").exists());
    for _ in 0..2 {
        bench
            .node
            .node_stage_volume(Request::new(stage(staging.clone())))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        bench
            .node
            .node_publish_volume(Request::new(publish(staging.clone(), target.clone())))
            .await
            .unwrap();
    }
    let through_link = bench
        .node
        .node_publish_volume(Request::new(publish(
            staging.clone(),
            bench.path("link/mount").display().to_string(),
        )))
        .await
        .unwrap_err();
    assert_eq!(
        through_link.code(),
        tonic::Code::InvalidArgument,
        "{through_link}"
    );
    let real = |name: &str| std::fs::canonicalize(bench.path(name)).unwrap();
    assert_eq!(
        bench.mounted(),
        [real("real").join("staging"), real("pod").join("mount")]
    );
    bench
        .node
        .node_unpublish_volume(Request::new(NodeUnpublishVolumeRequest {
            volume_id: bench.volume.clone(),
            target_path: target,
        }))
        .await
        .unwrap();
    bench
        .node
        .node_unstage_volume(Request::new(NodeUnstageVolumeRequest {
            volume_id: bench.volume.clone(),
            staging_target_path: staging,
        }))
        .await
        .unwrap();
    assert!(bench.mounted().is_empty(), "left {:?}", bench.mounted());
    assert!(!bench.attached(), "unstage left the loop device");
}

/// Unstage of a block volume still published would detach the device its node names, whose
/// major:minor the kernel may give to another volume: FAILED_PRECONDITION until unpublished.
#[tokio::test]
async fn unstage_of_a_still_published_block_volume_is_refused() {
    require_loop!();
    let bench = Bench::new(16 * MIB);
    bench.stage(block_capability()).await;
    bench
        .publish("pod/dev/block", block_capability(), false)
        .await;
    let status = bench
        .node
        .node_unstage_volume(Request::new(NodeUnstageVolumeRequest {
            volume_id: bench.volume.clone(),
            staging_target_path: bench.path("staging").display().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(bench.attached(), "the refused unstage detached the device");
    bench.unpublish("pod/dev/block").await;
    bench.unstage().await;
    assert!(!bench.attached());
    assert_eq!(std::fs::read_dir(bench.path("staging")).unwrap().count(), 0);
}

/// Unstage and unpublish under another volume's id leave this volume's live mounts and device
/// node alone; a stage with another volume's publish context attaches nothing.
#[tokio::test]
async fn another_volumes_requests_never_touch_this_volume() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    let other = format!("pvc-{}", &uuid_hex()[..28]);
    bench.stage(mount_capability("ext4")).await;
    bench
        .publish("pod/mount", mount_capability("ext4"), false)
        .await;
    let unstage = NodeUnstageVolumeRequest {
        volume_id: other.clone(),
        ..bench.unstage_request()
    };
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: other.clone(),
        ..bench.unpublish_request("pod/mount")
    };
    let refused = [
        bench
            .node
            .node_unstage_volume(Request::new(unstage))
            .await
            .map(drop),
        bench
            .node
            .node_unpublish_volume(Request::new(unpublish))
            .await
            .map(drop),
    ];
    for status in refused {
        let status = status.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    }
    assert_eq!(
        bench.mounted(),
        [bench.path("staging"), bench.path("pod/mount")]
    );
    let stolen = NodeStageVolumeRequest {
        volume_id: other,
        staging_target_path: bench.path("other").display().to_string(),
        ..bench.stage_request(mount_capability("ext4"))
    };
    let stolen = bench
        .node
        .node_stage_volume(Request::new(stolen))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), tonic::Code::InvalidArgument, "{stolen}");
    assert!(!bench.path("other").exists());
    bench.unpublish("pod/mount").await;
    bench.unstage().await;
    assert!(bench.mounted().is_empty() && !bench.attached());
}

/// The loop devices whose backing file is the device node `device`.
fn loops_over(device: &Path) -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("loop/backing_file"))
                .is_ok_and(|backing| Path::new(backing.trim_end()) == device)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A read-only raw block publication is read-only in the kernel, not by permission bits: root
/// cannot write it, it reads what the read-write publication wrote, and unstage leaves no view.
#[tokio::test]
async fn a_read_only_block_publication_refuses_writes_in_the_kernel() {
    require_loop!();
    let bench = Bench::new(16 * MIB);
    bench.stage(block_capability()).await;
    bench.publish("pod/rw", block_capability(), false).await;
    bench.publish("pod/ro", block_capability(), true).await;
    bench.publish("pod/ro", block_capability(), true).await;
    let device = bench.device();
    assert_eq!(loops_over(&device.path).len(), 1, "one view, made once");

    let pattern: Vec<u8> = (0..MIB as usize).map(|i| (i * 13 % 251) as u8).collect();
    let mut write = OpenOptions::new()
        .write(true)
        .open(bench.path("pod/rw"))
        .unwrap();
    write.write_all(&pattern).unwrap();
    write.sync_all().unwrap();
    drop(write);
    let refused = OpenOptions::new()
        .write(true)
        .open(bench.path("pod/ro"))
        .and_then(|mut ro| ro.write_all(&pattern).and_then(|()| ro.sync_all()));
    let error = refused.expect_err("root wrote a read-only block publication");
    assert!(
        matches!(
            error.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM)
        ),
        "{error}"
    );
    let mut back = vec![0; pattern.len()];
    File::open(bench.path("pod/ro"))
        .unwrap()
        .read_exact(&mut back)
        .unwrap();
    assert!(back == pattern, "the view does not show the device's data");

    bench.unpublish("pod/ro").await;
    bench.unpublish("pod/rw").await;
    bench.unstage().await;
    assert!(loops_over(&device.path).is_empty(), "unstage left the view");
    assert!(!bench.attached());
}
