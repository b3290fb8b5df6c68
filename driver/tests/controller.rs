//! The real driver (Identity and Controller over a UNIX socket) against an in-process rds-sim,
//! with the simulator's state checked after each step.

use std::collections::HashMap;
use std::sync::Arc;

use rds_csi::config::{Config, ControllerConfig, RdsConfig};
use rds_csi::csi::v1::controller_client::ControllerClient;
use rds_csi::csi::v1::identity_client::IdentityClient;
use rds_csi::csi::v1::plugin_capability::{self, service, volume_expansion};
use rds_csi::csi::v1::volume_capability::access_mode::Mode as Access;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use rds_csi::csi::v1::*;
use rds_csi::grpc::{BoundSocket, connect_unix};
use rds_csi::ids;
use rds_csi::rds::ssh::HostKeyPin;
use rds_csi::service::{Driver, Mode};
use rds_sim::engine::{EngineConfig, Event};
use rds_sim::faults::{CrashPoint, Fault};
use rds_sim::server::{Options, RunningSim};
use rds_sim::sim::{Sim, StateView};
use rds_sim::ssh::load_or_generate_host_key;
use rds_sim::store::{Disk, Pool};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

const GIB: i64 = 1 << 30;
const POOL: &str = "storage-pool";
const NODE_A: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000a";
const NODE_B: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000000b";

/// How a test wants the simulator and the driver.
struct Setup {
    pool_size: u64,
    routeros_version: &'static str,
    mode: Mode,
    config: fn(&mut Config),
    /// Pin a key the simulator does not have.
    pin_wrong_key: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            pool_size: 64 << 30,
            routeros_version: "7.24.4 (stable)",
            mode: Mode::Controller,
            config: |_| {},
            pin_wrong_key: false,
        }
    }
}

/// rds-sim and the driver serving on a socket, with clients.
struct Plugin {
    _dir: TempDir,
    sim: Option<RunningSim>,
    controller: ControllerClient<Channel>,
    identity: IdentityClient<Channel>,
    _stop: oneshot::Sender<()>,
}

impl Plugin {
    async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    async fn with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("id_ed25519");
        let client_key = load_or_generate_host_key(&key_file).unwrap();
        let sim = RunningSim::start(Options {
            data_dir: dir.path().join("rds"),
            ssh_listen: "127.0.0.1:0".parse().unwrap(),
            control_listen: None,
            nvme_listen: None,
            host_key: None,
            user: "admin".into(),
            authorized_keys: vec![client_key.public_key().clone()],
            password: None,
            pool: Pool {
                name: POOL.into(),
                size: setup.pool_size,
            },
            seed: 7,
            engine: EngineConfig {
                identity: rds_sim::engine::Identity {
                    version: setup.routeros_version.into(),
                    ..Default::default()
                },
                ..EngineConfig::default()
            },
        })
        .await
        .unwrap();
        let pinned = if setup.pin_wrong_key {
            load_or_generate_host_key(&dir.path().join("other_host_key"))
                .unwrap()
                .public_key()
                .clone()
        } else {
            sim.host_public_key.clone()
        };
        let mut config = Config {
            rds: RdsConfig {
                address: "127.0.0.1".into(),
                ssh_port: sim.ssh_addr.port(),
                private_key_file: key_file,
                host_key: HostKeyPin::of_key(&pinned).to_string(),
                pool: POOL.into(),
                nvme_address: "192.0.2.10".into(),
                connect_timeout_ms: 2_000,
                command_timeout_ms: 5_000,
                ..RdsConfig::default()
            },
            controller: ControllerConfig::default(),
            ..Config::default()
        };
        (setup.config)(&mut config);
        let driver = Driver::new(config).await.unwrap();
        let socket_path = dir.path().join("csi/csi.sock");
        let socket = BoundSocket::bind(&socket_path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(socket.serve(driver.router(setup.mode), async {
            let _ = stopped.await;
        }));
        let channel = connect_unix(&socket_path).await.unwrap();
        Self {
            _dir: dir,
            sim: Some(sim),
            controller: ControllerClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
            _stop: stop,
        }
    }

    fn sim(&self) -> &Arc<Sim> {
        &self.sim.as_ref().expect("the simulator runs").sim
    }

    fn state(&self) -> StateView {
        self.sim().state()
    }

    fn disk(&self, slot: &str) -> Option<Disk> {
        self.state().disks.into_iter().find(|d| d.slot == slot)
    }

    fn has_file(&self, name: &str) -> bool {
        self.state().files.iter().any(|f| f.name == name)
    }

    /// Runs a RouterOS line on the simulator directly, as an operator would.
    async fn routeros(&self, line: &str) {
        let peer = "127.0.0.1:1".parse().unwrap();
        let (session, _) = self.sim().open_session("admin", peer);
        let reply = self.sim().exec(session, line).await;
        self.sim().close_session(session);
        let rds_sim::ssh::Reply::Output { text, .. } = reply else {
            panic!("{line}: no reply")
        };
        assert!(text.trim().is_empty(), "{line}: {text}");
    }

    async fn stop_sim(&mut self) {
        self.sim
            .take()
            .expect("the simulator runs")
            .shutdown()
            .await;
    }

    async fn create(&mut self, request: CreateVolumeRequest) -> Result<Volume, tonic::Status> {
        let answer = self.controller.create_volume(request).await?.into_inner();
        Ok(answer.volume.expect("CreateVolume answers a volume"))
    }

    async fn publish(
        &mut self,
        volume_id: &str,
        node: &str,
    ) -> Result<HashMap<String, String>, Code> {
        self.controller
            .controller_publish_volume(publish_request(volume_id, node))
            .await
            .map(|answer| answer.into_inner().publish_context)
            .map_err(|status| status.code())
    }

    async fn probe(&mut self) -> bool {
        let answer = self.identity.probe(ProbeRequest {}).await.unwrap();
        answer.into_inner().ready.expect("Probe answers ready")
    }

    async fn capacity(&mut self) -> Result<i64, tonic::Status> {
        let answer = self
            .controller
            .get_capacity(GetCapacityRequest::default())
            .await?;
        Ok(answer.into_inner().available_capacity)
    }
}

fn capability(mode: Access, access: AccessType) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode.into() }),
        access_type: Some(access),
    }
}

fn mount() -> VolumeCapability {
    capability(
        Access::SingleNodeWriter,
        AccessType::Mount(MountVolume::default()),
    )
}

fn block() -> VolumeCapability {
    capability(Access::SingleNodeWriter, AccessType::Block(BlockVolume {}))
}

fn create_request(name: &str, required: i64, limit: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        volume_capabilities: vec![mount()],
        ..CreateVolumeRequest::default()
    }
}

fn publish_request(volume_id: &str, node: &str) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node.into(),
        volume_capability: Some(mount()),
        ..ControllerPublishVolumeRequest::default()
    }
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn volume_nqn(slot: &str) -> String {
    format!("nqn.2000-02.com.mikrotik:{slot}")
}

fn file_of(slot: &str) -> String {
    format!("{POOL}/csi/{slot}.img")
}

#[tokio::test]
async fn a_volume_lives_and_dies_on_the_rds() {
    let mut plugin = Plugin::start().await;
    let name = "pvc-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f4a5b";
    let mut request = create_request(name, GIB, 0);
    request.parameters = HashMap::from([
        ("fsType".into(), "xfs".into()),
        ("ctrlLossTmo".into(), "-1".into()),
        ("csi.storage.k8s.io/pvc/name".into(), "data".into()),
    ]);
    let volume = plugin.create(request).await.unwrap();
    let id = volume.volume_id.clone();
    assert_eq!(id, "pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f");
    assert_eq!(volume.capacity_bytes, GIB);
    assert_eq!(
        volume.volume_context,
        HashMap::from([
            ("fsType".into(), "xfs".into()),
            ("ctrlLossTmo".into(), "-1".into())
        ])
    );
    let disk = plugin.disk(&id).expect("the disk exists");
    assert_eq!(disk.file_path, file_of(&id));
    assert_eq!(disk.file_size, GIB as u64);
    assert!(disk.nvme_tcp_export);
    assert_eq!(disk.nvme_tcp_server_port, 4420);
    assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(&id));
    assert_eq!(disk.nvme_tcp_server_allow_host_name, "");
    let comment = ids::Metadata::parse(disk.comment.as_deref().unwrap()).unwrap();
    assert_eq!(comment.csi_name, name);
    assert_eq!(comment.requested_bytes, GIB as u64);
    assert!(plugin.has_file(&file_of(&id)));

    let got = plugin
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().capacity_bytes, GIB);
    let status = got.status.unwrap();
    assert!(status.published_node_ids.is_empty());
    let condition = status.volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

    let listed = plugin
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);

    let context = plugin.publish(&id, NODE_A).await.unwrap();
    assert_eq!(
        context,
        HashMap::from([
            ("address".into(), "192.0.2.10".into()),
            ("port".into(), "4420".into()),
            ("nqn".into(), volume_nqn(&id)),
        ])
    );
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        NODE_A
    );
    let listed = plugin
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.entries[0]
            .status
            .as_ref()
            .unwrap()
            .published_node_ids,
        [NODE_A]
    );

    plugin
        .controller
        .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE_A.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        ""
    );

    let expanded = plugin
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            volume_capability: Some(mount()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, 2 * GIB);
    assert!(expanded.node_expansion_required);
    assert_eq!(plugin.disk(&id).unwrap().file_size, 2 * GIB as u64);

    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(plugin.disk(&id).is_none());
    assert!(!plugin.has_file(&file_of(&id)));
}

#[tokio::test]
async fn every_call_is_idempotent() {
    let mut plugin = Plugin::start().await;
    let first = plugin
        .create(create_request("twice", GIB, GIB))
        .await
        .unwrap();
    let again = plugin
        .create(create_request("twice", GIB, 0))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(plugin.state().disks.len(), 1);
    let id = first.volume_id;
    for _ in 0..2 {
        plugin.publish(&id, NODE_A).await.unwrap();
    }
    let expand = ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: 2 * GIB - 1,
            limit_bytes: 0,
        }),
        volume_capability: Some(block()),
        ..Default::default()
    };
    for _ in 0..2 {
        let answer = plugin
            .controller
            .controller_expand_volume(expand.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.capacity_bytes, 2 * GIB, "rounded up to 4 KiB");
        assert!(
            !answer.node_expansion_required,
            "a block volume has no file system"
        );
    }
    let unpublish = ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: NODE_A.into(),
        ..Default::default()
    };
    for _ in 0..2 {
        plugin
            .controller
            .controller_unpublish_volume(unpublish.clone())
            .await
            .unwrap();
    }
    let delete = DeleteVolumeRequest {
        volume_id: id.clone(),
        ..Default::default()
    };
    for _ in 0..2 {
        plugin
            .controller
            .delete_volume(delete.clone())
            .await
            .unwrap();
    }
    assert!(plugin.state().disks.is_empty());
    assert!(!plugin.has_file(&file_of(&id)));
}

#[tokio::test]
async fn a_maximum_length_name_fits() {
    let mut plugin = Plugin::start().await;
    let name = format!("sanity-max-{}", "ü".repeat(58));
    assert_eq!(name.len(), 127);
    let volume = plugin.create(create_request(&name, 0, 0)).await.unwrap();
    assert_eq!(volume.capacity_bytes, GIB, "no capacity asked: 1 GiB");
    let again = plugin.create(create_request(&name, 0, 0)).await.unwrap();
    assert_eq!(volume, again);
    let comment = plugin.disk(&volume.volume_id).unwrap().comment.unwrap();
    assert_eq!(ids::Metadata::parse(&comment).unwrap().csi_name, name);
}

#[tokio::test]
async fn conflicting_creates_are_already_exists() {
    let mut plugin = Plugin::start().await;
    plugin
        .create(create_request("sized", GIB, GIB))
        .await
        .unwrap();
    let before = plugin.state().disks;
    let bigger = plugin
        .create(create_request("sized", 2 * GIB, 2 * GIB))
        .await;
    assert_eq!(bigger.unwrap_err().code(), Code::AlreadyExists);
    let mut moved = create_request("sized", GIB, 0);
    moved.parameters = HashMap::from([("nvmePort".into(), "4421".into())]);
    assert_eq!(
        plugin.create(moved).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // Another CSI name recorded in the slot this name maps to: a collision.
    let slot = ids::volume_id("collides");
    let comment = ids::Metadata {
        kind: ids::IdKind::Volume,
        csi_name: "another name".into(),
        source: None,
        created: 1,
        requested_bytes: 0,
    }
    .to_comment()
    .unwrap();
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{}\" file-size=4096 slot=\"{slot}\" comment=\"{comment}\"",
            file_of(slot.as_str())
        ))
        .await;
    let error = plugin
        .create(create_request("collides", 0, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("another name"),
        "{}",
        error.message()
    );

    // A disk rds-csi did not make.
    let foreign = ids::volume_id("foreign");
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{POOL}/mine.img\" file-size=4096 slot=\"{foreign}\""
        ))
        .await;
    let error = plugin
        .create(create_request("foreign", 0, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    assert!(
        error.message().contains("did not create"),
        "{}",
        error.message()
    );
    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: foreign.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);
    assert_eq!(
        plugin.publish(foreign.as_str(), NODE_A).await,
        Err(Code::NotFound)
    );
    assert!(
        plugin.disk(foreign.as_str()).is_some(),
        "a foreign disk is never deleted"
    );
    let sized = before
        .iter()
        .find(|d| d.slot == ids::volume_id("sized").as_str());
    assert_eq!(
        sized,
        plugin.disk(ids::volume_id("sized").as_str()).as_ref()
    );
}

/// One bad request per row: its code, and the simulator's disks and files unchanged.
#[tokio::test]
async fn bad_requests_get_the_spec_codes_and_change_nothing() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("existing", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    let unknown = ids::volume_id("never-created").to_string();
    let before = plugin.state();
    let c = &mut plugin.controller;
    let with = |change: fn(&mut CreateVolumeRequest)| {
        let mut request = create_request("new-volume", GIB, 0);
        change(&mut request);
        request
    };
    let cases: Vec<(&str, Code, Code)> = vec![
        (
            "create without name",
            code(c.create_volume(with(|r| r.name.clear())).await),
            Code::InvalidArgument,
        ),
        (
            "create without capabilities",
            code(
                c.create_volume(with(|r| r.volume_capabilities.clear()))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create multi-node multi-writer mount",
            code(
                c.create_volume(with(|r| {
                    r.volume_capabilities = vec![capability(
                        Access::MultiNodeMultiWriter,
                        AccessType::Mount(MountVolume::default()),
                    )]
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create without access type",
            code(
                c.create_volume(with(|r| r.volume_capabilities[0].access_type = None))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with an unknown parameter",
            code(
                c.create_volume(with(|r| {
                    r.parameters.insert("replicas".into(), "3".into());
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with fsType btrfs",
            code(
                c.create_volume(with(|r| {
                    r.parameters.insert("fsType".into(), "btrfs".into());
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create from a snapshot",
            code(
                c.create_volume(with(|r| {
                    r.volume_content_source = Some(VolumeContentSource {
                        r#type: Some(volume_content_source::Type::Snapshot(
                            volume_content_source::SnapshotSource {
                                snapshot_id: "snap-1".into(),
                            },
                        )),
                    })
                }))
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with a limit below required",
            code(
                c.create_volume(with(|r| r.capacity_range.as_mut().unwrap().limit_bytes = 1))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "create with no 4 KiB size in range",
            code(c.create_volume(create_request("tiny", 1000, 2000)).await),
            Code::OutOfRange,
        ),
        (
            "create bigger than a disk can be",
            code(c.create_volume(create_request("huge", i64::MAX, 0)).await),
            Code::OutOfRange,
        ),
        (
            "delete without id",
            code(c.delete_volume(DeleteVolumeRequest::default()).await),
            Code::InvalidArgument,
        ),
        (
            "delete of an id this driver never made",
            code(
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: "fake-volume-id".into(),
                    ..Default::default()
                })
                .await,
            ),
            Code::Ok,
        ),
        (
            "validate without id",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "validate without capabilities",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "validate a missing volume",
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: unknown.clone(),
                    volume_capabilities: vec![mount()],
                    ..Default::default()
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "publish without volume id",
            code(
                c.controller_publish_volume(publish_request("", NODE_A))
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish without node id",
            code(c.controller_publish_volume(publish_request(&id, "")).await),
            Code::InvalidArgument,
        ),
        (
            "publish without capability",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_capability: None,
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish multi-node",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_capability: Some(capability(
                        Access::MultiNodeReaderOnly,
                        AccessType::Block(BlockVolume {}),
                    )),
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "publish a missing volume",
            code(
                c.controller_publish_volume(publish_request(&unknown, NODE_A))
                    .await,
            ),
            Code::NotFound,
        ),
        (
            "publish to a node id that is no host NQN",
            code(
                c.controller_publish_volume(publish_request(&id, "fake-node-id"))
                    .await,
            ),
            Code::NotFound,
        ),
        (
            "publish read-only",
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    readonly: true,
                    ..publish_request(&id, NODE_A)
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "unpublish without volume id",
            code(
                c.controller_unpublish_volume(ControllerUnpublishVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "list from a token this driver never gave",
            code(
                c.list_volumes(ListVolumesRequest {
                    starting_token: "invalid-token".into(),
                    ..Default::default()
                })
                .await,
            ),
            Code::Aborted,
        ),
        (
            "list with negative max_entries",
            code(
                c.list_volumes(ListVolumesRequest {
                    max_entries: -1,
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand without id",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand without capacity range",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: id.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "expand a missing volume",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: unknown.clone(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 2 * GIB,
                        limit_bytes: 0,
                    }),
                    ..Default::default()
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "shrink",
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: id.clone(),
                    capacity_range: Some(CapacityRange {
                        required_bytes: 4096,
                        limit_bytes: 8192,
                    }),
                    ..Default::default()
                })
                .await,
            ),
            Code::OutOfRange,
        ),
        (
            "get without id",
            code(
                c.controller_get_volume(ControllerGetVolumeRequest::default())
                    .await,
            ),
            Code::InvalidArgument,
        ),
        (
            "get a missing volume",
            code(
                c.controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: unknown.clone(),
                })
                .await,
            ),
            Code::NotFound,
        ),
        (
            "create a snapshot",
            code(c.create_snapshot(CreateSnapshotRequest::default()).await),
            Code::Unimplemented,
        ),
        (
            "modify a volume",
            code(
                c.controller_modify_volume(ControllerModifyVolumeRequest::default())
                    .await,
            ),
            Code::Unimplemented,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(case, got, want)| format!("{case}: {got:?}, expected {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let after = plugin.state();
    assert_eq!(after.disks, before.disks);
    assert_eq!(
        after.files.iter().map(|f| &f.name).collect::<Vec<_>>(),
        before.files.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn validate_confirms_only_what_is_supported() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("v", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    let request = |caps| ValidateVolumeCapabilitiesRequest {
        volume_id: id.clone(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let confirmed = plugin
        .controller
        .validate_volume_capabilities(request(vec![mount(), block()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        confirmed.confirmed.unwrap().volume_capabilities,
        [mount(), block()]
    );
    let refused = plugin
        .controller
        .validate_volume_capabilities(request(vec![capability(
            Access::MultiNodeMultiWriter,
            AccessType::Block(BlockVolume {}),
        )]))
        .await
        .unwrap()
        .into_inner();
    assert!(refused.confirmed.is_none());
    assert!(
        refused.message.contains("MULTI_NODE_MULTI_WRITER"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn publishing_follows_the_single_node_rules() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.controller.max_volumes_per_node = 2,
        ..Setup::default()
    })
    .await;
    let mut ids = Vec::new();
    for name in ["p1", "p2", "p3"] {
        ids.push(
            plugin
                .create(create_request(name, GIB, 0))
                .await
                .unwrap()
                .volume_id,
        );
    }
    plugin.publish(&ids[0], NODE_A).await.unwrap();
    assert_eq!(
        plugin.publish(&ids[0], NODE_B).await,
        Err(Code::FailedPrecondition)
    );
    let readonly = plugin
        .controller
        .controller_publish_volume(ControllerPublishVolumeRequest {
            readonly: true,
            ..publish_request(&ids[0], NODE_A)
        })
        .await
        .unwrap_err();
    assert_eq!(readonly.code(), Code::AlreadyExists);
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        NODE_A
    );

    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);
    assert!(
        delete
            .message()
            .contains("ControllerUnpublishVolume it first"),
        "{}",
        delete.message()
    );
    assert!(plugin.disk(&ids[0]).is_some());

    plugin.publish(&ids[1], NODE_A).await.unwrap();
    assert_eq!(
        plugin.publish(&ids[2], NODE_A).await,
        Err(Code::ResourceExhausted)
    );
    assert_eq!(
        plugin
            .disk(&ids[2])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        ""
    );
    plugin.publish(&ids[2], NODE_B).await.unwrap();

    // Unpublishing from a node the volume is not published to leaves it alone.
    let unpublish = |volume: &str, node: &str| ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    };
    plugin
        .controller
        .controller_unpublish_volume(unpublish(&ids[0], NODE_B))
        .await
        .unwrap();
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        NODE_A
    );
    // No node id: unpublish from every node.
    plugin
        .controller
        .controller_unpublish_volume(unpublish(&ids[0], ""))
        .await
        .unwrap();
    assert_eq!(
        plugin
            .disk(&ids[0])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        ""
    );
    plugin.publish(&ids[2], NODE_B).await.unwrap();
    plugin.publish(&ids[0], NODE_B).await.unwrap();
}

#[tokio::test]
async fn list_tokens_survive_adds_and_deletes() {
    let mut plugin = Plugin::start().await;
    for n in 0..5 {
        plugin
            .create(create_request(&format!("list-{n}"), 4096, 0))
            .await
            .unwrap();
    }
    let page = |token: &str, max| ListVolumesRequest {
        max_entries: max,
        starting_token: token.into(),
    };
    let first = plugin
        .controller
        .list_volumes(page("", 2))
        .await
        .unwrap()
        .into_inner();
    let first_ids: Vec<String> = first
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert_eq!(first_ids.len(), 2);
    assert_eq!(first.next_token, first_ids[1]);
    // The page's last volume goes away and a new one arrives: the token still works.
    plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: first_ids[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    plugin
        .create(create_request("list-new", 4096, 0))
        .await
        .unwrap();
    let rest = plugin
        .controller
        .list_volumes(page(&first.next_token, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.next_token, "");
    let rest_ids: Vec<String> = rest
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert!(
        rest_ids.iter().all(|id| !first_ids.contains(id)),
        "no duplicates"
    );
    let mut all: Vec<String> = plugin
        .controller
        .list_volumes(page("", 0))
        .await
        .unwrap()
        .into_inner()
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    assert_eq!(all.len(), 5);
    all.retain(|id| id.as_str() > first_ids[1].as_str());
    assert_eq!(
        rest_ids, all,
        "the next page is every volume after the token"
    );
}

#[tokio::test]
async fn a_full_pool_is_resource_exhausted() {
    let mut plugin = Plugin::with(Setup {
        pool_size: 8 << 30,
        ..Setup::default()
    })
    .await;
    assert_eq!(plugin.capacity().await.unwrap(), 8 << 30);
    let before = plugin.state();
    let error = plugin
        .create(create_request("too-big", 9 * GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert!(error.message().contains("/disk add"), "{}", error.message());
    assert_eq!(plugin.state().disks, before.disks);
    plugin
        .sim()
        .inject(&Fault::PoolFull { enabled: true })
        .unwrap();
    assert_eq!(plugin.capacity().await.unwrap(), 0);
}

#[tokio::test]
async fn a_second_operation_on_a_busy_volume_is_aborted() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("busy", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    // The delete holds the volume between removing the disk and removing its file.
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "^/file remove".into(),
            fixed_ms: 1_500,
            jitter_ms: 0,
        })
        .unwrap();
    let mut events = plugin.sim().subscribe_events();
    let mut deleting = plugin.controller.clone();
    let delete = tokio::spawn({
        let id = id.clone();
        async move {
            deleting
                .delete_volume(DeleteVolumeRequest {
                    volume_id: id,
                    ..Default::default()
                })
                .await
        }
    });
    loop {
        match events.recv().await.unwrap() {
            Event::Unexported { nqn } if nqn == volume_nqn(&id) => break,
            _ => continue,
        }
    }
    assert_eq!(plugin.publish(&id, NODE_A).await, Err(Code::Aborted));
    let expand = plugin
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(expand.code(), Code::Aborted);
    assert!(expand.message().contains(&id), "{}", expand.message());
    delete.await.unwrap().unwrap();
    assert!(!plugin.has_file(&file_of(&id)));
    // Free again once the delete is done.
    assert_eq!(plugin.publish(&id, NODE_A).await, Err(Code::NotFound));
}

#[tokio::test]
async fn concurrent_creates_respect_the_bound() {
    let plugin = Plugin::with(Setup {
        config: |c| c.controller.max_concurrent_creates = 1,
        ..Setup::default()
    })
    .await;
    let names: Vec<String> = (0..4).map(|n| format!("bounded-{n}")).collect();
    let creates: Vec<_> = names
        .iter()
        .map(|name| {
            let mut client = plugin.controller.clone();
            let request = create_request(name, 4096, 0);
            tokio::spawn(async move { client.create_volume(request).await })
        })
        .collect();
    for create in creates {
        create.await.unwrap().unwrap();
    }
    // With one create at a time, each volume's commands form one unbroken run in the log.
    let slots: Vec<String> = names
        .iter()
        .map(|n| ids::volume_id(n).to_string())
        .collect();
    let order: Vec<&String> = plugin
        .sim()
        .log_since(0)
        .into_iter()
        .filter_map(|record| {
            slots
                .iter()
                .find(|slot| record.line.contains(slot.as_str()))
        })
        .collect();
    let mut runs = order.clone();
    runs.dedup();
    assert_eq!(runs.len(), slots.len(), "interleaved creates: {order:?}");
}

#[tokio::test]
async fn an_unanswered_add_is_settled_by_reading_back() {
    let mut plugin = Plugin::start().await;
    plugin
        .sim()
        .inject(&Fault::Crash {
            pattern: "^/disk add".into(),
            point: CrashPoint::AfterCommit,
            count: 1,
        })
        .unwrap();
    let volume = plugin
        .create(create_request("crashy", GIB, 0))
        .await
        .unwrap();
    let again = plugin
        .create(create_request("crashy", GIB, 0))
        .await
        .unwrap();
    assert_eq!(volume, again);
    let volumes = plugin
        .state()
        .disks
        .iter()
        .filter(|d| d.slot != POOL)
        .count();
    assert_eq!(volumes, 1);
}

/// RouterOS prints nothing for a successful `set` or `remove`; a command that printed nothing
/// but changed nothing is caught by reading the disk back.
#[tokio::test]
async fn a_mutation_that_did_nothing_is_caught_by_the_read_back() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("unchanged", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    for pattern in ["^/disk set", "^/disk remove"] {
        plugin
            .sim()
            .inject(&Fault::Error {
                pattern: pattern.into(),
                text: String::new(),
                count: 1,
            })
            .unwrap();
    }
    let publish = plugin
        .controller
        .controller_publish_volume(publish_request(&id, NODE_A))
        .await
        .unwrap_err();
    assert_eq!(publish.code(), Code::Internal);
    assert!(
        publish.message().contains(&format!(
            "nvme-tcp-server-allow-host-name=\"\" (expected {NODE_A})"
        )),
        "{}",
        publish.message()
    );
    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::Internal);
    assert!(
        delete.message().contains("still exists"),
        "{}",
        delete.message()
    );
    // The faults are spent: the retries converge.
    plugin.publish(&id, NODE_A).await.unwrap();
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        NODE_A
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_deadline_exceeded() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.rds.command_timeout_ms = 300,
        ..Setup::default()
    })
    .await;
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "mount-point".into(),
            fixed_ms: 1_000,
            jitter_ms: 0,
        })
        .unwrap();
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{}", error.message());
    assert!(
        error.message().contains("mount-point"),
        "{}",
        error.message()
    );
    plugin.sim().inject(&Fault::Clear).unwrap();
    assert_eq!(plugin.capacity().await.unwrap(), 64 << 30);
}

#[tokio::test]
async fn a_file_left_without_its_disk_is_replaced() {
    let mut plugin = Plugin::start().await;
    let slot = ids::volume_id("orphan");
    let file = file_of(slot.as_str());
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{file}\" file-size=4096 slot=\"{slot}\""
        ))
        .await;
    plugin
        .routeros(&format!("/disk remove [find where slot=\"{slot}\"]"))
        .await;
    assert!(plugin.has_file(&file));
    let volume = plugin
        .create(create_request("orphan", GIB, 0))
        .await
        .unwrap();
    assert_eq!(volume.capacity_bytes, GIB);
    assert_eq!(plugin.disk(slot.as_str()).unwrap().file_size, GIB as u64);
}

#[tokio::test]
async fn an_old_routeros_is_refused_with_the_version() {
    let mut plugin = Plugin::with(Setup {
        routeros_version: "7.20.8 (long-term)",
        ..Setup::default()
    })
    .await;
    let error = plugin
        .create(create_request("old", GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("7.20.8"), "{}", error.message());
    assert!(error.message().contains("7.21"), "{}", error.message());
    assert!(plugin.state().disks.is_empty(), "nothing was added");
}

#[tokio::test]
async fn identity_describes_the_controller() {
    let mut plugin = Plugin::start().await;
    let info = plugin
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "rds.csi.mikrotik.com");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let capabilities = plugin
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let service = |t: service::Type| PluginCapability {
        r#type: Some(plugin_capability::Type::Service(
            plugin_capability::Service { r#type: t.into() },
        )),
    };
    let online = PluginCapability {
        r#type: Some(plugin_capability::Type::VolumeExpansion(
            plugin_capability::VolumeExpansion {
                r#type: volume_expansion::Type::Online.into(),
            },
        )),
    };
    assert_eq!(
        capabilities,
        [service(service::Type::ControllerService), online]
    );
    let controller = plugin
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let advertised: Vec<_> = controller
        .capabilities
        .iter()
        .map(|c| match c.r#type {
            Some(controller_service_capability::Type::Rpc(rpc)) => rpc.r#type().as_str_name(),
            None => "none",
        })
        .collect();
    assert_eq!(
        advertised,
        [
            "CREATE_DELETE_VOLUME",
            "PUBLISH_UNPUBLISH_VOLUME",
            "LIST_VOLUMES",
            "GET_CAPACITY",
            "EXPAND_VOLUME",
            "LIST_VOLUMES_PUBLISHED_NODES",
            "GET_VOLUME",
            "VOLUME_CONDITION",
            "SINGLE_NODE_MULTI_WRITER",
        ]
    );
    assert!(plugin.probe().await);
}

#[tokio::test]
async fn probe_is_not_ready_once_the_rds_is_gone() {
    let mut plugin = Plugin::start().await;
    assert!(plugin.probe().await);
    plugin.stop_sim().await;
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{}", error.message());
    assert!(!plugin.probe().await);
}

#[tokio::test]
async fn probe_follows_an_rds_restart() {
    let mut plugin = Plugin::start().await;
    plugin
        .create(create_request("survivor", GIB, 0))
        .await
        .unwrap();
    plugin
        .sim()
        .inject(&Fault::Restart { downtime_ms: 1_000 })
        .unwrap();
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{}", error.message());
    assert!(!plugin.probe().await);
    // Back after the downtime, with its disks.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !plugin.probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the RDS never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = plugin
        .create(create_request("survivor", GIB, 0))
        .await
        .unwrap();
    assert_eq!(again.capacity_bytes, GIB);
}

#[tokio::test]
async fn a_host_key_mismatch_refuses_the_rds() {
    let mut plugin = Plugin::with(Setup {
        pin_wrong_key: true,
        ..Setup::default()
    })
    .await;
    let error = plugin
        .create(create_request("mitm", GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    let real = HostKeyPin::of_key(&plugin.sim.as_ref().unwrap().host_public_key).to_string();
    let message = error.message();
    assert!(message.contains(&real), "{message}");
    assert!(message.contains("pinned"), "{message}");
    assert!(!plugin.probe().await);
    assert!(plugin.state().disks.is_empty(), "nothing was added");
}

#[tokio::test]
async fn node_mode_serves_identity_only_and_needs_no_rds() {
    let mut plugin = Plugin::with(Setup {
        mode: Mode::Node,
        ..Setup::default()
    })
    .await;
    plugin.stop_sim().await;
    assert!(
        plugin.probe().await,
        "the node plugin does not depend on the RDS"
    );
    let capabilities = plugin
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(
        capabilities
            .iter()
            .all(|c| !matches!(c.r#type, Some(plugin_capability::Type::Service(_)))),
        "{capabilities:?}"
    );
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented);
}
