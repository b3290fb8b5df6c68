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
        Reply::Output { text, exit_status } => (text, exit_status),
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
    serde_json::to_string(&(&s.disks, &s.files)).unwrap()
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
