//! Replays what the Linux 6.1 initiator exchanged with nvmet (shared/nvme/initiator-trace.txt)
//! and checks the answers against the values nvmet gave.

use super::loopback::{HOST, HOST_ID, Harness, NQN, PORT, SIZE, UUID};
use crate::nvme::command::{Command, Completion, SGL_TRANSPORT, Sgl, io};
use crate::nvme::controller::property::{CAP, CC, CSTS, VS};
use crate::nvme::identify::cns;
use crate::nvme::initiator::{ConnectParams, Initiator, Received};
use crate::nvme::log_page::lid;
use crate::nvme::pdu::{Decoded, Digests, Pdu};
use crate::nvme::{DISCOVERY_NQN, NSID};

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn cstr(b: &[u8]) -> &str {
    std::str::from_utf8(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).unwrap()
}

fn connect_params(
    qid: u16,
    sqsize: u16,
    kato_ms: u32,
    cntlid: u16,
    nqn: &str,
) -> ConnectParams<'_> {
    ConnectParams {
        qid,
        sqsize,
        kato_ms,
        cntlid,
        subsys_nqn: nqn,
        host_nqn: HOST,
        host_id: HOST_ID,
    }
}

/// The controller bring-up every connection in the trace starts with.
fn bring_up<S: std::io::Read + std::io::Write>(init: &mut Initiator<S>) {
    assert_eq!(init.property_get(CAP, true).unwrap(), 0x0000_0820_0f00_03ff);
    init.property_set(CC, 0x0046_0060).unwrap();
    assert_eq!(init.property_get(CC, false).unwrap(), 0x0046_0060);
    assert_eq!(init.property_get(CAP, true).unwrap(), 0x0000_0820_0f00_03ff);
    init.property_set(CC, 0x0046_0061).unwrap();
    assert_eq!(init.property_get(CSTS, false).unwrap(), 0x1);
    assert_eq!(init.property_get(VS, false).unwrap(), 0x0001_0300);
}

fn shut_down<S: std::io::Read + std::io::Write>(init: &mut Initiator<S>) {
    init.property_set(CC, 0x0046_4061).unwrap();
    assert_eq!(init.property_get(CSTS, false).unwrap(), 0x8);
}

#[test]
fn discovery_connection_answers_like_nvmet() {
    let h = Harness::new();
    let (mut init, icresp) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    assert_eq!(
        (icresp.pfv, icresp.cpda, icresp.digests),
        (0, 0, Digests::default())
    );
    assert_eq!(icresp.maxh2cdata, 4_194_304);

    let connect = init
        .fabrics_connect(&connect_params(0, 31, 0, 0xffff, DISCOVERY_NQN))
        .unwrap();
    assert_eq!(
        (connect.cqe.dw0(), connect.cqe.sq_head, connect.cqe.sq_id),
        (1, 1, 0)
    );
    assert!(connect.cqe.status.is_success());
    bring_up(&mut init);

    let id = init.identify(cns::CONTROLLER, 0).unwrap();
    assert_eq!(id.len(), 4096);
    assert_eq!(le16(&id, 78), 1, "cntlid");
    assert_eq!(id[111], 2, "discovery controller type");
    assert_eq!(le32(&id, 92), 0x8000_0000, "OAES: discovery log change");
    assert_eq!(cstr(&id[768..1024]), DISCOVERY_NQN);

    assert_eq!(init.set_features(0x0b, 0x8000_0000).unwrap(), 0x8000_0000);
    let aer = init.submit_async_event().unwrap();

    let header = init.get_log_page(lid::DISCOVERY, 0, 1024).unwrap();
    assert_eq!(
        le64(&header, 8),
        2,
        "numrec: this discovery subsystem and one export"
    );
    assert_eq!(le16(&header, 16), 0, "recfmt");
    let log = init.get_log_page(lid::DISCOVERY, 0, 3072).unwrap();
    let current = &log[1024..2048];
    assert_eq!(
        (current[0], current[1], current[2], current[3]),
        (3, 1, 3, 4)
    );
    assert_eq!(cstr(&current[256..512]), DISCOVERY_NQN);
    let nvm = &log[2048..3072];
    assert_eq!(
        (nvm[0], nvm[1], nvm[2], nvm[3]),
        (3, 1, 2, 4),
        "tcp, ipv4, nvme subsystem, treq"
    );
    assert_eq!((le16(nvm, 4), le16(nvm, 6), le16(nvm, 8)), (1, 0xffff, 32));
    assert_eq!(cstr(&nvm[32..64]), PORT.to_string());
    assert_eq!(cstr(&nvm[256..512]), NQN);
    assert_eq!(cstr(&nvm[512..768]), "192.0.2.1");

    shut_down(&mut init);
    assert!(
        init.stream_mut().take_output().is_empty(),
        "the AER {aer} stays held"
    );
}

#[test]
fn io_controller_answers_like_nvmet() {
    let h = Harness::new();
    let (mut admin, _) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    let connect = admin
        .fabrics_connect(&connect_params(0, 31, 5000, 0xffff, NQN))
        .unwrap();
    assert_eq!((connect.cqe.dw0(), connect.cqe.sq_head), (1, 1));
    bring_up(&mut admin);

    let id = admin.identify(cns::CONTROLLER, 0).unwrap();
    assert_eq!(le16(&id, 78), 1, "cntlid matches Connect");
    assert_eq!(id[111], 1, "I/O controller");
    assert_eq!((id[76], id[77]), (0x0b, 0), "CMIC, MDTS");
    assert_eq!(le32(&id, 80), 0x0001_0300);
    assert_eq!(le32(&id, 92), 0x900, "OAES");
    assert_eq!(le16(&id, 320), 10, "KAS");
    assert_eq!((id[512], id[513], le16(&id, 514)), (0x66, 0x44, 1024));
    assert_eq!((le32(&id, 516), le32(&id, 540)), (1024, 1024), "NN, MNAN");
    assert_eq!(
        (le32(&id, 344), le32(&id, 348)),
        (128, 128),
        "ANAGRPMAX, NANAGRPID"
    );
    assert_eq!((le32(&id, 1792), le32(&id, 1796), id[1803]), (1028, 1, 1));
    assert_eq!(le32(&id, 536), 0x0010_0001, "SGLs");
    assert_eq!(cstr(&id[768..1024]), NQN);
    assert_eq!(&id[24..29], b"Linux");

    let effects = admin.get_log_page(lid::CMD_EFFECTS, 0, 4096).unwrap();
    assert_eq!(le32(&effects, 4 * 0x06), 1, "Identify supported");
    assert_eq!(
        le32(&effects, 1024 + 4 * usize::from(io::WRITE)),
        1,
        "Write supported"
    );
    // Linux sizes the ANA log from NANAGRPID and MNAN: 16 + 128 * 32 + 1024 * 4.
    let ana = admin.get_log_page(lid::ANA, u32::MAX, 8208).unwrap();
    assert_eq!(
        (
            le16(&ana, 8),
            le32(&ana, 16),
            le32(&ana, 20),
            ana[32],
            le32(&ana, 48)
        ),
        (1, 1, 1, 1, NSID)
    );
    assert_eq!(
        admin.get_log_page(lid::SMART, u32::MAX, 512).unwrap().len(),
        512
    );
    assert_eq!(admin.set_features(0x07, 0).unwrap(), 0x007f_007f);

    let (mut ioq, _) = Initiator::handshake(h.connection(), Digests::default()).unwrap();
    let io_connect = ioq
        .fabrics_connect(&connect_params(1, 127, 0, 1, NQN))
        .unwrap();
    assert_eq!(
        (
            io_connect.cqe.dw0(),
            io_connect.cqe.sq_head,
            io_connect.cqe.sq_id
        ),
        (1, 1, 1)
    );

    assert_eq!(admin.set_features(0x0b, 0x900).unwrap(), 0x900);
    admin.submit_async_event().unwrap();
    let csi_ctrl = admin.identify(cns::CSI_CONTROLLER, 0).unwrap();
    assert!(csi_ctrl.iter().all(|&b| b == 0));
    let list = admin.identify(cns::ACTIVE_NS_LIST, 0).unwrap();
    assert_eq!((le32(&list, 0), le32(&list, 4)), (NSID, 0));
    let desc = admin.identify(cns::NS_DESCRIPTORS, NSID).unwrap();
    assert_eq!((desc[0], desc[1]), (3, 16), "UUID descriptor");
    assert_eq!(&desc[4..20], &UUID);
    assert_eq!((desc[20], desc[21]), (2, 16), "NGUID descriptor");
    assert_eq!(
        (desc[40], desc[41], desc[44]),
        (4, 1, 0),
        "command set: NVM"
    );
    let ns = admin.identify(cns::NAMESPACE, NSID).unwrap();
    assert_eq!(
        (le64(&ns, 0), le64(&ns, 8), le64(&ns, 16)),
        (SIZE / 512, SIZE / 512, SIZE / 512)
    );
    assert_eq!(
        (ns[30], le32(&ns, 92), ns[130]),
        (1, 1, 9),
        "NMIC, ANAGRPID, LBADS"
    );
    assert_eq!(&ns[104..120], &UUID, "NGUID");
    // Namespace 2 does not exist: zeroes for Identify, Invalid Namespace for descriptors.
    assert!(
        admin
            .identify(cns::NAMESPACE, 2)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    let err = admin
        .identify(cns::NS_DESCRIPTORS, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sct0/sc0x0b dnr"), "{err}");

    assert_eq!(ioq.read(0, 8).unwrap(), vec![0; 4096]);
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    ioq.write(0, page.clone()).unwrap();
    assert_eq!(ioq.read(0, 8).unwrap(), page);

    // A 1 MiB write goes by R2T: one R2T for the whole transfer, as nvmet sends it.
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let cid = ioq.cid();
    let cmd = Command::new(io::WRITE, cid)
        .with_nsid(NSID)
        .with_cdw(10, 2048)
        .with_cdw(12, 2047)
        .with_sgl(Sgl {
            addr: 0,
            length: 1 << 20,
            id: SGL_TRANSPORT,
        });
    let frame = ioq.codec().capsule_cmd(&cmd.0, Vec::new());
    ioq.send_raw(&frame.to_bytes()).unwrap();
    let Received::R2t(r2t) = ioq.receive().unwrap() else {
        panic!("expected R2T")
    };
    assert_eq!((r2t.cccid, r2t.offset, r2t.length), (cid, 0, 1 << 20));
    for (i, chunk) in big.chunks(256 << 10).enumerate() {
        let h = crate::nvme::pdu::DataHeader {
            cccid: cid,
            ttag: r2t.ttag,
            offset: (i << 18) as u32,
            length: chunk.len() as u32,
            last: i == 3,
            success: false,
        };
        ioq.send_raw(&ioq.codec().h2c_data(&h, chunk.to_vec()).to_bytes())
            .unwrap();
    }
    assert!(ioq.wait(cid).unwrap().cqe.status.is_success());
    ioq.flush().unwrap();
    assert_eq!(ioq.read(2048, 2048).unwrap(), big);
    assert_eq!(&h.disk.lock().unwrap()[1 << 20..2 << 20], &big[..]);

    admin.keep_alive().unwrap();
    shut_down(&mut admin);
}

#[test]
fn sq_head_wraps_at_the_queue_size() {
    let h = Harness::new();
    let mut admin = h.queue(0, 0xffff, Digests::default());
    // Connect and the three enable steps took heads 1..=3; 32 entries wrap to 0.
    let mut heads = Vec::new();
    for _ in 0..30 {
        let cid = admin.cid();
        let cmd = Command::new(crate::nvme::command::admin::KEEP_ALIVE, cid);
        heads.push(admin.execute(cmd, None).unwrap().cqe.sq_head);
    }
    assert_eq!(&heads[..2], &[4, 5]);
    assert_eq!(heads[27], 31);
    assert_eq!(&heads[28..], &[0, 1]);
}

#[test]
fn digests_frame_pdus_as_nvmet_does() {
    let h = Harness::new();
    let both = Digests {
        header: true,
        data: true,
    };
    let mut admin = h.queue(0, 0xffff, both);
    let cid = admin.cid();
    let cmd = Command::new(crate::nvme::command::admin::IDENTIFY, cid)
        .with_cdw(10, u32::from(cns::CONTROLLER))
        .with_sgl(Sgl {
            addr: 0,
            length: 4096,
            id: SGL_TRANSPORT,
        });
    let frame = admin.codec().capsule_cmd(&cmd.0, Vec::new());
    assert_eq!(
        (frame.header[1], frame.header[3], frame.wire_len()),
        (0x01, 0, 76)
    );
    admin.stream_mut().feed(&frame.to_bytes());
    let raw = admin.stream_mut().take_output();
    // C2HData: flags HDGSTF|DDGSTF|LAST, pdo 28, plen 24 + 4 + 4096 + 4.
    assert_eq!(
        (raw[0], raw[1], raw[2], raw[3], le32(&raw, 4)),
        (0x07, 0x07, 24, 28, 4128)
    );
    let resp = &raw[4128..];
    assert_eq!(
        (resp[0], resp[1], resp[2], resp[3], le32(resp, 4)),
        (0x05, 0x01, 24, 0, 28)
    );
    match admin.codec().decode(resp).unwrap() {
        Decoded::Pdu(Pdu::CapsuleResp(cqe), 28) => assert_eq!(Completion::decode(cqe).cid, cid),
        other => panic!("expected a response capsule, got {other:?}"),
    }
    // In-capsule write data with digests: pdo 76 and a data digest.
    let mut ioq = h.queue(1, 1, both);
    ioq.write(8, vec![0xab; 4096]).unwrap();
    assert_eq!(ioq.read(8, 8).unwrap(), vec![0xab; 4096]);
}
