//! Fencing a node on the RDS, as the Kubernetes side asks for a lost node: what it changes on
//! the simulator, and that nothing is published to a fenced node; and the notices the Kubernetes
//! side turns into Events.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;

use crate::harness::*;
use rds_csi::controller::fence::FencedNode;
use rds_csi::controller::notices::About;
use rds_csi::rds::command::FENCED_HOST;
use rds_csi::rds::value::Nqn;
use rds_sim::nvme::initiator::{ConnectParams, Initiator};
use rds_sim::nvme::pdu::Digests;
use rds_sim::nvme::status::Status as NvmeStatus;

fn fenced(node: &str) -> BTreeMap<String, FencedNode> {
    BTreeMap::from([(
        node.to_owned(),
        FencedNode {
            node: "node-a".into(),
            why: "it has been Ready=Unknown since 10:00".into(),
        },
    )])
}

#[tokio::test]
async fn a_fenced_node_gets_nothing_published_until_the_fence_is_lifted() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("pvc-fence-1", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    plugin.service.fences().replace(fenced(NODE_A));
    let refused = plugin
        .controller
        .controller_publish_volume(publish_request(&id, NODE_A))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("node-a") && refused.message().contains("is fenced"),
        "{}",
        refused.message()
    );
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        FENCED_HOST,
        "a refused publish changes nothing"
    );
    plugin.service.fences().replace(BTreeMap::new());
    plugin.publish(&id, NODE_A).await.unwrap();
}

// Multi-threaded: the test's NVMe/TCP initiator blocks a thread while the target answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_a_host_takes_its_volumes_and_ends_its_connections() {
    let mut plugin = Plugin::with(Setup {
        nvme: true,
        ..Setup::default()
    })
    .await;
    let target = plugin
        .sim()
        .target()
        .expect("rds-sim serves NVMe/TCP")
        .local_addr();
    let mut ids = Vec::new();
    for name in ["pvc-fence-a", "pvc-fence-b", "pvc-fence-c"] {
        // Exported on the port the simulator's target listens on.
        let mut request = create_request(name, GIB, 0);
        request.parameters = HashMap::from([("nvmePort".to_owned(), target.port().to_string())]);
        ids.push(plugin.create(request).await.unwrap().volume_id);
    }
    plugin.publish(&ids[0], NODE_A).await.unwrap();
    plugin.publish(&ids[1], NODE_A).await.unwrap();
    plugin.publish(&ids[2], NODE_B).await.unwrap();
    let export = plugin.disk(&ids[0]).unwrap().nvme_tcp_server_nqn;
    let (mut connection, status) = connect(target, &export, NODE_A);
    assert!(status.is_success(), "{status:?}");

    let host = Nqn::parse(NODE_A).unwrap();
    let mut taken = plugin.service.fence_host(&host).await.unwrap();
    taken.sort();
    let mut expected = vec![ids[0].clone(), ids[1].clone()];
    expected.sort();
    assert_eq!(taken, expected);
    for id in &ids[..2] {
        let disk = plugin.disk(id).unwrap();
        assert_eq!(disk.nvme_tcp_server_allow_host_name, FENCED_HOST);
        assert!(disk.nvme_tcp_export, "the export is back after the cycle");
        assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(id));
    }
    assert_eq!(
        plugin
            .disk(&ids[2])
            .unwrap()
            .nvme_tcp_server_allow_host_name,
        NODE_B,
        "another node's volume is untouched"
    );
    // The connection was ended by the target: reading finds its end, not a timeout.
    let connected = plugin.sim().target().unwrap().connections();
    assert!(
        !connected.iter().any(|c| c.host_nqn == NODE_A),
        "{connected:?}"
    );
    let mut byte = [0u8; 1];
    let read = connection.stream_mut().read(&mut byte);
    let ended = match &read {
        Ok(0) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
        Ok(_) => false,
    };
    assert!(ended, "the connection is still open: {read:?}");
    let (_, again) = connect(target, &export, NODE_A);
    assert_eq!(again, NvmeStatus::CONNECT_INVALID_HOST);
    // Fencing again finds nothing to take.
    assert!(plugin.service.fence_host(&host).await.unwrap().is_empty());
}

fn connect(
    target: std::net::SocketAddr,
    subsystem: &str,
    host: &str,
) -> (Initiator<TcpStream>, NvmeStatus) {
    let stream = TcpStream::connect(target).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (mut initiator, _) = Initiator::handshake(stream, Digests::default()).unwrap();
    let status = initiator
        .fabrics_connect(&ConnectParams {
            qid: 0,
            sqsize: 31,
            kato_ms: 120_000,
            cntlid: 0xffff,
            subsys_nqn: subsystem,
            host_nqn: host,
            host_id: [7; 16],
        })
        .unwrap()
        .cqe
        .status;
    (initiator, status)
}

#[tokio::test]
async fn a_call_the_rds_cannot_answer_is_noticed_for_its_claim() {
    let mut plugin = Plugin::start().await;
    let mut notices = plugin
        .service
        .notices()
        .subscribe()
        .expect("nothing subscribed yet");
    plugin.stop_sim().await;
    let mut request = create_request("pvc-unreachable", GIB, 0);
    request.parameters = HashMap::from([
        ("csi.storage.k8s.io/pvc/name".to_owned(), "data".to_owned()),
        (
            "csi.storage.k8s.io/pvc/namespace".to_owned(),
            "apps".to_owned(),
        ),
    ]);
    assert_eq!(
        plugin.create(request).await.unwrap_err().code(),
        Code::Unavailable
    );
    let notice = notices.try_recv().expect("a notice for the claim");
    assert_eq!(notice.reason, "RdsUnreachable");
    assert_eq!(
        notice.about,
        About::Object {
            kind: "PersistentVolumeClaim",
            namespace: "apps".into(),
            name: "data".into()
        }
    );
}

/// Found by rds-chaos: an unpublish cut off between ending the export and making it again left
/// the volume unexported; its retry found nothing to take off and every later publish failed its
/// read-back. The retry and a publish now export the volume again.
#[tokio::test]
async fn a_volume_left_unexported_by_an_interrupted_unpublish_publishes_again() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("pvc-interrupted", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    plugin.publish(&id, NODE_A).await.unwrap();
    plugin
        .sim()
        .inject(&Fault::Error {
            pattern: "nvme-tcp-export=yes".into(),
            text: "failure: execution error".into(),
            count: 1,
        })
        .unwrap();
    let unpublish = ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: NODE_A.into(),
        ..Default::default()
    };
    let cut_off = plugin
        .controller
        .controller_unpublish_volume(unpublish.clone())
        .await;
    assert!(cut_off.is_err(), "{cut_off:?}");
    assert!(!plugin.disk(&id).unwrap().nvme_tcp_export);
    plugin
        .controller
        .controller_unpublish_volume(unpublish)
        .await
        .unwrap();
    // The retry finished the unpublish: exported, admitting no host.
    let disk = plugin.disk(&id).unwrap();
    assert!(disk.nvme_tcp_export);
    assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(&id));
    assert_eq!(disk.nvme_tcp_server_allow_host_name, FENCED_HOST);

    let context = plugin.publish(&id, NODE_B).await.unwrap();
    assert_eq!(context.get("nqn"), Some(&volume_nqn(&id)));
    let disk = plugin.disk(&id).unwrap();
    assert!(disk.nvme_tcp_export);
    assert_eq!(disk.nvme_tcp_server_nqn, volume_nqn(&id));
    assert_eq!(disk.nvme_tcp_server_allow_host_name, NODE_B);
}
