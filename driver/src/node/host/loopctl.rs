//! Loop devices through the ioctls of `<linux/loop.h>`, which libc does not carry: loop mode's
//! fabric puts a backing file behind one, and read-only views put a block device behind one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{DevNum, HostError};

const LOOP_SET_FD_FLAGS_READ_ONLY: u32 = 1;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; LO_NAME_SIZE],
    crypt_name: [u8; LO_NAME_SIZE],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

impl LoopInfo64 {
    fn zeroed() -> LoopInfo64 {
        LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: 0,
            sizelimit: 0,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags: 0,
            file_name: [0; LO_NAME_SIZE],
            crypt_name: [0; LO_NAME_SIZE],
            encrypt_key: [0; 32],
            init: [0; 2],
        }
    }
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Every bound loop device under `sys` (`/sys`): its name and its backing file as the kernel
/// reports it, sorted by name.
pub fn bound(sys: &Path) -> Result<Vec<(String, String)>, HostError> {
    let block = sys.join("block");
    let entries =
        std::fs::read_dir(&block).map_err(HostError::io(format!("reading {}", block.display())))?;
    let mut loops = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            loops.push((name, file.trim_end_matches('\n').to_owned()));
        }
    }
    loops.sort();
    Ok(loops)
}

/// Puts `file` (a regular file or a block device) behind a free loop device under `dev` and
/// returns its name (`loop3`); `read_only` makes the kernel refuse every write to it. Another
/// process may take the free device between asking and configuring it (EBUSY); then ask again.
pub fn attach(dev: &Path, file: &Path, read_only: bool) -> Result<String, HostError> {
    let control_path = dev.join("loop-control");
    let control = File::open(&control_path)
        .map_err(HostError::io(format!("opening {}", control_path.display())))?;
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file)
        .map_err(HostError::io(format!("opening {}", file.display())))?;
    let mut last = None;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let number = check(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })
            .map_err(HostError::io(
                "asking /dev/loop-control for a free loop device",
            ))?;
        let name = format!("loop{number}");
        let path = dev.join(&name);
        let device = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)
            .map_err(HostError::io(format!("opening {}", path.display())))?;
        match configure(&device, &backing, file, read_only) {
            Ok(()) => return Ok(name),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => {
                return Err(HostError::io(format!(
                    "LOOP_CONFIGURE {} with {}",
                    path.display(),
                    file.display()
                ))(e));
            }
        }
    }
    Err(HostError::io(
        "every free loop device was taken by others meanwhile",
    )(last.expect("the loop ran")))
}

fn configure(device: &File, backing: &File, name: &Path, read_only: bool) -> io::Result<()> {
    let mut info = LoopInfo64::zeroed();
    let bytes = name.as_os_str().as_encoded_bytes();
    let len = bytes.len().min(LO_NAME_SIZE - 1);
    info.file_name[..len].copy_from_slice(&bytes[..len]);
    if read_only {
        info.flags = LOOP_SET_FD_FLAGS_READ_ONLY;
    }
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info,
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which `LoopConfig` lays out exactly;
    // the kernel copies it before returning.
    check(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config) }).map(drop)
}

/// What a bound loop device is over: the device number of its backing file when that is a
/// block device (kept by the kernel even after the device node is gone), and whether it is
/// read-only. `None` when nothing is bound to it.
pub fn status(device: &File) -> io::Result<Option<(DevNum, bool)>> {
    let mut info = LoopInfo64::zeroed();
    // SAFETY: LOOP_GET_STATUS64 writes a `struct loop_info64`, which `LoopInfo64` lays out.
    match check(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_GET_STATUS64 as _, &mut info) }) {
        Ok(_) => Ok(Some((
            decode_dev(info.rdevice),
            info.flags & LOOP_SET_FD_FLAGS_READ_ONLY != 0,
        ))),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The kernel's `huge_encode_dev` (`new_encode_dev`), which loop_info64 uses, read back.
fn decode_dev(encoded: u64) -> DevNum {
    let encoded = encoded as u32;
    DevNum {
        major: (encoded & 0xfff00) >> 8,
        minor: (encoded & 0xff) | ((encoded >> 12) & 0xfff00),
    }
}

pub fn clear(device: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    check(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _) }).map(drop)
}

pub fn set_capacity(device: &File) -> io::Result<()> {
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    check(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_CAPACITY as _) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structures_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn device_numbers_decode_as_the_kernel_encodes_them() {
        assert_eq!(decode_dev(0x0703), DevNum { major: 7, minor: 3 });
        // minor 300 = 0x12c: the low byte, then the rest above the major.
        assert_eq!(
            decode_dev((0x01 << 20) | (259 << 8) | 0x2c),
            DevNum {
                major: 259,
                minor: 300
            }
        );
    }
}
