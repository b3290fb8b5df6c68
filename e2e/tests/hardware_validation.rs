//! HARDWARE_VALIDATION.md followed literally, with a standalone rds-sim process as the appliance.
//!
//! The setup is done as the document tells a person to: keys made with ssh-keygen, the RDS's
//! host key pinned by fingerprint, `hardware.toml` copied from `e2e/hardware.example.toml` and
//! filled in. Then every block marked `sh hardware` runs, in document order, with bash, in a
//! directory of the checkout holding that `hardware.toml`, with the workspace's `rds-csi` first
//! on `PATH`. A command that fails fails the trial, quoting its output. At the end nothing of
//! the driver's may be left on the appliance, as the document promises.
//!
//! The one difference from a person's run: without the `nvme_tcp` module (CI's kernel) the node
//! runs in loop mode over rds-sim's files. The node cases need root either way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use rds_csi::config::Config;
use rds_csi::rds::value::RosPath;
use rds_csi::service::Driver;
use rds_e2e::binaries::{built, workspace};
use rds_e2e::qemu::free_local_port;

const DOCUMENT: &str = "HARDWARE_VALIDATION.md";
const EXAMPLE: &str = "e2e/hardware.example.toml";
/// The fewest blocks the document has: fewer means its markers were lost, not that it passed.
const FEWEST_BLOCKS: usize = 9;

fn main() {
    let args = Arguments::from_args();
    let trial = Trial::ignorable_test(
        "HARDWARE_VALIDATION.md, every `sh hardware` block, against a standalone rds-sim",
        || match prerequisite() {
            Some(reason) if std::env::var("CI").as_deref() == Ok("true") => Err(Failed::from(
                format!("{reason} (CI=true: failing, not skipping)"),
            )),
            Some(reason) => {
                eprintln!("SKIPPED: {reason}");
                Ok(Completion::ignored_with(reason))
            }
            None => follow_the_document()
                .map(|()| Completion::Completed)
                .map_err(|e| Failed::from(format!("{e:#}"))),
        },
    );
    libtest_mimic::run(&args, vec![trial]).exit()
}

/// Why the document cannot be followed here, if it cannot.
fn prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the node cases attach volumes: run as root".to_owned());
    }
    None
}

/// A command block of the document: its commands, each with continuation lines joined.
fn hardware_blocks(document: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in document.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh hardware") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(commands), text) => {
                if let Some(head) = text.strip_suffix('\\') {
                    pending.push_str(head);
                } else {
                    pending.push_str(text);
                    if !pending.trim().is_empty() {
                        commands.push(std::mem::take(&mut pending));
                    }
                }
            }
            (None, _) => {}
        }
    }
    blocks
}

/// rds-sim as a process of its own, removed with its data when dropped.
struct Appliance {
    process: Child,
    ssh_port: u16,
    nvme_port: u16,
    data: PathBuf,
}

impl Appliance {
    fn start(dir: &Path, client_key: &Path, host_key: &Path) -> anyhow::Result<Appliance> {
        let binary = built("rds-sim", "simulator/src")?;
        let (ssh_port, nvme_port) = (free_local_port()?, free_local_port()?);
        let data = dir.join("rds-data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join("rds-sim.log"))?;
        let process = Command::new(&binary)
            .arg("--data-dir")
            .arg(&data)
            .args(["--ssh-listen", &format!("127.0.0.1:{ssh_port}")])
            .args(["--nvme-listen", &format!("127.0.0.1:{nvme_port}")])
            .arg("--authorized-keys")
            .arg(client_key.with_extension("pub"))
            .arg("--host-key")
            .arg(host_key)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut appliance = Appliance {
            process,
            ssh_port,
            nvme_port,
            data,
        };
        appliance.await_ssh()?;
        Ok(appliance)
    }

    /// Waits until rds-sim accepts SSH connections, or has exited.
    fn await_ssh(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.ssh_port)).is_err() {
            if let Some(status) = self.process.try_wait()? {
                bail!("rds-sim exited before accepting SSH: {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "rds-sim did not accept SSH in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn ssh_keygen(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .context("ssh-keygen (openssh-client, which ci/install-deps.sh installs)")?;
    ensure!(status.success(), "ssh-keygen: {status}");
    Ok(())
}

/// The fingerprint `ssh-keygen -lf` prints for a public key, as the setup pins it.
fn fingerprint(public_key: &Path) -> anyhow::Result<String> {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()?;
    ensure!(out.status.success(), "ssh-keygen -lf: {}", out.status);
    let text = String::from_utf8(out.stdout)?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .context("ssh-keygen -lf printed no fingerprint")
}

/// `hardware.toml` as the setup has a person fill it in, for `appliance`.
fn fill_in(
    example: &str,
    appliance: &Appliance,
    client_key: &Path,
    host_key: &Path,
) -> anyhow::Result<toml::Table> {
    let mut file: toml::Table = toml::from_str(example)?;
    let hardware = file["hardware"].as_table_mut().context("[hardware]")?;
    let node_id = hardware["node-id"].clone();
    let driver = hardware["driver"]
        .as_table_mut()
        .context("[hardware.driver]")?;
    let rds = driver["rds"]
        .as_table_mut()
        .context("[hardware.driver.rds]")?;
    rds.insert("address".into(), "127.0.0.1".into());
    rds.insert("sshPort".into(), i64::from(appliance.ssh_port).into());
    rds.insert("nvmePort".into(), i64::from(appliance.nvme_port).into());
    rds.insert(
        "privateKeyFile".into(),
        client_key.display().to_string().into(),
    );
    let pin = fingerprint(&host_key.with_extension("pub"))?;
    rds.insert("hostKey".into(), pin.into());
    let node = driver["node"]
        .as_table_mut()
        .context("[hardware.driver.node]")?;
    node.insert("hostNqn".into(), node_id);
    if !Path::new("/sys/module/nvme_tcp").exists() {
        eprintln!("no nvme_tcp module here: the node runs in loop mode over rds-sim's files");
        node.insert("fabric".into(), "loop".into());
        let files = appliance.data.join("files");
        node.insert("loopRoot".into(), files.display().to_string().into());
    }
    Ok(file)
}

fn follow_the_document() -> anyhow::Result<()> {
    let root = workspace();
    let document = std::fs::read_to_string(root.join(DOCUMENT))?;
    let blocks = hardware_blocks(&document);
    ensure!(
        blocks.len() >= FEWEST_BLOCKS,
        "{DOCUMENT} has {} `sh hardware` blocks, fewer than the {FEWEST_BLOCKS} it had",
        blocks.len()
    );
    // Inside the checkout, so that cargo finds the workspace from there, as from its root.
    let runs = root.join("target").join("hardware-validation");
    std::fs::create_dir_all(&runs)?;
    let dir = tempfile::Builder::new().prefix("run-").tempdir_in(&runs)?;
    let (client_key, host_key) = (dir.path().join("id_ed25519"), dir.path().join("host_key"));
    ssh_keygen(&client_key)?;
    ssh_keygen(&host_key)?;
    let appliance = Appliance::start(dir.path(), &client_key, &host_key)?;
    let example = std::fs::read_to_string(root.join(EXAMPLE))?;
    let filled = fill_in(&example, &appliance, &client_key, &host_key)?;
    std::fs::write(dir.path().join("hardware.toml"), filled.to_string())?;

    let rds_csi = built("rds-csi", "driver/src")?;
    let path = std::env::join_paths(
        std::iter::once(rds_csi.parent().context("rds-csi's directory")?.to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ),
    )?;
    for command in blocks.iter().flatten() {
        eprintln!("$ {command}");
        let started = Instant::now();
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", command])
            .current_dir(dir.path())
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()?;
        eprintln!(
            "  ({:.1} s, {})",
            started.elapsed().as_secs_f64(),
            out.status
        );
        ensure!(
            out.status.success(),
            "`{command}` failed ({}):\n{}\n{}\nrds-sim's log: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            dir.path().join("rds-sim.log").display()
        );
    }
    nothing_left(&filled).context("after the document's commands")?;
    drop(appliance);
    Ok(())
}

/// No disk of type file and nothing under `baseDir` on the appliance.
fn nothing_left(filled: &toml::Table) -> anyhow::Result<()> {
    let driver = filled["hardware"]["driver"].as_table().context("driver")?;
    let config = Config::from_toml(&driver.to_string())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let driver = Driver::new(config.clone()).await?;
        let rds = driver.rds().context("no RDS client")?;
        let disks: Vec<String> = rds
            .all()
            .await?
            .into_iter()
            .filter(|disk| disk.disk_type == "file")
            .map(|disk| disk.slot)
            .collect();
        ensure!(disks.is_empty(), "disks left on the appliance: {disks:?}");
        let base = RosPath::parse(&format!("{}/{}", config.rds.pool, config.rds.base_dir))?;
        let files: Vec<String> = rds
            .files_under(&base)
            .await?
            .iter()
            .filter(|file| file.get("type") != Some("directory"))
            .filter_map(|file| file.get("name").map(str::to_owned))
            .collect();
        ensure!(files.is_empty(), "files left under {base}: {files:?}");
        Ok(())
    })
}
