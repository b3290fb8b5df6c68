//! The sanity suite (see `rds_e2e::sanity`): csi-sanity's Identity and Controller cases, the CSI
//! spec's error tables, and the external csi-sanity binary when `CSI_SANITY` names it, against the
//! target `RDS_E2E_TARGET` names.

fn main() {
    rds_e2e::suite::run(rds_e2e::sanity::trials())
}
