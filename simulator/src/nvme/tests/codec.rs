//! The PDU codec on its own: round trips, partial input, malformed input.

use crate::nvme::pdu::{
    Codec, DataHeader, Decoded, Digests, Fes, IcReq, Pdu, PduError, PduType, R2t, RecvBuffer,
};

const BOTH: Digests = Digests {
    header: true,
    data: true,
};

fn codec(digests: Digests) -> Codec {
    Codec {
        digests,
        max_data: 1 << 20,
    }
}

fn decode_whole(c: &Codec, bytes: &[u8]) -> Pdu<'static> {
    let leaked: &'static [u8] = Vec::leak(bytes.to_vec());
    match c.decode(leaked).unwrap() {
        Decoded::Pdu(pdu, len) => {
            assert_eq!(len, bytes.len());
            pdu
        }
        Decoded::NeedMore(n) => panic!("needs {n} bytes"),
    }
}

#[test]
fn every_pdu_round_trips_with_and_without_digests() {
    for digests in [
        Digests::default(),
        BOTH,
        Digests {
            header: true,
            data: false,
        },
    ] {
        let c = codec(digests);
        let sqe = [7u8; 64];
        let bytes = c.capsule_cmd(&sqe, vec![1, 2, 3, 4]).to_bytes();
        assert_eq!(
            decode_whole(&c, &bytes),
            Pdu::CapsuleCmd {
                sqe: &sqe,
                data: &[1, 2, 3, 4]
            }
        );
        let cqe = [9u8; 16];
        assert_eq!(
            decode_whole(&c, &c.capsule_resp(&cqe).to_bytes()),
            Pdu::CapsuleResp(&cqe)
        );
        let h = DataHeader {
            cccid: 5,
            ttag: 6,
            offset: 8,
            length: 3,
            last: true,
            success: false,
        };
        assert_eq!(
            decode_whole(&c, &c.h2c_data(&h, vec![1, 2, 3]).to_bytes()),
            Pdu::H2cData(h, &[1, 2, 3])
        );
        assert_eq!(
            decode_whole(&c, &c.c2h_data(&h, vec![1, 2, 3]).to_bytes()),
            Pdu::C2hData(h, &[1, 2, 3])
        );
        let r = R2t {
            cccid: 1,
            ttag: 2,
            offset: 3,
            length: 4,
        };
        assert_eq!(decode_whole(&c, &c.r2t(&r).to_bytes()), Pdu::R2t(r));
        let ic = IcReq {
            pfv: 0,
            hpda: 0,
            digests: BOTH,
            maxr2t: 0,
        };
        assert_eq!(decode_whole(&c, &c.ic_req(&ic).to_bytes()), Pdu::IcReq(ic));
        let term = c
            .term_req(PduType::C2hTermReq, Fes::HeaderDigest, 0, &[0xee; 200])
            .to_bytes();
        assert_eq!(
            term.len(),
            24 + 128,
            "at most 128 bytes of the offending header"
        );
        let Pdu::C2hTermReq(t) = decode_whole(&c, &term) else {
            panic!("not a term req")
        };
        assert_eq!((t.fes, t.data.len()), (3, 128));
    }
}

#[test]
fn partial_input_asks_for_the_rest() {
    let c = codec(BOTH);
    let bytes = c.capsule_cmd(&[1; 64], vec![5; 100]).to_bytes();
    assert_eq!(c.decode(&bytes[..3]).unwrap(), Decoded::NeedMore(8));
    for cut in 8..bytes.len() {
        assert_eq!(
            c.decode(&bytes[..cut]).unwrap(),
            Decoded::NeedMore(bytes.len())
        );
    }
}

#[test]
fn malformed_input_is_a_typed_error() {
    let c = codec(BOTH);
    let mut bytes = c.capsule_cmd(&[1; 64], vec![5; 100]).to_bytes();
    bytes[20] ^= 1;
    assert!(matches!(
        c.decode(&bytes),
        Err(PduError::HeaderDigest { .. })
    ));
    let mut bytes = c.capsule_cmd(&[1; 64], vec![5; 100]).to_bytes();
    bytes[100] ^= 1;
    assert!(matches!(c.decode(&bytes), Err(PduError::DataDigest { .. })));
    assert_eq!(
        c.decode(&[0x42, 0, 0, 0, 8, 0, 0, 0]),
        Err(PduError::UnknownType(0x42))
    );
    let plain = codec(Digests::default());
    let mut bytes = plain.capsule_resp(&[0; 16]).to_bytes();
    bytes[2] = 30;
    assert!(matches!(
        plain.decode(&bytes),
        Err(PduError::HeaderLength { .. })
    ));
    bytes[2] = 24;
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        plain.decode(&bytes),
        Err(PduError::TooLarge { .. })
    ));
    let bytes = plain.capsule_resp(&[0; 16]).to_bytes();
    assert!(
        matches!(c.decode(&bytes), Err(PduError::DigestFlags { .. })),
        "digest missing"
    );
    let h = DataHeader {
        cccid: 1,
        ttag: 1,
        offset: 0,
        length: 9,
        last: true,
        success: false,
    };
    let bytes = plain.h2c_data(&h, vec![0; 4]).to_bytes();
    assert!(matches!(
        plain.decode(&bytes),
        Err(PduError::DataLength { .. })
    ));
}

#[test]
fn recv_buffer_keeps_unconsumed_bytes_across_growth() {
    let mut rb = RecvBuffer::default();
    let spare = rb.spare(4, 4);
    spare[..4].copy_from_slice(b"abcd");
    rb.commit(4);
    rb.consume(2);
    let spare = rb.spare(1000, 16);
    assert!(spare.len() >= 998);
    spare[..2].copy_from_slice(b"ef");
    rb.commit(2);
    assert_eq!(rb.filled(), b"cdef");
}
