//! Golden parsing of real RouterOS output (routeros/captures.md), and the wrap-tolerance and
//! metadata round-trip properties.

use proptest::prelude::*;
use rds_csi::ids::{IdKind, Metadata};
use rds_csi::rds::parse::{
    DiskRecord, PoolRecord, Record, parse_as_value, parse_detail, parse_json,
};
use rds_csi::rds::value::{Slot, quote};
use rds_csi::snapshot::Method;

const EXPORTED_FILE: &str = include_str!("fixtures/routeros/disk_print_exported_file.txt");
const RAID: &str = include_str!("fixtures/routeros/disk_print_raid.txt");
const FILES_7_16: &str = include_str!("fixtures/routeros/file_print_7_16.txt");
const FILES_7_24: &str = include_str!("fixtures/routeros/file_print_7_24.txt");

/// Exec output ends lines in CRLF; the fixtures are stored with LF. Parse both.
fn parse_both(output: &str) -> Vec<Record> {
    let lf = parse_detail(output).unwrap();
    let crlf = parse_detail(&output.replace('\n', "\r\n")).unwrap();
    assert_eq!(lf, crlf, "CRLF and LF disagree");
    lf
}

fn props(record: &Record) -> Vec<(&str, &str)> {
    record
        .props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn capture_1_exported_file_disk() {
    let records = parse_both(EXPORTED_FILE);
    assert_eq!(records.len(), 1);
    let disk = &records[0];
    assert_eq!(disk.index, Some(31));
    assert_eq!(disk.flags, vec!['B', 't']);
    assert_eq!(disk.comment, None);
    assert_eq!(
        props(disk),
        vec![
            ("type", "file"),
            ("slot", "vm-storage-001"),
            ("slot-default", ""),
            ("parent", ""),
            ("fs", "-"),
            ("model", "/raid10/vm-storage-001.img"),
            ("size", "1 099 511 627 776"),
            ("mount-filesystem", "no"),
            ("mount-read-only", "no"),
            ("compress", "no"),
            ("sector-size", "512"),
            ("raid-master", "none"),
            ("nvme-tcp-export", "yes"),
            ("nvme-tcp-server-port", "4420"),
            (
                "nvme-tcp-server-nqn",
                "nqn.2026-09.com.mikrotik:rds2216.vm-storage-001"
            ),
            ("nvme-tcp-server-allow-host-name", ""),
            ("iscsi-export", "no"),
            ("nfs-sharing", "no"),
            ("smb-sharing", "no"),
            ("media-sharing", "no"),
            ("media-interface", "none"),
            ("swap", "no"),
            ("file-path", "/raid10/vm-storage-001.img"),
            ("file-size", "1024.0GiB"),
            ("file-offset", "0"),
        ]
    );
    assert_eq!(
        DiskRecord::try_from(disk).unwrap(),
        DiskRecord {
            slot: "vm-storage-001".into(),
            disk_type: "file".into(),
            file_path: Some("raid10/vm-storage-001.img".into()),
            size: Some(1_099_511_627_776),
            export: true,
            port: Some(4420),
            nqn: Some("nqn.2026-09.com.mikrotik:rds2216.vm-storage-001".into()),
            allowed_hosts: Vec::new(),
            comment: None,
        }
    );
}

#[test]
fn capture_2_pool_and_raid_devices() {
    let records = parse_both(RAID);
    assert_eq!(records.len(), 2);
    let (pool, member) = (&records[0], &records[1]);
    assert_eq!((pool.index, pool.flags.clone()), (Some(26), vec!['B', 'M']));
    assert_eq!(
        props(pool),
        vec![
            ("type", "raid"),
            ("slot", "raid10"),
            ("slot-default", ""),
            ("parent", ""),
            ("fs-label", "ocp-storage"),
            ("fs-uuid", "40437dbc-2318-45dc-817b-b3bb95cf48ab"),
            ("fs", "xfs"),
            ("model", "RAID0 striped"),
            ("size", "16 003 143 565 312"),
            ("free", "14 789 895 307 264"),
            ("total-inodes", "1 562 806 656"),
            ("free-inodes", "1 562 806 652"),
            ("use", "8%"),
            ("mount-point", "raid10"),
            ("mount-filesystem", "yes"),
            ("mount-read-only", "no"),
            ("compress", "no"),
            ("sector-size", "512"),
            ("raid-type", "0"),
            ("raid-device-count", "4"),
            ("raid-max-component-size", "none"),
            ("raid-chunk-size", "256K"),
            ("raid-master", "none"),
            ("state", "clean"),
            ("raid-uuid", "eadca0af-ecff031c-239758ad-951a47de"),
            ("nvme-tcp-export", "no"),
            ("iscsi-export", "no"),
            ("nfs-sharing", "no"),
            ("smb-sharing", "no"),
            ("media-sharing", "no"),
            ("media-interface", "none"),
            ("swap", "no"),
        ]
    );
    assert_eq!(
        (member.index, member.flags.clone()),
        (Some(27), vec!['B', 'r'])
    );
    assert_eq!(
        props(member),
        vec![
            ("type", "raid"),
            ("slot", "raid10-m0"),
            ("slot-default", ""),
            ("parent", ""),
            ("fs", "-"),
            ("model", "RAID1 mirrored"),
            ("size", "4 000 786 153 472"),
            ("mount-filesystem", "no"),
            ("mount-read-only", "no"),
            ("compress", "no"),
            ("sector-size", "512"),
            ("raid-type", "1"),
            ("raid-device-count", "2"),
            ("raid-max-component-size", "none"),
            ("raid-master", "raid10"),
            ("raid-role", "0"),
            ("raid-member-failed", "no"),
            ("raid-member-state", "0:in_sync"),
            ("state", "clean"),
            ("raid-uuid", "5715669c-43873157-0ebaaa3a-7104d138"),
            ("nvme-tcp-export", "no"),
            ("iscsi-export", "no"),
            ("nfs-sharing", "no"),
            ("smb-sharing", "no"),
            ("media-sharing", "no"),
            ("media-interface", "none"),
            ("swap", "no"),
        ]
    );
    assert_eq!(
        PoolRecord::try_from(pool).unwrap(),
        PoolRecord {
            slot: "raid10".into(),
            mount_point: "raid10".into(),
            size: 16_003_143_565_312,
            free: 14_789_895_307_264
        }
    );
    let raid = DiskRecord::try_from(member).unwrap();
    assert_eq!(
        (
            raid.disk_type.as_str(),
            raid.export,
            raid.port,
            raid.file_path
        ),
        ("raid", false, None, None)
    );
}

#[test]
fn capture_4_file_print_7_16() {
    let records = parse_both(FILES_7_16);
    let names: Vec<_> = records
        .iter()
        .map(|r| (r.index.unwrap(), r.get("name").unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "wireless-7.16.1-arm.npk"),
            (2, "flash"),
            (4, "flash/skins/newskin.json"),
            (5, "flash/filename")
        ]
    );
    assert_eq!(
        props(&records[0]),
        vec![
            ("name", "wireless-7.16.1-arm.npk"),
            ("type", "package"),
            ("size", "1924.1KiB"),
            ("last-modified", "2024-11-25 13:14:28"),
            ("package-name", "wireless"),
            ("package-version", "7.16.1"),
            ("package-build-time", "2024-10-10 14:03:32"),
            ("package-architecture", "arm"),
        ]
    );
    assert_eq!(
        props(&records[1]),
        vec![
            ("name", "flash"),
            ("type", "disk"),
            ("last-modified", "2024-11-25 13:12:10")
        ]
    );
    assert_eq!(
        props(&records[2]),
        vec![
            ("name", "flash/skins/newskin.json"),
            ("type", ".json file"),
            ("size", "0"),
            ("last-modified", "2024-11-25 13:10:52")
        ]
    );
    assert_eq!(
        props(&records[3]),
        vec![
            ("name", "flash/filename"),
            ("type", "file"),
            ("size", "0"),
            ("last-modified", "2024-11-25 13:11:58")
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.flags.is_empty() && r.comment.is_none())
    );
}

#[test]
fn manual_file_print_7_24() {
    let records = parse_both(FILES_7_24);
    assert_eq!(records.len(), 2);
    assert_eq!(
        props(&records[0]),
        vec![
            ("name", "my-dir"),
            ("type", "directory"),
            ("last-modified", "2026-09-25 12:13:27")
        ]
    );
    assert_eq!(
        props(&records[1]),
        vec![
            ("name", "routeros-7.24.2-arm64.npk"),
            ("type", "package"),
            ("size", "13.3MiB"),
            ("last-modified", "2026-09-25 12:13:01"),
            ("package-name", "system"),
        ]
    );
}

#[test]
fn csi_file_listing_with_a_long_name_split_mid_token() {
    // The shape the Go driver saw on a real RDS: a long `name` cut inside the path at 80 columns.
    let name =
        "storage-pool/metal-csi/pvc-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f4a5b-with-a-long-suffix.img";
    let item = Item {
        prefix: " 7 ".into(),
        comment: None,
        tokens: vec![
            format!("name={name}"),
            "type=.img file".into(),
            "size=10.0GiB".into(),
            "last-modified=2025-11-11 14:32:41".into(),
        ],
    };
    for split in [Split::FreshLine, Split::FillLine] {
        let output = render(None, std::slice::from_ref(&item), 79, split);
        assert!(output.lines().count() > 2, "{output}");
        let records = parse_detail(&output).unwrap();
        assert_eq!(
            props(&records[0]),
            vec![
                ("name", name),
                ("type", ".img file"),
                ("size", "10.0GiB"),
                ("last-modified", "2025-11-11 14:32:41")
            ],
            "{output}"
        );
    }
}

// ---- A test-only `print detail` writer: greedy wrap with mid-token splits ----

/// How a token longer than a whole line is cut; RouterOS's choice is not public.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// Start it on a fresh line and cut wherever the line is full (rds-sim's choice).
    FreshLine,
    /// Start it on the current line after a space and cut wherever the line is full.
    FillLine,
}

#[derive(Debug, Clone)]
struct Item {
    /// `<index> <flag columns> `.
    prefix: String,
    comment: Option<String>,
    /// `name=value` exactly as printed.
    tokens: Vec<String>,
}

/// Items as `print detail` lays them out with lines of at most `limit` characters.
fn render(legend: Option<&str>, items: &[Item], limit: usize, split: Split) -> String {
    let mut out: Vec<String> = legend.map(str::to_owned).into_iter().collect();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(" ".into());
        }
        out.extend(wrap_item(item, limit, split));
    }
    out.iter().map(|line| format!("{line}\r\n")).collect()
}

fn wrap_item(item: &Item, limit: usize, split: Split) -> Vec<String> {
    let indent = item.prefix.len();
    let mut lines = Vec::new();
    let mut line = item.prefix.clone();
    if let Some(comment) = &item.comment {
        lines.push(format!("{};;; {comment}", item.prefix));
        line = " ".repeat(indent);
    }
    let len = |line: &String| line.chars().count();
    let mut holds = false;
    for token in &item.tokens {
        let token_len = token.chars().count();
        if holds && len(&line) + 1 + token_len <= limit {
            line.push(' ');
            line.push_str(token);
            continue;
        }
        let fresh_line_fits = token_len <= limit - indent;
        let start_here =
            holds && !fresh_line_fits && matches!(split, Split::FillLine) && len(&line) + 1 < limit;
        if holds && !start_here {
            lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
        }
        if start_here {
            line.push(' ');
        }
        for c in token.chars() {
            if len(&line) == limit {
                lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
            }
            line.push(c);
        }
        holds = true;
    }
    if holds {
        lines.push(line);
    }
    lines
}

/// String-typed properties, quoted in `print detail` (REFERENCE.md §5.2 rule 6).
const QUOTED: &[&str] = &[
    "slot",
    "slot-default",
    "parent",
    "model",
    "fs-label",
    "fs-uuid",
    "mount-point",
    "nvme-tcp-server-nqn",
    "nvme-tcp-server-allow-host-name",
    "state",
    "raid-uuid",
    "raid-member-state",
    "package-name",
    "package-version",
    "package-architecture",
];

fn item_of(record: &Record, flag_columns: &str) -> Item {
    let prefix = match flag_columns {
        "" => format!("{:>2} ", record.index.unwrap()),
        columns => format!("{:>2} {columns} ", record.index.unwrap()),
    };
    let tokens = record
        .props
        .iter()
        .map(|(name, value)| {
            if QUOTED.contains(&name.as_str()) {
                format!("{name}={}", quote(value))
            } else {
                format!("{name}={value}")
            }
        })
        .collect();
    Item {
        prefix,
        comment: record.comment.clone(),
        tokens,
    }
}

#[test]
fn the_writer_reproduces_the_captures_at_their_width() {
    // captures.md §1 and §2 were printed about 240 columns wide.
    for (capture, columns) in [(EXPORTED_FILE, vec!["Bt"]), (RAID, vec!["BM ", "B r"])] {
        let records = parse_detail(capture).unwrap();
        let items: Vec<Item> = records
            .iter()
            .zip(columns)
            .map(|(r, c)| item_of(r, c))
            .collect();
        let legend = capture.lines().next();
        let written = render(legend, &items, 238, Split::FreshLine);
        assert_eq!(written, capture.replace('\n', "\r\n"));
    }
}

#[test]
fn captures_parse_the_same_at_every_width() {
    for (capture, columns) in [
        (EXPORTED_FILE, vec!["Bt"]),
        (RAID, vec!["BM ", "B r"]),
        (FILES_7_24, vec!["", ""]),
        (FILES_7_16, vec!["", "", "", ""]),
    ] {
        let records = parse_detail(capture).unwrap();
        let items: Vec<Item> = records
            .iter()
            .zip(columns)
            .map(|(r, c)| item_of(r, c))
            .collect();
        for limit in 39..=240 {
            for split in [Split::FreshLine, Split::FillLine] {
                let written = render(Some("Flags: B - BLOCK-DEVICE"), &items, limit, split);
                let reparsed = parse_detail(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
                assert_eq!(reparsed, records, "limit {limit}, {split:?}\n{written}");
            }
        }
    }
}

// ---- Properties ----

/// A value and how `print detail` shows it.
#[derive(Debug, Clone)]
enum Shown {
    Quoted(String),
    Bare(String),
}

fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Bare values of the shapes RouterOS prints: words, paths, grouped numbers, times, sizes.
fn bare_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}|-|[0-9]{1,3}%|[0-9]{1,5}\\.[0-9][KMGT]iB",
        "/?[A-Za-z0-9._-]{1,24}(/[A-Za-z0-9._-]{1,24}){0,6}",
        any::<u64>().prop_map(group_digits),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]",
    ]
}

fn shown_value() -> impl Strategy<Value = Shown> {
    prop_oneof![
        any::<String>().prop_map(Shown::Quoted),
        "[ -~]{0,120}".prop_map(Shown::Quoted),
        bare_value().prop_map(Shown::Bare),
    ]
}

prop_compose! {
    fn detail_item()(
        index in 0u32..2000,
        flag_columns in "([A-Za-z ]{1,4})?",
        comment in proptest::option::of("[!-~]([ -~]{0,60}[!-~])?"),
        props in proptest::collection::vec(("[a-z][a-z0-9-]{0,19}", shown_value()), 1..16),
    ) -> (Item, Record) {
        let mut seen = std::collections::HashSet::new();
        let props: Vec<_> = props.into_iter().filter(|(name, _)| seen.insert(name.clone())).collect();
        let prefix = if flag_columns.is_empty() { format!("{index:>2} ") } else { format!("{index:>2} {flag_columns} ") };
        let tokens = props
            .iter()
            .map(|(name, value)| match value {
                Shown::Quoted(text) => format!("{name}={}", quote(text)),
                Shown::Bare(text) => format!("{name}={text}"),
            })
            .collect();
        let record = Record {
            index: Some(index),
            flags: flag_columns.chars().filter(|c| *c != ' ').collect(),
            comment: comment.clone(),
            props: props
                .into_iter()
                .map(|(name, value)| match value {
                    Shown::Quoted(text) | Shown::Bare(text) => (name, text),
                })
                .collect(),
        };
        (Item { prefix, comment, tokens }, record)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (iv) Items printed at any width, split either way, parse to the same records.
    #[test]
    fn detail_survives_any_wrap(
        items in proptest::collection::vec(detail_item(), 1..4),
        limit in 39usize..240,
        fill in any::<bool>(),
        legend in any::<bool>(),
    ) {
        let split = if fill { Split::FillLine } else { Split::FreshLine };
        let (items, expected): (Vec<Item>, Vec<Record>) = items.into_iter().unzip();
        let written = render(legend.then_some("Flags: X - DISABLED; B - BLOCK-DEVICE"), &items, limit, split);
        let parsed = parse_detail(&written);
        prop_assert_eq!(parsed, Ok(expected), "{}", written);
    }

    /// (iii) Metadata survives the comment, and every print form the comment comes back in.
    #[test]
    fn metadata_round_trips_through_every_form(
        kind in prop_oneof![Just(IdKind::Volume), Just(IdKind::Snapshot)],
        csi_name in "\\PC{0,32}|[ -~]{0,128}",
        source in proptest::option::of("[a-z0-9][a-z0-9-]{0,31}"),
        created in any::<u64>(),
        requested_bytes in any::<u64>(),
        method in proptest::option::of(prop_oneof![Just(Method::CopyFrom), Just(Method::DiskCopy)]),
        pending in any::<bool>(),
        limit in 39usize..240,
    ) {
        let metadata = Metadata { kind, csi_name, source: source.map(|s| Slot::parse(&s).unwrap()), created, requested_bytes, context: Default::default(), method, pending };
        let comment = metadata.to_comment().unwrap();
        let text = comment.as_str();
        prop_assert!(!text.contains([' ', ';', '=', '"', '\\', '$']), "{}", text);
        prop_assert_eq!(Metadata::parse(text), Ok(metadata.clone()));

        let item = Item { prefix: " 0 Bt ".into(), comment: Some(text.into()), tokens: vec!["slot=\"pvc-1\"".into()] };
        let detail = parse_detail(&render(None, &[item], limit, Split::FreshLine)).unwrap();
        let detail_comment = detail[0].comment.as_deref().unwrap();
        prop_assert_eq!(Metadata::parse(detail_comment), Ok(metadata.clone()));

        let as_value = parse_as_value(&format!(".id=*1;comment={text};slot=pvc-1\r\n")).unwrap();
        prop_assert_eq!(Metadata::parse(as_value[0].comment.as_deref().unwrap()), Ok(metadata.clone()));
        prop_assert_eq!(as_value[0].get("slot"), Some("pvc-1"));

        let json = serde_json::json!([{ ".id": "*1", "comment": text, "slot": "pvc-1" }]).to_string();
        let from_json = parse_json(&json).unwrap();
        prop_assert_eq!(Metadata::parse(from_json[0].comment.as_deref().unwrap()), Ok(metadata.clone()));
    }
}
