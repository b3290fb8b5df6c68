//! The Docker engine as testcontainers reaches it.
//!
//! Debian's engine (docker.io 20.10, which `ci/docker.sh` starts) speaks the Engine API up to
//! version 1.41. testcontainers asks bollard for 1.53 and negotiates nothing, so that engine
//! refuses every call ("client version 1.53 is too new"). Every call the resilience suite makes
//! (containers: create, start, stop, kill, inspect, logs; networks: create, connect, disconnect,
//! remove) exists unchanged at 1.41, so a socket of ours stands in between and asks for the version
//! the engine has. An engine that speaks the client's version is reached directly.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::ContainerError;

/// Where Debian's engine listens.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// The Engine API version testcontainers' client (bollard) asks for.
const CLIENT_API: (u32, u32) = (1, 53);

static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Finds the engine and, when it speaks an older API than testcontainers, points testcontainers
/// at a shim that asks for the engine's version. The outcome is kept for [`available`].
///
/// # Safety
/// Sets `DOCKER_HOST` for this process: call it from `main` before any other thread starts.
pub unsafe fn install() {
    INSTALLED.get_or_init(|| {
        let version = engine_api_version(Path::new(ENGINE_SOCKET))?;
        if parse_version(&version).is_some_and(|v| v >= CLIENT_API) {
            return Ok(());
        }
        let socket = start_shim(version)?;
        // SAFETY: the caller guarantees that no other thread runs yet; the shim's thread
        // reads no environment.
        unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display())) };
        Ok(())
    });
}

/// Whether [`install`] found an engine testcontainers can use; why not, when it did not.
pub fn available() -> Result<(), ContainerError> {
    match INSTALLED.get() {
        Some(Ok(())) => Ok(()),
        Some(Err(reason)) => Err(ContainerError::Unavailable(reason.clone())),
        None => Err(ContainerError::Unavailable(
            "the test's main did not call container::engine::install".into(),
        )),
    }
}

/// The engine's `ApiVersion`, from `GET /version` on its socket.
fn engine_api_version(socket: &Path) -> Result<String, String> {
    let unreachable = |e: std::io::Error| {
        format!(
            "no Docker engine answers on {}: {e}; start one with `bash ci/docker.sh` \
             (root: installs and starts Debian's docker.io)",
            socket.display()
        )
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(unreachable)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(unreachable)?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["ApiVersion"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("the Docker engine's /version answer has no ApiVersion: {reply:?}"))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `path_and_query` with its leading `/vX.Y` (if any) replaced by `/v{version}`.
fn with_version(path_and_query: &str, version: &str) -> String {
    if let Some(rest) = path_and_query.strip_prefix("/v")
        && let Some((asked, tail)) = rest.split_once('/')
        && parse_version(asked).is_some()
    {
        return format!("/v{version}/{tail}");
    }
    path_and_query.to_owned()
}

/// Binds the shim's socket (in a directory kept for the life of the process) and serves it on a
/// thread of its own, so that it outlives every test's runtime and the containers' drops.
fn start_shim(version: String) -> Result<PathBuf, String> {
    let failed = |e: std::io::Error| format!("starting the Engine API shim: {e}");
    let dir = tempfile::Builder::new()
        .prefix("rds-e2e-docker-")
        .tempdir()
        .map_err(failed)?
        .keep();
    let socket = dir.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    std::thread::Builder::new()
        .name("docker-api-shim".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::UnixListener::from_std(listener) else {
                    return;
                };
                serve(listener, version).await;
            });
        })
        .map_err(failed)?;
    Ok(socket)
}

async fn serve(listener: tokio::net::UnixListener, version: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let version = version.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| forward(request, version.clone()));
            // A client that hangs up mid-request is no concern of the engine's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends `request` to the engine at `version` on a connection of its own; the answer, streamed
/// bodies included (logs followed), goes back as it comes.
async fn forward(
    mut request: Request<Incoming>,
    version: String,
) -> Result<Response<Incoming>, BoxError> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = with_version(&path, &version).parse()?;
    let stream = tokio::net::UnixStream::connect(ENGINE_SOCKET).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_in_the_path_becomes_the_engines() {
        assert_eq!(
            with_version("/v1.53/containers/abc/json?size=false", "1.41"),
            "/v1.41/containers/abc/json?size=false"
        );
        assert_eq!(with_version("/_ping", "1.41"), "/_ping");
        assert_eq!(with_version("/volumes/x", "1.41"), "/volumes/x");
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(parse_version("1.41").unwrap() < CLIENT_API);
        assert!(parse_version("1.100").unwrap() > CLIENT_API);
        assert_eq!(parse_version("one"), None);
    }
}
