//! `guest-path <relay socket> <create|remove|check> <path>`: csi-sanity's path commands for a node
//! in a QEMU guest (see `rds_e2e::csi_sanity::guest_paths`). Prints what the guest printed and
//! exits with its status, as csi-sanity expects of the command.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use rds_e2e::csi_sanity::guest_paths::{Op, ask};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, op, path] = args.as_slice() else {
        eprintln!("usage: guest-path <relay socket> <create|remove|check> <path>");
        return ExitCode::from(2);
    };
    let Some(op) = Op::parse(op) else {
        eprintln!("guest-path: unknown operation {op:?}: create, remove or check");
        return ExitCode::from(2);
    };
    match ask(Path::new(socket), &op.script(path)) {
        Ok(reply) => {
            // csi-sanity reads stdout and passes stderr through; nothing is left to report a
            // failed write to.
            let _ = std::io::stdout().write_all(reply.stdout.as_bytes());
            let _ = std::io::stderr().write_all(reply.stderr.as_bytes());
            ExitCode::from(u8::try_from(reply.rc).unwrap_or(1))
        }
        Err(error) => {
            eprintln!("guest-path {} {path}: {error:#}", op.name());
            ExitCode::from(1)
        }
    }
}
