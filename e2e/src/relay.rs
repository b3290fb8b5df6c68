//! A TCP relay the driver's SSH goes through, so a case can cut the path between the controller
//! and the RDS as a firewall would (HARDWARE_VALIDATION.md TC-06), on any target: rds-sim or a
//! real appliance.
//!
//! A cut is a black hole, not a reset: connections stay open and nothing crosses them, and new
//! connections are accepted and never answered, so the driver meets the timeouts a dropped
//! network gives rather than the quick errors of a refused one. Restoring closes what the cut
//! held, as a firewall's expired state would, and relays new connections again.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    accepting: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays each connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, watching) = watch::channel(false);
        let upstream = upstream.to_owned();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), watching.clone()));
            }
        });
        Ok(Relay {
            addr,
            cut,
            accepting,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Nothing crosses from now until [`Relay::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Relays one connection until either side closes it or a cut ends; a connection made during a
/// cut is held unanswered until the cut ends, then closed.
async fn relay(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        let _ = cut.wait_for(|cut| !cut).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.wait_for(|cut| *cut) => true,
    };
    if was_cut {
        // Held silent while cut; whatever was in flight is lost with the connection.
        let _ = cut.wait_for(|cut| !cut).await;
    }
    let _ = client.shutdown().await;
    let _ = server.shutdown().await;
}
