//! What the workload believes exists: the volumes and snapshots the driver acknowledged, where
//! each volume is published, and the checksum of every block a node wrote and saw acknowledged.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::node::BLOCK_BYTES;

/// Block → CRC-32C of the data acknowledged there.
pub type Blocks = BTreeMap<u32, u32>;

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub mib: u64,
    pub blocks: Blocks,
    /// The node it is published to.
    pub node: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub source: String,
    pub mib: u64,
    pub blocks: Blocks,
}

/// Volumes and snapshots by ID.
#[derive(Debug, Default)]
pub struct Model {
    pub volumes: BTreeMap<String, Volume>,
    pub snapshots: BTreeMap<String, Snapshot>,
    created: u64,
}

impl Model {
    /// A fresh CSI name, as a provisioner derives one from a new claim.
    pub fn next_name(&mut self, kind: &str) -> String {
        self.created += 1;
        format!("chaos-{kind}-{}", self.created)
    }
}

/// The ID at `pick` among `ids`, or none when there are none.
pub fn pick<'a>(ids: impl Iterator<Item = &'a String>, pick: u32) -> Option<String> {
    let ids: Vec<&String> = ids.collect();
    (!ids.is_empty()).then(|| ids[pick as usize % ids.len()].clone())
}

/// The block of data `fill` stands for.
pub fn block_data(fill: u64) -> Vec<u8> {
    let mut data = vec![0; BLOCK_BYTES];
    StdRng::seed_from_u64(fill).fill_bytes(&mut data);
    data
}

pub fn checksum(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}
