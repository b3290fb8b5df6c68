//! The CLI engine end to end, in-process: commands in, RouterOS text out, state and backing files
//! checked on the host.

use rds_sim::engine::{Engine, EngineConfig, LineResult, Traffic};
use rds_sim::store::{CopySemantics, Pool};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const GIB: u64 = 1 << 30;

fn engine(dir: &Path) -> Engine {
    Engine::open(
        dir,
        Pool {
            name: "storage-pool".into(),
            size: 100 * GIB,
        },
        EngineConfig::default(),
    )
    .unwrap()
}

fn run(e: &mut Engine, line: &str) -> LineResult {
    e.run_line(line, &|_| Traffic::default())
}

/// Runs a line that must succeed; returns its output.
fn ok(e: &mut Engine, line: &str) -> String {
    let mut r = run(e, line);
    let output = r.output();
    assert!(!r.error, "{line:?} failed: {output}");
    output
}

/// Runs a line that must fail without changing anything; returns the error text.
fn refused(e: &mut Engine, line: &str) -> String {
    let state = e.store.state.clone();
    let files = e.store.files();
    let mut r = run(e, line);
    let output = r.output();
    assert!(r.error, "{line:?} should fail, printed {output:?}");
    assert!(!r.committed, "{line:?} committed a change");
    assert_eq!(e.store.state, state, "{line:?} changed the state");
    assert_eq!(e.store.files(), files, "{line:?} changed the files");
    output
}

const ADD: &str = r#"/disk add type=file file-path="storage-pool/csi/pvc-1.img" file-size=1G slot="pvc-1" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-1" comment="csi=pvc-1""#;

#[test]
fn add_is_silent_and_print_detail_is_routeros_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    assert_eq!(ok(&mut e, ADD), "");
    insta::assert_snapshot!(
        "detail_one_exported_disk",
        ok(&mut e, r#"/disk print detail where slot="pvc-1""#)
    );
    insta::assert_snapshot!("detail_whole_list", ok(&mut e, "/disk print detail"));
    insta::assert_snapshot!(
        "terse_one",
        ok(&mut e, r#"/disk print terse where slot="pvc-1""#)
    );
}

#[test]
fn put_prints_ids_as_value_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let id = ok(&mut e, &format!(":put [{ADD}]"));
    assert_eq!(id, "*10\r\n");
    assert_eq!(
        ok(&mut e, r#":put [/disk find where slot="pvc-1"]"#),
        "*10\r\n"
    );
    assert_eq!(
        ok(&mut e, "/disk print as-value"),
        "",
        "as-value prints nothing on its own"
    );
    insta::assert_snapshot!(
        "as_value_one",
        ok(
            &mut e,
            r#":put [/disk print detail as-value where slot="pvc-1"]"#
        )
    );
    let json = ok(
        &mut e,
        r#":put [:serialize to=json [/disk print detail as-value where slot~"^pvc-"]]"#,
    );
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(v[0]["slot"], "pvc-1");
    assert_eq!(v[0][".id"], "*10");
    assert_eq!(v[0]["size"], 1_073_741_824u64);
    assert_eq!(v[0]["nvme-tcp-export"], true);
    assert_eq!(ok(&mut e, "/disk print count-only"), "2\r\n");
    assert_eq!(
        ok(
            &mut e,
            r#"/disk print count-only where slot~"^pvc-" and nvme-tcp-export"#
        ),
        "1\r\n"
    );
}

/// Listings are rendered after the engine is released; each still lands where its `:put` was.
#[test]
fn listings_put_in_one_line_print_in_order_with_the_text_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    let json = ok(
        &mut e,
        r#":put [:serialize to=json [/disk print detail as-value where slot="pvc-1"]]"#,
    );
    let value = ok(
        &mut e,
        r#":put [/disk print detail as-value where slot="pvc-1"]"#,
    );
    let line = r#":put "a"; :put [:serialize to=json [/disk print detail as-value where slot="pvc-1"]]; :put [/disk find where slot="pvc-1"]; :put [/disk print detail as-value where slot="pvc-1"]; :put "b""#;
    assert_eq!(ok(&mut e, line), format!("a\r\n{json}*10\r\n{value}b\r\n"));
    // A failure after a listing keeps the listing before the error.
    let mut r = run(
        &mut e,
        r#":put [/disk print detail as-value where slot="pvc-1"]; /disk set *99 comment="x""#,
    );
    let output = r.output();
    assert!(r.error);
    assert_eq!(output, format!("{value}no such item\r\n"));
}

#[test]
fn the_backing_file_is_sparse_and_listed_in_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    let host = e.store.host_path("storage-pool/csi/pvc-1.img");
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.len(), GIB);
    assert!(meta.blocks() * 512 < GIB / 100, "the file is sparse");
    let files = ok(
        &mut e,
        r#"/file print detail where name~"^storage-pool/csi/""#,
    );
    assert!(
        files.contains("name=storage-pool/csi/pvc-1.img type=.img file size=1024.0MiB"),
        "{files}"
    );
}

#[test]
fn bad_input_gets_routeros_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    let cases = [
        (ADD, "failure: file is used by disk pvc-1\r\n"),
        (
            r#"/disk add type=file file-path="storage-pool/csi/other.img" file-size=1G slot="pvc-1""#,
            "failure: already have such entry\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/x.img" file-size=1180591620717411303424 slot="big""#,
            "invalid value for argument file-size\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/x.img" file-size=1Gx slot="big""#,
            "value of file-size contains invalid trailing characters\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/x.img" file-size=200G slot="big""#,
            "failure: not enough space\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/x.img" file-size=1G slot="abcdefghijabcdefghijabcdefghijabc""#,
            "failure: slot name too long (max 32 characters)\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/x.img" file-size=1G slot="a;b\nc""#,
            "invalid value for argument slot\r\n",
        ),
        (
            r#"/disk add type=file file-path="elsewhere/x.img" file-size=1G slot="x""#,
            "failure: no such mount point\r\n",
        ),
        (
            r#"/disk add type=file file-path="storage-pool/../x.img" file-size=1G slot="x""#,
            "invalid value for argument file-path\r\n",
        ),
        (
            r#"/disk add type=bogus file-path="storage-pool/x.img" file-size=1G"#,
            "input does not match any value of type\r\n",
        ),
        (
            r#"/disk set [find where slot="pvc-1"] nvme-tcp-export=maybe"#,
            "input does not match any value of nvme-tcp-export\r\n",
        ),
        (
            r#"/disk set [find where slot="pvc-1"] file-size=1M"#,
            "failure: new file-size is smaller than the current size\r\n",
        ),
        (
            r#"/disk set [find where slot="pvc-1"] compress=yes"#,
            "compression only available for btrfs\r\n",
        ),
        ("/disk remove nosuch", "no such item\r\n"),
        (
            r#"/file remove "storage-pool/csi/pvc-1.img""#,
            "failure: file is used by disk pvc-1\r\n",
        ),
        (
            "/disk add slot=a;b",
            "bad command name b (line 1 column 18)\r\n",
        ),
        ("/disk add slot=a$b", "syntax error (line 1 column 18)\r\n"),
        (
            "/disk add slot=a[b",
            "expected end of command (line 1 column 17)\r\n",
        ),
        (
            "/disk add comment=\"unbalanced",
            "syntax error (line 1 column 19)\r\n",
        ),
        (
            "/disk print where slot~\"(\"",
            "failure: invalid regular expression\r\n",
        ),
        (
            "/disk print",
            "failure: rds-sim prints tables only as detail, terse, as-value or count-only\r\n",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(refused(&mut e, line), expected, "{line}");
    }
}

#[test]
fn a_chain_stops_at_the_first_runtime_error_but_keeps_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let mut r = run(
        &mut e,
        &format!("{ADD}; /disk remove nosuch; /disk set pvc-1 comment=\"never\""),
    );
    assert!(r.error);
    assert_eq!(r.output(), "no such item\r\n");
    let d = e.store.disk_by_slot("pvc-1").unwrap();
    assert_eq!(d.comment.as_deref(), Some("csi=pvc-1"));
}

#[test]
fn set_grows_the_backing_file_and_reports_a_resize() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    let mut r = run(
        &mut e,
        r#"/disk set [find where slot="pvc-1"] file-size=2147483648"#,
    );
    assert_eq!(r.output(), "");
    assert_eq!(
        r.events,
        vec![rds_sim::engine::Event::Resized {
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into()
        }]
    );
    let host = e.store.host_path("storage-pool/csi/pvc-1.img");
    assert_eq!(std::fs::metadata(host).unwrap().len(), 2 * GIB);
    assert!(ok(&mut e, r#"/disk print detail where slot="pvc-1""#).contains("size=2 147 483 648"));
}

#[test]
fn remove_keeps_the_file_until_file_remove() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    assert_eq!(ok(&mut e, r#"/disk remove [find where slot="pvc-1"]"#), "");
    assert_eq!(
        ok(&mut e, r#"/disk print count-only where slot="pvc-1""#),
        "0\r\n"
    );
    assert_eq!(
        ok(
            &mut e,
            r#"/file print count-only where name="storage-pool/csi/pvc-1.img""#
        ),
        "1\r\n"
    );
    // Removing what no longer exists through an empty find is silent.
    assert_eq!(ok(&mut e, r#"/disk remove [find where slot="pvc-1"]"#), "");
    assert_eq!(
        ok(&mut e, r#"/file remove "storage-pool/csi/pvc-1.img""#),
        ""
    );
    assert!(!e.store.host_path("storage-pool/csi/pvc-1.img").exists());
    // The reference's other form: `find` with the name as an argument.
    ok(&mut e, &ADD.replace("pvc-1", "pvc-2"));
    ok(&mut e, r#"/disk remove [find slot="pvc-2"]"#);
    assert_eq!(
        ok(
            &mut e,
            r#"/file remove [find name="storage-pool/csi/pvc-2.img"]"#
        ),
        ""
    );
    assert!(!e.store.host_path("storage-pool/csi/pvc-2.img").exists());
}

#[test]
fn file_remove_by_name_takes_only_names_the_listing_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, r#"/file add name="storage-pool/d/a" contents="x""#);
    ok(&mut e, r#"/file add name="storage-pool/d/b" contents="y""#);
    for missing in [
        r#"/file remove "storage-pool/d/nosuch""#,
        r#"/file remove "/storage-pool/d/a""#,
        r#"/file remove "storage-pool/d/../d/a""#,
        r#"/file remove "storage-pool/d/a/""#,
        r#"/file remove "storage-pool/d/a,storage-pool/d/nosuch""#,
    ] {
        assert_eq!(refused(&mut e, missing), "no such item\r\n", "{missing}");
    }
    // A directory and what it holds go in one command, whatever order they are named in.
    assert_eq!(
        ok(
            &mut e,
            r#"/file remove "storage-pool/d,storage-pool/d/a,storage-pool/d/b""#
        ),
        ""
    );
    assert!(!e.store.host_path("storage-pool/d").exists());
    assert_eq!(
        ok(
            &mut e,
            r#"/file print count-only where name~"^storage-pool/d""#
        ),
        "0\r\n"
    );
}

fn write_pattern(path: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(data).unwrap();
}

/// The first 64 KiB of a file.
fn head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0; 64 << 10];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

#[test]
fn copy_from_copies_data_or_only_settings_by_switch() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    write_pattern(
        &e.store.host_path("storage-pool/csi/pvc-1.img"),
        4096,
        b"known pattern",
    );
    let copy = r#"/disk add type=file copy-from=[find where slot="pvc-1"] file-path="storage-pool/csi/snap-1.img" slot="snap-1""#;
    ok(&mut e, copy);
    // The roadmap's own form, `find` with a `set` argument, names the same disk.
    ok(
        &mut e,
        r#"/disk add type=file copy-from=[find slot=pvc-1] file-path="storage-pool/csi/snap-0.img" slot="snap-0""#,
    );
    assert_eq!(
        &head(&e.store.host_path("storage-pool/csi/snap-0.img"))[4096..4096 + 13],
        b"known pattern"
    );
    let snap_path = e.store.host_path("storage-pool/csi/snap-1.img");
    assert_eq!(std::fs::metadata(&snap_path).unwrap().len(), GIB);
    assert_eq!(&head(&snap_path)[4096..4096 + 13], b"known pattern");
    let snap = e.store.disk_by_slot("snap-1").unwrap();
    assert!(
        !snap.nvme_tcp_export,
        "a data copy is not exported unless asked"
    );

    e.config.copy_from = CopySemantics::Settings;
    ok(&mut e, &copy.replace("snap-1", "snap-2"));
    let snap_path = e.store.host_path("storage-pool/csi/snap-2.img");
    assert_eq!(std::fs::metadata(&snap_path).unwrap().len(), GIB);
    assert!(
        head(&snap_path).iter().all(|b| *b == 0),
        "settings semantics give an empty file"
    );
    assert_eq!(
        std::fs::metadata(&snap_path).unwrap().blocks(),
        0,
        "and no data at all"
    );
    let snap = e.store.disk_by_slot("snap-2").unwrap();
    assert!(snap.nvme_tcp_export);
    assert_eq!(snap.nvme_tcp_server_nqn, "nqn.2000-02.com.mikrotik:pvc-1");
    assert_eq!(snap.comment.as_deref(), Some("csi=pvc-1"));
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    ok(&mut e, "/system identity set name=rds-lab");
    let before = ok(&mut e, "/disk print detail");
    drop(e);
    let mut e = engine(dir.path());
    assert_eq!(ok(&mut e, "/disk print detail"), before);
    assert_eq!(ok(&mut e, "/system identity print"), "  name: rds-lab\r\n");
}

#[test]
fn where_filters_select_by_every_operator() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/csi/vol-2.img" file-size=2G slot="vol-2""#,
    );
    let count = |e: &mut Engine, expr: &str| {
        ok(e, &format!("/disk print count-only where {expr}"))
            .trim_end()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(count(&mut e, r#"slot~"^pvc-""#), 1);
    assert_eq!(count(&mut e, r#"slot~"vol""#), 1);
    assert_eq!(count(&mut e, "type=file"), 2);
    assert_eq!(count(&mut e, "type!=file"), 1);
    assert_eq!(count(&mut e, "size>1073741824"), 2, "vol-2 and the pool");
    assert_eq!(count(&mut e, "size<=1073741824"), 1);
    assert_eq!(count(&mut e, "nvme-tcp-export"), 1);
    assert_eq!(count(&mut e, "!nvme-tcp-export"), 2);
    assert_eq!(count(&mut e, "nvme-tcp-export=no"), 2);
    assert_eq!(count(&mut e, r#"slot="pvc-1" or slot="vol-2""#), 2);
    assert_eq!(count(&mut e, r#"slot="pvc-1" && type=raid"#), 0);
    assert_eq!(count(&mut e, r#"mount-point="storage-pool""#), 1);
    assert_eq!(
        count(&mut e, "file-path=/storage-pool/csi/vol-2.img"),
        0,
        "unquoted / never matches"
    );
    assert_eq!(
        count(&mut e, r#"file-path="/storage-pool/csi/vol-2.img""#),
        1
    );
    assert_eq!(count(&mut e, r#"comment="csi=pvc-1""#), 1);
}

#[test]
fn system_menus_print_key_value_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let res = ok(&mut e, "/system resource print");
    assert!(
        res.contains("\r\n                  version: 7.24.4 (stable)\r\n"),
        "{res}"
    );
    assert!(
        res.contains("               board-name: RDS2216-2XG-4S+4XS-2XQ\r\n"),
        "{res}"
    );
    assert_eq!(ok(&mut e, "/system identity print"), "  name: MikroTik\r\n");
}

#[test]
fn monitor_traffic_reads_the_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(&mut e, ADD);
    let counters = Traffic {
        read_ops: 113_229,
        read_bytes: 1 << 30,
        write_ops: 7,
        write_bytes: 28_672,
    };
    let mut r = e.run_line(r#"/disk monitor-traffic "pvc-1" once"#, &|slot| {
        assert_eq!(slot, "pvc-1");
        counters
    });
    insta::assert_snapshot!("monitor_traffic", r.output());
    assert!(refused(&mut e, r#"/disk monitor-traffic "pvc-1""#).contains("only with once"));
}

#[test]
fn the_empty_print_switch_prints_nothing_or_the_whole_legend() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let line = r#"/disk print detail where slot="missing""#;
    assert_eq!(ok(&mut e, line), "");
    e.config.quirks.set("empty-print", "legend").unwrap();
    let legend = ok(&mut e, line);
    assert!(legend.starts_with("Flags: "), "{legend:?}");
    assert!(legend.contains("t - NVME-TCP-EXPORT"), "{legend:?}");
    assert!(!legend.contains("slot="), "{legend:?}");
    // A print that matches is the same in both positions.
    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/a.img" file-size=1M slot="a""#,
    );
    let found = ok(&mut e, r#"/disk print detail where slot="a""#);
    e.config.quirks.set("empty-print", "nothing").unwrap();
    assert_eq!(ok(&mut e, r#"/disk print detail where slot="a""#), found);
}

#[test]
fn the_grow_switch_grows_or_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/a.img" file-size=1M slot="a""#,
    );
    e.config.quirks.set("grow", "refused").unwrap();
    assert_eq!(
        refused(&mut e, r#"/disk set [find where slot="a"] file-size=2M"#).trim_end(),
        rds_sim::engine::quirks::GROW_REFUSED
    );
    e.config.quirks.set("grow", "grows").unwrap();
    ok(&mut e, r#"/disk set [find where slot="a"] file-size=2M"#);
    assert_eq!(e.store.state.disks[0].file_size, 2 << 20);
}

#[test]
fn the_remove_switches_decide_a_missing_and_an_exported_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let missing = r#"/disk remove [find where slot="missing"]"#;
    assert_eq!(ok(&mut e, missing), "");
    e.config
        .quirks
        .set("remove-missing", "no-such-item")
        .unwrap();
    assert_eq!(refused(&mut e, missing).trim_end(), "no such item");

    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/x.img" file-size=1M slot="x" nvme-tcp-export=yes nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:x""#,
    );
    e.config.quirks.set("remove-exported", "refused").unwrap();
    let remove = r#"/disk remove [find where slot="x"]"#;
    assert_eq!(
        refused(&mut e, remove).trim_end(),
        rds_sim::engine::quirks::REMOVE_EXPORTED_REFUSED
    );
    ok(
        &mut e,
        r#"/disk set [find where slot="x"] nvme-tcp-export=no"#,
    );
    ok(&mut e, remove);
    assert!(e.store.state.disks.is_empty());
}

#[test]
fn the_duplicate_nqn_switch_allows_or_refuses_another_disks_nqn() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let add = |slot: &str| {
        format!(
            r#"/disk add type=file file-path="storage-pool/{slot}.img" file-size=1M slot="{slot}" nvme-tcp-export=yes nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:a""#
        )
    };
    ok(&mut e, &add("a"));
    ok(&mut e, &add("b"));
    e.config.quirks.set("duplicate-nqn", "refused").unwrap();
    assert_eq!(
        refused(&mut e, &add("c")).trim_end(),
        rds_sim::engine::quirks::DUPLICATE_NQN_REFUSED
    );
    let rename =
        r#"/disk set [find where slot="b"] nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:a""#;
    assert_eq!(
        refused(&mut e, rename).trim_end(),
        rds_sim::engine::quirks::DUPLICATE_NQN_REFUSED
    );
    // A fresh NQN is free, and a disk may be given its own NQN again.
    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/d.img" file-size=1M slot="d" nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:d""#,
    );
    ok(
        &mut e,
        r#"/disk set [find where slot="d"] nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:d""#,
    );
    assert_eq!(e.store.state.disks.len(), 3);
}

#[test]
fn the_slot_length_switch_refuses_or_takes_a_slot_past_32_characters() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let long = "s".repeat(40);
    let add =
        format!(r#"/disk add type=file file-path="storage-pool/l.img" file-size=1M slot="{long}""#);
    assert_eq!(
        refused(&mut e, &add).trim_end(),
        "failure: slot name too long (max 32 characters)"
    );
    assert!(e.store.state.disks.is_empty());
    e.config.quirks.set("slot-length", "unlimited").unwrap();
    ok(&mut e, &add);
    assert_eq!(e.store.state.disks[0].slot, long);
}

#[test]
fn the_default_nqn_switch_names_a_disk_by_its_slot_or_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let add = |slot: &str| {
        format!(
            r#"/disk add type=file file-path="storage-pool/{slot}.img" file-size=1M slot="{slot}" nvme-tcp-export=yes"#
        )
    };
    ok(&mut e, &add("a"));
    e.config.quirks.set("default-nqn", "empty").unwrap();
    ok(&mut e, &add("b"));
    let nqns: Vec<&str> = e
        .store
        .state
        .disks
        .iter()
        .map(|d| d.nvme_tcp_server_nqn.as_str())
        .collect();
    assert_eq!(nqns, ["a", ""]);
    let printed = ok(&mut e, r#"/disk print detail where slot="b""#);
    assert!(printed.contains(r#"nvme-tcp-server-nqn="""#), "{printed}");
}

#[test]
fn the_allocation_switch_takes_a_disks_whole_size_from_free_or_only_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let before = e.pool_free();
    ok(
        &mut e,
        r#"/disk add type=file file-path="storage-pool/a.img" file-size=1G slot="a""#,
    );
    assert!(before - e.pool_free() < 1 << 20, "a sparse file took space");
    e.config.quirks.set("allocation", "preallocated").unwrap();
    assert!(
        before - e.pool_free() >= 1 << 30,
        "the whole size was not taken"
    );
    // An add beyond what is left is refused, though the host has the room.
    let left = e.pool_free();
    let too_big = format!(
        r#"/disk add type=file file-path="storage-pool/b.img" file-size={} slot="b""#,
        left + (1 << 20)
    );
    assert_eq!(
        refused(&mut e, &too_big).trim_end(),
        "failure: not enough space"
    );
}

#[test]
fn the_add_errors_switch_hides_every_cause_of_a_refused_add_but_not_argument_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(dir.path());
    let add = |slot: &str, file: &str, size: &str| {
        format!(
            r#"/disk add type=file file-path="storage-pool/{file}.img" file-size={size} slot="{slot}""#
        )
    };
    ok(&mut e, &add("a", "a", "1M"));
    let refusals = [
        (add("a", "b", "1M"), "failure: already have such entry"),
        (add("b", "a", "1M"), "failure: file is used by disk a"),
        (add("c", "c", "2000T"), "failure: not enough space"),
    ];
    for (line, known) in &refusals {
        assert_eq!(refused(&mut e, line).trim_end(), *known, "{line}");
    }
    e.config.quirks.set("add-errors", "opaque").unwrap();
    for (line, _) in &refusals {
        assert_eq!(
            refused(&mut e, line).trim_end(),
            rds_sim::engine::quirks::ADD_REFUSED,
            "{line}"
        );
    }
    assert_eq!(
        refused(&mut e, &add("d", "d", "1X")).trim_end(),
        "value of file-size contains invalid trailing characters",
        "an argument's error is the parser's, whatever the switch"
    );
    assert_eq!(
        e.store.state.disks.len(),
        1,
        "a refused add changed nothing"
    );
    ok(&mut e, &add("d", "d", "1M"));
}
