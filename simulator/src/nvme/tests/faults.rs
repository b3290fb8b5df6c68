//! Refusals and error statuses: the Connect rules, I/O outside the namespace, unknown
//! commands, asynchronous events on resize, keep-alive expiry.

use super::loopback::{HOST, HOST_ID, Harness, NQN, SIZE, export};
use crate::nvme::NSID;
use crate::nvme::command::{Command, SGL_TRANSPORT, Sgl, admin, io};
use crate::nvme::controller::AEN_NS_CHANGED;
use crate::nvme::identify::cns;
use crate::nvme::initiator::{ConnectParams, Initiator};
use crate::nvme::log_page::lid;
use crate::nvme::pdu::Digests;
use crate::nvme::registry::CtrlKey;
use crate::nvme::status::Status;

/// Connects queue `qid` over a fresh loopback connection; returns the Connect's completion.
pub(super) fn connect(
    h: &Harness,
    qid: u16,
    cntlid: u16,
    nqn: &str,
    host: &str,
) -> crate::nvme::command::Completion {
    let (mut init, _) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    let p = ConnectParams {
        qid,
        sqsize: 31,
        kato_ms: 5000,
        cntlid,
        subsys_nqn: nqn,
        host_nqn: host,
        host_id: HOST_ID,
    };
    init.fabrics_connect(&p).unwrap().cqe
}

#[test]
fn allow_list_refuses_other_hosts_with_connect_invalid_host() {
    let h = Harness::new();
    h.exports.0.lock().unwrap()[0] = export(NQN, &[HOST]);
    let refused = connect(&h, 0, 0xffff, NQN, "nqn.2014-08.org.nvmexpress:uuid:other");
    assert_eq!(
        (
            refused.status.sct(),
            refused.status.sc(),
            refused.status.dnr()
        ),
        (1, 0x84, true)
    );
    assert_eq!(
        refused.dw0(),
        (1 << 16) | 512,
        "IATTR: Connect data, IPO: the host NQN"
    );
    assert!(connect(&h, 0, 0xffff, NQN, HOST).status.is_success());
}

#[test]
fn unknown_subsystem_is_connect_invalid_parameters_on_the_subsystem_nqn() {
    let h = Harness::new();
    let refused = connect(&h, 0, 0xffff, "nqn.2014-08.org.example:missing", HOST);
    assert_eq!(refused.status, Status::CONNECT_INVALID_PARAM);
    assert_eq!((refused.status.sct(), refused.status.sc()), (1, 0x82));
    assert_eq!(refused.dw0(), (1 << 16) | 256);
}

#[test]
fn io_queue_must_name_an_existing_controller_of_the_same_host() {
    let h = Harness::new();
    let _admin = h.queue(0, 0xffff, Digests::default());
    let wrong_id = connect(&h, 1, 7, NQN, HOST);
    assert_eq!(
        (wrong_id.status, wrong_id.dw0()),
        (Status::CONNECT_INVALID_PARAM, (1 << 16) | 16)
    );
    let wrong_host = connect(&h, 1, 1, NQN, "nqn.2014-08.org.nvmexpress:uuid:other");
    assert_eq!(wrong_host.status, Status::CONNECT_INVALID_PARAM);
    assert!(connect(&h, 1, 1, NQN, HOST).status.is_success());
    assert_eq!(
        connect(&h, 1, 1, NQN, HOST).status,
        Status::CMD_SEQ_ERROR,
        "queue 1 exists"
    );
    assert_eq!(connect(&h, 129, 1, NQN, HOST).status, Status::INVALID_QID);
}

#[test]
fn commands_before_connect_and_unknown_opcodes_are_invalid_opcode() {
    let h = Harness::new();
    let (mut init, _) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    let cid = init.cid();
    let r = init
        .execute(Command::new(admin::KEEP_ALIVE, cid), None)
        .unwrap();
    assert_eq!(r.cqe.status, Status::INVALID_OPCODE);

    let mut admin_q = h.queue(0, 0xffff, Digests::default());
    let cid = admin_q.cid();
    assert_eq!(
        admin_q
            .execute(Command::new(0xc5, cid), None)
            .unwrap()
            .cqe
            .status,
        Status::INVALID_OPCODE
    );
    let mut ioq = h.queue(1, 1, Digests::default());
    let cid = ioq.cid();
    let r = ioq
        .execute(Command::new(0x7e, cid).with_nsid(NSID), None)
        .unwrap();
    assert_eq!(r.cqe.status, Status::INVALID_OPCODE);
    let cid = ioq.cid();
    let r = ioq
        .execute(Command::new(io::FLUSH, cid).with_nsid(3), None)
        .unwrap();
    assert_eq!(r.cqe.status, Status::INVALID_NS);
    // The error log records the failures, newest first.
    let log = admin_q.get_log_page(lid::ERROR, 0, 128).unwrap();
    assert_eq!(
        u16::from_le_bytes([log[8], log[9]]),
        1,
        "sqid of the newest error"
    );
    assert_eq!(
        Status::from_wire(u16::from_le_bytes([log[12], log[13]])),
        Status::INVALID_NS
    );
}

#[test]
fn io_past_the_end_is_lba_out_of_range_and_touches_nothing() {
    let h = Harness::new();
    let _admin = h.queue(0, 0xffff, Digests::default());
    let mut ioq = h.queue(1, 1, Digests::default());
    let last = SIZE / 512 - 1;
    assert_eq!(ioq.read(last, 1).unwrap().len(), 512);
    let err = ioq.read(last, 2).unwrap_err().to_string();
    assert!(err.contains("sct0/sc0x80 dnr"), "{err}");
    let err = ioq
        .write(u64::MAX - 3, vec![1; 4096])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sct0/sc0x80"), "{err}");
    // A write past the end is refused before any R2T: no data is asked for.
    let err = ioq.write(last, vec![1; 64 << 10]).unwrap_err().to_string();
    assert!(err.contains("sct0/sc0x80"), "{err}");
    assert!(h.disk.lock().unwrap().iter().all(|&b| b == 0));
    // A transfer length that disagrees with the block count is refused too.
    let cid = ioq.cid();
    let cmd = Command::new(io::READ, cid)
        .with_nsid(NSID)
        .with_cdw(12, 7)
        .with_sgl(Sgl {
            addr: 0,
            length: 512,
            id: SGL_TRANSPORT,
        });
    assert_eq!(
        ioq.execute(cmd, None).unwrap().cqe.status,
        Status::SGL_INVALID_DATA
    );
}

#[test]
fn io_before_the_controller_is_enabled_is_a_sequence_error() {
    let h = Harness::new();
    let (mut admin, _) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    let p = ConnectParams {
        qid: 0,
        sqsize: 31,
        kato_ms: 0,
        cntlid: 0xffff,
        subsys_nqn: NQN,
        host_nqn: HOST,
        host_id: HOST_ID,
    };
    admin.fabrics_connect(&p).unwrap().ok().unwrap();
    let err = admin.identify(cns::CONTROLLER, 0).unwrap_err().to_string();
    assert!(err.contains("sct0/sc0x0c"), "{err}");
    let mut ioq = h.queue(1, 1, Digests::default());
    assert!(
        ioq.read(0, 1)
            .unwrap_err()
            .to_string()
            .contains("sct0/sc0x0c")
    );
}

#[test]
fn resize_completes_the_held_event_and_logs_the_namespace() {
    let h = Harness::new();
    let mut admin = h.queue(0, 0xffff, Digests::default());
    assert_eq!(admin.set_features(0x0b, 0x900).unwrap(), 0x900);
    let aer = admin.submit_async_event().unwrap();
    assert!(
        admin.stream_mut().take_output().is_empty(),
        "the event request is held"
    );

    h.exports.0.lock().unwrap()[0].size = 2 * SIZE;
    let key = CtrlKey {
        subsys_nqn: NQN.to_owned(),
        cntlid: 1,
    };
    assert_eq!(
        h.registry.lock().unwrap().namespace_resized(NQN, 2 * SIZE),
        vec![key]
    );
    admin.stream_mut().poll_events();
    let event = admin.wait(aer).unwrap();
    assert_eq!(event.cqe.dw0(), AEN_NS_CHANGED);
    assert_eq!(event.cqe.dw0(), 0x0004_0002);

    let changed = admin.get_log_page(lid::CHANGED_NS, 0, 4096).unwrap();
    assert_eq!(&changed[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let ns = admin.identify(cns::NAMESPACE, NSID).unwrap();
    assert_eq!(
        u64::from_le_bytes(ns[0..8].try_into().unwrap()),
        2 * SIZE / 512
    );
    // Read and cleared: the next read of the log is empty.
    assert!(
        admin
            .get_log_page(lid::CHANGED_NS, 0, 4096)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
}

#[test]
fn a_silent_keep_alive_period_is_fatal() {
    let h = Harness::new();
    let mut admin = h.queue(0, 0xffff, Digests::default());
    let key = CtrlKey {
        subsys_nqn: NQN.to_owned(),
        cntlid: 1,
    };
    let elapsed = |h: &Harness| {
        h.registry
            .lock()
            .unwrap()
            .get_mut(&key)
            .unwrap()
            .keep_alive_period_elapsed()
    };
    assert!(elapsed(&h), "enabling counts as traffic");
    admin.keep_alive().unwrap();
    assert!(elapsed(&h));
    assert!(!elapsed(&h), "nothing since the last period");
    assert_eq!(
        h.registry.lock().unwrap().get(&key).unwrap().csts() & 0x2,
        0x2,
        "CSTS.CFS"
    );
}

#[test]
fn async_event_requests_are_limited_to_four() {
    let h = Harness::new();
    let mut admin = h.queue(0, 0xffff, Digests::default());
    for _ in 0..4 {
        admin.submit_async_event().unwrap();
    }
    let fifth = admin.submit_async_event().unwrap();
    assert_eq!(admin.wait(fifth).unwrap().cqe.status, Status::ASYNC_LIMIT);
}

/// Linux 6.1 sends a Dataset Management payload sized for 256 ranges whatever NR says (found
/// by the kernel initiator: mkfs.ext4's discard failed with SGL Data Block Invalid).
#[test]
fn deallocate_reads_only_the_ranges_nr_names() {
    let h = Harness::new();
    let _admin = h.queue(0, 0xffff, Digests::default());
    let mut ioq = h.queue(1, 1, Digests::default());
    let mut payload = vec![0u8; 4096];
    payload[4..8].copy_from_slice(&8u32.to_le_bytes()); // 8 blocks
    payload[8..16].copy_from_slice(&16u64.to_le_bytes()); // from LBA 16
    payload[16 + 8..16 + 16].copy_from_slice(&u64::MAX.to_le_bytes()); // beyond NR: ignored
    let cid = ioq.cid();
    let cmd = Command::new(io::DSM, cid)
        .with_nsid(NSID)
        .with_cdw(10, 0)
        .with_cdw(11, 1 << 2);
    let done = ioq.execute(cmd, Some(payload.clone())).unwrap();
    assert_eq!(done.cqe.status, Status::SUCCESS);
    // A range past the end, within NR, is refused.
    payload[4..8].copy_from_slice(&8u32.to_le_bytes());
    payload[8..16].copy_from_slice(&(SIZE / 512 - 4).to_le_bytes());
    let cid = ioq.cid();
    let cmd = Command::new(io::DSM, cid)
        .with_nsid(NSID)
        .with_cdw(10, 0)
        .with_cdw(11, 1 << 2);
    assert_eq!(
        ioq.execute(cmd, Some(payload)).unwrap().cqe.status,
        Status::LBA_RANGE
    );
    // Too little data for the ranges NR names is refused.
    let cid = ioq.cid();
    let cmd = Command::new(io::DSM, cid)
        .with_nsid(NSID)
        .with_cdw(10, 3)
        .with_cdw(11, 1 << 2);
    assert_eq!(
        ioq.execute(cmd, Some(vec![0; 32])).unwrap().cqe.status,
        Status::SGL_INVALID_DATA
    );
}

#[test]
fn protocol_errors_end_the_connection_with_a_termination_request() {
    use crate::nvme::initiator::Received;
    use crate::nvme::pdu::DataHeader;
    let h = Harness::new();
    let _admin = h.queue(0, 0xffff, Digests::default());
    // Data for a transfer the target never asked for.
    let mut ioq = h.queue(1, 1, Digests::default());
    let stray = DataHeader {
        cccid: 9,
        ttag: 9,
        offset: 0,
        length: 4,
        last: true,
        success: false,
    };
    ioq.send_raw(&ioq.codec().h2c_data(&stray, vec![0; 4]).to_bytes())
        .unwrap();
    assert_eq!(
        ioq.receive().unwrap(),
        Received::Terminated { fes: 1, fei: 8 }
    );
    assert!(ioq.stream_mut().closed);
    // A corrupted header digest.
    let both = Digests {
        header: true,
        data: true,
    };
    let mut ioq = h.queue(2, 1, both);
    let mut bytes = ioq
        .codec()
        .capsule_cmd(&Command::new(io::FLUSH, 1).0, Vec::new())
        .to_bytes();
    bytes[10] ^= 0xff;
    ioq.send_raw(&bytes).unwrap();
    assert_eq!(
        ioq.receive().unwrap(),
        Received::Terminated { fes: 3, fei: 0 }
    );
    // A second ICReq on a running connection.
    let mut ioq = h.queue(3, 1, Digests::default());
    let ic = crate::nvme::pdu::IcReq {
        pfv: 0,
        hpda: 0,
        digests: Digests::default(),
        maxr2t: 0,
    };
    ioq.send_raw(&ioq.codec().ic_req(&ic).to_bytes()).unwrap();
    assert_eq!(
        ioq.receive().unwrap(),
        Received::Terminated { fes: 2, fei: 0 }
    );
}
