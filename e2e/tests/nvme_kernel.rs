//! The real Linux NVMe/TCP initiator (Debian 6.1, in a QEMU guest) against the whole rds-sim on the
//! host: the disk is made with `/disk add` through the simulator's CLI engine, faults go through its
//! fault plan. One boot carries every check, in order: the allow-list, discovery (the log page read
//! by `nvme-discover`, since the guest has no nvme-cli), connect and the namespace as
//! sysfs shows it, 64 MiB of random data compared with the host's backing file, `monitor-traffic`,
//! a dropped connection and a restart during I/O, an online resize, the differential against the
//! guest kernel's own nvmet target, and finally a target that stays away longer than ctrl_loss_tmo.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rds_e2e::qemu::nvme::{self as guest_nvme, Connect, ExportedDisk, KernelTarget, SimTarget};
use rds_e2e::qemu::{self, Guest, GuestConfig, HOST_ADDR};
use rds_sim::faults::Fault;
use rds_sim::nvme::DISCOVERY_NQN;

const SLOT: &str = "pvc-kernel";
const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-kernel";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:6b0f7c2e-3a54-4e7b-9d1c-0a1b2c3d4e5f";
const SIZE: u64 = 256 << 20;
const PATTERN: usize = 64 << 20;
/// Where the 64 MiB pattern goes on the disk, in MiB (past the start, so offsets are exercised).
const SEEK_MIB: u64 = 8;
/// MiB of the pattern each fault-during-I/O check writes.
const FAULT_WRITE_MIB: u64 = 32;
/// Per-I/O latency during the fault checks: long enough that the fault lands mid-write.
const FAULT_IO_LATENCY_MS: u64 = 40;
/// Reconnect quickly, and give up only long after the longest planned outage.
const RECONNECT: &str = "reconnect_delay=1,ctrl_loss_tmo=60";

/// Where the guest finds the discovery log reader (the guest has no nvme-cli).
const DISCOVER: &str = "/root/nvme-discover";

struct Rig {
    sim: SimTarget,
    disk: ExportedDisk,
    guest: Guest,
    pattern: Vec<u8>,
}

impl Rig {
    fn routeros(&self, line: &str) -> String {
        self.sim.routeros(line).unwrap()
    }

    fn inject(&self, fault: Fault) {
        self.sim
            .sim()
            .inject(&fault)
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
    }

    fn connect<'a>(&self, host_nqn: &'a str, options: &'a str) -> Connect<'a> {
        Connect {
            traddr: HOST_ADDR,
            port: self.sim.port(),
            nqn: NQN,
            host_nqn,
            options,
        }
    }

    fn guest_sysfs(&self, path: &str) -> String {
        self.guest
            .run_ok(&format!("cat {path}"))
            .unwrap()
            .stdout
            .trim()
            .to_string()
    }

    /// The host's backing file from `offset`, `len` bytes.
    fn backing_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        std::fs::File::open(&self.disk.backing)
            .unwrap()
            .read_exact_at(&mut bytes, offset)
            .unwrap();
        bytes
    }
}

fn start_rig(dir: &Path) -> Option<Rig> {
    let sim = SimTarget::start(dir).unwrap();
    let disk = sim.export_disk(SLOT, NQN, SIZE, HOST_NQN).unwrap();
    let pattern_path = dir.join("pattern");
    let mut pattern = vec![0u8; PATTERN];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut pattern)
        .unwrap();
    std::fs::write(&pattern_path, &pattern).unwrap();
    let config = GuestConfig {
        memory_mb: 1024,
        extra_files: vec![
            (pattern_path, "/root/pattern".into()),
            (env!("CARGO_BIN_EXE_nvme-discover").into(), DISCOVER.into()),
        ],
        ..GuestConfig::default()
    };
    let guest = qemu::boot_or_skip(config).unwrap_or_else(|e| panic!("{e}"))?;
    guest.run_ok("modprobe nvme-tcp").unwrap();
    Some(Rig {
        sim,
        disk,
        guest,
        pattern,
    })
}

fn timed<T>(name: &str, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = step();
    eprintln!("nvme_kernel: {name} took {:.1?}", started.elapsed());
    out
}

#[test]
fn kernel_initiator_against_the_whole_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let Some(rig) = start_rig(dir.path()) else {
        return;
    };
    eprintln!("nvme_kernel: boot took {:.1?}", started.elapsed());
    timed("allow-list", || a_host_off_the_allow_list_is_refused(&rig));
    timed("discovery", || discovery_lists_what_this_host_may_use(&rig));
    let controller = timed("connect", || connects_with_the_disks_size_and_uuid(&rig));
    let device = guest_nvme::namespace_device(&rig.guest, NQN).unwrap();
    timed("64 MiB pattern", || {
        a_pattern_reaches_the_backing_file_and_reads_back(&rig, &device)
    });
    timed("monitor-traffic", || {
        monitor_traffic_counts_the_kernels_io(&rig)
    });
    let drop = Fault::NvmeDrop {
        nqn: None,
        host: None,
    };
    timed("dropped connection during I/O", || {
        io_survives(&rig, &device, &controller, 96, drop)
    });
    let restart = Fault::Restart { downtime_ms: 2500 };
    timed("restart during I/O", || {
        io_survives(&rig, &device, &controller, 160, restart)
    });
    timed("resize", || a_resize_reaches_the_guest(&rig, &device));
    timed("differential against nvmet", || {
        the_kernel_sees_what_it_sees_of_nvmet(&rig, &device, &controller)
    });
    timed("ctrl_loss_tmo", || {
        an_outage_longer_than_ctrl_loss_tmo_removes_the_controller(&rig, &controller)
    });
    eprintln!("nvme_kernel: total {:.1?}", started.elapsed());
    rig.sim.shutdown();
}

fn a_host_off_the_allow_list_is_refused(rig: &Rig) {
    let stranger = rig.connect("nqn.2014-08.org.nvmexpress:uuid:stranger", "");
    let refused = rig
        .guest
        .run(&format!(
            "echo {} >/dev/nvme-fabrics",
            stranger.fabrics_line()
        ))
        .unwrap();
    assert_ne!(
        refused.rc, 0,
        "the kernel must fail the connect: {refused:?}"
    );
}

/// The kernel's discovery controller lists the disk exported to this host, at rds-sim's port, and
/// not a disk exported to another host only.
fn discovery_lists_what_this_host_may_use(rig: &Rig) {
    const OTHER_NQN: &str = "nqn.2000-02.com.mikrotik:pvc-elsewhere";
    rig.sim
        .export_disk(
            "pvc-elsewhere",
            OTHER_NQN,
            16 << 20,
            "nqn.2014-08.org.nvmexpress:uuid:elsewhere",
        )
        .unwrap();
    let discovery = Connect {
        nqn: DISCOVERY_NQN,
        ..rig.connect(HOST_NQN, "")
    };
    let controller = guest_nvme::connect(&rig.guest, &discovery).unwrap();
    let log = rig
        .guest
        .run_ok(&format!("{DISCOVER} /dev/{controller}"))
        .unwrap()
        .stdout;
    guest_nvme::delete_controller(&rig.guest, &controller).unwrap();
    // traddr is the address rds-sim listens on, as the host sees it (QEMU's user network maps the
    // guest's 10.0.2.2 to the host's loopback), so only the fields the guest chose are compared.
    let ours = log
        .lines()
        .find(|line| line.ends_with(&format!(" subnqn={NQN}")))
        .unwrap_or_else(|| panic!("the discovery log must list {NQN}:\n{log}"));
    assert!(
        ours.starts_with(&format!("subtype=2 trsvcid={} ", rig.sim.port())),
        "an NVMe subsystem entry at rds-sim's port: {ours}"
    );
    assert!(
        !log.contains(OTHER_NQN),
        "a disk exported to another host only must not be listed:\n{log}"
    );
}

fn connects_with_the_disks_size_and_uuid(rig: &Rig) -> String {
    let controller = guest_nvme::connect(&rig.guest, &rig.connect(HOST_NQN, RECONNECT)).unwrap();
    let device = guest_nvme::namespace_device(&rig.guest, NQN).unwrap();
    let state = rig.sim.sim().state();
    let queues = &state.nvme_connections;
    assert!(
        queues.iter().any(|c| c.qid == 0 && c.host_nqn == HOST_NQN),
        "{queues:?}"
    );
    assert!(
        queues.iter().any(|c| c.qid > 0),
        "the kernel opened I/O queues: {queues:?}"
    );
    let block = format!("/sys/block/{}", device.trim_start_matches("/dev/"));
    assert_eq!(
        rig.guest_sysfs(&format!("{block}/size")),
        (SIZE / 512).to_string()
    );
    assert_eq!(
        rig.guest_sysfs(&format!("{block}/uuid")),
        guest_nvme::uuid_text(&rig.disk.uuid_hex)
    );
    assert_eq!(
        rig.guest_sysfs(&format!("{block}/queue/logical_block_size")),
        "512"
    );
    controller
}

fn a_pattern_reaches_the_backing_file_and_reads_back(rig: &Rig, device: &str) {
    let started = Instant::now();
    rig.guest
        .run_ok(&format!(
            "dd if=/root/pattern of={device} bs=1M seek={SEEK_MIB} oflag=direct conv=fsync 2>&1"
        ))
        .unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    assert!(
        rig.backing_bytes(SEEK_MIB << 20, PATTERN) == rig.pattern,
        "the host file holds what the kernel wrote"
    );
    let started = Instant::now();
    let cmp = rig
        .guest
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
}

/// The disk's `/disk monitor-traffic` counters, by name.
fn traffic(rig: &Rig) -> HashMap<String, u64> {
    let text = rig.routeros(&format!(
        r#"/disk monitor-traffic [find where slot="{SLOT}"] once"#
    ));
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter_map(|(name, value)| {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            Some((name.trim().to_string(), digits.parse().ok()?))
        })
        .collect()
}

/// `/disk monitor-traffic` shows at least what the pattern moved.
fn monitor_traffic_counts_the_kernels_io(rig: &Rig) {
    let counters = traffic(rig);
    let at_least = |name: &str, floor: u64| {
        let value = counters.get(name).copied().unwrap_or_default();
        assert!(value >= floor, "{name} = {value} < {floor}: {counters:?}");
    };
    at_least("write-bytes", PATTERN as u64);
    at_least("read-bytes", PATTERN as u64);
    at_least("write-ops", 64);
    at_least("read-ops", 64);
}

/// Polls `/disk monitor-traffic` until the disk has taken more than `before` bytes of writes.
fn await_writes_beyond(rig: &Rig, before: u64) {
    let mut pause = Duration::from_millis(5);
    for _ in 0..100 {
        if traffic(rig).get("write-bytes").copied().unwrap_or_default() > before {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    panic!("the guest's write never reached the target");
}

/// Writes part of the pattern at `seek_mib` with slowed I/O, injects `fault` once the write is
/// under way, and checks that the write completes and the data is intact on both sides.
fn io_survives(rig: &Rig, device: &str, controller: &str, seek_mib: u64, fault: Fault) {
    rig.inject(Fault::NvmeLatency {
        latency_ms: FAULT_IO_LATENCY_MS,
    });
    let dmesg_before = rig.guest.run_ok("dmesg | wc -l").unwrap().stdout;
    let written_before = traffic(rig).get("write-bytes").copied().unwrap_or_default();
    // The write runs in the background; the fault comes once the target has taken some of it.
    rig.guest
        .run_ok(&format!(
            "rm -f /tmp/dd.rc
             (dd if=/root/pattern of={device} bs=1M count={FAULT_WRITE_MIB} seek={seek_mib} oflag=direct conv=fsync 2>/tmp/dd.err; echo $? >/tmp/dd.rc) &"
        ))
        .unwrap();
    await_writes_beyond(rig, written_before);
    rig.inject(fault.clone());
    rig.inject(Fault::NvmeLatency { latency_ms: 0 });
    let done = rig
        .guest
        .run(&format!(
            "for i in $(seq 1200); do [ -s /tmp/dd.rc ] && break; sleep 0.05; done
             cat /tmp/dd.rc /tmp/dd.err; cat /sys/class/nvme/{controller}/state
             dmesg | tail -n +$(({} + 1))",
            dmesg_before.trim()
        ))
        .unwrap();
    let mut lines = done.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("0"),
        "the write failed or never ended after {fault:?}:\n{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("\nlive\n"),
        "{controller} is not live:\n{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("Successfully reconnected"),
        "the kernel did not reconnect after {fault:?}:\n{}",
        done.stdout
    );
    let len = (FAULT_WRITE_MIB << 20) as usize;
    assert!(
        rig.backing_bytes(seek_mib << 20, len) == rig.pattern[..len],
        "after {fault:?} the host file does not hold what the kernel wrote"
    );
    let cmp = rig
        .guest
        .run(&format!(
            "echo 3 >/proc/sys/vm/drop_caches
             dd if={device} bs=1M skip={seek_mib} count={FAULT_WRITE_MIB} iflag=direct 2>/dev/null | cmp - /root/pattern"
        ))
        .unwrap();
    // cmp stops at the end of the shorter input and says so on stderr: only that is allowed.
    assert!(
        cmp.rc == 0 || (cmp.stdout.is_empty() && cmp.stderr.contains("EOF on -")),
        "read back after {fault:?} differs: {cmp:?}"
    );
}

fn a_resize_reaches_the_guest(rig: &Rig, device: &str) {
    let block = device.trim_start_matches("/dev/");
    let set = rig.routeros(&format!(
        r#"/disk set [find where slot="{SLOT}"] file-size={}"#,
        2 * SIZE
    ));
    assert_eq!(set, "", "/disk set file-size");
    rig.guest
        .run_ok(&format!(
            "for i in $(seq 100); do
               [ \"$(cat /sys/block/{block}/size)\" = {} ] && exit 0
               sleep 0.1
             done
             echo \"size stayed $(cat /sys/block/{block}/size)\" >&2; dmesg | tail -20 >&2; exit 1",
            2 * SIZE / 512
        ))
        .unwrap();
}

/// The subsystem rds-sim's target is compared with, in the guest.
const NVMET_NQN: &str = "nqn.2024-01.io.rds-csi:nvmet-reference";
const NVMET_PORT: u16 = 4420;

/// What the kernel shows of a namespace and its controller, and what an I/O script reads and
/// writes through it, as `name=value` lines. Names that differ by design (the NQN, the model,
/// the firmware revision, the controller's instance) are left out.
const PROBE: &str = r#"probe() {
  dev=$1 ctrl=$2; b=/sys/block/${dev#/dev/}; c=/sys/class/nvme/$ctrl
  for a in size ro removable uuid nguid wwid nsid \
           queue/logical_block_size queue/physical_block_size queue/minimum_io_size \
           queue/optimal_io_size queue/rotational queue/write_cache queue/fua \
           queue/max_hw_sectors_kb queue/max_segments queue/discard_granularity \
           queue/discard_max_hw_bytes queue/write_zeroes_max_bytes queue/zoned; do
    echo "$a=$(cat $b/$a 2>&1)"
  done
  for a in serial state transport cntrltype dctype kato sqsize queue_count numa_node; do
    echo "ctrl/$a=$(cat $c/$a 2>&1)"
  done
  sectors=$(cat $b/size)
  dd if=/root/pattern of=$dev bs=1M count=8 seek=200 oflag=direct conv=fsync 2>/dev/null; echo "write rc=$?"
  dd if=/root/pattern of=$dev bs=512 count=7 seek=$((sectors - 7)) oflag=direct 2>/dev/null; echo "tail write rc=$?"
  dd if=/dev/zero of=$dev bs=512 count=1 seek=$sectors oflag=direct 2>/dev/null; echo "write past the end rc=$?"
  echo 3 >/proc/sys/vm/drop_caches
  echo "read=$(dd if=$dev bs=1M count=8 skip=200 iflag=direct 2>/dev/null | sha256sum)"
  echo "tail read=$(dd if=$dev bs=512 skip=$((sectors - 7)) count=16 iflag=direct 2>/dev/null | sha256sum)"
  echo "unwritten=$(dd if=$dev bs=1M count=4 skip=220 iflag=direct 2>/dev/null | sha256sum)"
  blkdiscard -o $((201 << 20)) -l $((1 << 20)) $dev; echo "discard rc=$?"
  echo 3 >/proc/sys/vm/drop_caches
  echo "after discard=$(dd if=$dev bs=1M count=1 skip=201 iflag=direct 2>/dev/null | sha256sum)"
}
"#;

fn the_kernel_sees_what_it_sees_of_nvmet(rig: &Rig, device: &str, controller: &str) {
    KernelTarget {
        nqn: NVMET_NQN,
        size: 2 * SIZE,
        port: NVMET_PORT,
        uuid_hex: &rig.disk.uuid_hex,
        serial: &rig.disk.serial,
    }
    .start(&rig.guest)
    .unwrap();
    let reference = Connect {
        traddr: "127.0.0.1",
        port: NVMET_PORT,
        nqn: NVMET_NQN,
        host_nqn: HOST_NQN,
        options: RECONNECT,
    };
    let nvmet_controller = guest_nvme::connect(&rig.guest, &reference).unwrap();
    let nvmet_device = guest_nvme::namespace_device(&rig.guest, NVMET_NQN).unwrap();
    let probe = |device: &str, controller: &str| {
        rig.guest
            .run_ok(&format!("{PROBE}probe {device} {controller}"))
            .unwrap()
            .stdout
    };
    let nvmet = probe(&nvmet_device, &nvmet_controller);
    let sim = probe(device, controller);
    guest_nvme::delete_controller(&rig.guest, &nvmet_controller).unwrap();
    let differences: Vec<String> = nvmet
        .lines()
        .zip(sim.lines())
        .filter(|(n, s)| n != s)
        .map(|(n, s)| format!("nvmet {n:?}, rds-sim {s:?}"))
        .collect();
    assert!(
        differences.is_empty() && nvmet.lines().count() == sim.lines().count(),
        "the kernel sees rds-sim's target differently from its own nvmet:\n{}\n--- nvmet ---\n{nvmet}--- rds-sim ---\n{sim}",
        differences.join("\n")
    );
}

fn an_outage_longer_than_ctrl_loss_tmo_removes_the_controller(rig: &Rig, controller: &str) {
    rig.guest
        .run_ok(&format!(
            "echo 2 >/sys/class/nvme/{controller}/ctrl_loss_tmo"
        ))
        .unwrap();
    rig.inject(Fault::NvmeRefuse {
        duration_ms: 600_000,
    });
    rig.inject(Fault::NvmeDrop {
        nqn: Some(NQN.into()),
        host: None,
    });
    let gone = rig
        .guest
        .run(&format!(
            "for i in $(seq 300); do [ -e /sys/class/nvme/{controller} ] || break; sleep 0.1; done
             [ -e /sys/class/nvme/{controller} ] && echo still there
             dmesg | tail -20"
        ))
        .unwrap();
    assert!(
        !gone.stdout.starts_with("still there") && gone.stdout.contains("Removing ctrl"),
        "{controller} was not removed:\n{}",
        gone.stdout
    );
    rig.inject(Fault::NvmeRefuse { duration_ms: 0 });
    assert!(
        rig.sim.sim().state().nvme_connections.is_empty(),
        "{:?}",
        rig.sim.sim().state().nvme_connections
    );
}
