//! nvme-discover: reads the discovery log page of a connected discovery controller, for the QEMU
//! guest, which has no nvme-cli. Prints one line per log entry:
//! `subtype=<n> trsvcid=<port> traddr=<addr> subnqn=<nqn>`.
//!
//! `nvme-discover /dev/nvme1`

use std::fs::File;

use rds_csi::node::host::nvme_admin;

const GET_LOG_PAGE: u8 = 0x02;
const DISCOVERY_LOG: u32 = 0x70;
/// The log's header; each entry after it is 1 KiB (NVMe over Fabrics, Discovery Log Page).
const ENTRY: usize = 1024;
/// Room for the header and 15 entries: more than any test exports.
const LOG_BYTES: usize = 16 * ENTRY;

fn main() -> Result<(), String> {
    let device = std::env::args()
        .nth(1)
        .ok_or("usage: nvme-discover /dev/nvmeN (a discovery controller)")?;
    let file = File::open(&device).map_err(|e| format!("opening {device}: {e}"))?;
    let mut log = vec![0u8; LOG_BYTES];
    let dwords = (LOG_BYTES / 4 - 1) as u32;
    // NUMDL in bits 16..32, the log identifier in bits 0..8; NUMDU (cdw11) stays 0.
    let cdw10 = DISCOVERY_LOG | ((dwords & 0xffff) << 16);
    nvme_admin::admin_read(
        &file,
        "Get Log Page (discovery)",
        GET_LOG_PAGE,
        0,
        cdw10,
        &mut log,
    )
    .map_err(|e| format!("{device}: {e}"))?;
    let records = u64::from_le_bytes(log[8..16].try_into().expect("8 bytes")) as usize;
    for entry in log[ENTRY..].chunks_exact(ENTRY).take(records) {
        println!(
            "subtype={} trsvcid={} traddr={} subnqn={}",
            entry[2],
            text(&entry[32..64]),
            text(&entry[512..768]),
            text(&entry[256..512])
        );
    }
    Ok(())
}

/// A fixed-width field of the log: ASCII padded with spaces or NULs.
fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches(['\0', ' '])
        .to_string()
}
