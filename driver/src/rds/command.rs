//! The RouterOS command lines the driver sends, built from typed values only.
//!
//! A [`Cmd`] is one exec line. Parameter names and keywords are `'static` strings written here;
//! every value comes from a validated type in [`super::value`] or is a number, and every string
//! value and every `where` operand is quoted by [`quote`]. Nothing else can reach the line, so no
//! caller input can add an argument, a command or a substitution.

use std::fmt;
use std::num::NonZeroU16;

use super::value::{ByteSize, Comment, FileText, Nqn, RosPath, Slot, quote};

/// The NVMe/TCP port RouterOS targets listen on by default.
pub const DEFAULT_NVME_PORT: NonZeroU16 = NonZeroU16::new(4420).expect("4420 is not zero");

/// One RouterOS command line, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    line: String,
    verb: &'static str,
    silent: bool,
}

/// A file disk to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub slot: Slot,
    pub file_path: RosPath,
    pub size: ByteSize,
    pub export: Option<NvmeExport>,
    pub comment: Option<Comment>,
}

/// How a disk is exported over NVMe/TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExport {
    pub port: NonZeroU16,
    pub nqn: Nqn,
}

/// Which `/disk` items a print selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskQuery<'a> {
    /// `where slot="<slot>"`
    Slot(&'a Slot),
    /// `where slot~"^<prefix>"`: every slot starting with the prefix (`pvc-`, `snap-`…).
    SlotPrefix(&'a Slot),
    /// `where mount-point="<pool>"`: the disk holding a pool's file system.
    MountPoint(&'a RosPath),
    /// `where comment~"source:<slot>"`: the disks whose comment may record `<slot>` as what
    /// they were copied from (a longer slot starting with it matches too: read the comment).
    Source(&'a Slot),
}

/// Which Btrfs subvolumes a print selects, by `name` (the last part of the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubvolumeQuery<'a> {
    /// `where name="<name>"`
    Name(&'a Slot),
    /// `where name~"^<prefix>"`
    NamePrefix(&'a Slot),
}

/// The output form of a print; [`super::parse::records`] reads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `print detail`: human layout, wrapped at the terminal width.
    Detail,
    /// `:put [print detail as-value]`: one line, `;`-separated, unescaped.
    AsValue,
    /// `:put [:serialize to=json [print detail as-value]]`: exact JSON.
    Json,
}

/// The allow-list value of a volume published to no node: a well-formed host NQN that no host
/// uses, so the export admits nobody. An empty allow-list admits every host, which would leave an
/// unpublished volume reachable by a node that was fenced out.
pub const FENCED_HOST: &str = "nqn.2000-02.com.mikrotik:rds-csi:fenced";

impl Cmd {
    /// `/disk add type=file file-path="…" file-size=<bytes> slot="…" mount-filesystem=no
    /// [nvme-tcp-export=yes nvme-tcp-server-port=<port> nvme-tcp-server-nqn="…"
    /// nvme-tcp-server-allow-host-name="<FENCED_HOST>"] [comment="…"]`.
    ///
    /// A new export admits no host until ControllerPublishVolume names one: an empty allow-list
    /// would admit every host.
    ///
    /// `mount-filesystem=no` keeps RouterOS from mounting the file system a node later writes
    /// into the volume (after a restart it would otherwise find and mount it while the node
    /// has it mounted too); the real RDS LUN scripts set it the same way.
    pub fn disk_add(spec: &DiskSpec) -> Cmd {
        disk_args(Line::new("/disk add"), spec, true).silent()
    }

    /// `/disk add copy-from=[find where slot="<from>"]` followed by the arguments of
    /// [`Cmd::disk_add`], and `nvme-tcp-export=no` when `spec` is not exported.
    ///
    /// What RouterOS copies is unverified (routeros/README.md, assumption 1): documented as a
    /// copy of the item's settings, so every property that matters is given explicitly and the
    /// export is refused outright for a disk that must not be exported, rather than inherited.
    pub fn disk_add_copy_of(from: &Slot, spec: &DiskSpec) -> Cmd {
        let line = disk_args(
            Line::new("/disk add").find_arg("copy-from", from),
            spec,
            true,
        );
        match spec.export {
            Some(_) => line,
            None => line.arg("nvme-tcp-export", Arg::Keyword("no")),
        }
        .silent()
    }

    /// `/disk add type=file file-path="…" slot="…" mount-filesystem=no`: a disk over a file that
    /// exists already (without `file-size` RouterOS attaches the file as it is).
    pub fn disk_attach(slot: &Slot, file: &RosPath) -> Cmd {
        Line::new("/disk add")
            .arg("type", Arg::Keyword("file"))
            .arg("file-path", Arg::Text(file.as_str()))
            .arg("slot", Arg::Text(slot.as_str()))
            .arg("mount-filesystem", Arg::Keyword("no"))
            .silent()
    }

    /// The arguments of [`Cmd::disk_add`] without `file-size`: a disk over the file already at
    /// `spec.file_path`, as it is (a restored subvolume's `volume.img`); `spec.size` is not
    /// sent.
    pub fn disk_attach_as(spec: &DiskSpec) -> Cmd {
        disk_args(Line::new("/disk add"), spec, false).silent()
    }

    /// `/disk copy src="<src>" dst="<dst>"`: a full block copy that prints its progress as
    /// `status: <copied> / <total> (<pct>%)` (REFERENCE.md §6.5).
    pub fn disk_copy(src: &Slot, dst: &Slot) -> Cmd {
        Line::new("/disk copy")
            .arg("src", Arg::Text(src.as_str()))
            .arg("dst", Arg::Text(dst.as_str()))
            .prints()
    }

    /// `/disk set [find where slot="…"] comment="…"`.
    pub fn disk_set_comment(slot: &Slot, comment: &Comment) -> Cmd {
        Line::new("/disk set")
            .find_slot(slot)
            .arg("comment", Arg::Text(comment.as_str()))
            .silent()
    }

    /// `/file add name="<path>" contents="…"`: a small file with known contents.
    pub fn file_add_text(path: &RosPath, text: &FileText) -> Cmd {
        Line::new("/file add")
            .arg("name", Arg::Text(path.as_str()))
            .arg("contents", Arg::Text(text.as_str()))
            .silent()
    }

    /// `:put [/file get "<path>" contents]`: prints the file's contents (files under 60 KiB).
    /// `get` returns the value; only `:put` prints it (the manual's own example).
    pub fn file_get_contents(path: &RosPath) -> Cmd {
        let get = Line::new("/file get")
            .unnamed(path.as_str())
            .keyword("contents");
        Cmd {
            line: format!(":put [{}]", get.0),
            verb: get.1,
            silent: false,
        }
    }

    /// `/disk set [find where slot="…"] file-size=<bytes>` (growing is unverified on hardware:
    /// routeros/README.md, assumption 5).
    pub fn disk_set_size(slot: &Slot, size: ByteSize) -> Cmd {
        Line::new("/disk set")
            .find_slot(slot)
            .arg("file-size", Arg::Number(size.get()))
            .silent()
    }

    /// `/disk set [find where slot="…"] nvme-tcp-server-allow-host-name="…"`: admits exactly
    /// `hosts`; none fences every host out with [`FENCED_HOST`] (an empty value would admit
    /// every host). The value is made by [`super::allow_list::render`].
    pub fn disk_set_allowed_hosts(slot: &Slot, hosts: &[Nqn]) -> Cmd {
        let value = super::allow_list::render(hosts);
        Line::new("/disk set")
            .find_slot(slot)
            .arg("nvme-tcp-server-allow-host-name", Arg::Text(&value))
            .silent()
    }

    /// `/disk set [find where slot="…"] nvme-tcp-export=no nvme-tcp-server-allow-host-name="<FENCED_HOST>"`:
    /// ends the export, which ends every NVMe/TCP connection to it. Whether RouterOS also drops
    /// an established connection of a host taken off the allow-list is undocumented (REFERENCE.md
    /// §13 item 3); ending the export does not depend on it.
    pub fn disk_unexport(slot: &Slot) -> Cmd {
        Line::new("/disk set")
            .find_slot(slot)
            .arg("nvme-tcp-export", Arg::Keyword("no"))
            .arg("nvme-tcp-server-allow-host-name", Arg::Text(FENCED_HOST))
            .silent()
    }

    /// `/disk set [find where slot="…"] nvme-tcp-export=yes nvme-tcp-server-port=<port>
    /// nvme-tcp-server-nqn="…" nvme-tcp-server-allow-host-name="…"`: the export back, admitting
    /// only `hosts` (none: [`FENCED_HOST`]). Port and NQN are set again because whether RouterOS
    /// keeps them while a disk is not exported is undocumented (it does not print them then).
    pub fn disk_export_to(slot: &Slot, export: &NvmeExport, hosts: &[Nqn]) -> Cmd {
        let value = super::allow_list::render(hosts);
        Line::new("/disk set")
            .find_slot(slot)
            .arg("nvme-tcp-export", Arg::Keyword("yes"))
            .arg(
                "nvme-tcp-server-port",
                Arg::Number(export.port.get().into()),
            )
            .arg("nvme-tcp-server-nqn", Arg::Text(export.nqn.as_str()))
            .arg("nvme-tcp-server-allow-host-name", Arg::Text(&value))
            .silent()
    }

    /// `/disk set [find where slot="…"] nvme-tcp-export=yes nvme-tcp-server-allow-host-name=
    /// "<FENCED_HOST>"`: exported under whatever NQN RouterOS gives a disk that names none,
    /// admitting no host. Only `rds-csi doctor`'s probe of that default (REFERENCE.md §13.2);
    /// the driver always names the NQN.
    pub fn disk_export_as_it_is(slot: &Slot) -> Cmd {
        Line::new("/disk set")
            .find_slot(slot)
            .arg("nvme-tcp-export", Arg::Keyword("yes"))
            .arg("nvme-tcp-server-allow-host-name", Arg::Text(FENCED_HOST))
            .silent()
    }

    /// `/disk remove [find where slot="…"]`. The backing file stays: see [`Cmd::file_remove`].
    pub fn disk_remove(slot: &Slot) -> Cmd {
        Line::new("/disk remove").find_slot(slot).silent()
    }

    /// `/disk print detail where …` in the chosen form.
    pub fn disk_print(query: DiskQuery<'_>, form: Form) -> Cmd {
        let filter = match query {
            DiskQuery::Slot(slot) => Filter::equals("slot", slot.as_str()),
            DiskQuery::SlotPrefix(prefix) => Filter::starts_with("slot", prefix.as_str()),
            DiskQuery::MountPoint(pool) => Filter::equals("mount-point", pool.as_str()),
            DiskQuery::Source(source) => Filter {
                property: "comment",
                operator: '~',
                operand: format!("source:{}", escape_regex(source.as_str())),
            },
        };
        print("/disk print", Some(&filter), form)
    }

    /// `/disk print detail` in the chosen form: every disk, whatever it is (the orphan finder
    /// must know every disk that uses a file, not only the driver's).
    pub fn disk_print_all(form: Form) -> Cmd {
        print("/disk print", None, form)
    }

    /// `/file print detail where name~"^<dir>/"` in the chosen form: every file under `dir`.
    pub fn file_print_under(dir: &RosPath, form: Form) -> Cmd {
        print(
            "/file print",
            Some(&Filter::starts_with("name", &format!("{dir}/"))),
            form,
        )
    }

    /// `/file print detail where name~"^<pool>/(.*/)?<file>$"` in the chosen form: every file
    /// called `file` in any directory of the pool.
    pub fn file_print_named(pool: &RosPath, file: &str, form: Form) -> Cmd {
        let pattern = format!(
            "^{}/(.*/)?{}$",
            escape_regex(pool.as_str()),
            escape_regex(file)
        );
        print(
            "/file print",
            Some(&Filter {
                property: "name",
                operator: '~',
                operand: pattern,
            }),
            form,
        )
    }

    /// `/file remove "<path>"`.
    pub fn file_remove(path: &RosPath) -> Cmd {
        Line::new("/file remove").unnamed(path.as_str()).silent()
    }

    /// `/disk btrfs filesystem print detail where label="<label>"`: the Btrfs file system with
    /// this label; nothing when the pool is not Btrfs.
    pub fn btrfs_filesystem_print(label: &RosPath, form: Form) -> Cmd {
        print(
            "/disk btrfs filesystem print",
            Some(&Filter::equals("label", label.as_str())),
            form,
        )
    }

    /// `/disk btrfs subvolume add fs="<fs>" name="<name>" [parent="<parent>"] read-only=yes|no`
    /// (REFERENCE.md §8.2): with a parent, a snapshot of it.
    pub fn subvolume_add(fs: &RosPath, name: &Slot, parent: Option<&Slot>, read_only: bool) -> Cmd {
        let mut line = Line::new("/disk btrfs subvolume add")
            .arg("fs", Arg::Text(fs.as_str()))
            .arg("name", Arg::Text(name.as_str()));
        if let Some(parent) = parent {
            line = line.arg("parent", Arg::Text(parent.as_str()));
        }
        line.arg(
            "read-only",
            Arg::Keyword(if read_only { "yes" } else { "no" }),
        )
        .silent()
    }

    /// `/disk btrfs subvolume remove [find where name="<name>"]`: the subvolume and every file
    /// in it.
    pub fn subvolume_remove(name: &Slot) -> Cmd {
        let verb = "/disk btrfs subvolume remove";
        let filter = Filter::equals("name", name.as_str()).render();
        Cmd {
            line: format!("{verb} [find where {filter}]"),
            verb,
            silent: true,
        }
    }

    /// `/disk btrfs subvolume print detail where name="…"` (or `name~"^<prefix>"`).
    pub fn subvolume_print(query: SubvolumeQuery<'_>, form: Form) -> Cmd {
        let filter = match query {
            SubvolumeQuery::Name(name) => Filter::equals("name", name.as_str()),
            SubvolumeQuery::NamePrefix(prefix) => Filter::starts_with("name", prefix.as_str()),
        };
        print("/disk btrfs subvolume print", Some(&filter), form)
    }

    /// `:put [/file get "<path>" size]`: the file's exact size in bytes (`print` rounds it).
    pub fn file_get_size(path: &RosPath) -> Cmd {
        let get = Line::new("/file get")
            .unnamed(path.as_str())
            .keyword("size");
        Cmd {
            line: format!(":put [{}]", get.0),
            verb: get.1,
            silent: false,
        }
    }

    /// `/disk monitor-traffic "<slot>" once`: one key/value block of counters.
    pub fn disk_monitor_traffic(slot: &Slot) -> Cmd {
        Line::new("/disk monitor-traffic")
            .unnamed(slot.as_str())
            .keyword("once")
            .prints()
    }

    /// `/system resource print`: a key/value block with `version: 7.24.4 (stable)`.
    pub fn system_resource() -> Cmd {
        Line::new("/system resource print").prints()
    }

    /// `/system identity print`: `  name: <identity>`.
    pub fn system_identity() -> Cmd {
        Line::new("/system identity print").prints()
    }

    /// The line exactly as sent.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// The command path without its arguments (`/disk add`, `/file print`): a metric label that
    /// can never carry a volume name or any other caller value.
    pub fn verb(&self) -> &'static str {
        self.verb
    }

    /// Whether RouterOS prints nothing when this command succeeds (add, set, remove), so that any
    /// output is an error ([`super::error::expect_silent`]).
    pub fn is_silent(&self) -> bool {
        self.silent
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// The arguments of a file disk, after the verb (and a `copy-from`); `sized` adds `file-size`,
/// which makes a new file.
fn disk_args(line: Line, spec: &DiskSpec, sized: bool) -> Line {
    let mut line = line
        .arg("type", Arg::Keyword("file"))
        .arg("file-path", Arg::Text(spec.file_path.as_str()));
    if sized {
        line = line.arg("file-size", Arg::Number(spec.size.get()));
    }
    let mut line = line
        .arg("slot", Arg::Text(spec.slot.as_str()))
        .arg("mount-filesystem", Arg::Keyword("no"));
    if let Some(export) = &spec.export {
        line = line
            .arg("nvme-tcp-export", Arg::Keyword("yes"))
            .arg(
                "nvme-tcp-server-port",
                Arg::Number(export.port.get().into()),
            )
            .arg("nvme-tcp-server-nqn", Arg::Text(export.nqn.as_str()))
            .arg("nvme-tcp-server-allow-host-name", Arg::Text(FENCED_HOST));
    }
    if let Some(comment) = &spec.comment {
        line = line.arg("comment", Arg::Text(comment.as_str()));
    }
    line
}

/// `verb` is the menu's print command (`/disk print`), whole so that it can be [`Cmd::verb`];
/// without a filter it prints every item.
fn print(verb: &'static str, filter: Option<&Filter>, form: Form) -> Cmd {
    let filter = filter.map_or_else(String::new, |f| format!(" where {}", f.render()));
    let inner = |as_value: &str| format!("{verb} detail{as_value}{filter}");
    let line = match form {
        Form::Detail => inner(""),
        Form::AsValue => format!(":put [{}]", inner(" as-value")),
        Form::Json => format!(":put [:serialize to=json [{}]]", inner(" as-value")),
    };
    Cmd {
        line,
        verb,
        silent: false,
    }
}

/// A parameter value. Only these can be written after `name=`.
enum Arg<'a> {
    /// A fixed enum or boolean word written here (`file`, `yes`), never caller input.
    Keyword(&'static str),
    Number(u64),
    /// Any string, always quoted.
    Text(&'a str),
}

/// Assembles a line left to right; names and keywords are `'static`, values go through [`Arg`].
struct Line(String, &'static str);

impl Line {
    fn new(path: &'static str) -> Self {
        Line(path.to_owned(), path)
    }

    fn arg(mut self, name: &'static str, value: Arg<'_>) -> Self {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push('=');
        match value {
            Arg::Keyword(word) => self.0.push_str(word),
            Arg::Number(n) => self.0.push_str(&n.to_string()),
            Arg::Text(text) => self.0.push_str(&quote(text)),
        }
        self
    }

    /// The unnamed parameter after the verb, quoted.
    fn unnamed(mut self, text: &str) -> Self {
        self.0.push(' ');
        self.0.push_str(&quote(text));
        self
    }

    fn keyword(mut self, word: &'static str) -> Self {
        self.0.push(' ');
        self.0.push_str(word);
        self
    }

    /// `[find where slot="…"]` as the item selector.
    fn find_slot(mut self, slot: &Slot) -> Self {
        self.0.push(' ');
        self.0.push_str(&find_where_slot(slot));
        self
    }

    /// `name=[find where slot="…"]`: an argument naming another item.
    fn find_arg(mut self, name: &'static str, slot: &Slot) -> Self {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&find_where_slot(slot));
        self
    }

    fn silent(self) -> Cmd {
        Cmd {
            line: self.0,
            verb: self.1,
            silent: true,
        }
    }

    fn prints(self) -> Cmd {
        Cmd {
            line: self.0,
            verb: self.1,
            silent: false,
        }
    }
}

fn find_where_slot(slot: &Slot) -> String {
    format!(
        "[find where {}]",
        Filter::equals("slot", slot.as_str()).render()
    )
}

/// A `where` condition on one property, its operand always quoted.
struct Filter {
    property: &'static str,
    operator: char,
    operand: String,
}

impl Filter {
    fn equals(property: &'static str, value: &str) -> Self {
        Filter {
            property,
            operator: '=',
            operand: value.to_owned(),
        }
    }

    /// `property~"^<prefix>"` with the prefix's regex metacharacters escaped. `~` is an unanchored
    /// POSIX ERE, hence the `^`.
    fn starts_with(property: &'static str, prefix: &str) -> Self {
        Filter {
            property,
            operator: '~',
            operand: format!("^{}", escape_regex(prefix)),
        }
    }

    fn render(&self) -> String {
        format!("{}{}{}", self.property, self.operator, quote(&self.operand))
    }
}

/// `text` with the POSIX ERE metacharacters escaped, so it matches only itself.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(s: &str) -> Slot {
        Slot::parse(s).unwrap()
    }

    fn path(s: &str) -> RosPath {
        RosPath::parse(s).unwrap()
    }

    fn spec() -> DiskSpec {
        DiskSpec {
            slot: slot("pvc-x"),
            file_path: path("raid10/csi/pvc-x.img"),
            size: ByteSize::new(1_073_741_824).unwrap(),
            export: Some(NvmeExport {
                port: DEFAULT_NVME_PORT,
                nqn: Nqn::parse("nqn.2026-09.com.example:rds-csi:pvc-x").unwrap(),
            }),
            comment: Some(Comment::new("rds-csi:1,kind:volume").unwrap()),
        }
    }

    #[test]
    fn disk_add_quotes_every_string() {
        let cmd = Cmd::disk_add(&spec());
        assert_eq!(
            cmd.as_str(),
            "/disk add type=file file-path=\"raid10/csi/pvc-x.img\" file-size=1073741824 slot=\"pvc-x\" \
             mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=\"nqn.2026-09.com.example:rds-csi:pvc-x\" \
             nvme-tcp-server-allow-host-name=\"nqn.2000-02.com.mikrotik:rds-csi:fenced\" \
             comment=\"rds-csi:1,kind:volume\""
        );
        assert!(cmd.is_silent());
    }

    #[test]
    fn attaching_an_existing_file_sends_everything_but_its_size() {
        let cmd = Cmd::disk_attach_as(&spec());
        assert_eq!(
            cmd.as_str(),
            "/disk add type=file file-path=\"raid10/csi/pvc-x.img\" slot=\"pvc-x\" \
             mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=\"nqn.2026-09.com.example:rds-csi:pvc-x\" \
             nvme-tcp-server-allow-host-name=\"nqn.2000-02.com.mikrotik:rds-csi:fenced\" \
             comment=\"rds-csi:1,kind:volume\""
        );
        assert!(cmd.is_silent());
    }

    #[test]
    fn disk_add_without_export_or_comment_omits_them() {
        let spec = DiskSpec {
            export: None,
            comment: None,
            ..spec()
        };
        assert_eq!(
            Cmd::disk_add(&spec).as_str(),
            "/disk add type=file file-path=\"raid10/csi/pvc-x.img\" file-size=1073741824 slot=\"pvc-x\" \
             mount-filesystem=no"
        );
    }

    #[test]
    fn comment_specials_are_escaped() {
        let spec = DiskSpec {
            export: None,
            comment: Some(Comment::new(r#"a "b" \c $d [e]"#).unwrap()),
            ..spec()
        };
        assert!(
            Cmd::disk_add(&spec)
                .as_str()
                .ends_with(r#" comment="a \"b\" \\c \$d [e]""#)
        );
    }

    #[test]
    fn mutations_select_by_quoted_slot() {
        let x = slot("x");
        let size = ByteSize::new(2_147_483_648).unwrap();
        assert_eq!(
            Cmd::disk_set_size(&x, size).as_str(),
            "/disk set [find where slot=\"x\"] file-size=2147483648"
        );
        let host = Nqn::parse("nqn.2014-08.org.nvmexpress:uuid:abc").unwrap();
        assert_eq!(
            Cmd::disk_set_allowed_hosts(&x, std::slice::from_ref(&host)).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:abc\""
        );
        let other = Nqn::parse("nqn.2014-08.org.nvmexpress:uuid:def").unwrap();
        assert_eq!(
            Cmd::disk_set_allowed_hosts(&x, &[host.clone(), other.clone()]).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:abc,nqn.2014-08.org.nvmexpress:uuid:def\""
        );
        assert_eq!(
            Cmd::disk_set_allowed_hosts(&x, &[]).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-server-allow-host-name=\"nqn.2000-02.com.mikrotik:rds-csi:fenced\""
        );
        assert_eq!(
            Cmd::disk_unexport(&x).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-export=no nvme-tcp-server-allow-host-name=\"nqn.2000-02.com.mikrotik:rds-csi:fenced\""
        );
        let export = NvmeExport {
            port: NonZeroU16::new(4420).unwrap(),
            nqn: Nqn::parse("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
        };
        assert_eq!(
            Cmd::disk_export_to(&x, &export, &[]).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" \
             nvme-tcp-server-allow-host-name=\"nqn.2000-02.com.mikrotik:rds-csi:fenced\""
        );
        assert_eq!(
            Cmd::disk_export_to(&x, &export, &[other]).as_str(),
            "/disk set [find where slot=\"x\"] nvme-tcp-export=yes nvme-tcp-server-port=4420 \
             nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" \
             nvme-tcp-server-allow-host-name=\"nqn.2014-08.org.nvmexpress:uuid:def\""
        );
        assert_eq!(
            Cmd::disk_remove(&x).as_str(),
            "/disk remove [find where slot=\"x\"]"
        );
        assert_eq!(
            Cmd::file_remove(&path("/raid10/csi/x.img")).as_str(),
            "/file remove \"raid10/csi/x.img\""
        );
        for cmd in [
            Cmd::disk_set_size(&x, size),
            Cmd::disk_remove(&x),
            Cmd::file_remove(&path("a")),
        ] {
            assert!(cmd.is_silent(), "{cmd}");
        }
    }

    #[test]
    fn prints_in_each_form() {
        let x = slot("x");
        let pvc = slot("pvc-");
        let pool = path("raid10");
        assert_eq!(
            Cmd::disk_print(DiskQuery::Slot(&x), Form::Detail).as_str(),
            "/disk print detail where slot=\"x\""
        );
        assert_eq!(
            Cmd::disk_print(DiskQuery::SlotPrefix(&pvc), Form::Detail).as_str(),
            "/disk print detail where slot~\"^pvc-\""
        );
        assert_eq!(
            Cmd::disk_print(DiskQuery::MountPoint(&pool), Form::Detail).as_str(),
            "/disk print detail where mount-point=\"raid10\""
        );
        assert_eq!(
            Cmd::disk_print(DiskQuery::Source(&x), Form::Detail).as_str(),
            "/disk print detail where comment~\"source:x\""
        );
        assert_eq!(
            Cmd::disk_print(DiskQuery::Slot(&x), Form::AsValue).as_str(),
            ":put [/disk print detail as-value where slot=\"x\"]"
        );
        assert_eq!(
            Cmd::disk_print(DiskQuery::Slot(&x), Form::Json).as_str(),
            ":put [:serialize to=json [/disk print detail as-value where slot=\"x\"]]"
        );
        assert_eq!(
            Cmd::file_print_under(&path("raid10/csi"), Form::Detail).as_str(),
            "/file print detail where name~\"^raid10/csi/\""
        );
        assert!(!Cmd::disk_print(DiskQuery::Slot(&x), Form::Detail).is_silent());
        assert_eq!(
            Cmd::disk_print_all(Form::Detail).as_str(),
            "/disk print detail"
        );
        assert_eq!(
            Cmd::disk_print_all(Form::AsValue).as_str(),
            ":put [/disk print detail as-value]"
        );
    }

    #[test]
    fn file_prefix_dots_are_literal_in_the_regex() {
        // `\.` in the regex is written `\\.` inside the RouterOS string.
        assert_eq!(
            Cmd::file_print_under(&path("pool.1/csi"), Form::Detail).as_str(),
            "/file print detail where name~\"^pool\\\\.1/csi/\""
        );
    }

    #[test]
    fn files_by_name_are_searched_in_every_directory_of_the_pool() {
        assert_eq!(
            Cmd::file_print_named(&path("pool.1"), "pvc-a.img", Form::Detail).as_str(),
            "/file print detail where name~\"^pool\\\\.1/(.*/)?pvc-a\\\\.img\\$\""
        );
    }

    #[test]
    fn copies_name_their_source_by_quoted_slot() {
        let snapshot = DiskSpec {
            slot: slot("snap-x"),
            file_path: path("raid10/csi/snap-x.img"),
            export: None,
            ..spec()
        };
        assert_eq!(
            Cmd::disk_add_copy_of(&slot("pvc-x"), &snapshot).as_str(),
            "/disk add copy-from=[find where slot=\"pvc-x\"] type=file \
             file-path=\"raid10/csi/snap-x.img\" file-size=1073741824 slot=\"snap-x\" \
             mount-filesystem=no comment=\"rds-csi:1,kind:volume\" nvme-tcp-export=no"
        );
        let restored = Cmd::disk_add_copy_of(&slot("snap-x"), &spec());
        assert!(
            restored
                .as_str()
                .starts_with("/disk add copy-from=[find where slot=\"snap-x\"] type=file "),
            "{restored}"
        );
        assert!(restored.as_str().contains(" nvme-tcp-export=yes "));
        assert!(!restored.as_str().contains("nvme-tcp-export=no"));
        let copy = Cmd::disk_copy(&slot("pvc-x"), &slot("snap-x"));
        assert_eq!(copy.as_str(), "/disk copy src=\"pvc-x\" dst=\"snap-x\"");
        assert!(!copy.is_silent());
        assert_eq!(
            Cmd::disk_attach(&slot("probe-a"), &path("raid10/csi/probe-a.img")).as_str(),
            "/disk add type=file file-path=\"raid10/csi/probe-a.img\" slot=\"probe-a\" \
             mount-filesystem=no"
        );
        assert_eq!(
            Cmd::disk_set_comment(&slot("snap-x"), &Comment::new("a \"b\"").unwrap()).as_str(),
            "/disk set [find where slot=\"snap-x\"] comment=\"a \\\"b\\\"\""
        );
    }

    #[test]
    fn small_files_are_written_and_read_quoted() {
        let file = path("raid10/csi/probe.img");
        let text = FileText::new("known $text").unwrap();
        let add = Cmd::file_add_text(&file, &text);
        assert_eq!(
            add.as_str(),
            "/file add name=\"raid10/csi/probe.img\" contents=\"known \\$text\""
        );
        assert!(add.is_silent());
        let get = Cmd::file_get_contents(&file);
        assert_eq!(
            get.as_str(),
            ":put [/file get \"raid10/csi/probe.img\" contents]"
        );
        assert!(!get.is_silent());
    }

    #[test]
    fn subvolume_commands_quote_names_and_spell_read_only() {
        let fs = path("storage-pool");
        assert_eq!(
            Cmd::subvolume_add(&fs, &slot("pvc-a"), None, false).as_str(),
            "/disk btrfs subvolume add fs=\"storage-pool\" name=\"pvc-a\" read-only=no"
        );
        let snapshot = Cmd::subvolume_add(&fs, &slot("snap-b"), Some(&slot("pvc-a")), true);
        assert_eq!(
            snapshot.as_str(),
            "/disk btrfs subvolume add fs=\"storage-pool\" name=\"snap-b\" parent=\"pvc-a\" \
             read-only=yes"
        );
        assert!(snapshot.is_silent());
        assert_eq!(
            Cmd::subvolume_remove(&slot("snap-b")).as_str(),
            "/disk btrfs subvolume remove [find where name=\"snap-b\"]"
        );
        assert_eq!(
            Cmd::subvolume_print(SubvolumeQuery::NamePrefix(&slot("snap-")), Form::Detail).as_str(),
            "/disk btrfs subvolume print detail where name~\"^snap-\""
        );
        assert_eq!(
            Cmd::btrfs_filesystem_print(&fs, Form::Detail).as_str(),
            "/disk btrfs filesystem print detail where label=\"storage-pool\""
        );
        assert_eq!(
            Cmd::file_get_size(&path("storage-pool/snap-b/volume.img")).as_str(),
            ":put [/file get \"storage-pool/snap-b/volume.img\" size]"
        );
    }

    #[test]
    fn system_and_monitor_commands() {
        assert_eq!(Cmd::system_resource().as_str(), "/system resource print");
        assert_eq!(Cmd::system_identity().as_str(), "/system identity print");
        let cmd = Cmd::disk_monitor_traffic(&slot("x"));
        assert_eq!(cmd.as_str(), "/disk monitor-traffic \"x\" once");
        assert!(!cmd.is_silent());
    }

    /// The verb is the metric label: the command path alone, whatever the arguments.
    #[test]
    fn verbs_carry_no_argument() {
        let x = slot("pvc-x");
        let pool = path("raid10");
        for (cmd, verb) in [
            (Cmd::disk_remove(&x), "/disk remove"),
            (
                Cmd::disk_set_size(&x, ByteSize::new(1 << 30).unwrap()),
                "/disk set",
            ),
            (
                Cmd::disk_print(DiskQuery::Slot(&x), Form::AsValue),
                "/disk print",
            ),
            (Cmd::file_print_under(&pool, Form::Detail), "/file print"),
            (Cmd::file_get_size(&pool), "/file get"),
            (Cmd::subvolume_remove(&x), "/disk btrfs subvolume remove"),
            (Cmd::system_resource(), "/system resource print"),
        ] {
            assert_eq!(cmd.verb(), verb, "{cmd}");
        }
    }
}
