//! The whole simulator behind its SSH server, driven by the real OpenSSH client: exact text, the
//! control API over real HTTP, restarts, crashes around the commit, and `kill -9` of the binary.

mod common;

use common::{have_openssh, openssh};
use rds_sim::faults::{CrashPoint, Fault};
use rds_sim::server::{Options, RunningSim};
use rds_sim::ssh::load_or_generate_host_key;
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    running: RunningSim,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_admin");
    let client = load_or_generate_host_key(&key).unwrap();
    let running = RunningSim::start(Options {
        control_listen: Some("127.0.0.1:0".parse().unwrap()),
        nvme_listen: Some("127.0.0.1:0".parse().unwrap()),
        seed: 7,
        ..Options::loopback(
            dir.path().join("data"),
            client.public_key().clone(),
            100 << 30,
        )
    })
    .await
    .unwrap();
    Fixture {
        running,
        key,
        _dir: dir,
    }
}

impl Fixture {
    async fn ssh(&self, line: &str) -> Output {
        openssh(self.running.ssh_addr.port(), &self.key, "admin+ct80w")
            .arg(line)
            .output()
            .await
            .unwrap()
    }

    /// Runs a line that must answer; returns stdout.
    async fn ok(&self, line: &str) -> String {
        let out = self.ssh(line).await;
        assert!(
            out.status.success(),
            "{line}: status {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// POSTs JSON to the control API over a real HTTP/1.1 connection.
    async fn post(&self, path: &str, body: &str) -> String {
        http(self.running.control_addr.unwrap(), "POST", path, body).await
    }
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    resp
}

const ADD: &str = r#"/disk add type=file file-path="storage-pool/csi/pvc-1.img" file-size=1G slot="pvc-1" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-1" comment="csi=pvc-1""#;

const DETAIL: &str = "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT\r\n\
\x201 Bt ;;; csi=pvc-1\r\n\
\x20     type=file slot=\"pvc-1\" slot-default=\"\" parent=\"\" fs=-\r\n\
\x20     model=\"/storage-pool/csi/pvc-1.img\" size=1 073 741 824\r\n\
\x20     mount-filesystem=yes mount-read-only=no compress=no sector-size=512\r\n\
\x20     raid-master=none nvme-tcp-export=yes nvme-tcp-server-port=4420\r\n\
\x20     nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\"\r\n\
\x20     nvme-tcp-server-allow-host-name=\"\" iscsi-export=no nfs-sharing=no\r\n\
\x20     smb-sharing=no media-sharing=no media-interface=none swap=no\r\n\
\x20     file-path=/storage-pool/csi/pvc-1.img file-size=1024.0MiB file-offset=0\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_add_then_print_detail_byte_for_byte() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    assert_eq!(f.ok(ADD).await, "", "add prints nothing on success");
    assert_eq!(
        f.ok(r#"/disk print detail where slot="pvc-1""#).await,
        DETAIL
    );
    assert_eq!(
        f.ok(r#":put [/disk find where slot="pvc-1"]"#).await,
        "*10\r\n"
    );
    // Bad input: RouterOS's error, exit status 0 (judge by the text), nothing changed.
    let out = f.ssh("/disk add type=file slot=a;b").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bad command name b (line 1 column 28)\r\n"
    );
    assert!(out.status.success());
    assert_eq!(f.ok("/disk print count-only").await, "2\r\n");
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_reads_state_and_log_and_injects_faults() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    f.ok(ADD).await;
    let state = http(f.running.control_addr.unwrap(), "GET", "/state", "").await;
    assert!(state.starts_with("HTTP/1.1 200"), "{state}");
    assert!(state.contains(r#""slot":"pvc-1""#), "{state}");
    let log = http(f.running.control_addr.unwrap(), "GET", "/log?since=0", "").await;
    assert!(log.contains(r#""path":"/disk/add""#), "{log}");
    assert!(log.contains(r#"["slot","pvc-1"]"#), "{log}");

    let resp = f
        .post(
            "/faults",
            r#"{"fault":"error","pattern":"^/disk add","text":"failure: injected","count":1}"#,
        )
        .await;
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    let out = f.ok(&ADD.replace("pvc-1", "pvc-2")).await;
    assert_eq!(out, "failure: injected\r\n");
    assert_eq!(
        f.ok(&ADD.replace("pvc-1", "pvc-2")).await,
        "",
        "the rule is used up"
    );

    let resp = f
        .post("/faults", r#"{"fault":"latency","pattern":"("}"#)
        .await;
    assert!(
        resp.starts_with("HTTP/1.1 4"),
        "a bad fault is refused: {resp}"
    );

    let resp = f
        .post("/config/copy-rate", r#"{"bytes_per_second":1048576}"#)
        .await;
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    let state = http(f.running.control_addr.unwrap(), "GET", "/state", "").await;
    assert!(state.contains(r#""copy_rate":1048576"#), "{state}");
    assert!(state.contains(r#""copies":[]"#), "{state}");
    f.post("/config/copy-rate", r#"{"bytes_per_second":null}"#)
        .await;
    let state = http(f.running.control_addr.unwrap(), "GET", "/state", "").await;
    assert!(state.contains(r#""copy_rate":null"#), "{state}");
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_copy_runs_while_its_exec_waits_and_stops_when_the_session_drops() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    let sim = f.running.sim.clone();
    for slot in ["a", "b"] {
        f.ok(&format!(
            r#"/disk add type=file file-path="storage-pool/csi/{slot}.img" file-size=8M slot="{slot}""#
        ))
        .await;
    }
    assert_eq!(
        f.ok(r#"/disk copy src="a" dst="b""#).await,
        "  status: 8388608 / 8388608 (100%)\r\n"
    );
    sim.set_copy_rate(Some(1 << 20));
    let mut changes = sim.subscribe_copies();
    let copying = openssh(f.running.ssh_addr.port(), &f.key, "admin")
        .arg(r#"/disk copy src="a" dst="b""#)
        .output();
    let copying = tokio::spawn(copying);
    while sim.state().copies.first().is_none_or(|c| c.copied == 0) {
        changes.changed().await.unwrap();
    }
    sim.inject(&Fault::DropSessions).unwrap();
    while !sim.state().copies.is_empty() {
        changes.changed().await.unwrap();
    }
    let out = copying.await.unwrap().unwrap();
    assert!(!out.status.success(), "the session was dropped");
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_applies_the_change_and_crash_before_does_not() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    let sim = f.running.sim.clone();
    sim.inject(&Fault::Crash {
        pattern: "^/disk add".into(),
        point: CrashPoint::AfterCommit,
        count: 1,
    })
    .unwrap();
    let out = f.ssh(ADD).await;
    assert!(!out.status.success(), "the client got no reply");
    assert!(out.stdout.is_empty());
    assert_eq!(
        f.ok(r#"/disk print count-only where slot="pvc-1""#).await,
        "1\r\n",
        "the disk exists although the client got no reply"
    );

    sim.inject(&Fault::Crash {
        pattern: "^/disk add".into(),
        point: CrashPoint::BeforeCommit,
        count: 1,
    })
    .unwrap();
    let add2 = ADD.replace("pvc-1", "pvc-2");
    let out = f.ssh(&add2).await;
    assert!(!out.status.success());
    assert_eq!(
        f.ok(r#"/disk print count-only where slot="pvc-2""#).await,
        "0\r\n",
        "nothing was applied"
    );
    assert!(!sim.state().files.iter().any(|x| x.name.contains("pvc-2")));
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_drops_sessions_refuses_then_serves_the_same_disks() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    f.ok(ADD).await;
    let before = f.ok("/disk print detail").await;
    let sim = f.running.sim.clone();
    let mut restarts = sim.subscribe_restarts();
    sim.inject(&Fault::Restart {
        downtime_ms: 60_000,
    })
    .unwrap();
    restarts.recv().await.unwrap();
    let refused = f.ssh("/disk print count-only").await;
    assert!(
        !refused.status.success(),
        "connections are refused during the downtime"
    );
    // End the downtime early: a zero-length restart reloads again and accepts at once.
    sim.inject(&Fault::Restart { downtime_ms: 0 }).unwrap();
    assert_eq!(f.ok("/disk print detail").await, before);
    f.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_sessions() {
    if !have_openssh() {
        return;
    }
    let f = start().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let cmd = openssh(f.running.ssh_addr.port(), &f.key, "admin")
            .arg(format!(
                r#"/disk add type=file file-path="storage-pool/c/v{i}.img" file-size=1M slot="v{i}""#
            ))
            .output();
        tasks.push(tokio::spawn(cmd));
    }
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    }
    assert_eq!(
        f.ok(r#"/disk print count-only where slot~"^v""#).await,
        "32\r\n"
    );
    f.running.shutdown().await;
}

/// Reads the binary's `ssh ADDR` line.
async fn ssh_port(child: &mut tokio::process::Child) -> u16 {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(addr) = line.strip_prefix("ssh ") {
            // Keep reading, so the binary's later lines never meet a closed pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return addr.parse::<std::net::SocketAddr>().unwrap().port();
        }
    }
    panic!("rds-sim printed no ssh address");
}

fn spawn_binary(data: &Path, keys: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rds-sim"))
        .arg("--data-dir")
        .arg(data)
        .arg("--authorized-keys")
        .arg(keys)
        // Port 0 for the NVMe/TCP target too: tests spawning the binary at once would share its
        // default, 4420.
        .args([
            "--ssh-listen",
            "127.0.0.1:0",
            "--nvme-listen",
            "127.0.0.1:0",
            "--pool",
            "storage-pool:10GiB",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_change_and_leaves_no_torn_state() {
    if !have_openssh() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_admin");
    let client = load_or_generate_host_key(&key).unwrap();
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, client.public_key().to_openssh().unwrap()).unwrap();
    let data = dir.path().join("data");
    let mut acknowledged = Vec::new();
    for round in 0..=6u32 {
        let mut child = spawn_binary(&data, &keys);
        let port = ssh_port(&mut child).await;
        // Every disk acknowledged before is still there.
        let listed = openssh(port, &key, "admin")
            .arg("/disk print terse")
            .output()
            .await
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        for slot in &acknowledged {
            assert!(
                listed.contains(&format!("slot={slot} ")),
                "round {round}: {slot} lost:\n{listed}"
            );
        }
        if round == 6 {
            break;
        }
        // A burst of adds, killed mid-way with SIGKILL.
        let mut inflight = Vec::new();
        for i in 0..8 {
            let slot = format!("r{round}-{i}");
            let cmd = openssh(port, &key, "admin")
                .arg(format!(
                    r#"/disk add type=file file-path="storage-pool/k/{slot}.img" file-size=1M slot="{slot}""#
                ))
                .output();
            inflight.push((slot, tokio::spawn(cmd)));
        }
        let (first_slot, first) = inflight.remove(0);
        let out = first.await.unwrap().unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
        acknowledged.push(first_slot);
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for (slot, t) in inflight {
            let out = t.await.unwrap().unwrap();
            if out.status.success() && out.stdout.is_empty() {
                acknowledged.push(slot);
            }
        }
        let text = std::fs::read_to_string(data.join("state.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).expect("state.json is never torn");
    }
}

/// The `error-stream` switch (REFERENCE.md §13.8): a refusal's text reaches OpenSSH on standard
/// output, or on standard error once the control API moves it there; a success stays on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_stream_switch_sends_refusals_to_stdout_or_stderr() {
    if !have_openssh() {
        return;
    }
    let fx = start().await;
    let refused = r#"/disk remove "no-such-disk""#;
    let out = fx.ssh(refused).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no such item");
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    let set = fx
        .post(
            "/config/quirk",
            r#"{"name": "error-stream", "position": "stderr"}"#,
        )
        .await;
    assert!(set.starts_with("HTTP/1.1 204"), "{set}");
    let out = fx.ssh(refused).await;
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "no such item");
    assert_eq!(
        fx.ok("/system identity print").await.trim(),
        "name: MikroTik"
    );
}

/// SIGTERM (`docker stop`, kubelet) stops the binary cleanly: as a container's process 1 it
/// would otherwise ignore the signal and be killed at the end of the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let client = load_or_generate_host_key(&dir.path().join("id_admin")).unwrap();
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, client.public_key().to_openssh().unwrap()).unwrap();
    let mut child = spawn_binary(&dir.path().join("data"), &keys);
    ssh_port(&mut child).await;
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("rds-sim still runs 20 s after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "rds-sim ended with {status:?} after SIGTERM"
    );
}
