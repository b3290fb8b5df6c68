//! The sanity suite (see `rds_e2e::sanity`): the upstream csi-sanity binary with every spec, and
//! the cases csi-sanity lacks (the CSI spec's error tables, what a refused call leaves unchanged),
//! against the target `RDS_E2E_TARGET` names.

fn main() {
    rds_e2e::suite::run(rds_e2e::sanity::trials(env!("CARGO_BIN_EXE_guest-path")))
}
