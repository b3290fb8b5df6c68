//! CSI's transport: gRPC over a UNIX domain socket named by `CSI_ENDPOINT`
//! (the spec allows no other transport).
//!
//! The plugin binary parses its endpoint with [`ListenAddr::parse`], binds it
//! with [`Listener::bind`] and serves its tonic [`Router`] until shutdown;
//! tests and tools reach a plugin with [`connect_unix`] or [`connect_tcp`].
//!
//! `tcp://IP:PORT` exists for tests only: it lets a host drive a node plugin
//! inside a virtual machine through a forwarded port. It has no
//! authentication, so a production plugin always listens on a UNIX socket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint};

const UNIX_SCHEME: &str = "unix";
const TCP_SCHEME: &str = "tcp";
const ENDPOINT_FORM: &str = "unix:///absolute/path/to/csi.sock";
const TCP_FORM: &str = "tcp://IP:PORT (tests only)";

/// Why a `CSI_ENDPOINT` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("CSI endpoint is empty; set CSI_ENDPOINT to {ENDPOINT_FORM}")]
    Empty,
    #[error(
        "CSI endpoint {endpoint:?} uses the {scheme}:// scheme, but CSI plugins serve only \
         UNIX domain sockets; use {ENDPOINT_FORM}"
    )]
    UnsupportedScheme { endpoint: String, scheme: String },
    #[error("CSI endpoint {0:?} is not of the form {ENDPOINT_FORM}")]
    Malformed(String),
    #[error(
        "CSI endpoint {0:?} is not of the form {TCP_FORM}: the host must be an IP address \
         (IPv6 in brackets) and the port a number"
    )]
    MalformedTcp(String),
}

/// Where a plugin serves: the spec's UNIX socket, or a TCP address for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// Accepts what [`parse_endpoint`] accepts, and `tcp://IP:PORT`.
    pub fn parse(endpoint: &str) -> Result<ListenAddr, EndpointError> {
        match endpoint.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(TCP_SCHEME) => rest
                .parse()
                .map(ListenAddr::Tcp)
                .map_err(|_| EndpointError::MalformedTcp(endpoint.to_owned())),
            _ => parse_endpoint(endpoint).map(ListenAddr::Unix),
        }
    }
}

/// Extracts the socket path from a `CSI_ENDPOINT` of the spec's form
/// `unix:///path/to/socket.sock`.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf, EndpointError> {
    if endpoint.is_empty() {
        return Err(EndpointError::Empty);
    }
    let malformed = || EndpointError::Malformed(endpoint.to_owned());
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case(UNIX_SCHEME) {
        return Err(EndpointError::UnsupportedScheme {
            endpoint: endpoint.to_owned(),
            scheme: scheme.to_owned(),
        });
    }
    // An empty authority leaves the absolute path; `unix://host/x` or
    // `unix://relative` would silently resolve against the working directory.
    if !rest.starts_with('/') || rest.trim_end_matches('/').is_empty() {
        return Err(malformed());
    }
    Ok(PathBuf::from(rest))
}

/// Why the gRPC server could not be started or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create directory {} for the CSI socket: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "refusing to replace {}: it exists and is not a socket; remove it or point \
         CSI_ENDPOINT elsewhere",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error("cannot inspect or remove stale CSI socket {}: {source}", path.display())]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot listen on CSI socket {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("gRPC server on CSI socket {} failed: {source}", path.display())]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("cannot listen on {addr} for CSI: {source}")]
    BindTcp { addr: SocketAddr, source: io::Error },
    #[error("gRPC server on {addr} failed: {source}")]
    ServeTcp {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
}

/// A bound CSI endpoint of either kind.
#[derive(Debug)]
pub enum Listener {
    Unix(BoundSocket),
    Tcp {
        listener: TcpListener,
        addr: SocketAddr,
    },
}

impl Listener {
    /// Binds `addr` (see [`BoundSocket::bind`] for a UNIX socket). Must be
    /// called within a tokio runtime.
    pub fn bind(addr: &ListenAddr) -> Result<Listener, ServeError> {
        match addr {
            ListenAddr::Unix(path) => BoundSocket::bind(path).map(Listener::Unix),
            ListenAddr::Tcp(wanted) => {
                let bind_error = |source| ServeError::BindTcp {
                    addr: *wanted,
                    source,
                };
                let std_listener = std::net::TcpListener::bind(wanted).map_err(bind_error)?;
                std_listener.set_nonblocking(true).map_err(bind_error)?;
                // Port 0 asks for any free port; report the one chosen.
                let addr = std_listener.local_addr().map_err(bind_error)?;
                let listener = TcpListener::from_std(std_listener).map_err(bind_error)?;
                Ok(Listener::Tcp { listener, addr })
            }
        }
    }

    /// Serves `router` until `shutdown` resolves.
    pub async fn serve<F>(self, router: Router, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()>,
    {
        match self {
            Listener::Unix(socket) => socket.serve(router, shutdown).await,
            Listener::Tcp { listener, addr } => router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
                .map_err(|source| ServeError::ServeTcp { addr, source }),
        }
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Unix(socket) => write!(f, "{UNIX_SCHEME}://{}", socket.path().display()),
            Listener::Tcp { addr, .. } => write!(f, "{TCP_SCHEME}://{addr}"),
        }
    }
}

/// A listening CSI socket. The socket file is removed when this value (or
/// the future returned by [`BoundSocket::serve`]) is dropped.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    file: SocketFile,
}

impl BoundSocket {
    /// Creates the parent directory, replaces a stale socket left by an
    /// earlier run, and listens at `path`. Must be called within a tokio
    /// runtime.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ServeError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(|source| ServeError::Bind {
            path: path.to_owned(),
            source,
        })?;
        let identity = std::fs::symlink_metadata(path)
            .map(|meta| FileIdentity::of(&meta))
            .map_err(|source| ServeError::Bind {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            listener,
            file: SocketFile {
                path: path.to_owned(),
                identity,
            },
        })
    }

    /// The socket's filesystem path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Serves `router` until `shutdown` resolves, then removes the socket.
    pub async fn serve<F>(self, router: Router, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()>,
    {
        let Self { listener, file } = self;
        router
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await
            .map_err(|source| ServeError::Serve {
                path: file.path.clone(),
                source,
            })
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), ServeError> {
    let stale = |source| ServeError::RemoveStale {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(stale(err)),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(stale),
        Ok(_) => Err(ServeError::NotASocket {
            path: path.to_owned(),
        }),
    }
}

/// The socket file this process created. It is removed only while it is
/// still that file, so a socket re-created meanwhile by another instance
/// (say, the next pod of a rolling update) is left alone.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    identity: FileIdentity,
}

/// Device and inode, plus change time because a freed inode number is
/// promptly reused for the next file created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| FileIdentity::of(&meta) == self.identity);
        if !ours {
            return;
        }
        if let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.path.display(), error = %err, "cannot remove CSI socket");
        }
    }
}

/// Why a client could not reach a CSI socket.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "CSI socket path {} is not valid UTF-8, which the gRPC client cannot address",
        .0.display()
    )]
    NonUtf8Path(PathBuf),
    #[error(
        "cannot connect to CSI socket {}: {source}; is the plugin running and listening there?",
        path.display()
    )]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to the CSI plugin at {addr}: {source}; is it listening there?")]
    ConnectTcp {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
}

/// Opens a gRPC channel to the plugin listening on the UNIX socket `path`.
pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Channel, ConnectError> {
    let path = path.as_ref();
    let utf8 = path
        .to_str()
        .ok_or_else(|| ConnectError::NonUtf8Path(path.to_owned()))?;
    let connect_error = |source| ConnectError::Connect {
        path: path.to_owned(),
        source,
    };
    // tonic dials `unix:` endpoints itself (tokio UnixStream under hyper).
    Endpoint::from_shared(format!("{UNIX_SCHEME}://{utf8}"))
        .map_err(connect_error)?
        .connect()
        .await
        .map_err(connect_error)
}

/// Opens a gRPC channel to a plugin listening on `tcp://addr` (tests only).
pub async fn connect_tcp(addr: SocketAddr) -> Result<Channel, ConnectError> {
    let connect_error = |source| ConnectError::ConnectTcp { addr, source };
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(connect_error)?
        .connect()
        .await
        .map_err(connect_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_form_yields_the_socket_path() {
        assert_eq!(
            parse_endpoint("unix:///csi/csi.sock"),
            Ok(PathBuf::from("/csi/csi.sock"))
        );
        assert_eq!(
            parse_endpoint("UNIX:///var/lib/kubelet/plugins/rds/csi.sock"),
            Ok(PathBuf::from("/var/lib/kubelet/plugins/rds/csi.sock"))
        );
    }

    #[test]
    fn empty_endpoint_is_rejected() {
        assert_eq!(parse_endpoint(""), Err(EndpointError::Empty));
    }

    #[test]
    fn network_schemes_are_rejected_by_name() {
        for (endpoint, scheme) in [
            ("tcp://127.0.0.1:10000", "tcp"),
            ("dns:///csi.example.com:443", "dns"),
            ("http://localhost/csi.sock", "http"),
        ] {
            let err = parse_endpoint(endpoint).unwrap_err();
            assert_eq!(
                err,
                EndpointError::UnsupportedScheme {
                    endpoint: endpoint.to_owned(),
                    scheme: scheme.to_owned(),
                }
            );
            let message = err.to_string();
            assert!(message.contains(endpoint), "{message}");
            assert!(message.contains(ENDPOINT_FORM), "{message}");
        }
    }

    #[test]
    fn listen_addr_takes_unix_sockets_and_tcp_ip_addresses() {
        assert_eq!(
            ListenAddr::parse("unix:///csi/csi.sock"),
            Ok(ListenAddr::Unix(PathBuf::from("/csi/csi.sock")))
        );
        assert_eq!(
            ListenAddr::parse("tcp://0.0.0.0:10000"),
            Ok(ListenAddr::Tcp(([0, 0, 0, 0], 10000).into()))
        );
        assert_eq!(
            ListenAddr::parse("TCP://[::1]:7"),
            Ok(ListenAddr::Tcp("[::1]:7".parse().unwrap()))
        );
        for endpoint in ["tcp://localhost:10000", "tcp://10.0.0.1", "tcp://:80"] {
            assert_eq!(
                ListenAddr::parse(endpoint),
                Err(EndpointError::MalformedTcp(endpoint.to_owned())),
                "{endpoint}"
            );
        }
        assert!(matches!(
            ListenAddr::parse("dns:///csi.example.com:443"),
            Err(EndpointError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn endpoints_without_an_absolute_unix_path_are_malformed() {
        for endpoint in [
            "/csi/csi.sock",
            "csi.sock",
            "unix:/csi/csi.sock",
            "unix:csi.sock",
            "unix://csi.sock",
            "unix://host/csi/csi.sock",
            "unix://",
            "unix:///",
        ] {
            assert_eq!(
                parse_endpoint(endpoint),
                Err(EndpointError::Malformed(endpoint.to_owned())),
                "{endpoint}"
            );
        }
    }
}
