//! Boots the QEMU guest once and checks the harness (commands, extra files, port forwards, the image's
//! filesystem tools), then drives the guest kernel's own NVMe/TCP initiator against its own nvmet
//! target: the reference that rds-sim's NVMe/TCP target is compared with.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use rds_e2e::qemu::nvme::{self, Connect, KernelTarget};
use rds_e2e::qemu::{self, Guest, GuestConfig, GuestError, HOST_ADDR};

const NQN: &str = "nqn.2024-01.io.rds-csi:qemu-selftest";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5e1f7e57-0000-4000-8000-000000000002";
const NVMET_PORT: u16 = 4420;

#[test]
fn guest_harness_and_kernel_nvme_tcp_loopback() {
    let files = tempfile::tempdir().unwrap();
    let script = files.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello $1 from $(hostname)\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    let http_port = qemu::free_local_port().unwrap();
    let config = GuestConfig {
        host_forwards: vec![(http_port, 8080)],
        extra_files: vec![(script, "/opt/rds/bin/hello.sh".into())],
        ..GuestConfig::default()
    };
    let started = Instant::now();
    let Some(guest) = qemu::boot_or_skip(config).unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    eprintln!("qemu_guest: boot took {:.1?}", started.elapsed());

    let timed = |name: &str, step: &dyn Fn()| {
        let started = Instant::now();
        step();
        eprintln!("qemu_guest: {name} took {:.1?}", started.elapsed());
    };
    timed("commands", &|| {
        commands_report_output_and_exit_status(&guest)
    });
    timed("extra files", &|| {
        extra_files_keep_content_and_permissions(&guest)
    });
    timed("host forwards", &|| {
        host_forwards_reach_a_guest_server(&guest, http_port)
    });
    timed("filesystem tools", &|| {
        filesystem_tools_find_their_libraries(&guest)
    });
    timed("nvme-tcp loopback", &|| {
        kernel_initiator_reads_and_writes_the_kernel_target(&guest)
    });
}

fn commands_report_output_and_exit_status(guest: &Guest) {
    let release = guest.run_ok("uname -r").unwrap().stdout;
    let built_for = guest
        .run_ok("cat /etc/rds-guest/kernel-release")
        .unwrap()
        .stdout;
    assert_eq!(release, built_for);
    assert!(release.starts_with("6."), "unexpected kernel {release:?}");

    // Output that looks like the protocol's own framing, and bytes that are not UTF-8.
    let output = guest
        .run("printf 'END 1 0\\nOUT 2\\n'; printf 'x\\377y' >&2; exit 7")
        .unwrap();
    assert_eq!(output.stdout, "END 1 0\nOUT 2\n");
    assert_eq!(output.stderr, "x\u{fffd}y");
    assert_eq!(output.rc, 7);

    let large = guest.run_ok("seq 1 20000").unwrap().stdout;
    assert_eq!(large.lines().count(), 20000);
    assert_eq!(large.lines().last(), Some("20000"));

    match guest.run_ok("echo partial; echo broken >&2; false") {
        Err(GuestError::CommandFailed { output, .. }) => {
            assert_eq!(
                (output.stdout.as_str(), output.stderr.as_str(), output.rc),
                ("partial\n", "broken\n", 1)
            );
        }
        other => panic!("a failing command gave {other:?}"),
    }
    let route = guest.run_ok("ip route").unwrap().stdout;
    assert!(
        route.contains(&format!("default via {HOST_ADDR}")),
        "{route}"
    );
}

fn extra_files_keep_content_and_permissions(guest: &Guest) {
    let output = guest
        .run_ok("/opt/rds/bin/hello.sh world; stat -c %a /opt/rds/bin/hello.sh")
        .unwrap();
    assert_eq!(output.stdout, "hello world from rds-guest\n750\n");
}

fn host_forwards_reach_a_guest_server(guest: &Guest, host_port: u16) {
    guest
        .run_ok("mkdir -p /tmp/www && echo served-by-guest >/tmp/www/index.html && httpd -p 8080 -h /tmp/www")
        .unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with("served-by-guest\n"),
        "{response}"
    );
}

/// Every program the image copied from the host (listed in /etc/rds-guest/programs) resolves its
/// shared libraries in the guest.
fn filesystem_tools_find_their_libraries(guest: &Guest) {
    let output = guest
        .run_ok(
            "for p in $(cat /etc/rds-guest/programs); do \
               path=$(command -v \"$p\") || { echo \"$p not found\"; continue; }; \
               [ \"$(head -c 4 \"$path\" | tail -c 3)\" = ELF ] || continue; \
               echo \"$path\"; LD_TRACE_LOADED_OBJECTS=1 \"$path\" | grep 'not found' || true; \
             done",
        )
        .unwrap()
        .stdout;
    for tool in ["mkfs.ext4", "mkfs.xfs", "resize2fs", "xfs_growfs", "blkid"] {
        assert!(
            output.lines().any(|l| l.ends_with(&format!("/{tool}"))),
            "{tool} missing:\n{output}"
        );
    }
    assert!(!output.contains("not found"), "{output}");
}

fn kernel_initiator_reads_and_writes_the_kernel_target(guest: &Guest) {
    let modules = guest.run_ok("modprobe nvme-tcp && lsmod").unwrap().stdout;
    for module in ["nvme_tcp", "nvme_fabrics", "nvmet_tcp", "nvmet"] {
        assert!(
            modules
                .lines()
                .any(|l| l.starts_with(&format!("{module} "))),
            "{module}:\n{modules}"
        );
    }

    // The kernel target: a sparse file on tmpfs (big enough for mkfs.xfs) on a port in the guest.
    KernelTarget {
        nqn: NQN,
        size: 320 << 20,
        port: NVMET_PORT,
        uuid_hex: "5e1f7e57000040008000000000000001",
        serial: "qemu-selftest",
    }
    .start(guest)
    .unwrap();

    // The initiator, as the node plugin drives it: one write to /dev/nvme-fabrics, answered on the
    // same descriptor with the new controller's instance; the namespace is scanned asynchronously
    // after the connect returns.
    let connect = Connect {
        traddr: "127.0.0.1",
        port: NVMET_PORT,
        nqn: NQN,
        host_nqn: HOST_NQN,
        options: "",
    };
    let controller = nvme::connect(guest, &connect).unwrap();
    let device = nvme::namespace_device(guest, NQN).unwrap();

    // 512 KiB of non-repeating data (urandom is slow under TCG) through the initiator, read back past
    // the page cache, and as the target stored it in its backing file.
    let checksums = guest
        .run_ok(&format!(
            "set -e
             seq -w 100000 199999 | head -c 524288 >/tmp/pattern
             dd if=/tmp/pattern of={device} bs=64k seek=8 conv=fsync 2>/dev/null
             echo 3 >/proc/sys/vm/drop_caches
             sha256sum </tmp/pattern
             dd if={device} bs=64k skip=8 count=8 2>/dev/null | sha256sum
             dd if=/tmp/nvmet-backing bs=64k skip=8 count=8 2>/dev/null | sha256sum"
        ))
        .unwrap()
        .stdout;
    let sums: Vec<&str> = checksums.lines().collect();
    assert_eq!(sums.len(), 3, "{checksums}");
    assert_eq!(
        sums[1], sums[0],
        "read back through NVMe/TCP differs from what was written"
    );
    assert_eq!(
        sums[2], sums[0],
        "the target's backing file differs from what was written"
    );

    // xfs is not loaded at boot: `mount -t xfs` has the kernel load it through /sbin/modprobe.
    for (fs, mkfs) in [("ext4", "mkfs.ext4 -q -F"), ("xfs", "mkfs.xfs -q -f")] {
        let output = guest
            .run_ok(&format!(
                "set -e
                 {mkfs} {device}
                 blkid -o value -s TYPE {device}
                 mkdir -p /mnt/volume
                 mount -t {fs} {device} /mnt/volume
                 echo persisted >/mnt/volume/file
                 umount /mnt/volume
                 mount -t {fs} {device} /mnt/volume
                 cat /mnt/volume/file
                 umount /mnt/volume"
            ))
            .unwrap();
        assert_eq!(output.stdout, format!("{fs}\npersisted\n"));
    }

    nvme::delete_controller(guest, &controller).unwrap();
    let gone = guest
        .run(&format!(
            "test -e /sys/class/nvme/{controller} || test -b {device}"
        ))
        .unwrap();
    assert_eq!(
        gone.rc, 1,
        "{controller} or {device} still present after delete_controller"
    );
}
