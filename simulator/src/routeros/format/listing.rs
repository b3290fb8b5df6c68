//! The list prints: `print detail` and `print terse`.
//!
//! Both start each item with the same prefix: the index right-aligned in at least two columns, a
//! space, then (when any printed item carries a flag) one column per flag group and a space.

use super::{CRLF, FlagDef, Item};

/// Continuation lines of the `Flags:` legend are indented by the width of `Flags: `.
const LEGEND_INDENT: usize = 7;

/// `print detail`: the `Flags:` legend, then each item as wrapped `name=value` tokens.
///
/// Layout (REFERENCE.md §5.2, captures.md §1 and §2):
/// * The legend lists only the flags some printed item carries, grouped as in `flags` (groups
///   ordered by their first flag there), groups separated by `; ` and letters of one group by
///   `, `. It wraps between entries, dropping the separator at the break, onto lines indented
///   by 7. No legend (and no flag columns) when no printed item carries a flag.
/// * Each item starts `<index> <flag columns> `, the index right-aligned in two columns (a longer
///   index widens only its own item's prefix); a group's column shows the first of its flags the
///   item carries, else a space. A comment follows as `;;; text`, not wrapped (further comment
///   lines at column 0), and the properties then start on the next line.
/// * Tokens are packed greedily: **a line holds at most `width - 1` characters**, the index and
///   flag columns included (a terminal that wraps at its last column would otherwise insert a blank
///   line). Continuation lines are indented to where the first property started. A token longer
///   than a whole continuation line starts on a fresh line and is cut wherever the line is full.
/// * Items are separated by a line holding one space. Zero items print nothing.
///
/// Evidence for the width rule: in captures.md §2 (a terminal of about 240 columns) a 238-character
/// line is kept and a 241-character one is wrapped, and the 7.24 manual's `/file print detail` at
/// 80 columns keeps a 79-character line; this reproduces both captures for widths 239 to 241.
pub fn detail(items: &[Item], flags: &[FlagDef], width: usize) -> String {
    let legend = Legend::new(items, flags);
    let limit = width.saturating_sub(1);
    let mut out = String::new();
    legend.write(&mut out, limit);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
            out.push_str(CRLF);
        }
        write_detail_item(&mut out, item, &legend, limit);
    }
    out
}

/// The menu's whole `Flags:` legend and nothing else: an empty `print` in the `legend` position
/// of the `empty-print` quirk.
pub fn legend(flags: &[FlagDef], width: usize) -> String {
    let mut out = String::new();
    Legend::grouped(flags.iter()).write(&mut out, width.saturating_sub(1));
    out
}

/// `print terse`: one unwrapped line per item, `<index> <flag columns> ` then `comment=` (when
/// there is one) and every property as `name=value`, values unquoted and unescaped, numbers
/// without separators, sizes human-readable as in `detail`, empty values as `name=`. No legend,
/// no separator lines (REFERENCE.md §5.3).
pub fn terse(items: &[Item], flags: &[FlagDef]) -> String {
    let legend = Legend::new(items, flags);
    let mut out = String::new();
    for item in items {
        let mut tokens = Vec::with_capacity(item.props.len() + 1);
        if let Some(comment) = &item.comment {
            tokens.push(format!("comment={comment}"));
        }
        tokens.extend(
            item.props
                .iter()
                .map(|(name, value)| format!("{name}={}", value.terse_text())),
        );
        out.push_str(&legend.prefix(item));
        out.push_str(&tokens.join(" "));
        out.push_str(CRLF);
    }
    out
}

/// The flags that some printed item carries, in legend order, grouped into columns.
struct Legend<'a> {
    groups: Vec<Vec<&'a FlagDef>>,
}

impl<'a> Legend<'a> {
    fn new(items: &[Item], flags: &'a [FlagDef]) -> Self {
        Legend::grouped(
            flags
                .iter()
                .filter(|def| items.iter().any(|item| item.flags.contains(&def.letter))),
        )
    }

    /// `flags` in columns, a group's letters together, groups in order of their first flag.
    fn grouped(flags: impl Iterator<Item = &'a FlagDef>) -> Self {
        let mut groups: Vec<Vec<&FlagDef>> = Vec::new();
        for def in flags {
            match groups.iter_mut().find(|group| group[0].group == def.group) {
                Some(group) => group.push(def),
                None => groups.push(vec![def]),
            }
        }
        Legend { groups }
    }

    /// The `Flags:` lines, wrapped between entries so that no line exceeds `limit`.
    fn write(&self, out: &mut String, limit: usize) {
        if self.groups.is_empty() {
            return;
        }
        let mut line = String::from("Flags: ");
        let mut line_is_empty = true;
        for group in &self.groups {
            for (position, def) in group.iter().enumerate() {
                let entry = format!("{} - {}", def.letter, def.name);
                let separator = if position == 0 { "; " } else { ", " };
                if !line_is_empty && line.len() + separator.len() + entry.len() > limit {
                    out.push_str(&line);
                    out.push_str(CRLF);
                    line = " ".repeat(LEGEND_INDENT);
                    line_is_empty = true;
                }
                if !line_is_empty {
                    line.push_str(separator);
                }
                line.push_str(&entry);
                line_is_empty = false;
            }
        }
        out.push_str(&line);
        out.push_str(CRLF);
    }

    /// `<index> <flag columns> `, or `<index> ` when no flag is in the legend.
    fn prefix(&self, item: &Item) -> String {
        let mut prefix = format!("{:>2} ", item.index);
        if !self.groups.is_empty() {
            for group in &self.groups {
                let shown = group.iter().find(|def| item.flags.contains(&def.letter));
                prefix.push(shown.map_or(' ', |def| def.letter));
            }
            prefix.push(' ');
        }
        prefix
    }
}

fn write_detail_item(out: &mut String, item: &Item, legend: &Legend, limit: usize) {
    let prefix = legend.prefix(item);
    let indent = prefix.chars().count();
    let first_line = match &item.comment {
        Some(comment) => {
            let mut comment_lines = comment.split('\n');
            let first = comment_lines.next().unwrap_or_default();
            out.push_str(&format!("{prefix};;; {first}{CRLF}"));
            for more in comment_lines {
                out.push_str(more);
                out.push_str(CRLF);
            }
            " ".repeat(indent)
        }
        None => prefix,
    };
    let mut lines = LineFiller {
        out,
        line: first_line,
        len: indent,
        holds_token: false,
        indent,
        limit,
    };
    for (name, value) in &item.props {
        lines.place(&format!("{name}={}", value.detail_text()));
    }
    lines.finish();
}

/// Greedy packing of tokens into lines of at most `limit` characters, continuation lines indented.
struct LineFiller<'o> {
    out: &'o mut String,
    /// The line being filled, indentation (or item prefix) included.
    line: String,
    /// Characters in `line`; tokens may hold non-ASCII text.
    len: usize,
    holds_token: bool,
    indent: usize,
    limit: usize,
}

impl LineFiller<'_> {
    fn place(&mut self, token: &str) {
        let token_len = token.chars().count();
        if self.holds_token {
            if self.len + 1 + token_len <= self.limit {
                self.line.push(' ');
                self.line.push_str(token);
                self.len += 1 + token_len;
                return;
            }
            self.break_line();
        }
        // Even a tiny width must make progress: at least one character per line.
        let line_end = self.indent + self.limit.saturating_sub(self.indent).max(1);
        let mut chars = token.chars().peekable();
        while chars.peek().is_some() {
            if self.len >= line_end {
                self.break_line();
            }
            let piece: String = chars.by_ref().take(line_end - self.len).collect();
            self.len += piece.chars().count();
            self.line.push_str(&piece);
        }
        self.holds_token = true;
    }

    fn break_line(&mut self) {
        self.out.push_str(&self.line);
        self.out.push_str(CRLF);
        self.line = " ".repeat(self.indent);
        self.len = self.indent;
        self.holds_token = false;
    }

    /// Ends the last line; an item without properties leaves no blank or space-padded line.
    fn finish(self) {
        let line = if self.holds_token {
            self.line.as_str()
        } else {
            self.line.trim_end()
        };
        if !line.is_empty() {
            self.out.push_str(line);
            self.out.push_str(CRLF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DISK_FLAGS, file_disk, raid_mirror, raid_pool};
    use super::super::{FlagDef, Value};
    use super::*;

    /// The terminal width of the captures (about 240 columns).
    const CAPTURE_WIDTH: usize = 240;

    /// captures.md §1, verbatim without the prompt line.
    const CAPTURE_FILE_DISK: &str = concat!(
        "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT\r\n",
        "31 Bt type=file slot=\"vm-storage-001\" slot-default=\"\" parent=\"\" fs=- model=\"/raid10/vm-storage-001.img\" size=1 099 511 627 776 mount-filesystem=no mount-read-only=no compress=no sector-size=512 raid-master=none nvme-tcp-export=yes\r\n",
        "      nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2026-09.com.mikrotik:rds2216.vm-storage-001\" nvme-tcp-server-allow-host-name=\"\" iscsi-export=no nfs-sharing=no smb-sharing=no media-sharing=no media-interface=none swap=no\r\n",
        "      file-path=/raid10/vm-storage-001.img file-size=1024.0GiB file-offset=0\r\n",
    );

    /// captures.md §2, verbatim without the prompt line.
    const CAPTURE_RAID: &str = concat!(
        "Flags: B - BLOCK-DEVICE; M - MOUNTED; r - RAID-MEMBER\r\n",
        "26 BM  type=raid slot=\"raid10\" slot-default=\"\" parent=\"\" fs-label=\"ocp-storage\" fs-uuid=\"40437dbc-2318-45dc-817b-b3bb95cf48ab\" fs=xfs model=\"RAID0 striped\" size=16 003 143 565 312 free=14 789 895 307 264 total-inodes=1 562 806 656\r\n",
        "       free-inodes=1 562 806 652 use=8% mount-point=\"raid10\" mount-filesystem=yes mount-read-only=no compress=no sector-size=512 raid-type=0 raid-device-count=4 raid-max-component-size=none raid-chunk-size=256K raid-master=none\r\n",
        "       state=\"clean\" raid-uuid=\"eadca0af-ecff031c-239758ad-951a47de\" nvme-tcp-export=no iscsi-export=no nfs-sharing=no smb-sharing=no media-sharing=no media-interface=none swap=no\r\n",
        " \r\n",
        "27 B r type=raid slot=\"raid10-m0\" slot-default=\"\" parent=\"\" fs=- model=\"RAID1 mirrored\" size=4 000 786 153 472 mount-filesystem=no mount-read-only=no compress=no sector-size=512 raid-type=1 raid-device-count=2 raid-max-component-size=none\r\n",
        "       raid-master=raid10 raid-role=0 raid-member-failed=no raid-member-state=\"0:in_sync\" state=\"clean\" raid-uuid=\"5715669c-43873157-0ebaaa3a-7104d138\" nvme-tcp-export=no iscsi-export=no nfs-sharing=no smb-sharing=no media-sharing=no\r\n",
        "       media-interface=none swap=no\r\n",
    );

    const SECTION_1_PATH: &str = "/raid10/vm-storage-001.img";

    #[test]
    fn detail_reproduces_the_exported_file_disk_capture() {
        let printed = detail(&[file_disk(SECTION_1_PATH)], &DISK_FLAGS, CAPTURE_WIDTH);
        assert_eq!(printed, CAPTURE_FILE_DISK);
    }

    #[test]
    fn detail_reproduces_the_raid_capture() {
        let printed = detail(&[raid_pool(), raid_mirror()], &DISK_FLAGS, CAPTURE_WIDTH);
        assert_eq!(printed, CAPTURE_RAID);
    }

    #[test]
    fn the_captures_pin_the_limit_to_width_minus_one() {
        let items = [raid_pool(), raid_mirror()];
        for width in 239..=241 {
            assert_eq!(
                detail(&items, &DISK_FLAGS, width),
                CAPTURE_RAID,
                "width {width}"
            );
        }
        // 238 columns would wrap the 238-character line; 242 would keep a 241-character one.
        assert_ne!(detail(&items, &DISK_FLAGS, 238), CAPTURE_RAID);
        assert_ne!(detail(&items, &DISK_FLAGS, 242), CAPTURE_RAID);
    }

    #[test]
    fn detail_at_80_columns_splits_a_token_longer_than_a_line() {
        let path = "/raid10/csi/volumes/pvc-5f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f/pvc-5f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f.img";
        let expected = concat!(
            "Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT\r\n",
            "31 Bt type=file slot=\"vm-storage-001\" slot-default=\"\" parent=\"\" fs=-\r\n",
            "      model=\"/raid10/csi/volumes/pvc-5f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f/pvc-5\r\n",
            "      f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f.img\" size=1 099 511 627 776\r\n",
            "      mount-filesystem=no mount-read-only=no compress=no sector-size=512\r\n",
            "      raid-master=none nvme-tcp-export=yes nvme-tcp-server-port=4420\r\n",
            "      nvme-tcp-server-nqn=\"nqn.2026-09.com.mikrotik:rds2216.vm-storage-001\"\r\n",
            "      nvme-tcp-server-allow-host-name=\"\" iscsi-export=no nfs-sharing=no\r\n",
            "      smb-sharing=no media-sharing=no media-interface=none swap=no\r\n",
            "      file-path=/raid10/csi/volumes/pvc-5f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f/pv\r\n",
            "      c-5f0b6d1e-8c2a-4e7b-9d3f-1a2b3c4d5e6f.img file-size=1024.0GiB\r\n",
            "      file-offset=0\r\n",
        );
        assert_eq!(detail(&[file_disk(path)], &DISK_FLAGS, 80), expected);
    }

    fn bare(text: &str) -> Value {
        Value::Bare(text.to_owned())
    }

    fn file(index: usize, props: Vec<(&'static str, Value)>) -> Item {
        Item {
            index,
            id: 0,
            flags: Vec::new(),
            comment: None,
            props,
        }
    }

    #[test]
    fn detail_at_80_columns_matches_the_manuals_file_listing() {
        // MAN-FILES (7.24, 80 columns). The manual prints single-digit indices as `0  name=`;
        // the index here is right-aligned (` 0 name=`, as 7.16 prints it), same indent of 3.
        let items = [
            file(
                0,
                vec![
                    ("name", bare("my-dir")),
                    ("type", bare("directory")),
                    ("last-modified", bare("2026-09-25 12:13:27")),
                ],
            ),
            file(
                1,
                vec![
                    ("name", bare("routeros-7.24.2-arm64.npk")),
                    ("type", bare("package")),
                    ("size", Value::Size(13_946_061)),
                    ("last-modified", bare("2026-09-25 12:13:01")),
                    ("package-name", Value::Str("system".into())),
                    ("package-version", Value::Str("7.24.2".into())),
                    ("package-build-time", bare("2026-09-03 09:57:14")),
                    ("package-architecture", Value::Str("arm64".into())),
                ],
            ),
            file(
                2,
                vec![
                    ("name", bare("skins")),
                    ("type", bare("directory")),
                    ("last-modified", bare("1970-01-01 03:00:05")),
                ],
            ),
            file(
                3,
                vec![
                    ("name", bare("my-dir/test.txt")),
                    ("type", bare(".txt file")),
                    ("size", Value::Size(5)),
                    ("last-modified", bare("2026-09-25 12:13:27")),
                    ("contents", bare("hello")),
                ],
            ),
        ];
        let expected = concat!(
            " 0 name=my-dir type=directory last-modified=2026-09-25 12:13:27\r\n",
            " \r\n",
            " 1 name=routeros-7.24.2-arm64.npk type=package size=13.3MiB\r\n",
            "   last-modified=2026-09-25 12:13:01 package-name=\"system\"\r\n",
            "   package-version=\"7.24.2\" package-build-time=2026-09-03 09:57:14\r\n",
            "   package-architecture=\"arm64\"\r\n",
            " \r\n",
            " 2 name=skins type=directory last-modified=1970-01-01 03:00:05\r\n",
            " \r\n",
            // 79 characters: the longest line 80 columns allow.
            " 3 name=my-dir/test.txt type=.txt file size=5 last-modified=2026-09-25 12:13:27\r\n",
            "   contents=hello\r\n",
        );
        assert_eq!(
            detail(
                &items,
                &[FlagDef {
                    letter: 'S',
                    name: "SHARED",
                    group: 0
                }],
                80
            ),
            expected
        );
    }

    #[test]
    fn legend_wraps_between_entries_like_the_disks_page() {
        // MAN-DISKS, 7.24 at 80 columns: `; ` before `g` would make the first line 80 characters.
        let flagged = |letters: &[char]| Item {
            flags: letters.to_vec(),
            ..file(0, Vec::new())
        };
        let items = [
            flagged(&['B', 'g']),
            flagged(&['B', 'M', 'p']),
            flagged(&['S']),
        ];
        let mut out = String::new();
        Legend::new(&items, &DISK_FLAGS).write(&mut out, 79);
        assert_eq!(
            out,
            concat!(
                "Flags: B - BLOCK-DEVICE; M - MOUNTED, S - SWAP-ENABLED\r\n",
                "       g - GUID-PARTITION-TABLE, p - PARTITION\r\n",
            )
        );
        let legend = Legend::new(&items, &DISK_FLAGS);
        let prefixes: Vec<String> = items.iter().map(|item| legend.prefix(item)).collect();
        assert_eq!(prefixes, [" 0 B g ", " 0 BMp ", " 0  S  "]);
    }

    #[test]
    fn detail_prints_a_comment_after_the_flags_and_properties_below_it() {
        let item = Item {
            index: 3,
            id: 0,
            flags: vec!['t'],
            comment: Some("snapshot of pvc-1".into()),
            props: vec![
                ("type", bare("file")),
                ("slot", Value::Str("snap-1".into())),
            ],
        };
        let expected = concat!(
            "Flags: t - NVME-TCP-EXPORT\r\n",
            " 3 t ;;; snapshot of pvc-1\r\n",
            "     type=file slot=\"snap-1\"\r\n",
        );
        assert_eq!(detail(&[item], &DISK_FLAGS, 80), expected);
    }

    #[test]
    fn detail_of_unflagged_items_has_no_legend_and_no_flag_columns() {
        let items = [
            file(7, vec![("name", bare("a"))]),
            file(123, vec![("name", bare("b"))]),
        ];
        assert_eq!(
            detail(&items, &DISK_FLAGS, 80),
            " 7 name=a\r\n \r\n123 name=b\r\n"
        );
        assert_eq!(detail(&[], &DISK_FLAGS, 80), "");
    }

    #[test]
    fn detail_quotes_and_escapes_strings_only() {
        let item = file(
            0,
            vec![
                ("comment-like", Value::Str("say \"hi\" $x".into())),
                ("path", bare("/a b")),
            ],
        );
        assert_eq!(
            detail(&[item], &[], 80),
            " 0 comment-like=\"say \\\"hi\\\" \\$x\" path=/a b\r\n"
        );
    }

    #[test]
    fn terse_prints_one_raw_line_per_item_comment_first() {
        // Flags B, M and t are carried, so both lines have three flag columns.
        let mut disk = file_disk(SECTION_1_PATH);
        disk.comment = Some("from snap 1".into());
        let expected = concat!(
            "31 B t comment=from snap 1 type=file slot=vm-storage-001 slot-default= parent= fs=- ",
            "model=/raid10/vm-storage-001.img size=1099511627776 mount-filesystem=no mount-read-only=no ",
            "compress=no sector-size=512 raid-master=none nvme-tcp-export=yes nvme-tcp-server-port=4420 ",
            "nvme-tcp-server-nqn=nqn.2026-09.com.mikrotik:rds2216.vm-storage-001 ",
            "nvme-tcp-server-allow-host-name= iscsi-export=no nfs-sharing=no smb-sharing=no ",
            "media-sharing=no media-interface=none swap=no file-path=/raid10/vm-storage-001.img ",
            "file-size=1024.0GiB file-offset=0\r\n",
            "26 BM  type=raid slot=raid10-m0 use=8%\r\n",
        );
        let pool = Item {
            props: vec![
                ("type", bare("raid")),
                ("slot", Value::Str("raid10-m0".into())),
                ("use", Value::Percent(8)),
            ],
            ..raid_pool()
        };
        assert_eq!(terse(&[disk, pool], &DISK_FLAGS), expected);
        assert_eq!(terse(&[], &DISK_FLAGS), "");
    }
}
