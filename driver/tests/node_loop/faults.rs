//! The node fault suite: a real `rds-csi node` process in loop mode is killed at each crash point
//! of stage and publish (SIGKILL from the `crash-points` build these tests run), started again,
//! and called again as kubelet retries: each call until it succeeds, then unpublish and unstage.
//! The retries converge, the file system made before the kill is the one mounted after it (never
//! made twice), and once unstaged no loop device over the volume, mount under the test directory
//! or device node is left. The plugin is a process, not a service in this test, so a kill loses
//! what it held in memory as a crash does.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::grpc::connect_unix;
use rds_csi::node::crash::{CRASH_AT, CrashPoint};
use tonic::Status;
use tonic::transport::Channel;

use super::*;

/// Where a kubelet publishes the volume for its pod.
const TARGET: &str = "pod/volume";

/// How often a retry may fail before the suite calls it diverging; kubelet would go on, with a
/// backoff.
const ATTEMPTS: usize = 3;

/// The node plugin as a child process, serving on a socket in the bench's directory; killed when
/// dropped, so a failed assert leaves no plugin behind.
struct Plugin {
    child: Child,
    node: NodeClient<Channel>,
    log: mpsc::Receiver<String>,
}

impl Plugin {
    /// Starts `rds-csi node` over the bench's files with `env` added, and waits until it serves.
    async fn start(bench: &Bench, env: &[(&str, &str)]) -> Plugin {
        let config = bench.path("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nhostNqn = \"nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-00000000000a\"\n\
                 fabric = \"loop\"\nloopRoot = \"{}\"\n",
                bench.path("files").display()
            ),
        )
        .unwrap();
        let socket = bench.path("csi.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
            .arg("node")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .env_remove(CRASH_AT)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log is drained for as long as the plugin lives, so it never blocks on a full pipe.
        let (lines, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        while !seen
            .last()
            .is_some_and(|l: &String| l.contains("serving CSI"))
        {
            match log.recv() {
                Ok(line) => seen.push(line),
                Err(_) => panic!("the plugin ended before serving: {seen:#?}"),
            }
        }
        let node = NodeClient::new(connect_unix(&socket).await.unwrap());
        Plugin { child, node, log }
    }

    async fn call(
        &mut self,
        bench: &Bench,
        step: Step,
        capability: &VolumeCapability,
    ) -> Result<(), Status> {
        let capability = capability.clone();
        match step {
            Step::Stage => self
                .node
                .node_stage_volume(bench.stage_request(capability))
                .await
                .map(drop),
            Step::Publish => self
                .node
                .node_publish_volume(bench.publish_request(TARGET, capability, false))
                .await
                .map(drop),
            Step::Unpublish => self
                .node
                .node_unpublish_volume(bench.unpublish_request(TARGET))
                .await
                .map(drop),
            Step::Unstage => self
                .node
                .node_unstage_volume(bench.unstage_request())
                .await
                .map(drop),
        }
    }

    /// Calls `steps` in order, each once; the first failure ends the run.
    async fn run(
        &mut self,
        bench: &Bench,
        steps: &[Step],
        capability: &VolumeCapability,
    ) -> Result<(), (Step, Status)> {
        for &step in steps {
            self.call(bench, step, capability)
                .await
                .map_err(|status| (step, status))?;
        }
        Ok(())
    }

    /// Calls `steps` in order as kubelet does, each again until it succeeds.
    async fn converge(&mut self, bench: &Bench, steps: &[Step], capability: &VolumeCapability) {
        for &step in steps {
            let mut failures = Vec::new();
            while let Err(status) = self.call(bench, step, capability).await {
                failures.push(status);
                assert!(
                    failures.len() < ATTEMPTS,
                    "{step:?} does not converge: {failures:#?}\n{}",
                    self.drain()
                );
            }
        }
    }

    /// How the plugin ended after a call failed, with its log: `None` when it answered the
    /// failure instead of dying (it logs each failure before answering, so this never waits on
    /// a plugin that lives on).
    fn death(&mut self) -> (Option<ExitStatus>, String) {
        let mut seen = Vec::new();
        for line in self.log.iter() {
            let answered = line.contains("rpc_trace") && line.contains("failed");
            seen.push(line);
            if answered {
                return (None, seen.join("\n"));
            }
        }
        (Some(self.child.wait().unwrap()), seen.join("\n"))
    }

    /// What the plugin has logged and the suite has not read yet.
    fn drain(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Stage,
    Publish,
    Unpublish,
    Unstage,
}

const PUBLISH: [Step; 2] = [Step::Stage, Step::Publish];
const UNPUBLISH: [Step; 2] = [Step::Unpublish, Step::Unstage];

/// The UUID in the ext4 superblock of the volume's backing file, if it has one: mkfs.ext4 makes
/// a new one every time, so an unchanged UUID says the file system was not made again.
fn ext4_uuid(bench: &Bench) -> Option<Vec<u8>> {
    let mut head = vec![0; 2048];
    File::open(bench.backing_file())
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    (head[1080..1082] == [0x53, 0xEF]).then(|| head[1128..1144].to_vec())
}

/// Block device nodes anywhere under `dir`.
fn device_nodes(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(device_nodes(&entry.path()));
        } else if kind.is_block_device() {
            found.push(entry.path());
        }
    }
    found
}

/// What the volume left on the host: mounts under the bench, its loop device, device nodes.
fn leftovers(bench: &Bench) -> (Vec<PathBuf>, bool, Vec<PathBuf>) {
    (
        bench.mounted(),
        bench.attached(),
        device_nodes(bench.dir.path()),
    )
}

/// The plugin is killed at `point` on its way through stage and publish of `capability`, then
/// started again and retried; the volume is usable, then unpublished and unstaged, and nothing
/// is left.
async fn killed_at(point: CrashPoint, capability: VolumeCapability) {
    let bench = Bench::new(64 * MIB);
    let mut plugin = Plugin::start(&bench, &[(CRASH_AT, point.name())]).await;
    let (step, status) = plugin.run(&bench, &PUBLISH, &capability).await.unwrap_err();
    let (exit, log) = plugin.death();
    assert_eq!(
        exit.and_then(|e| e.signal()),
        Some(libc::SIGKILL),
        "the plugin was not killed at {point:?} ({exit:?}) when {step:?} failed with {status:?}:\n{log}"
    );
    let made = ext4_uuid(&bench);

    let mut plugin = Plugin::start(&bench, &[]).await;
    let left = PUBLISH.iter().position(|&s| s == step).unwrap();
    plugin.converge(&bench, &PUBLISH[left..], &capability).await;
    if made.is_some() {
        assert_eq!(
            ext4_uuid(&bench),
            made,
            "the retry after {point:?} made the file system again"
        );
    }
    let target = bench.path(TARGET);
    if matches!(capability.access_type, Some(AccessType::Mount(_))) {
        std::fs::write(target.join("data"), b"written after the retry").unwrap();
        assert_eq!(
            std::fs::read(bench.path("staging/data")).unwrap(),
            b"written after the retry"
        );
    } else {
        let mut head = [0u8; 512];
        File::open(&target).unwrap().read_exact(&mut head).unwrap();
    }
    plugin.converge(&bench, &UNPUBLISH, &capability).await;
    drop(plugin);
    assert_eq!(
        leftovers(&bench),
        (vec![], false, vec![]),
        "left after a kill at {point:?}"
    );
}

/// The volumes whose stage and publish pass `point`: every point is killed at, and a new one does
/// not compile until the suite says which.
fn passing(point: CrashPoint) -> Vec<VolumeCapability> {
    match point {
        CrashPoint::Connected => vec![mount_capability("ext4"), block_capability()],
        CrashPoint::Formatted | CrashPoint::Mounted | CrashPoint::Published => {
            vec![mount_capability("ext4")]
        }
        CrashPoint::DeviceNode | CrashPoint::Linked => vec![block_capability()],
    }
}

#[tokio::test]
async fn a_plugin_killed_at_any_step_converges_on_retry_and_leaves_nothing() {
    require_loop!();
    for point in CrashPoint::ALL {
        for capability in passing(point) {
            killed_at(point, capability).await;
        }
    }
}

/// A plugin killed after connecting leaves the loop device; the retry then fails (the volume holds
/// data that is not a file system) and must not leave it either: kubelet never unstages a volume
/// whose stage failed.
#[tokio::test]
async fn a_failing_retry_removes_the_connection_the_killed_stage_left() {
    require_loop!();
    let bench = Bench::new(64 * MIB);
    let capability = mount_capability("ext4");
    let mut plugin = Plugin::start(&bench, &[(CRASH_AT, CrashPoint::Connected.name())]).await;
    plugin.run(&bench, &PUBLISH, &capability).await.unwrap_err();
    assert_eq!(
        plugin.death().0.and_then(|e| e.signal()),
        Some(libc::SIGKILL)
    );
    assert!(bench.attached(), "the kill came before the connection");
    bench.write_foreign_data();

    let mut plugin = Plugin::start(&bench, &[]).await;
    let (_, status) = plugin.run(&bench, &PUBLISH, &capability).await.unwrap_err();
    assert!(
        status.message().contains("refusing to format"),
        "{status:?}"
    );
    drop(plugin);
    assert_eq!(leftovers(&bench), (vec![], false, vec![]));
}

/// mkfs killed part way through, in the middle of the plugin's stage, leaves a file system the
/// node did not finish (`unfinished` says the head is as refused before the fix); kubelet's retry
/// makes it again rather than failing to mount it, or refusing it as foreign data, for ever.
/// `interrupt` is the plugin's environment that kills mkfs at a fixed write: a real interruption
/// at a fixed place, where killing the plugin during mkfs would land wherever the timing put it.
async fn an_interrupted_mkfs_is_made_again(
    fs: &str,
    size: u64,
    interrupt: &[(&str, &str)],
    unfinished: fn(&[u8]) -> bool,
) {
    let bench = Bench::new(size);
    let capability = mount_capability(fs);
    let mut plugin = Plugin::start(&bench, interrupt).await;
    let (step, status) = plugin
        .run(&bench, &PUBLISH, &capability)
        .await
        .expect_err("mkfs was not interrupted");
    assert_eq!(step, Step::Stage);
    assert!(status.message().contains("mkfs"), "{status:?}");
    drop(plugin);
    let mut head = vec![0u8; 68 * 1024];
    File::open(bench.backing_file())
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(unfinished(&head), "mkfs.{fs} was not left unfinished");
    assert_eq!(
        leftovers(&bench),
        (vec![], false, vec![]),
        "the failed stage left its connection"
    );

    let mut plugin = Plugin::start(&bench, &[]).await;
    plugin.converge(&bench, &PUBLISH, &capability).await;
    std::fs::write(
        bench.path(TARGET).join("data"),
        b"on the finished file system",
    )
    .unwrap();
    plugin.converge(&bench, &UNPUBLISH, &capability).await;
    drop(plugin);
    assert_eq!(leftovers(&bench), (vec![], false, vec![]));
}

/// xfsprogs' own LIBXFS_DEBUG_WRITE_CRASH kills mkfs.xfs after its fifth write: its superblock
/// is there, marked in progress, which the kernel refuses to mount.
#[tokio::test]
async fn an_interrupted_mkfs_xfs_is_made_again_by_the_retry() {
    require_loop!();
    // mkfs.xfs refuses file systems under 300 MiB.
    an_interrupted_mkfs_is_made_again(
        "xfs",
        320 * MIB,
        &[("LIBXFS_DEBUG_WRITE_CRASH", "ddev=5")],
        |head| head[..4] == *b"XFSB" && head[126] == 1,
    )
    .await;
}

/// e2fsprogs has no such hook: a `mkfs.ext4` first on the plugin's PATH runs the real one under
/// strace, which kills it at its 30th write, after its group descriptor blocks and before its
/// superblock, so the head holds metadata and no superblock.
#[tokio::test]
async fn an_interrupted_mkfs_ext4_is_made_again_by_the_retry() {
    require_loop!();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |tool: &str| {
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.exists())
    };
    let (Some(strace), Some(mkfs)) = (found("strace"), found("mkfs.ext4")) else {
        eprintln!(
            "SKIPPED {}: needs strace and mkfs.ext4 (ci/install-deps.sh installs them)",
            module_path!()
        );
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("mkfs.ext4");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -f -o /dev/null -e inject=pwrite64:signal=KILL:when=30 {} \"$@\"\n",
            strace.display(),
            mkfs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.path().to_owned()).chain(std::env::split_paths(&path)),
    )
    .unwrap();
    an_interrupted_mkfs_is_made_again(
        "ext4",
        64 * MIB,
        &[("PATH", path.to_str().unwrap())],
        |head| head[1080..1082] != [0x53, 0xEF] && head.iter().any(|&b| b != 0),
    )
    .await;
}
