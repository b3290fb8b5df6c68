//! The node's side of a published volume: what kubelet's stage and the kernel's NVMe/TCP host do,
//! played by rds-sim's userspace initiator. It connects to the subsystem the publish context
//! names, as the host NQN the volume was published to, so the allow list the driver wrote is what
//! lets it in; its writes go through the simulator's NVMe/TCP target, so dropped and refused
//! connections hit them.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rds_sim::nvme::LBA_SHIFT;
use rds_sim::nvme::initiator::{ConnectParams, Initiator, InitiatorError};
use rds_sim::nvme::pdu::Digests;

/// The size of the blocks the workload writes.
pub const BLOCK_BYTES: usize = 4096;
const LBAS_PER_BLOCK: u64 = (BLOCK_BYTES >> LBA_SHIFT) as u64;
/// A stalled target is given up on after this long, as the kernel's I/O timeout would.
const IO_TIMEOUT: Duration = Duration::from_millis(800);

/// Where a published volume is reached: from its publish context, and the node's host NQN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub nqn: String,
    pub host: String,
}

/// A connected controller: the admin queue and one I/O queue.
pub struct Attachment {
    _admin: Initiator<TcpStream>,
    io: Initiator<TcpStream>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot reach the NVMe/TCP target: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Nvme(#[from] InitiatorError),
}

fn queue(
    endpoint: &Endpoint,
    qid: u16,
    cntlid: u16,
) -> Result<(Initiator<TcpStream>, u32), NodeError> {
    let stream =
        TcpStream::connect_timeout(&endpoint.addr, IO_TIMEOUT).map_err(NodeError::Connect)?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(NodeError::Connect)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(NodeError::Connect)?;
    stream.set_nodelay(true).map_err(NodeError::Connect)?;
    let (mut initiator, _) = Initiator::handshake(stream, Digests::default())?;
    let connected = initiator
        .fabrics_connect(&ConnectParams {
            qid,
            sqsize: 31,
            kato_ms: if qid == 0 { 30_000 } else { 0 },
            cntlid,
            subsys_nqn: &endpoint.nqn,
            host_nqn: &endpoint.host,
            host_id: [0x5c; 16],
        })?
        .ok()?;
    Ok((initiator, connected.cqe.dw0()))
}

impl Attachment {
    /// Connects the admin queue, enables the controller and connects an I/O queue to it.
    pub fn connect(endpoint: &Endpoint) -> Result<Attachment, NodeError> {
        let (mut admin, cntlid) = queue(endpoint, 0, 0xffff)?;
        admin.enable()?;
        let (io, _) = queue(endpoint, 1, cntlid as u16)?;
        Ok(Attachment { _admin: admin, io })
    }

    /// Writes `data` (one block) to block `block` and flushes: returns once the target holds it.
    pub fn write(&mut self, block: u32, data: Vec<u8>) -> Result<(), NodeError> {
        self.io.write(u64::from(block) * LBAS_PER_BLOCK, data)?;
        self.io.flush()?;
        Ok(())
    }

    pub fn read(&mut self, block: u32) -> Result<Vec<u8>, NodeError> {
        Ok(self
            .io
            .read(u64::from(block) * LBAS_PER_BLOCK, LBAS_PER_BLOCK as u32)?)
    }
}
