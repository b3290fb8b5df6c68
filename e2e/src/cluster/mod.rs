//! The Kubernetes targets. `cluster`: a real control plane ([`control_plane`]) as processes built
//! from their Go modules by `ci/go-tools.sh`, the children it runs ([`process`]), the chart's pods
//! as processes and a kubelet stand-in per node ([`target`]). `kind`: the chart in a kind cluster
//! that `ci/kind.sh` installed ([`kind`]). The flows both run reach them through [`reach`].

pub mod control_plane;
pub mod helm;
pub mod kind;
pub mod kubelet;
pub mod leftovers;
pub mod mountinfo;
pub mod objects;
pub mod pods;
pub mod process;
pub mod rds_state;
pub mod reach;
pub mod target;
pub mod trial;
