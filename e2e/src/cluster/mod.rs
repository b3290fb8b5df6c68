//! The `cluster` target's Kubernetes: a real control plane ([`control_plane`]) as processes built
//! from their Go modules by `ci/go-tools.sh`, and the children it runs ([`process`]).

pub mod control_plane;
pub mod helm;
pub mod kubelet;
pub mod leftovers;
pub mod objects;
pub mod pods;
pub mod process;
pub mod target;
pub mod trial;
