//! The commands the snapshot methods rest on, driven through the whole simulator: `/file add …
//! contents=` and `/file get … contents` (the doctor's probe), `/disk copy`, the Btrfs menus, and
//! the control API's view of them. Output is RouterOS text; state and backing files are checked on
//! the host.

use rds_sim::engine::EngineConfig;
use rds_sim::faults::Fault;
use rds_sim::sim::{Sim, SimConfig};
use rds_sim::ssh::Reply;
use rds_sim::store::Pool;
use std::path::Path;

const GIB: u64 = 1 << 30;

fn sim_with(dir: &Path, engine: EngineConfig) -> Sim {
    let sim = Sim::open(SimConfig {
        data_dir: dir.to_path_buf(),
        pool: Pool {
            name: "storage-pool".into(),
            size: 100 * GIB,
        },
        engine,
        seed: 1,
    })
    .unwrap();
    // Errors come with exit status 1, so a test can tell them from output.
    sim.inject(&Fault::ExitStatusOnError { enabled: true })
        .unwrap();
    sim
}

fn sim(dir: &Path) -> Sim {
    sim_with(dir, EngineConfig::default())
}

async fn run(sim: &Sim, line: &str) -> (String, u32) {
    match sim.exec(1, line).await {
        Reply::Output {
            text, exit_status, ..
        } => (text, exit_status),
        Reply::Hangup => panic!("{line:?} hung up"),
    }
}

/// Runs a line that must succeed; returns its output.
async fn ok(sim: &Sim, line: &str) -> String {
    let (text, status) = run(sim, line).await;
    assert_eq!(status, 0, "{line:?} failed: {text}");
    text
}

/// What a refused command must leave alone.
fn snapshot(sim: &Sim) -> String {
    let s = sim.state();
    serde_json::to_string(&(&s.disks, &s.files, &s.subvolumes)).unwrap()
}

/// Runs a line that must fail without changing anything; returns the error text.
async fn refused(sim: &Sim, line: &str) -> String {
    let before = snapshot(sim);
    let (text, status) = run(sim, line).await;
    assert_eq!(status, 1, "{line:?} should fail, printed {text:?}");
    assert_eq!(snapshot(sim), before, "{line:?} changed something");
    text
}

fn host(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("files").join(name)
}

#[tokio::test]
async fn file_add_with_contents_then_get_reads_them_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    let add = r#"/file add name="storage-pool/probe/src.img" contents="rds-csi probe \"1\"\n""#;
    assert_eq!(ok(&sim, add).await, "");
    assert_eq!(
        std::fs::read(host(dir.path(), "storage-pool/probe/src.img")).unwrap(),
        b"rds-csi probe \"1\"\n"
    );
    // The value of `get` prints only through `:put`, as the Files page shows.
    assert_eq!(
        ok(&sim, r#"/file get "storage-pool/probe/src.img" contents"#).await,
        ""
    );
    assert_eq!(
        ok(
            &sim,
            r#":put [/file get "storage-pool/probe/src.img" contents]"#
        )
        .await,
        "rds-csi probe \"1\"\n\r\n"
    );
    assert_eq!(
        ok(
            &sim,
            r#":put [/file/get [find where name="storage-pool/probe/src.img"] size]"#
        )
        .await,
        "18\r\n"
    );
    insta::assert_snapshot!(
        "file_print_after_add",
        ok(
            &sim,
            r#"/file print detail where name~"^storage-pool/probe""#
        )
        .await
        .replace(|c: char| c.is_ascii_digit(), "9")
    );
    // A directory, a file with no contents, a leading slash.
    ok(
        &sim,
        r#"/file add name="/storage-pool/probe/dir" type=directory"#,
    )
    .await;
    ok(&sim, r#"/file add name="storage-pool/probe/empty""#).await;
    assert!(host(dir.path(), "storage-pool/probe/dir").is_dir());
    assert_eq!(
        ok(
            &sim,
            r#":put [/file get "storage-pool/probe/empty" contents]"#
        )
        .await,
        "\r\n"
    );
}

#[tokio::test]
async fn file_add_and_get_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    ok(&sim, r#"/file add name="storage-pool/a.txt" contents="x""#).await;
    let big = "x".repeat(60 * 1024 + 1);
    let cases = [
        (
            r#"/file add name="storage-pool/a.txt" contents="y""#.to_string(),
            "failure: file already exists\r\n",
        ),
        (
            format!(r#"/file add name="storage-pool/big.txt" contents="{big}""#),
            "failure: storage-pool/big.txt is larger than 60KiB: its contents cannot be read or set\r\n",
        ),
        (
            r#"/file add name="storage-pool/../x""#.to_string(),
            "invalid value for argument name\r\n",
        ),
        (
            "/file add contents=x".to_string(),
            "failure: name must be set\r\n",
        ),
        (
            r#"/file add name="storage-pool/d" type=directory contents="x""#.to_string(),
            "failure: a directory has no contents\r\n",
        ),
        (
            "/file add name=storage-pool/d type=fifo".to_string(),
            "input does not match any value of type\r\n",
        ),
        (
            r#":put [/file get "storage-pool/a.txt" colour]"#.to_string(),
            "input does not match any value of value-name\r\n",
        ),
        (
            r#":put [/file get "storage-pool/none.txt" contents]"#.to_string(),
            "no such item\r\n",
        ),
        (
            r#":put [/file get "storage-pool" contents]"#.to_string(),
            "failure: storage-pool is a directory\r\n",
        ),
        (
            r#":put [/file get "storage-pool/a.txt"]"#.to_string(),
            "failure: value-name must be set\r\n",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(refused(&sim, &line).await, expected, "{line}");
    }
    // A file over the limit cannot be read either.
    std::fs::write(
        host(dir.path(), "storage-pool/big.bin"),
        vec![1u8; 61 * 1024],
    )
    .unwrap();
    assert_eq!(
        refused(&sim, r#":put [/file get "storage-pool/big.bin" contents]"#).await,
        "failure: storage-pool/big.bin is larger than 60KiB: its contents cannot be read or set\r\n"
    );
}

const MIB: u64 = 1 << 20;

fn write_at(path: &Path, at: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, at).unwrap();
}

fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, at)
        .unwrap();
    buf
}

/// Adds an unexported file disk `slot` of `size` bytes at `storage-pool/csi/<slot>.img`.
async fn add_disk(sim: &Sim, slot: &str, size: u64) {
    ok(
        sim,
        &format!(
            r#"/disk add type=file file-path="storage-pool/csi/{slot}.img" file-size={size} slot="{slot}""#
        ),
    )
    .await;
}

#[tokio::test]
async fn disk_copy_copies_the_data_and_prints_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    add_disk(&sim, "src", 4 * MIB).await;
    add_disk(&sim, "dst", 8 * MIB).await;
    let (src, dst) = (
        host(dir.path(), "storage-pool/csi/src.img"),
        host(dir.path(), "storage-pool/csi/dst.img"),
    );
    write_at(&src, 0, b"first");
    write_at(&src, 3 * MIB, b"last");
    // Old data where the source has a hole must be overwritten.
    write_at(&dst, MIB, b"stale");
    write_at(&dst, 6 * MIB, b"beyond");
    assert_eq!(
        ok(&sim, r#"/disk copy src="src" dst="dst""#).await,
        "  status: 4194304 / 4194304 (100%)\r\n"
    );
    assert_eq!(read_at(&dst, 0, 5), b"first");
    assert_eq!(read_at(&dst, MIB, 5), vec![0; 5]);
    assert_eq!(read_at(&dst, 3 * MIB, 4), b"last");
    assert_eq!(
        read_at(&dst, 6 * MIB, 6),
        b"beyond",
        "past the copied range"
    );
    assert!(sim.state().copies.is_empty(), "a finished copy is gone");

    // Offsets and a size; items by internal id; a chain goes on after the copy.
    let line = r#"/disk copy src=[find where slot="src"] dst="dst" src-offset=3145728 dst-offset=7340032 size=1M; /disk set dst comment="copied""#;
    assert_eq!(
        ok(&sim, line).await,
        "  status: 1048576 / 1048576 (100%)\r\n"
    );
    assert_eq!(read_at(&dst, 7 * MIB, 4), b"last");
    assert_eq!(sim.state().disks[1].comment.as_deref(), Some("copied"));
}

#[tokio::test]
async fn disk_copy_refuses_bad_requests_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    add_disk(&sim, "big", 4 * MIB).await;
    add_disk(&sim, "small", 2 * MIB).await;
    write_at(&host(dir.path(), "storage-pool/csi/small.img"), 0, b"keep");
    let cases = [
        (
            r#"/disk copy src="none" dst="small""#,
            "input does not match any value of src",
        ),
        (
            r#"/disk copy src="big" dst="none""#,
            "input does not match any value of dst",
        ),
        (r#"/disk copy dst="small""#, "failure: src must be set"),
        (r#"/disk copy src="big""#, "failure: dst must be set"),
        (
            r#"/disk copy src="big" dst="big""#,
            "failure: src and dst are the same",
        ),
        (
            r#"/disk copy src="big" dst="storage-pool/csi/big.img""#,
            "failure: src and dst are the same",
        ),
        (
            r#"/disk copy src="big" dst="small""#,
            "failure: dst is smaller than the data to copy",
        ),
        (
            r#"/disk copy src="small" dst="big" dst-offset=3M"#,
            "failure: dst is smaller than the data to copy",
        ),
        (
            r#"/disk copy src="small" dst="big" src-offset=3M"#,
            "failure: src-offset is past the end of src",
        ),
        (
            r#"/disk copy src="small" dst="big" src-offset=1M size=2M"#,
            "failure: src-offset and size go past the end of src",
        ),
        (
            r#"/disk copy src="storage-pool" dst="big""#,
            "failure: rds-sim copies only type=file disks and files",
        ),
        (
            r#":put [/disk copy src="small" dst="big"]"#,
            "failure: rds-sim runs /disk copy only as a command of its own, not inside [ ]",
        ),
        (
            r#"/disk copy src="small" dst="big" size=1X"#,
            "value of size contains invalid trailing characters",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            refused(&sim, line).await,
            format!("{expected}\r\n"),
            "{line}"
        );
    }
    assert_eq!(
        read_at(&host(dir.path(), "storage-pool/csi/small.img"), 0, 4),
        b"keep"
    );
}

#[tokio::test]
async fn the_doctor_probe_tells_data_copies_from_settings_copies() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    let pattern = "rds-csi probe 7f3a";
    let n = pattern.len();
    ok(
        &sim,
        &format!(r#"/file add name="storage-pool/probe/src.img" contents="{pattern}""#),
    )
    .await;
    // An existing file is attached as a disk of its size.
    ok(
        &sim,
        r#"/disk add type=file file-path="storage-pool/probe/src.img" slot="probe-src""#,
    )
    .await;
    let get = |name: &str| format!(r#":put [/file get "storage-pool/probe/{name}" contents]"#);
    let expected = format!("{pattern}\r\n");

    // disk-copy: an empty disk of the same size, then a block copy.
    ok(
        &sim,
        &format!(
            r#"/disk add type=file file-path="storage-pool/probe/dc.img" file-size={n} slot="probe-dc""#
        ),
    )
    .await;
    ok(&sim, r#"/disk copy src="probe-src" dst="probe-dc""#).await;
    assert_eq!(ok(&sim, &get("dc.img")).await, expected);
    // A file works as src too.
    ok(
        &sim,
        &format!(
            r#"/disk add type=file file-path="storage-pool/probe/dc2.img" file-size={n} slot="probe-dc2""#
        ),
    )
    .await;
    ok(
        &sim,
        r#"/disk copy src="storage-pool/probe/src.img" dst="probe-dc2""#,
    )
    .await;
    assert_eq!(ok(&sim, &get("dc2.img")).await, expected);

    // copy-from, data: the same bytes; settings: zeros of the same length.
    let copy_from = |name: &str| {
        format!(
            r#"/disk add copy-from=[find where slot="probe-src"] file-path="storage-pool/probe/{name}.img" slot="probe-{name}""#
        )
    };
    ok(&sim, &copy_from("cfd")).await;
    assert_eq!(ok(&sim, &get("cfd.img")).await, expected);
    assert_eq!(
        ok(
            &sim,
            r#":put [/disk get [find where slot="probe-cfd"] size]"#
        )
        .await,
        format!("{n}\r\n")
    );
    assert_eq!(
        ok(&sim, r#":put [/disk get "probe-cfd" nvme-tcp-export]"#).await,
        "false\r\n",
        "a data copy is not exported"
    );
    sim.set_copy_from(rds_sim::store::CopySemantics::Settings);
    ok(&sim, &copy_from("cfs")).await;
    assert_eq!(
        ok(&sim, &get("cfs.img")).await,
        format!("{}\r\n", "\0".repeat(n))
    );
}

/// Waits until the state satisfies `f`, woken by copy progress.
async fn wait_copies(sim: &Sim, f: impl Fn(&rds_sim::sim::StateView) -> bool) {
    let mut changes = sim.subscribe_copies();
    while !f(&sim.state()) {
        changes.changed().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_copy_shows_in_the_state_and_stops_with_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let sim = std::sync::Arc::new(sim_with(
        dir.path(),
        EngineConfig {
            copy_rate: Some(MIB),
            ..EngineConfig::default()
        },
    ));
    add_disk(&sim, "src", 16 * MIB).await;
    add_disk(&sim, "dst", 16 * MIB).await;
    add_disk(&sim, "other", 16 * MIB).await;
    write_at(
        &host(dir.path(), "storage-pool/csi/src.img"),
        0,
        &[7u8; 4096],
    );
    let copying = {
        let sim = sim.clone();
        tokio::spawn(async move { run(&sim, r#"/disk copy src="src" dst="dst""#).await })
    };
    wait_copies(&sim, |s| s.copies.first().is_some_and(|c| c.copied > 0)).await;
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(state["copy_rate"], MIB);
    let copy = &state["copies"][0];
    assert_eq!(
        (&copy["src"], &copy["dst"], &copy["size"]),
        (
            &serde_json::json!("src"),
            &serde_json::json!("dst"),
            &serde_json::json!(16 * MIB)
        )
    );
    assert!(
        copy["status"]
            .as_str()
            .unwrap()
            .ends_with(" / 16777216 (0%)"),
        "{copy}"
    );
    // Both sides are busy while it runs.
    assert_eq!(
        refused(&sim, r#"/disk copy src="dst" dst="other""#).await,
        "failure: dst is busy with another copy\r\n"
    );
    assert_eq!(
        refused(&sim, r#"/disk copy src="other" dst="src""#).await,
        "failure: src is busy with another copy\r\n"
    );
    assert_eq!(
        refused(
            &sim,
            r#"/disk copy src="other" dst="storage-pool/csi/dst.img""#
        )
        .await,
        "failure: storage-pool/csi/dst.img is busy with another copy\r\n",
        "a disk's backing file is the disk"
    );
    // The command goes away (its session closed): the copy stops where it is.
    copying.abort();
    wait_copies(&sim, |s| s.copies.is_empty()).await;
    assert_eq!(
        read_at(&host(dir.path(), "storage-pool/csi/dst.img"), 0, 4096),
        vec![7u8; 4096],
        "what was copied stays"
    );

    // A restart ends a running copy too; the command reports it and the disks survive.
    let copying = {
        let sim = sim.clone();
        tokio::spawn(async move { run(&sim, r#"/disk copy src="src" dst="other""#).await })
    };
    wait_copies(&sim, |s| s.copies.first().is_some_and(|c| c.copied > 0)).await;
    sim.restart(std::time::Duration::ZERO);
    let (text, status) = copying.await.unwrap();
    assert_eq!(status, 1);
    assert!(
        text.ends_with("failure: the copy was interrupted\r\n"),
        "{text:?}"
    );
    let state = sim.state();
    assert!(state.copies.is_empty());
    assert_eq!(state.disks.len(), 3);
    assert_eq!(state.copy_rate, Some(MIB), "the rate outlives a restart");

    // Unlimited again: the same copy runs to the end.
    sim.set_copy_rate(None);
    assert_eq!(
        ok(&sim, r#"/disk copy src="src" dst="other""#).await,
        "  status: 16777216 / 16777216 (100%)\r\n"
    );
}

fn btrfs_sim(dir: &Path) -> Sim {
    sim_with(
        dir,
        EngineConfig {
            pool_fs: rds_sim::store::PoolFs::Btrfs,
            ..EngineConfig::default()
        },
    )
}

/// `creation-time` is the wall clock: masked for snapshots.
fn mask_times(text: &str) -> String {
    regex::Regex::new(r"creation-time=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        .unwrap()
        .replace_all(text, "creation-time=YYYY-MM-DD HH:MM:SS")
        .into_owned()
}

#[tokio::test]
async fn btrfs_snapshots_copy_the_volume_and_restore_it_after_the_source_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let sim = btrfs_sim(dir.path());
    insta::assert_snapshot!(
        "btrfs_filesystem_print",
        ok(&sim, "/disk btrfs filesystem print detail").await
    );
    assert!(
        ok(&sim, r#"/disk print detail where slot="storage-pool""#)
            .await
            .contains(" fs=btrfs "),
        "the pool disk shows its file system"
    );
    // One subvolume per volume, the volume's file inside it.
    assert_eq!(
        ok(
            &sim,
            r#":put [/disk btrfs subvolume add fs=storage-pool name="vol-a"]"#
        )
        .await,
        "*10\r\n"
    );
    ok(
        &sim,
        r#"/disk add type=file file-path="storage-pool/vol-a/volume.img" file-size=4M slot="a""#,
    )
    .await;
    let vol_a = host(dir.path(), "storage-pool/vol-a/volume.img");
    write_at(&vol_a, MIB, b"before the snapshot");
    ok(
        &sim,
        r#"/disk/btrfs/subvolume/add fs=storage-pool parent="vol-a" name="snap-1" read-only=yes"#,
    )
    .await;
    write_at(&vol_a, MIB, b"AFTER");
    let snap = host(dir.path(), "storage-pool/snap-1/volume.img");
    assert_eq!(read_at(&snap, MIB, 19), b"before the snapshot");
    assert_eq!(std::fs::metadata(&snap).unwrap().len(), 4 * MIB);

    // Nothing writes into a read-only snapshot.
    for line in [
        r#"/disk add type=file file-path="storage-pool/snap-1/volume.img" slot="x""#,
        r#"/disk add type=file file-path="storage-pool/snap-1/new.img" file-size=1M slot="x""#,
        r#"/file add name="storage-pool/snap-1/note" contents="x""#,
        r#"/file remove "storage-pool/snap-1/volume.img""#,
        r#"/disk copy src="a" dst="storage-pool/snap-1/volume.img""#,
        r#"/disk btrfs subvolume add fs=storage-pool name="snap-1/inner""#,
    ] {
        assert_eq!(
            refused(&sim, line).await,
            "failure: read-only file system\r\n",
            "{line}"
        );
    }

    // Restore: a writable snapshot of the snapshot, its file attached as a new disk.
    ok(
        &sim,
        r#"/disk btrfs subvolume add fs=storage-pool parent="snap-1" name="vol-b" read-only=no"#,
    )
    .await;
    ok(
        &sim,
        r#"/disk add type=file file-path="storage-pool/vol-b/volume.img" slot="b""#,
    )
    .await;
    // The source cannot go while its disk is in it; without the disk it can.
    assert_eq!(
        refused(
            &sim,
            r#"/disk btrfs subvolume remove [find where name="vol-a"]"#
        )
        .await,
        "failure: subvolume vol-a holds disk a\r\n"
    );
    ok(&sim, r#"/disk remove [find where slot="a"]"#).await;
    ok(&sim, r#"/disk btrfs subvolume remove "vol-a""#).await;
    assert!(!host(dir.path(), "storage-pool/vol-a").exists());
    let restored = host(dir.path(), "storage-pool/vol-b/volume.img");
    assert_eq!(read_at(&restored, MIB, 19), b"before the snapshot");
    write_at(&restored, 0, b"restored volumes are writable");
    insta::assert_snapshot!(
        "btrfs_subvolume_print",
        mask_times(&ok(&sim, "/disk btrfs subvolume print detail").await)
    );

    // Subvolumes survive a restart.
    let before = sim.state().subvolumes;
    sim.restart(std::time::Duration::ZERO);
    assert_eq!(sim.state().subvolumes, before);
    assert_eq!(
        ok(
            &sim,
            r#":put [/disk btrfs subvolume get [find where name="snap-1"] read-only]"#
        )
        .await,
        "true\r\n"
    );
}

#[tokio::test]
async fn btrfs_nested_subvolumes_follow_the_guide() {
    let dir = tempfile::tempdir().unwrap();
    let sim = btrfs_sim(dir.path());
    ok(
        &sim,
        "/disk btrfs subvolume add name=Documents fs=storage-pool",
    )
    .await;
    ok(
        &sim,
        r#"/file add name="storage-pool/Documents/document1.txt" contents="hello""#,
    )
    .await;
    ok(
        &sim,
        "/disk btrfs subvolume add name=Snapshots fs=storage-pool",
    )
    .await;
    ok(
        &sim,
        "/disk/btrfs/subvolume/add read-only=yes parent=Documents fs=storage-pool  name=Snapshots/Documents-22012025",
    )
    .await;
    assert_eq!(
        ok(
            &sim,
            r#":put [/file get "storage-pool/Snapshots/Documents-22012025/document1.txt" contents]"#
        )
        .await,
        "hello\r\n"
    );
    let listing = ok(&sim, "/disk btrfs subvolume print terse").await;
    assert!(
        listing.contains(
            r"name=Documents-22012025 parent=Documents read-only=yes top-level=Snapshots"
        ),
        "{listing}"
    );
    // A snapshot of Snapshots leaves the nested subvolume out, as Btrfs does.
    ok(
        &sim,
        "/disk btrfs subvolume add parent=Snapshots fs=storage-pool name=Snapshots-copy",
    )
    .await;
    let copy = host(dir.path(), "storage-pool/Snapshots-copy/Documents-22012025");
    assert!(copy.is_dir() && std::fs::read_dir(&copy).unwrap().next().is_none());
    assert_eq!(
        refused(&sim, "/disk btrfs subvolume remove Snapshots").await,
        "failure: subvolume Snapshots holds subvolume Documents-22012025\r\n"
    );
    assert_eq!(
        refused(&sim, r#"/file remove "storage-pool/Snapshots""#).await,
        "failure: storage-pool/Snapshots is a btrfs subvolume: remove it with /disk btrfs subvolume remove\r\n"
    );
    ok(
        &sim,
        r#"/disk btrfs subvolume remove [find where name~"^(Snapshots|Documents-22012025)\$"]"#,
    )
    .await;
    assert!(!host(dir.path(), "storage-pool/Snapshots").exists());
    let names: Vec<_> = sim
        .state()
        .subvolumes
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(names, vec!["Documents", "Snapshots-copy"]);
}

#[tokio::test]
async fn btrfs_subvolume_add_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let sim = btrfs_sim(dir.path());
    ok(&sim, "/disk btrfs subvolume add fs=storage-pool name=vol-a").await;
    std::fs::create_dir(host(dir.path(), "storage-pool/plain")).unwrap();
    let cases = [
        (
            "/disk btrfs subvolume add name=x",
            "failure: fs must be set",
        ),
        (
            "/disk btrfs subvolume add fs=other name=x",
            "input does not match any value of fs",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool",
            "failure: name must be set",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool name=x parent=none",
            "input does not match any value of parent",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool name=vol-a",
            "failure: subvolume with such name already exists",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool name=plain",
            "failure: file already exists",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool name=missing/x",
            "failure: no such directory missing",
        ),
        (
            r#"/disk btrfs subvolume add fs=storage-pool name="../x""#,
            "invalid value for argument name",
        ),
        (
            "/disk btrfs subvolume add fs=storage-pool name=x read-only=maybe",
            "input does not match any value of read-only",
        ),
        ("/disk btrfs subvolume remove none", "no such item"),
        (
            "/disk btrfs filesystem balance-start",
            "failure: rds-sim does not model /disk/btrfs/filesystem/balance-start",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            refused(&sim, line).await,
            format!("{expected}\r\n"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_xfs_pool_has_no_btrfs_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path());
    assert_eq!(ok(&sim, "/disk btrfs filesystem print detail").await, "");
    assert_eq!(ok(&sim, "/disk btrfs subvolume print detail").await, "");
    assert_eq!(
        refused(&sim, "/disk btrfs subvolume add fs=storage-pool name=x").await,
        "input does not match any value of fs\r\n"
    );
}
