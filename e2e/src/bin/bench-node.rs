//! bench-node: how long NodeStageVolume takes beside the same steps done by hand, and how much
//! memory the node plugin uses.
//!
//! `--fabric kernel` runs the node plugin under the real kernel NVMe/TCP initiator in the QEMU
//! guest: see [`guest`].
//!
//! `--fabric loop` (the default; needs root and loop devices): every iteration stages a fresh
//! sparse volume, so each stage attaches, probes, makes an ext4 file system and mounts it. Prints, as medians over
//! `--iterations`:
//! - the steps by hand: `losetup --find --show`, `mkfs.ext4` (with the driver's options),
//!   `mount`, each a child process, as an operator would type them;
//! - the same steps through rds-csi's host layer in this process (connect, device found, probe,
//!   mkfs, mount): the split of a NodeStage;
//! - NodeStageVolume end to end over the CSI socket of a spawned `rds-csi node` process, and its
//!   ratio to the steps by hand (goal ≤ 1.2);
//! - that process's VmRSS idle and after the stages, and its VmHWM (goal ≤ 15 MiB).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use rds_csi::csi::v1::node_client::NodeClient;
use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::{NodeStageVolumeRequest, NodeUnstageVolumeRequest};
use rds_csi::node::host::{
    Fabric, Format, Found, FsType, LinuxMounts, LoopFabric, Mkfs, Mounts, Target, Tunables,
};
use rds_e2e::requests::mount_capability;

#[path = "bench_node/guest.rs"]
mod guest;

#[derive(Debug, Parser)]
#[command(
    about = "NodeStageVolume latency beside the same steps by hand, and the node plugin's RSS"
)]
struct Args {
    /// Which initiator the node plugin drives.
    #[arg(long, value_enum, default_value_t = FabricArg::Loop)]
    fabric: FabricArg,
    /// Volumes staged per method.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Size of each (sparse) volume in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// The rds-csi binary to run as the node plugin (spawned here in loop mode, copied into the
    /// guest in kernel mode); default: next to this binary.
    #[arg(long)]
    rds_csi: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FabricArg {
    /// Loop devices on this machine, the plugin as a child process.
    Loop,
    /// The kernel NVMe/TCP initiator in a QEMU guest, against rds-sim on this machine.
    Kernel,
}

const POOL_DIR: &str = "storage-pool/csi";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:be7c0000-0000-4000-8000-000000000001";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.fabric {
        FabricArg::Loop => loop_mode(&args),
        FabricArg::Kernel => guest::run(&args),
    }
}

fn loop_mode(args: &Args) -> anyhow::Result<()> {
    ensure!(
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))? == 0,
        "bench-node needs root (loop devices, mount)"
    );
    ensure!(
        Path::new("/dev/loop-control").exists(),
        "bench-node needs loop devices (/dev/loop-control)"
    );
    let dir = tempfile::Builder::new().prefix("bench-node-").tempdir()?;
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join(POOL_DIR))?;
    let bench = Bench {
        files,
        mounts: dir.path().join("mnt"),
        size: args.size_mib << 20,
    };

    let binary = match &args.rds_csi {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("rds-csi"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut plugin = runtime.block_on(Plugin::start(&binary, dir.path(), &bench.files))?;
    let idle_rss_kib = memory(plugin.pid, "VmRSS")?;
    // The three methods take turns, so a change in the machine's load hits each alike.
    let (mut by_hand, mut layer, mut stages) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.iterations {
        by_hand.push(bench.by_hand(&format!("hand-{i}"))?);
        layer.push(bench.host_layer(&format!("layer-{i}"))?);
        stages.push(runtime.block_on(plugin.stage(&bench, &format!("plugin-{i}")))?);
    }
    let rss_kib = memory(plugin.pid, "VmRSS")?;
    let hwm_kib = memory(plugin.pid, "VmHWM")?;
    runtime.block_on(plugin.stop());

    let column = |runs: &[Vec<Duration>], step: usize| median(runs.iter().map(|r| r[step]));
    let total = |runs: &[Vec<Duration>]| median(runs.iter().map(|r| r.iter().sum()));
    println!(
        "NodeStage of a fresh {} MiB ext4 volume in loop mode, median of {} ({})",
        args.size_mib,
        args.iterations,
        binary.display()
    );
    println!("| step | by hand | rds-csi host layer |");
    println!("|---|---|---|");
    println!(
        "| attach (losetup / connect) | {} | {} |",
        ms(column(&by_hand, 0)),
        ms(column(&layer, 0))
    );
    println!(
        "| device found | (in losetup) | {} |",
        ms(column(&layer, 1))
    );
    println!(
        "| probe (blkid -p equivalent) | (none) | {} |",
        ms(column(&layer, 2))
    );
    println!(
        "| mkfs.ext4 | {} | {} |",
        ms(column(&by_hand, 1)),
        ms(column(&layer, 3))
    );
    println!(
        "| mount | {} | {} |",
        ms(column(&by_hand, 2)),
        ms(column(&layer, 4))
    );
    println!(
        "| total | {} | {} |",
        ms(total(&by_hand)),
        ms(total(&layer))
    );
    let stage = median(stages.iter().copied());
    println!(
        "NodeStageVolume over the CSI socket of `rds-csi node`: {} (ratio to the steps by hand: \
         {:.2})",
        ms(stage),
        stage.as_secs_f64() / total(&by_hand).as_secs_f64()
    );
    println!(
        "rds-csi node memory: VmRSS {:.1} MiB idle, {:.1} MiB after {} stages and unstages; VmHWM \
         {:.1} MiB",
        idle_rss_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0,
        args.iterations,
        hwm_kib as f64 / 1024.0
    );
    Ok(())
}

struct Bench {
    files: PathBuf,
    mounts: PathBuf,
    size: u64,
}

/// A spawned `rds-csi node` process and a client on its CSI socket.
struct Plugin {
    child: tokio::process::Child,
    pid: u32,
    node: NodeClient<tonic::transport::Channel>,
}

impl Bench {
    /// A fresh sparse backing file for `volume`, and its mount point.
    fn volume(&self, volume: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let file = self.files.join(POOL_DIR).join(format!("{volume}.img"));
        File::create(&file)?.set_len(self.size)?;
        let mount = self.mounts.join(volume);
        std::fs::create_dir_all(&mount)?;
        Ok((file, mount))
    }

    /// losetup, mkfs.ext4, mount as child processes; then undone.
    fn by_hand(&self, volume: &str) -> anyhow::Result<Vec<Duration>> {
        let (file, mount) = self.volume(volume)?;
        let start = Instant::now();
        let device = run("losetup", &["--find", "--show", &file.to_string_lossy()])?;
        let attach = start.elapsed();
        let start = Instant::now();
        let (program, options) = FsType::Ext4.mkfs_command();
        run(program, &[options, &[device.as_str()]].concat())?;
        let mkfs = start.elapsed();
        let start = Instant::now();
        run("mount", &[&device, &mount.to_string_lossy()])?;
        let mounted = start.elapsed();
        run("umount", &[&mount.to_string_lossy()])?;
        run("losetup", &["-d", &device])?;
        Ok(vec![attach, mkfs, mounted])
    }

    /// The same steps through rds-csi's host layer; then undone.
    fn host_layer(&self, volume: &str) -> anyhow::Result<Vec<Duration>> {
        let (_, mount) = self.volume(volume)?;
        let fabric = LoopFabric::new(self.files.clone());
        let target = target(volume);
        let mut steps = Vec::new();
        let mut step = |work: &mut dyn FnMut() -> anyhow::Result<()>| {
            let start = Instant::now();
            work()?;
            steps.push(start.elapsed());
            anyhow::Ok(())
        };
        step(&mut || fabric.connect(&target).map(drop).map_err(Into::into))?;
        let mut device = None;
        step(&mut || {
            device = Some(fabric.device(&target)?);
            Ok(())
        })?;
        let device = device.context("no device")?;
        step(&mut || {
            ensure!(
                Mkfs.probe(&device.path, volume)? == Found::Blank,
                "a fresh volume is not blank"
            );
            Ok(())
        })?;
        step(&mut || {
            Mkfs.make(&device.path, FsType::Ext4, volume, false)
                .map_err(Into::into)
        })?;
        step(&mut || {
            LinuxMounts
                .mount(&device.path, &mount, "ext4", &[])
                .map_err(Into::into)
        })?;
        LinuxMounts.unmount(&mount)?;
        let attached = fabric.find(volume)?.context("the loop device vanished")?;
        fabric.disconnect(&attached)?;
        Ok(steps)
    }
}

impl Plugin {
    async fn start(binary: &Path, dir: &Path, files: &Path) -> anyhow::Result<Plugin> {
        let socket = dir.join("csi.sock");
        let config = plugin_config(dir, files)?;
        let child = tokio::process::Command::new(binary)
            .args(["node", "--endpoint"])
            .arg(format!("unix://{}", socket.display()))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it: cargo build --release -p rds-csi)",
                    binary.display()
                )
            })?;
        let pid = child.id().context("the node plugin exited at once")?;
        let node = NodeClient::new(connect(&socket).await?);
        Ok(Plugin { child, pid, node })
    }

    /// Stages a fresh volume (timed end to end at the client), checks that it was formatted,
    /// and unstages it.
    async fn stage(&mut self, bench: &Bench, volume: &str) -> anyhow::Result<Duration> {
        let (file, staging) = bench.volume(volume)?;
        let request = NodeStageVolumeRequest {
            volume_id: volume.to_owned(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(mount_capability(Mode::SingleNodeWriter)),
            publish_context: publish_context(volume, &file, &bench.files),
            ..Default::default()
        };
        let start = Instant::now();
        self.node.node_stage_volume(request).await?;
        let took = start.elapsed();
        ensure!(
            staging.join("lost+found").is_dir(),
            "NodeStageVolume mounted no fresh ext4 at {}",
            staging.display()
        );
        self.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: volume.to_owned(),
                staging_target_path: staging.display().to_string(),
            })
            .await?;
        Ok(took)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn target(volume: &str) -> Target {
    Target {
        volume_id: volume.to_owned(),
        nqn: format!("nqn.2000-02.com.mikrotik:{volume}"),
        address: "127.0.0.1".into(),
        port: 4420,
        host_nqn: HOST_NQN.into(),
        file_path: Some(format!("{POOL_DIR}/{volume}.img")),
        tunables: Tunables::default(),
    }
}

fn publish_context(volume: &str, file: &Path, files: &Path) -> HashMap<String, String> {
    let relative = file.strip_prefix(files).unwrap_or(file);
    HashMap::from([
        ("address".into(), "127.0.0.1".into()),
        ("port".into(), "4420".into()),
        ("nqn".into(), format!("nqn.2000-02.com.mikrotik:{volume}")),
        ("filePath".into(), relative.display().to_string()),
    ])
}

/// A configuration for `rds-csi node` in loop mode (the node plugin needs no `[rds]` table).
fn plugin_config(dir: &Path, files: &Path) -> anyhow::Result<PathBuf> {
    let text = format!(
        "[node]\nhostNqn = \"{HOST_NQN}\"\nfabric = \"loop\"\nloopRoot = {files:?}\n",
        files = files.display().to_string(),
    );
    let path = dir.join("rds-csi.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Connects to the plugin's socket once it listens (it binds within milliseconds of starting).
async fn connect(socket: &Path) -> anyhow::Result<tonic::transport::Channel> {
    let mut pause = Duration::from_millis(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rds_csi::grpc::connect_unix(socket).await {
            Ok(channel) => return Ok(channel),
            Err(error) if Instant::now() > deadline => {
                bail!(
                    "the node plugin did not listen on {}: {error}",
                    socket.display()
                )
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// A `Vm…` line of /proc/<pid>/status, in KiB.
fn memory(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Runs a command and returns its trimmed standard output.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program).args(args).output()?;
    ensure!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn median(samples: impl Iterator<Item = Duration>) -> Duration {
    let mut sorted: Vec<Duration> = samples.collect();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
