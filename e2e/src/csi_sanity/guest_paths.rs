//! csi-sanity's path commands for a node in a QEMU guest. csi-sanity makes, removes and inspects
//! the staging and target directories itself, on its own machine, unless told commands that do
//! it where the node is (`--csi.createstagingpathcmd`, `--csi.createmountpathcmd`,
//! `--csi.removestagingpathcmd`, `--csi.removemountpathcmd`, `--csi.checkpathcmd`). It runs each
//! as `<command> <path>`: a create prints the path it made, a check prints `file`, `directory`,
//! `not_found` or `other`.
//!
//! Only the process that booted the guest can reach its command agent, so the commands are the
//! `guest-path` bin, which asks that process over a UNIX socket (the [`Relay`]) to run a shell
//! line in the guest and answers csi-sanity with the result.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::qemu::sh_quote;

/// What csi-sanity asks of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Remove,
    Check,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Create, Op::Remove, Op::Check];

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Remove => "remove",
            Op::Check => "check",
        }
    }

    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The shell line that does this to `path`, as csi-sanity does on its own machine: a create
    /// makes the directory but not its parents and fails when it exists (`os.Mkdir`), a remove
    /// takes only an empty directory (`os.Remove`), a check follows symbolic links (`os.Stat`).
    pub fn script(self, path: &str) -> String {
        let path = sh_quote(path);
        match self {
            Op::Create => format!("mkdir -- {path} && printf '%s\\n' {path}"),
            Op::Remove => format!("rmdir -- {path}"),
            Op::Check => format!(
                "if [ -f {path} ]; then echo file; elif [ -d {path} ]; then echo directory; \
                 elif [ -e {path} ]; then echo other; else echo not_found; fi"
            ),
        }
    }
}

/// A shell line's outcome, as the relay sends it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub stdout: String,
    pub stderr: String,
    pub rc: i32,
}

/// The test process's end: runs the shell lines `guest-path` sends, one connection each.
pub struct Relay {
    listener: UnixListener,
    socket: PathBuf,
}

impl Relay {
    pub fn bind(socket: &Path) -> anyhow::Result<Relay> {
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("binding the guest path relay at {}", socket.display()))?;
        Ok(Relay {
            listener,
            socket: socket.to_owned(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Answers requests with `run` until an error; the caller drops this future when
    /// csi-sanity ends. `run` blocks (the guest answers in milliseconds), so it is lent the
    /// runtime's thread.
    pub async fn serve(
        &self,
        run: impl Fn(&str) -> anyhow::Result<Reply>,
    ) -> anyhow::Result<std::convert::Infallible> {
        loop {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .context("accepting a guest-path connection")?;
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            tokio::io::BufReader::new(read)
                .read_line(&mut line)
                .await
                .context("reading a guest-path request")?;
            let command: String =
                serde_json::from_str(&line).context("a guest-path request is not a string")?;
            let reply = tokio::task::block_in_place(|| run(&command))
                .with_context(|| format!("running {command:?} in the guest"))?;
            let mut answer = serde_json::to_string(&reply)?;
            answer.push('\n');
            write
                .write_all(answer.as_bytes())
                .await
                .context("answering guest-path")?;
        }
    }
}

/// `guest-path`'s end: asks the relay at `socket` to run `command`.
pub fn ask(socket: &Path, command: &str) -> anyhow::Result<Reply> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to the guest path relay {}", socket.display()))?;
    let mut request = serde_json::to_string(command)?;
    request.push('\n');
    stream.write_all(request.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .context("reading the relay's answer")?;
    serde_json::from_str(&line)
        .with_context(|| format!("the relay answered {line:?}, not a reply (see its test's error)"))
}

/// The executable csi-sanity is given for `op`: a script in `dir` that runs `guest_path` with
/// the relay's socket and the op, since csi-sanity passes a command no argument but the path.
pub fn command(guest_path: &Path, socket: &Path, dir: &Path, op: Op) -> anyhow::Result<PathBuf> {
    let script = dir.join(format!("{}-path", op.name()));
    let text = format!(
        "#!/bin/sh\nexec {} {} {} \"$1\"\n",
        sh_quote(&guest_path.display().to_string()),
        sh_quote(&socket.display().to_string()),
        op.name()
    );
    std::fs::write(&script, text)
        .and_then(|()| std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("writing {}", script.display()))?;
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `command` with this machine's `sh`, standing in for the guest's.
    fn local_sh(command: &str) -> anyhow::Result<Reply> {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()?;
        Ok(Reply {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            rc: output.status.code().unwrap_or(-1),
        })
    }

    #[test]
    fn the_scripts_keep_csi_sanitys_own_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's here").display().to_string();
        let run = |op: Op| local_sh(&op.script(&path)).unwrap();
        assert_eq!(run(Op::Check).stdout, "not_found\n");
        let created = run(Op::Create);
        assert_eq!((created.rc, created.stdout.trim()), (0, path.as_str()));
        assert_eq!(run(Op::Check).stdout, "directory\n");
        assert_ne!(
            run(Op::Create).rc,
            0,
            "a create of an existing directory fails"
        );
        std::fs::write(Path::new(&path).join("f"), "").unwrap();
        assert_ne!(
            run(Op::Remove).rc,
            0,
            "a remove takes only an empty directory"
        );
        let file = Path::new(&path).join("f").display().to_string();
        assert_eq!(local_sh(&Op::Check.script(&file)).unwrap().stdout, "file\n");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(run(Op::Remove).rc, 0);
        assert_eq!(run(Op::Check).stdout, "not_found\n");
        let parentless = dir.path().join("a/b").display().to_string();
        assert_ne!(local_sh(&Op::Create.script(&parentless)).unwrap().rc, 0);
        assert_eq!(Op::parse("check"), Some(Op::Check));
        assert_eq!(Op::parse("mkdir"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_relay_runs_what_guest_path_asks() {
        let dir = tempfile::tempdir().unwrap();
        let relay = Relay::bind(&dir.path().join("relay.sock")).unwrap();
        let socket = relay.socket().to_owned();
        let asked = tokio::task::spawn_blocking(move || {
            let first = ask(&socket, "echo out; echo err >&2; exit 3").unwrap();
            let second = ask(&socket, "echo again").unwrap();
            (first, second)
        });
        let (first, second) = tokio::select! {
            asked = asked => asked.unwrap(),
            served = relay.serve(local_sh) => panic!("the relay stopped: {served:?}"),
        };
        assert_eq!(
            first,
            Reply {
                stdout: "out\n".into(),
                stderr: "err\n".into(),
                rc: 3
            }
        );
        assert_eq!(second.stdout, "again\n");
    }

    #[test]
    fn the_commands_pass_the_socket_the_op_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("guest-path");
        std::fs::write(&fake, "#!/bin/sh\necho \"$@\"\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("relay.sock");
        for op in Op::ALL {
            let script = command(&fake, &socket, dir.path(), op).unwrap();
            let output = std::process::Command::new(&script)
                .arg("/var/lib/x y")
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                format!("{} {} /var/lib/x y\n", socket.display(), op.name())
            );
        }
    }
}
