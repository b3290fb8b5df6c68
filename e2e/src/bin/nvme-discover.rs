//! nvme-discover: reads the discovery log page of a connected discovery controller, for the QEMU
//! guest, which has no nvme-cli. Prints one line per log entry:
//! `subtype=<n> trsvcid=<port> traddr=<addr> subnqn=<nqn>`.
//!
//! `nvme-discover /dev/nvme1`

use std::fs::File;
use std::os::fd::AsRawFd;

/// The kernel's `struct nvme_passthru_cmd` (include/uapi/linux/nvme_ioctl.h), 72 bytes.
#[repr(C)]
#[derive(Default)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = (3 << 30)
    | ((size_of::<PassthruCmd>() as libc::c_ulong) << 16)
    | ((b'N' as libc::c_ulong) << 8)
    | 0x41;
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
    let mut cmd = PassthruCmd {
        opcode: GET_LOG_PAGE,
        addr: log.as_mut_ptr() as u64,
        data_len: LOG_BYTES as u32,
        // NUMDL in bits 16..32, the log identifier in bits 0..8; NUMDU (cdw11) stays 0.
        cdw10: DISCOVERY_LOG | ((dwords & 0xffff) << 16),
        ..PassthruCmd::default()
    };
    // SAFETY: `cmd` is a valid nvme_passthru_cmd whose buffer (`log`) outlives the call and is
    // `data_len` bytes long.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ADMIN_CMD, &mut cmd) };
    if rc != 0 {
        return Err(format!(
            "Get Log Page (discovery) on {device}: {}",
            if rc < 0 {
                std::io::Error::last_os_error().to_string()
            } else {
                format!("NVMe status {rc:#x}")
            }
        ));
    }
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
