//! `/disk copy src= dst= [src-offset=] [dst-offset=] [size=]`: checks the request and registers
//! the copy; the simulator runs it outside the engine (`crate::copies`) while the command waits.

use super::items::POOL_ID;
use super::{Args, Engine, ExecError};
use crate::copies::{CopyRequest, Endpoint, Running};
use std::sync::Arc;

fn failure(text: &str) -> ExecError {
    ExecError(format!("failure: {text}"))
}

impl Engine {
    pub(super) fn disk_copy(&mut self, args: &Args, top: bool) -> Result<Arc<Running>, ExecError> {
        if !top {
            return Err(failure(
                "rds-sim runs /disk copy only as a command of its own, not inside [ ]",
            ));
        }
        let (src, src_size, _) = self.copy_endpoint(args, "src")?;
        let (dst, dst_size, dst_file) = self.copy_endpoint(args, "dst")?;
        let same = match (src.path.canonicalize(), dst.path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => src.path == dst.path,
        };
        if same {
            return Err(failure("src and dst are the same"));
        }
        let src_offset = args.size("src-offset")?.unwrap_or(0);
        let dst_offset = args.size("dst-offset")?.unwrap_or(0);
        if src_offset > src_size {
            return Err(failure("src-offset is past the end of src"));
        }
        let size = args.size("size")?.unwrap_or(src_size - src_offset);
        if src_offset
            .checked_add(size)
            .is_none_or(|end| end > src_size)
        {
            return Err(failure("src-offset and size go past the end of src"));
        }
        if dst_offset
            .checked_add(size)
            .is_none_or(|end| end > dst_size)
        {
            return Err(failure("dst is smaller than the data to copy"));
        }
        self.store.check_writable(&dst_file)?;
        for side in [&src, &dst] {
            if self.copies.busy(&side.path) {
                return Err(failure(&format!("{} is busy with another copy", side.name)));
            }
        }
        Ok(self.copies.start(CopyRequest {
            src,
            dst,
            src_offset,
            dst_offset,
            size,
        }))
    }

    /// A side of the copy: a file disk by slot or `*id`, else a file by its `/file` name. The
    /// manual types both as enums ("disk, partition or file"), so an unknown name is
    /// `input does not match any value of <param>`. Also gives its size and `/file` name.
    fn copy_endpoint(
        &self,
        args: &Args,
        param: &str,
    ) -> Result<(Endpoint, u64, String), ExecError> {
        let Some(text) = args.text(param) else {
            return Err(failure(&format!("{param} must be set")));
        };
        let no_match = || ExecError(format!("input does not match any value of {param}"));
        let id = text
            .strip_prefix('*')
            .and_then(|hex| u32::from_str_radix(hex, 16).ok());
        if id == Some(POOL_ID) || text == self.store.pool.name {
            return Err(failure("rds-sim copies only type=file disks and files"));
        }
        let disk = self
            .store
            .state
            .disks
            .iter()
            .find(|d| Some(d.id) == id || d.slot == text);
        if let Some(d) = disk {
            let endpoint = Endpoint {
                name: d.slot.clone(),
                path: self.store.host_path(&d.file_path),
            };
            return Ok((endpoint, d.file_size, d.file_path.clone()));
        }
        let name = text.trim_start_matches('/');
        if name.is_empty() || name.split('/').any(|s| s == "..") {
            return Err(no_match());
        }
        let path = self.store.host_path(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok((
                Endpoint {
                    name: name.to_string(),
                    path,
                },
                meta.len(),
                name.to_string(),
            )),
            _ => Err(no_match()),
        }
    }
}
