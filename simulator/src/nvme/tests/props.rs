//! Property tests: no input makes the target panic, and no command reaches outside the
//! namespace (the loopback asserts every file operation's range).

use proptest::prelude::*;

use super::faults::connect;
use super::loopback::{HOST, Harness, NQN};
use crate::nvme::DISCOVERY_NQN;
use crate::nvme::command::{Command, SGL_IN_CAPSULE, SGL_TRANSPORT, Sgl};
use crate::nvme::initiator::Received;
use crate::nvme::pdu::Digests;
use crate::nvme::status::Status;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(prefix in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let h = Harness::new();
        if prefix {
            let mut ioq = { let _a = h.queue(0, 0xffff, Digests::default()); h.queue(1, 1, Digests::default()) };
            ioq.stream_mut().feed(&bytes);
        } else {
            h.connection().feed(&bytes);
        }
    }

    #[test]
    fn truncated_and_oversized_pdus_never_panic(
        ty in prop::sample::select(vec![0u8, 2, 4, 6, 9]),
        flags in any::<u8>(),
        hlen in any::<u8>(),
        pdo in any::<u8>(),
        plen in prop_oneof![0u32..200, Just(u32::MAX), 4_000_000u32..5_000_000],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let h = Harness::new();
        let mut ioq = { let _a = h.queue(0, 0xffff, Digests::default()); h.queue(1, 1, Digests::default()) };
        let mut pdu = vec![ty, flags, hlen, pdo];
        pdu.extend_from_slice(&plen.to_le_bytes());
        pdu.extend_from_slice(&body);
        ioq.stream_mut().feed(&pdu);
    }

    #[test]
    fn io_commands_stay_inside_the_namespace(
        opcode in prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), any::<u8>()],
        nsid in prop_oneof![Just(1u32), any::<u32>()],
        // Near the namespace end (131072 blocks) is where bounds checks go wrong.
        slba in prop_oneof![0u64..140_000, 130_700u64..131_100, any::<u64>()],
        nlb in prop_oneof![0u32..300, any::<u32>()],
        sgl_len in prop_oneof![0u32..70_000, 4_194_000u32..4_194_400, any::<u32>()],
        in_capsule in any::<bool>(),
        length_matches in any::<bool>(),
        dsm_attr in prop_oneof![Just(4u32), any::<u32>()],
        data in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let h = Harness::new();
        let mut ioq = { let _a = h.queue(0, 0xffff, Digests::default()); h.queue(1, 1, Digests::default()) };
        let cid = ioq.cid();
        let id = if in_capsule { SGL_IN_CAPSULE } else { SGL_TRANSPORT };
        // Mostly the transfer length the block count implies, so range checks get exercised.
        let implied = ((nlb & 0xffff) + 1) * 512;
        let len = match (in_capsule, length_matches) {
            (true, _) => data.len() as u32,
            (false, true) => implied,
            (false, false) => sgl_len,
        };
        let cmd = Command::new(opcode, cid)
            .with_nsid(nsid)
            .with_cdw(10, slba as u32)
            .with_cdw(11, if opcode == 9 { dsm_attr } else { (slba >> 32) as u32 })
            .with_cdw(12, nlb)
            .with_sgl(Sgl { addr: 0, length: len, id });
        let payload = if in_capsule { data.clone() } else { Vec::new() };
        let frame = ioq.codec().capsule_cmd(&cmd.0, payload);
        ioq.send_raw(&frame.to_bytes()).unwrap();
        // Serve an R2T with the data it asks for; the answer must be for this command.
        match ioq.receive() {
            Ok(Received::R2t(r)) => {
                prop_assert!(r.length <= 32 << 20);
                let mut fill = data.clone();
                fill.resize(r.length as usize, 0x5a);
                // As a host must: H2CData PDUs of at most MAXH2CDATA each.
                let chunk = ioq.maxh2cdata as usize;
                for (i, part) in fill.chunks(chunk).enumerate() {
                    let h2c = crate::nvme::pdu::DataHeader {
                        cccid: cid,
                        ttag: r.ttag,
                        offset: (i * chunk) as u32,
                        length: part.len() as u32,
                        last: (i + 1) * chunk >= fill.len(),
                        success: false,
                    };
                    ioq.send_raw(&ioq.codec().h2c_data(&h2c, part.to_vec()).to_bytes()).unwrap();
                }
                prop_assert!(ioq.wait(cid).is_ok());
            }
            Ok(Received::Completion(c)) => prop_assert_eq!(c.cid, cid),
            Ok(Received::Data(d, _)) => prop_assert_eq!(d.cccid, cid),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Near the end of the namespace: a read or write succeeds exactly when it fits.
    #[test]
    fn reads_and_writes_near_the_end_succeed_exactly_when_they_fit(
        write in any::<bool>(),
        back in 0u64..600,
        blocks in 1u32..512,
    ) {
        let h = Harness::new();
        let mut ioq = { let _a = h.queue(0, 0xffff, Digests::default()); h.queue(1, 1, Digests::default()) };
        let ns_blocks = super::loopback::SIZE / 512;
        let slba = ns_blocks + 8 - back;
        let result = if write {
            ioq.write(slba, vec![0xc3; blocks as usize * 512])
        } else {
            ioq.read(slba, blocks).map(drop)
        };
        let fits = slba + u64::from(blocks) <= ns_blocks;
        prop_assert_eq!(result.is_ok(), fits, "slba {} + {} blocks", slba, blocks);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A Connect names a subsystem this port serves, or gets Connect Invalid Parameters; the
    /// exported subsystem's name with anything added or missing is another, unknown, subsystem.
    #[test]
    fn connect_to_an_unknown_nqn_is_invalid_parameters(
        nqn in prop_oneof![
            "[ -~]{0,223}",
            "[ -~]{0,8}".prop_map(|tail| format!("{NQN}{tail}")),
            (0usize..NQN.len()).prop_map(|n| NQN[..n].to_string()),
        ],
    ) {
        let h = Harness::new();
        let completion = connect(&h, 0, 0xffff, &nqn, HOST);
        if nqn == NQN || nqn == DISCOVERY_NQN {
            prop_assert!(completion.status.is_success(), "{nqn:?}: {completion:?}");
        } else {
            prop_assert_eq!(completion.status, Status::CONNECT_INVALID_PARAM, "{:?}", nqn);
        }
    }
}
