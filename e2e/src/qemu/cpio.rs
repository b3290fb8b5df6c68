//! Writer for the "newc" cpio format, the one the kernel unpacks as an initramfs. Extra files go into a
//! small archive appended to the cached initrd, so adding a binary costs no image rebuild.

use std::collections::BTreeSet;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const DIRECTORY: u32 = 0o040_000;
const REGULAR: u32 = 0o100_000;

#[derive(Debug, Default)]
pub(super) struct Archive {
    bytes: Vec<u8>,
    directories: BTreeSet<String>,
    next_inode: u32,
}

impl Archive {
    /// Adds a regular file at `path` (absolute, in the guest), preceded by entries for its parent
    /// directories: the kernel creates no missing parents while unpacking.
    pub(super) fn add_file(
        &mut self,
        path: &str,
        permissions: u32,
        data: &[u8],
    ) -> Result<(), String> {
        let relative = relative_path(path)?;
        let mut parent = String::new();
        let components: Vec<&str> = relative.split('/').collect();
        for directory in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(directory);
            if self.directories.insert(parent.clone()) {
                self.entry(&parent.clone(), DIRECTORY | 0o755, 2, &[]);
            }
        }
        self.entry(relative, REGULAR | (permissions & 0o7777), 1, data);
        Ok(())
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, 1, &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, links: u32, data: &[u8]) {
        self.next_inode += 1;
        let name_size = name.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            links,
            0, // mtime
            u32::try_from(data.len()).expect("an initramfs entry is smaller than 4 GiB"),
            0, // device major
            0, // device minor
            0, // rdev major
            0, // rdev minor
            u32::try_from(name_size).expect("a path is shorter than 4 GiB"),
            0, // checksum, unused by newc
        ];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

fn relative_path(path: &str) -> Result<&str, String> {
    let relative = path
        .strip_prefix('/')
        .ok_or("the guest path must be absolute")?;
    if relative
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("the guest path must name a file without empty, '.' or '..' components".into());
    }
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads entries back as (name, mode, data), checking the alignment the kernel relies on.
    fn entries(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let total = bytes.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - bytes.len()) % 4, 0, "entry not 4-byte aligned");
            assert_eq!(&bytes[..6], MAGIC.as_bytes());
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap() as usize
            };
            let (mode, size, name_size) = (field(1) as u32, field(6), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + name_size - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[110 + name_size - 1], 0, "name not NUL-terminated");
            let data_start = (110 + name_size).next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            bytes = &bytes[(data_start + size).next_multiple_of(4)..];
            if name == TRAILER {
                assert!(bytes.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn files_come_after_their_parent_directories_and_end_with_a_trailer() {
        let mut archive = Archive::default();
        archive
            .add_file("/opt/rds/bin/plugin", 0o755, b"#!/bin/sh\n")
            .unwrap();
        archive.add_file("/opt/rds/data", 0o644, b"abc").unwrap();
        let entries = entries(&archive.finish());
        let summary: Vec<(&str, u32)> = entries.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
        assert_eq!(
            summary,
            [
                ("opt", 0o040_755),
                ("opt/rds", 0o040_755),
                ("opt/rds/bin", 0o040_755),
                ("opt/rds/bin/plugin", 0o100_755),
                ("opt/rds/data", 0o100_644),
            ]
        );
        assert_eq!(entries[3].2, b"#!/bin/sh\n");
        assert_eq!(entries[4].2, b"abc");
    }

    #[test]
    fn relative_and_dotted_guest_paths_are_refused() {
        let mut archive = Archive::default();
        for path in ["opt/x", "/opt/../etc/passwd", "/opt//x", "/opt/x/", "/"] {
            assert!(
                archive.add_file(path, 0o644, b"").is_err(),
                "{path} accepted"
            );
        }
    }
}
