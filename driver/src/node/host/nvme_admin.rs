//! NVMe admin commands through the kernel's passthrough ioctl (`<linux/nvme_ioctl.h>`), for what
//! sysfs does not tell: the node asks a controller for a namespace's current size, the e2e guest
//! tool reads a discovery log page.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `NVME_IOCTL_ID`: the namespace id of a namespace's block device.
const NVME_IOCTL_ID: libc::c_ulong = 0x4E40;
/// `NVME_IOCTL_ADMIN_CMD`: `_IOWR('N', 0x41, struct nvme_passthru_cmd)`.
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = 0xC048_4E41;

/// `struct nvme_passthru_cmd`, 72 bytes.
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

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// The namespace id of the namespace block device open as `file`.
pub fn namespace_id(file: &File) -> io::Result<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace id.
    let nsid = check(unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ID as _) })?;
    Ok(nsid as u32)
}

/// Runs admin command `opcode` with `nsid` and `cdw10` on the controller or namespace open as
/// `file`, the controller's data landing in `data`. A non-zero NVMe status is an error naming
/// `what`.
pub fn admin_read(
    file: &File,
    what: &str,
    opcode: u8,
    nsid: u32,
    cdw10: u32,
    data: &mut [u8],
) -> io::Result<()> {
    let mut cmd = PassthruCmd {
        opcode,
        nsid,
        addr: data.as_mut_ptr() as u64,
        data_len: u32::try_from(data.len()).map_err(io::Error::other)?,
        cdw10,
        ..PassthruCmd::default()
    };
    // SAFETY: `cmd` is a valid nvme_passthru_cmd whose buffer `data` outlives the call and holds
    // `data_len` bytes.
    let status = check(unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            NVME_IOCTL_ADMIN_CMD as _,
            &mut cmd as *mut PassthruCmd,
        )
    })?;
    if status != 0 {
        return Err(io::Error::other(format!(
            "{what} failed with NVMe status {status:#x}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passthru_command_has_the_kernels_layout() {
        assert_eq!(size_of::<PassthruCmd>(), 72);
        assert_eq!(NVME_IOCTL_ADMIN_CMD >> 16 & 0x3fff, 72);
    }
}
