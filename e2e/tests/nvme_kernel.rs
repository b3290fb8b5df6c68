//! The real Linux NVMe/TCP initiator (Debian 6.1, in a QEMU guest) against rds-sim's target on
//! the host: connect through /dev/nvme-fabrics, check the namespace as sysfs shows it, move 64 MiB
//! of random data through it and compare with the host's backing file, grow the disk and watch
//! the kernel pick the new size up from the asynchronous event.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rds_e2e::qemu::{self, Guest, GuestConfig, HOST_ADDR};
use rds_sim::nvme::{Export, Exports, Target};

const NQN: &str = "nqn.2026-09.com.mikrotik:rds2216.pvc-kernel";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:6b0f7c2e-3a54-4e7b-9d1c-0a1b2c3d4e5f";
const UUID: [u8; 16] = [
    0x3f, 0x2a, 0x91, 0x5c, 0x7d, 0x10, 0x4b, 0x8e, 0xa2, 0x33, 0x6c, 0x0d, 0x9e, 0x41, 0x57, 0x28,
];
const SIZE: u64 = 256 << 20;
const PATTERN: usize = 64 << 20;
/// Where the pattern goes on the disk, in MiB (past the start, so offsets are exercised).
const SEEK_MIB: u64 = 8;

struct Store(Mutex<Vec<Export>>);

impl Exports for Store {
    fn lookup(&self, nqn: &str, _port: u16) -> Option<Export> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.nqn == nqn)
            .cloned()
    }
    fn list(&self, _port: u16) -> Vec<Export> {
        self.0.lock().unwrap().clone()
    }
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[test]
fn kernel_initiator_reads_and_writes_the_sim_target() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("pvc-kernel.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let pattern_path = dir.path().join("pattern");
    let mut pattern = vec![0u8; PATTERN];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut pattern)
        .unwrap();
    std::fs::write(&pattern_path, &pattern).unwrap();

    let store = Arc::new(Store(Mutex::new(vec![Export {
        nqn: NQN.to_owned(),
        file: backing.clone(),
        size: SIZE,
        uuid: UUID,
        serial: "5e1f00c0ffee0001".to_owned(),
        allowed_hosts: vec![HOST_NQN.to_owned()],
    }])));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = rt
        .block_on(Target::start("127.0.0.1:0".parse().unwrap(), store.clone()))
        .unwrap();
    let port = target.local_addr().port();

    let config = GuestConfig {
        memory_mb: 1024,
        extra_files: vec![(pattern_path, "/root/pattern".into())],
        ..GuestConfig::default()
    };
    let Some(guest) = qemu::boot_or_skip(config).unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    guest.run_ok("modprobe nvme-tcp").unwrap();

    // A host the allow-list does not name is refused at Connect.
    let refused = guest
        .run(&format!(
            "echo transport=tcp,traddr={HOST_ADDR},trsvcid={port},nqn={NQN},hostnqn=nqn.2014-08.org.nvmexpress:uuid:stranger >/dev/nvme-fabrics"
        ))
        .unwrap();
    assert_ne!(
        refused.rc, 0,
        "the kernel must fail the connect: {refused:?}"
    );

    let controller = connect(&guest, port);
    let device = namespace_device(&guest);
    let info = target.connections();
    assert!(
        info.iter().any(|c| c.qid == 0 && c.host_nqn == HOST_NQN),
        "{info:?}"
    );
    assert!(
        info.iter().any(|c| c.qid > 0),
        "the kernel opened I/O queues: {info:?}"
    );

    let block = device.trim_start_matches("/dev/");
    let sectors = guest
        .run_ok(&format!("cat /sys/block/{block}/size"))
        .unwrap()
        .stdout;
    assert_eq!(sectors.trim(), (SIZE / 512).to_string());
    let uuid = guest
        .run_ok(&format!("cat /sys/block/{block}/uuid"))
        .unwrap()
        .stdout;
    assert_eq!(uuid.trim(), uuid_text(&UUID));
    let lbs = guest
        .run_ok(&format!("cat /sys/block/{block}/queue/logical_block_size"))
        .unwrap()
        .stdout;
    assert_eq!(lbs.trim(), "512");

    let started = Instant::now();
    guest
        .run_ok(&format!(
            "dd if=/root/pattern of={device} bs=1M seek={SEEK_MIB} oflag=direct conv=fsync 2>&1"
        ))
        .unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    let mut on_disk = vec![0u8; PATTERN];
    std::fs::File::open(&backing)
        .unwrap()
        .read_exact_at(&mut on_disk, SEEK_MIB << 20)
        .unwrap();
    assert!(
        on_disk == pattern,
        "the host file holds what the kernel wrote"
    );

    let started = Instant::now();
    let cmp = guest
        .run(&format!(
            "echo 3 >/proc/sys/vm/drop_caches
             dd if={device} bs=1M skip={SEEK_MIB} count={} iflag=direct 2>/dev/null | cmp - /root/pattern",
            PATTERN >> 20
        ))
        .unwrap();
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(cmp.rc, 0, "read back differs: {cmp:?}");
    eprintln!(
        "nvme_kernel: 64 MiB written in {write_secs:.2} s ({:.1} MiB/s), read and compared in {read_secs:.2} s ({:.1} MiB/s), guest under TCG",
        64.0 / write_secs,
        64.0 / read_secs
    );

    // Growing the disk: the namespace-changed event makes the kernel rescan and resize.
    store.0.lock().unwrap()[0].size = 2 * SIZE;
    target.notify_resized(NQN);
    guest
        .run_ok(&format!(
            "for i in $(seq 100); do
               [ \"$(cat /sys/block/{block}/size)\" = {} ] && exit 0
               sleep 0.1
             done
             echo \"size stayed $(cat /sys/block/{block}/size)\" >&2; dmesg | tail -20 >&2; exit 1",
            2 * SIZE / 512
        ))
        .unwrap();

    guest
        .run_ok(&format!(
            "echo 1 >/sys/class/nvme/{controller}/delete_controller"
        ))
        .unwrap();
    let dmesg = guest.run_ok("dmesg").unwrap().stdout;
    assert!(!dmesg.contains("Mismatching cntlid"), "{dmesg}");
}

/// Connects the kernel initiator; returns the controller (`nvmeN`).
fn connect(guest: &Guest, port: u16) -> String {
    let reply = guest
        .run_ok(&format!(
            "exec 4<>/dev/nvme-fabrics
             echo transport=tcp,traddr={HOST_ADDR},trsvcid={port},nqn={NQN},hostnqn={HOST_NQN} >&4
             read -r reply <&4
             echo $reply"
        ))
        .unwrap()
        .stdout;
    reply
        .trim()
        .split(',')
        .find_map(|field| field.strip_prefix("instance="))
        .map(|instance| format!("nvme{instance}"))
        .unwrap_or_else(|| panic!("no instance in the fabrics reply {reply:?}"))
}

/// The block device of the subsystem's namespace, once the kernel's scan created it.
fn namespace_device(guest: &Guest) -> String {
    guest
        .run_ok(&format!(
            "for i in $(seq 100); do
               for subsys in /sys/class/nvme-subsystem/*; do
                 [ \"$(cat $subsys/subsysnqn)\" = {NQN} ] || continue
                 for ns in $subsys/nvme*n*; do [ -b /dev/${{ns##*/}} ] && echo /dev/${{ns##*/}} && exit 0; done
               done
               sleep 0.1
             done
             dmesg | tail -30 >&2; echo 'namespace never appeared' >&2; exit 1"
        ))
        .unwrap()
        .stdout
        .trim()
        .to_string()
}
