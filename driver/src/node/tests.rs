//! The node logic against the fake host: bad input, idempotency, shared connections, conditions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tonic::Code;

use super::fake::{Fake, SIZE};
use super::host::{Fabric, FsType, Target, Tunables};
use super::*;
use crate::csi::v1::volume_capability::access_mode::Mode;
use crate::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};

const VOLUME: &str = "pvc-0123456789abcdef0123456789ab";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-000000000001";

struct Case {
    fake: Fake,
    core: NodeService,
    dir: tempfile::TempDir,
}

fn settings() -> NodeSettings {
    NodeSettings {
        node_id: None,
        host_nqn: Some(HOST_NQN.into()),
        host_nqn_file: PathBuf::from("/nonexistent/hostnqn"),
        kubelet_dir: None,
        max_volumes: 7,
        topology: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        tunables: Tunables::default(),
    }
}

fn case() -> Case {
    let fake = Fake::default();
    Case {
        core: NodeService::new(fake.host(), settings()),
        fake,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Case {
    fn core(&self) -> &NodeCore {
        &self.core.core
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn staging(&self) -> String {
        let path = self.path("staging");
        std::fs::create_dir_all(&path).unwrap();
        path.display().to_string()
    }

    fn stage_request(&self, capability: VolumeCapability) -> NodeStageVolumeRequest {
        NodeStageVolumeRequest {
            volume_id: VOLUME.into(),
            staging_target_path: self.staging(),
            volume_capability: Some(capability),
            publish_context: HashMap::from([
                ("address".into(), "127.0.0.1".into()),
                ("port".into(), "4420".into()),
                ("nqn".into(), format!("nqn.2000-02.com.mikrotik:{VOLUME}")),
            ]),
            ..Default::default()
        }
    }

    fn stage(&self) {
        self.core()
            .stage(self.stage_request(mount(Mode::SingleNodeWriter)))
            .unwrap();
    }

    fn publish_request(
        &self,
        target: &str,
        capability: VolumeCapability,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: VOLUME.into(),
            staging_target_path: self.staging(),
            target_path: self.path(target).display().to_string(),
            volume_capability: Some(capability),
            ..Default::default()
        }
    }

    fn stats(&self, path: &Path) -> Result<NodeGetVolumeStatsResponse, Status> {
        self.core().stats(NodeGetVolumeStatsRequest {
            volume_id: VOLUME.into(),
            volume_path: path.display().to_string(),
            ..Default::default()
        })
    }

    /// Nothing attached, mounted, formatted or created.
    fn untouched(&self) {
        let state = self.fake.state();
        assert_eq!(state.connects, 0);
        assert!(state.mounts.is_empty());
        assert!(state.mkfs.is_empty());
    }
}

fn mount(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode.into() }),
        access_type: Some(AccessType::Mount(MountVolume::default())),
    }
}

fn mount_flags(flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags: flags.iter().map(|&f| f.to_owned()).collect(),
            ..Default::default()
        })),
        ..mount(Mode::SingleNodeWriter)
    }
}

fn block() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        ..mount(Mode::SingleNodeWriter)
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.unwrap_err().code()
}

/// A node whose /etc/nvme/hostnqn appears after the plugin started registers once it does; the
/// NQN it registered with then stays, as the RDS's allow-lists name the node by it.
#[test]
fn the_host_nqn_file_is_read_until_it_exists_and_then_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostnqn");
    let fake = Fake::default();
    let node = NodeService::new(
        fake.host(),
        NodeSettings {
            host_nqn: None,
            host_nqn_file: file.clone(),
            ..settings()
        },
    );
    let status = node.core.info().unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("nvme gen-hostnqn"),
        "{}",
        status.message()
    );
    std::fs::write(&file, format!("{HOST_NQN}\n")).unwrap();
    assert_eq!(node.core.info().unwrap().node_id, HOST_NQN);
    std::fs::write(
        &file,
        "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000000\n",
    )
    .unwrap();
    assert_eq!(node.core.info().unwrap().node_id, HOST_NQN);
}

#[test]
fn every_bad_input_is_refused_with_its_code_and_changes_nothing() {
    let c = case();
    let good = c.stage_request(mount(Mode::SingleNodeWriter));
    let bad_stage: Vec<(NodeStageVolumeRequest, &str)> = vec![
        (
            NodeStageVolumeRequest {
                volume_id: String::new(),
                ..good.clone()
            },
            "volume_id",
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: String::new(),
                ..good.clone()
            },
            "staging_target_path",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: None,
                ..good.clone()
            },
            "volume_capability",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(VolumeCapability {
                    access_type: Some(AccessType::Mount(MountVolume {
                        fs_type: "zfs".into(),
                        ..Default::default()
                    })),
                    ..mount(Mode::SingleNodeWriter)
                }),
                ..good.clone()
            },
            "zfs",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(mount_flags(&["nodev,users"])),
                ..good.clone()
            },
            "\"users\"",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(mount_flags(&["nouuid"])),
                ..good.clone()
            },
            "option of ext4",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(mount(Mode::MultiNodeMultiWriter)),
                ..good.clone()
            },
            "MULTI_NODE_MULTI_WRITER",
        ),
        (
            NodeStageVolumeRequest {
                publish_context: HashMap::new(),
                ..good.clone()
            },
            "publish_context",
        ),
    ];
    for (request, says) in bad_stage {
        let status = c.core().stage(request).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{says}: {status:?}");
        assert!(
            status.message().contains(says),
            "{says}: {}",
            status.message()
        );
    }
    let publish = c.publish_request("target", mount(Mode::SingleNodeWriter));
    for request in [
        NodePublishVolumeRequest {
            volume_id: String::new(),
            ..publish.clone()
        },
        NodePublishVolumeRequest {
            target_path: String::new(),
            ..publish.clone()
        },
        NodePublishVolumeRequest {
            volume_capability: None,
            ..publish.clone()
        },
        NodePublishVolumeRequest {
            staging_target_path: String::new(),
            ..publish.clone()
        },
    ] {
        assert_eq!(code(c.core().publish(request)), Code::InvalidArgument);
    }
    assert_eq!(
        code(c.core().unstage(NodeUnstageVolumeRequest {
            volume_id: VOLUME.into(),
            staging_target_path: String::new()
        })),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.core().unpublish(NodeUnpublishVolumeRequest {
            volume_id: String::new(),
            target_path: "/x".into()
        })),
        Code::InvalidArgument
    );
    for (id, path) in [("", "/x"), (VOLUME, "")] {
        let stats = NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            ..Default::default()
        };
        assert_eq!(code(c.core().stats(stats)), Code::InvalidArgument);
        let expand = NodeExpandVolumeRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            ..Default::default()
        };
        assert_eq!(code(c.core().expand(expand)), Code::InvalidArgument);
    }
    c.untouched();
    assert!(!c.path("target").exists());
}

#[test]
fn a_volume_not_attached_here_is_not_found() {
    let c = case();
    assert_eq!(code(c.stats(&c.path("some/path"))), Code::NotFound);
    let expand = NodeExpandVolumeRequest {
        volume_id: VOLUME.into(),
        volume_path: c.path("some/path").display().to_string(),
        ..Default::default()
    };
    assert_eq!(code(c.core().expand(expand)), Code::NotFound);
    let publish = c.publish_request("target", mount(Mode::SingleNodeWriter));
    assert_eq!(code(c.core().publish(publish)), Code::FailedPrecondition);
    c.untouched();
}

#[test]
fn stage_formats_a_blank_device_once_and_is_idempotent() {
    let c = case();
    c.stage();
    c.stage();
    let state = c.fake.state();
    assert_eq!(state.connects, 1);
    assert_eq!(state.mkfs, [(PathBuf::from("/dev/nvme1n1"), FsType::Ext4)]);
    assert_eq!(state.mounts.len(), 1);
    assert_eq!(state.mounts[0].mount_point, c.path("staging"));
    assert_eq!(state.mounts[0].fs_type, "ext4");
}

#[test]
fn a_second_stage_asking_for_another_file_system_type_already_exists() {
    let c = case();
    c.stage();
    let xfs = VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
        ..mount(Mode::SingleNodeWriter)
    };
    let status = c.core().stage(c.stage_request(xfs)).unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("with ext4") && status.message().contains("xfs"),
        "{}",
        status.message()
    );
    let state = c.fake.state();
    assert_eq!(state.connects, 1);
    assert_eq!(state.mounts.len(), 1);
    assert_eq!(state.mounts[0].fs_type, "ext4");
    assert!(state.disconnects.is_empty(), "{:?}", state.disconnects);
}

/// While the controller reconnects, an unmount would wait in the kernel up to ctrl_loss_tmo: the
/// unstage is refused, leaving everything in place, and goes through once the controller is back.
#[test]
fn unstage_waits_for_a_reconnecting_controller_without_blocking() {
    let c = case();
    c.stage();
    let unstage = || {
        c.core().unstage(NodeUnstageVolumeRequest {
            volume_id: VOLUME.into(),
            staging_target_path: c.staging(),
        })
    };
    c.fake.state().attached.get_mut(VOLUME).unwrap().live = false;
    let status = unstage().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("connecting") && status.message().contains("retry later"),
        "{}",
        status.message()
    );
    let state = c.fake.state();
    assert_eq!(state.mounts.len(), 1, "the refused unstage unmounted");
    assert!(state.disconnects.is_empty(), "{:?}", state.disconnects);
    drop(state);

    c.fake.state().attached.get_mut(VOLUME).unwrap().live = true;
    unstage().unwrap();
    let state = c.fake.state();
    assert!(state.mounts.is_empty());
    assert_eq!(state.disconnects, ["nvme1"]);
}

#[test]
fn an_existing_file_system_is_never_reformatted() {
    let c = case();
    c.fake
        .state()
        .filesystems
        .insert("/dev/nvme1n1".into(), FsType::Ext4);
    c.stage();
    assert!(c.fake.state().mkfs.is_empty());

    let other = case();
    other
        .fake
        .state()
        .filesystems
        .insert("/dev/nvme1n1".into(), FsType::Xfs);
    let status = other
        .core()
        .stage(other.stage_request(mount(Mode::SingleNodeWriter)))
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("never reformatted"),
        "{}",
        status.message()
    );
    let state = other.fake.state();
    assert!(state.mkfs.is_empty() && state.mounts.is_empty());
    assert_eq!(
        state.disconnects,
        ["nvme1"],
        "the failed stage left its connection"
    );
}

/// A plugin killed after connecting leaves the connection; when the CO's retry then fails (here
/// the device holds foreign data) the connection must go too, as the CO never unstages a volume
/// whose stage never succeeded.
#[test]
fn a_failed_stage_undoes_the_connection_a_crashed_stage_left() {
    let c = case();
    Fabric::connect(
        &c.fake,
        &Target {
            volume_id: VOLUME.into(),
            nqn: format!("nqn.2000-02.com.mikrotik:{VOLUME}"),
            address: "127.0.0.1".into(),
            port: 4420,
            host_nqn: HOST_NQN.into(),
            file_path: None,
            tunables: Tunables::default(),
        },
    )
    .unwrap();
    c.fake
        .state()
        .foreign
        .insert("/dev/nvme1n1".into(), "non-zero data at byte 4096".into());
    let status = c
        .core()
        .stage(c.stage_request(mount(Mode::SingleNodeWriter)))
        .unwrap_err();
    assert!(
        status.message().contains("refusing to format"),
        "{status:?}"
    );
    let state = c.fake.state();
    assert!(state.attached.is_empty(), "the connection leaked");
    assert_eq!(state.disconnects, ["nvme1"]);
}

/// A raw block publication is no mount, yet it uses the device: a stage retry that fails (here
/// the namespace is not there for the moment) must leave its connection alone.
#[test]
fn a_failed_stage_keeps_the_connection_a_block_publication_uses() {
    let c = case();
    c.core().stage(c.stage_request(block())).unwrap();
    c.core()
        .publish(c.publish_request("dev/block", block()))
        .unwrap();
    c.fake.lose_device(VOLUME);
    let status = c.core().stage(c.stage_request(block())).unwrap_err();
    assert!(status.message().contains("did not appear"), "{status:?}");
    assert!(
        c.fake.state().disconnects.is_empty(),
        "the failed stage detached a published device"
    );
}

#[test]
fn unstage_keeps_the_controller_while_another_staging_remains() {
    let c = case();
    c.stage();
    let second = c.path("second-staging");
    std::fs::create_dir_all(&second).unwrap();
    let mut request = c.stage_request(mount(Mode::SingleNodeWriter));
    request.staging_target_path = second.display().to_string();
    c.core().stage(request).unwrap();
    assert_eq!(
        c.fake.state().connects,
        1,
        "the live controller was not reused"
    );

    let unstage = |path: &Path| {
        c.core()
            .unstage(NodeUnstageVolumeRequest {
                volume_id: VOLUME.into(),
                staging_target_path: path.display().to_string(),
            })
            .unwrap()
    };
    unstage(&c.path("staging"));
    assert!(c.fake.state().disconnects.is_empty());
    assert_eq!(c.fake.state().mounts.len(), 1);
    unstage(&second);
    assert_eq!(c.fake.state().disconnects, ["nvme1"]);
    assert!(c.fake.state().mounts.is_empty());
    unstage(&second);
    assert_eq!(
        c.fake.state().disconnects,
        ["nvme1"],
        "a second unstage did more"
    );
}

#[test]
fn publish_binds_honours_readonly_and_is_idempotent() {
    let c = case();
    c.stage();
    let request = c.publish_request("target", mount(Mode::SingleNodeWriter));
    c.core().publish(request.clone()).unwrap();
    c.core().publish(request.clone()).unwrap();
    {
        let state = c.fake.state();
        assert_eq!(state.mounts.len(), 2);
        assert!(!state.mounts[1].readonly);
    }
    let readonly = NodePublishVolumeRequest {
        readonly: true,
        ..request.clone()
    };
    assert_eq!(
        code(c.core().publish(readonly.clone())),
        Code::AlreadyExists
    );
    let mut elsewhere = readonly;
    elsewhere.target_path = c.path("readonly").display().to_string();
    c.core().publish(elsewhere).unwrap();
    assert!(c.fake.state().mounts[2].readonly);

    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: VOLUME.into(),
        target_path: request.target_path.clone(),
    };
    c.core().unpublish(unpublish.clone()).unwrap();
    c.core().unpublish(unpublish).unwrap();
    assert!(!c.path("target").exists(), "unpublish left the target path");
    assert_eq!(c.fake.state().mounts.len(), 2);
}

/// Unstage and unpublish name a volume and a path; what is mounted there must be that volume
/// (or a dead mount only an unmount clears), never another volume's live device.
#[test]
fn unstage_and_unpublish_leave_another_volumes_mounts_and_nodes_alone() {
    const OTHER: &str = "pvc-fedcba9876543210fedcba987654";
    let c = case();
    c.stage();
    let publish = c.publish_request("target", mount(Mode::SingleNodeWriter));
    c.core().publish(publish.clone()).unwrap();
    let refused = |status: Status| {
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{}",
            status.message()
        );
        assert!(status.message().contains(OTHER), "{}", status.message());
    };
    refused(
        c.core()
            .unpublish(NodeUnpublishVolumeRequest {
                volume_id: OTHER.into(),
                target_path: publish.target_path.clone(),
            })
            .unwrap_err(),
    );
    refused(
        c.core()
            .unstage(NodeUnstageVolumeRequest {
                volume_id: OTHER.into(),
                staging_target_path: c.staging(),
            })
            .unwrap_err(),
    );
    assert_eq!(c.fake.state().mounts.len(), 2, "both mounts stay");
    assert!(c.fake.state().disconnects.is_empty());

    // A connection lost for good leaves a dead mount whose device the kernel no longer has:
    // any unstage may clear it.
    c.fake.lose_device(VOLUME);
    c.core()
        .unpublish(NodeUnpublishVolumeRequest {
            volume_id: OTHER.into(),
            target_path: publish.target_path,
        })
        .unwrap();
    assert_eq!(c.fake.state().mounts.len(), 1);
}

#[test]
fn a_publish_of_a_read_only_staging_mount_is_read_only_and_idempotent() {
    let c = case();
    c.core()
        .stage(c.stage_request(mount_flags(&["ro"])))
        .unwrap();
    let request = c.publish_request("target", mount(Mode::SingleNodeWriter));
    c.core().publish(request.clone()).unwrap();
    c.core().publish(request.clone()).unwrap();
    let state = c.fake.state();
    assert_eq!(state.mounts.len(), 2);
    assert!(state.mounts[1].readonly);
}

#[test]
fn a_single_writer_volume_published_elsewhere_is_a_failed_precondition() {
    let c = case();
    c.core()
        .stage(c.stage_request(mount(Mode::SingleNodeSingleWriter)))
        .unwrap();
    let first = c.publish_request("one", mount(Mode::SingleNodeSingleWriter));
    c.core().publish(first).unwrap();
    let second = c.publish_request("two", mount(Mode::SingleNodeSingleWriter));
    assert_eq!(code(c.core().publish(second)), Code::FailedPrecondition);
    assert!(!c.path("two").exists());
    let shared = c.publish_request("three", mount(Mode::SingleNodeMultiWriter));
    c.core().publish(shared).unwrap();
}

#[test]
fn block_volumes_get_a_device_node_not_a_mount() {
    let c = case();
    c.core().stage(c.stage_request(block())).unwrap();
    assert!(c.fake.state().mounts.is_empty() && c.fake.state().mkfs.is_empty());
    let request = c.publish_request("dev/block", block());
    c.core().publish(request.clone()).unwrap();
    c.core().publish(request.clone()).unwrap();
    let node = c.path("dev/block");
    let dev = c.fake.host().mounts.device_node(&node).unwrap();
    assert_eq!(dev.map(|d| d.to_string()).as_deref(), Some("259:1"));
    let unstage = NodeUnstageVolumeRequest {
        volume_id: VOLUME.into(),
        staging_target_path: c.staging(),
    };
    let status = c.core().unstage(unstage.clone()).unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("still published"),
        "{}",
        status.message()
    );
    assert!(
        c.fake.state().disconnects.is_empty(),
        "unstage detached a published device"
    );
    let stats = c.stats(&node).unwrap();
    assert_eq!(stats.usage[0].total, SIZE as i64);
    assert!(!stats.volume_condition.unwrap().abnormal);
    c.core()
        .unpublish(NodeUnpublishVolumeRequest {
            volume_id: VOLUME.into(),
            target_path: request.target_path,
        })
        .unwrap();
    assert!(!node.exists());
    c.core().unstage(unstage).unwrap();
    assert_eq!(c.fake.state().disconnects, ["nvme1"]);
}

/// A read-only block publication is a node of the device's read-only view, kept beside the
/// read-write one; unstage waits for both to be unpublished and removes the view.
#[test]
fn a_read_only_block_publication_is_a_node_of_the_read_only_view() {
    let c = case();
    c.core().stage(c.stage_request(block())).unwrap();
    let rw = c.publish_request("dev/rw", block());
    c.core().publish(rw.clone()).unwrap();
    let ro = NodePublishVolumeRequest {
        readonly: true,
        ..c.publish_request("dev/ro", block())
    };
    c.core().publish(ro.clone()).unwrap();
    c.core().publish(ro.clone()).unwrap();
    let node_of = |name: &str| {
        c.fake
            .host()
            .mounts
            .device_node(&c.path(name))
            .unwrap()
            .map(|d| d.to_string())
    };
    assert_eq!(node_of("dev/rw").as_deref(), Some("259:1"));
    assert_eq!(node_of("dev/ro").as_deref(), Some("7:100"));
    let rw_there = NodePublishVolumeRequest {
        target_path: rw.target_path.clone(),
        ..ro.clone()
    };
    assert_eq!(code(c.core().publish(rw_there)), Code::AlreadyExists);
    let stats = c.stats(&c.path("dev/ro")).unwrap();
    assert_eq!(stats.usage[0].total, SIZE as i64);

    let unstage = NodeUnstageVolumeRequest {
        volume_id: VOLUME.into(),
        staging_target_path: c.staging(),
    };
    for target in [&rw.target_path, &ro.target_path] {
        assert_eq!(
            code(c.core().unstage(unstage.clone())),
            Code::FailedPrecondition
        );
        c.core()
            .unpublish(NodeUnpublishVolumeRequest {
                volume_id: VOLUME.into(),
                target_path: target.clone(),
            })
            .unwrap();
    }
    c.core().unstage(unstage).unwrap();
    assert!(c.fake.state().views.is_empty(), "the view outlived unstage");
    assert_eq!(c.fake.state().disconnects, ["nvme1"]);
}

#[test]
fn a_single_writer_block_volume_is_published_once() {
    let c = case();
    let single = VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        ..mount(Mode::SingleNodeSingleWriter)
    };
    c.core().stage(c.stage_request(single.clone())).unwrap();
    let first = c.publish_request("dev/one", single.clone());
    c.core().publish(first.clone()).unwrap();
    c.core().publish(first).unwrap();
    let second = c.publish_request("dev/two", single);
    assert_eq!(code(c.core().publish(second)), Code::FailedPrecondition);
    assert!(!c.path("dev/two").exists());
}

#[test]
fn stats_report_usage_and_the_condition() {
    let c = case();
    c.stage();
    let staging = c.path("staging");
    let stats = c.stats(&staging).unwrap();
    assert_eq!(stats.usage.len(), 2);
    assert_eq!((stats.usage[0].total, stats.usage[0].used), (1000, 400));
    assert_eq!(stats.usage[1].available, 90);
    assert!(!stats.volume_condition.unwrap().abnormal);

    let not_mounted = c.path("elsewhere");
    std::fs::create_dir_all(&not_mounted).unwrap();
    assert_eq!(code(c.stats(&not_mounted)), Code::NotFound);
    assert_eq!(code(c.stats(&c.path("missing"))), Code::NotFound);

    c.fake.state().stale.insert(staging.clone());
    let condition = c.stats(&staging).unwrap().volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(condition.message.contains("stale"), "{}", condition.message);

    c.fake.state().stale.clear();
    c.fake.state().attached.get_mut(VOLUME).unwrap().live = false;
    let condition = c.stats(&staging).unwrap().volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("connecting"),
        "{}",
        condition.message
    );

    let mut state = c.fake.state();
    let attachment = state.attached.get_mut(VOLUME).unwrap();
    attachment.live = true;
    attachment.device_present = false;
    drop(state);
    let condition = c.stats(&staging).unwrap().volume_condition.unwrap();
    assert!(condition.message.contains("gone"), "{}", condition.message);
}

/// The kernel gave the controller up (ctrlLossTmo ran out) while the volume was staged and
/// published: both paths still hold the dead device, and stats calls the volume abnormal with
/// the recovery instead of NOT_FOUND.
#[test]
fn stats_call_a_given_up_controller_abnormal() {
    let c = case();
    c.stage();
    let target = c.path("target");
    c.core()
        .publish(c.publish_request("target", mount(Mode::SingleNodeWriter)))
        .unwrap();
    c.fake.state().attached.remove(VOLUME);
    for path in [c.path("staging"), target] {
        let condition = c.stats(&path).unwrap().volume_condition.unwrap();
        assert!(condition.abnormal, "{condition:?}");
        assert!(
            condition.message.contains("ctrlLossTmo")
                && condition.message.contains("restart the pod"),
            "{}",
            condition.message
        );
    }
    let unmounted = c.path("elsewhere");
    std::fs::create_dir_all(&unmounted).unwrap();
    assert_eq!(code(c.stats(&unmounted)), Code::NotFound);
}

#[test]
fn expand_rescans_and_grows_the_file_system() {
    let c = case();
    c.stage();
    c.fake.state().exported_size = 2 * SIZE;
    let request = NodeExpandVolumeRequest {
        volume_id: VOLUME.into(),
        volume_path: c.path("staging").display().to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * SIZE as i64,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    let answer = c.core().expand(request.clone()).unwrap();
    assert_eq!(answer.capacity_bytes, 2 * SIZE as i64);
    assert_eq!(
        c.fake.state().grown,
        [(PathBuf::from("/dev/nvme1n1"), FsType::Ext4)]
    );
    let too_big = NodeExpandVolumeRequest {
        capacity_range: Some(CapacityRange {
            required_bytes: 3 * SIZE as i64,
            limit_bytes: 0,
        }),
        ..request
    };
    assert_eq!(code(c.core().expand(too_big)), Code::FailedPrecondition);
}

#[test]
fn a_volume_in_use_is_aborted() {
    let c = case();
    let _busy = c.core().locks.try_lock(VOLUME).unwrap();
    let status = c
        .core()
        .stage(c.stage_request(mount(Mode::SingleNodeWriter)))
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    c.untouched();
}

#[tokio::test]
async fn info_and_capabilities_say_what_the_node_is_and_does() {
    let c = case();
    let info = c
        .core
        .node_get_info(Request::new(NodeGetInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, HOST_NQN);
    assert_eq!(info.max_volumes_per_node, 7);
    assert_eq!(info.accessible_topology.unwrap().segments["zone"], "a");
    let capabilities = c
        .core
        .node_get_capabilities(Request::new(NodeGetCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(capabilities.len(), CAPABILITIES.len());
}

#[tokio::test]
async fn the_grpc_edge_runs_the_handlers() {
    let c = case();
    let status = c
        .core
        .node_stage_volume(Request::new(NodeStageVolumeRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let request = c.stage_request(mount(Mode::SingleNodeWriter));
    c.core
        .node_stage_volume(Request::new(request))
        .await
        .unwrap();
    assert_eq!(c.fake.state().mounts.len(), 1);
}
