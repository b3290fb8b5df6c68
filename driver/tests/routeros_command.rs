//! Injection properties of the command builder: caller input is either refused or lands, intact,
//! inside one correctly escaped quoted string.

use std::num::NonZeroU16;

use proptest::prelude::*;
use rds_csi::rds::command::{Cmd, DiskQuery, DiskSpec, FENCED_HOST, Form, NvmeExport};
use rds_csi::rds::parse::unquote;
use rds_csi::rds::value::{ByteSize, Comment, Nqn, RosPath, Slot, quote};

/// A line with every quoted literal replaced by `Q`, and the literals' decoded texts.
fn skeleton(line: &str) -> (String, Vec<String>) {
    let mut shape = String::new();
    let mut literals = Vec::new();
    let mut chars = line.char_indices();
    while let Some((start, c)) = chars.next() {
        if c != '"' {
            shape.push(c);
            continue;
        }
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated literal in {line}"));
        literals.push(unquote(&line[start..end]).unwrap_or_else(|e| panic!("{e} in {line}")));
        shape.push('Q');
    }
    (shape, literals)
}

fn assert_shape(
    cmd: &Cmd,
    expected_shape: &str,
    expected_values: &[&str],
) -> Result<(), TestCaseError> {
    let (shape, values) = skeleton(cmd.as_str());
    prop_assert_eq!(shape, expected_shape, "{}", cmd);
    prop_assert_eq!(values, expected_values, "{}", cmd);
    Ok(())
}

/// Characters that change how RouterOS reads a line, and a few that merely look odd.
const NASTY: &str = "[-a-z0-9;$\\[\\]\"\\\\\n\r\t é{}#()=~^/.:_*?]{0,40}";

fn input(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![valid, NASTY, any::<String>()]
}

fn base_spec() -> DiskSpec {
    DiskSpec {
        slot: Slot::parse("s").unwrap(),
        file_path: RosPath::parse("p/s.img").unwrap(),
        size: ByteSize::new(1).unwrap(),
        export: Some(NvmeExport {
            port: NonZeroU16::new(4420).unwrap(),
            nqn: Nqn::parse("nqn.2026-09.com.example:s").unwrap(),
        }),
        comment: Some(Comment::new("c").unwrap()),
    }
}

const ADD_SHAPE: &str = "/disk add type=file file-path=Q file-size=1 slot=Q mount-filesystem=no nvme-tcp-export=yes \
                         nvme-tcp-server-port=4420 nvme-tcp-server-nqn=Q nvme-tcp-server-allow-host-name=Q comment=Q";

fn regex_literal(text: &str) -> String {
    text.replace('.', "\\.")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// (i) `quote` gives one printable-ASCII literal, every `"` `$` `\` inside escaped, that
    /// RouterOS's unescaping reads back as the original string.
    #[test]
    fn quote_round_trips(text in prop_oneof![any::<String>(), NASTY]) {
        let literal = quote(&text);
        prop_assert!(literal.bytes().all(|b| (b' '..=b'~').contains(&b)), "{}", literal);
        prop_assert!(literal.len() >= 2 && literal.starts_with('"') && literal.ends_with('"'));
        let mut inner = literal[1..literal.len() - 1].chars();
        while let Some(c) = inner.next() {
            match c {
                '"' | '$' => prop_assert!(false, "unescaped {:?} in {}", c, literal),
                '\\' => match inner.next() {
                    Some('"' | '\\' | '$') => {}
                    Some('0'..='9' | 'A'..='F') => prop_assert!(matches!(inner.next(), Some('0'..='9' | 'A'..='F'))),
                    other => prop_assert!(false, "bad escape {:?} in {}", other, literal),
                },
                _ => {}
            }
        }
        prop_assert_eq!(unquote(&literal), Ok(text));
    }

    /// (ii) A slot is refused or appears only as a quoted literal, in every command taking one.
    #[test]
    fn slots_never_escape_their_quotes(text in input("[a-z0-9][a-z0-9-]{0,33}")) {
        let Ok(slot) = Slot::parse(&text) else { return Ok(()) };
        prop_assert!(text.len() <= 32 && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        let t = text.as_str();
        assert_shape(&Cmd::disk_add(&DiskSpec { slot: slot.clone(), ..base_spec() }), ADD_SHAPE, &["p/s.img", t, "nqn.2026-09.com.example:s", FENCED_HOST, "c"])?;
        assert_shape(&Cmd::disk_set_size(&slot, ByteSize::new(7).unwrap()), "/disk set [find where slot=Q] file-size=7", &[t])?;
        assert_shape(&Cmd::disk_set_allowed_hosts(&slot, &[]), "/disk set [find where slot=Q] nvme-tcp-server-allow-host-name=Q", &[t, FENCED_HOST])?;
        assert_shape(&Cmd::disk_remove(&slot), "/disk remove [find where slot=Q]", &[t])?;
        assert_shape(&Cmd::disk_monitor_traffic(&slot), "/disk monitor-traffic Q once", &[t])?;
        assert_shape(&Cmd::disk_print(DiskQuery::Slot(&slot), Form::Detail), "/disk print detail where slot=Q", &[t])?;
        assert_shape(&Cmd::disk_print(DiskQuery::Slot(&slot), Form::AsValue), ":put [/disk print detail as-value where slot=Q]", &[t])?;
        assert_shape(
            &Cmd::disk_print(DiskQuery::SlotPrefix(&slot), Form::Json),
            ":put [:serialize to=json [/disk print detail as-value where slot~Q]]",
            &[&format!("^{t}")],
        )?;
    }

    /// (ii) Paths likewise; a leading `/` is dropped, and dots are literal in `~` patterns.
    #[test]
    fn paths_never_escape_their_quotes(text in input("/?[A-Za-z0-9._-]{1,12}(/[A-Za-z0-9._-]{1,12}){0,3}")) {
        let Ok(path) = RosPath::parse(&text) else { return Ok(()) };
        let t = text.strip_prefix('/').unwrap_or(&text);
        prop_assert!(t.split('/').all(|s| !s.is_empty() && s != "." && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))));
        assert_shape(&Cmd::disk_add(&DiskSpec { file_path: path.clone(), ..base_spec() }), ADD_SHAPE, &[t, "s", "nqn.2026-09.com.example:s", FENCED_HOST, "c"])?;
        assert_shape(&Cmd::file_remove(&path), "/file remove Q", &[t])?;
        assert_shape(&Cmd::file_print_under(&path, Form::Detail), "/file print detail where name~Q", &[&format!("^{}/", regex_literal(t))])?;
        assert_shape(&Cmd::disk_print(DiskQuery::MountPoint(&path), Form::Detail), "/disk print detail where mount-point=Q", &[t])?;
    }

    /// (ii) NQNs likewise.
    #[test]
    fn nqns_never_escape_their_quotes(
        text in input("nqn\\.20[0-9]{2}-(0[1-9]|1[0-2])\\.[a-z]{2,4}\\.[a-z0-9-]{1,10}(:[A-Za-z0-9._:-]{1,30})?"),
        nasty_name in NASTY,
    ) {
        for text in [text.clone(), format!("nqn.2026-09.com.example:{nasty_name}")] {
            let Ok(nqn) = Nqn::parse(&text) else { continue };
            prop_assert!(text.len() <= 223 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b)));
            let spec = DiskSpec { export: Some(NvmeExport { port: NonZeroU16::new(4420).unwrap(), nqn: nqn.clone() }), ..base_spec() };
            assert_shape(&Cmd::disk_add(&spec), ADD_SHAPE, &["p/s.img", "s", &text, FENCED_HOST, "c"])?;
            assert_shape(
                &Cmd::disk_set_allowed_hosts(&Slot::parse("s").unwrap(), std::slice::from_ref(&nqn)),
                "/disk set [find where slot=Q] nvme-tcp-server-allow-host-name=Q",
                &["s", &text],
            )?;
        }
    }

    /// (ii) Comments are free text: anything accepted survives its escaping, and what `as-value`
    /// cannot carry is refused.
    #[test]
    fn comments_never_escape_their_quotes(text in input("[ -~]{0,80}")) {
        let Ok(comment) = Comment::new(&text) else {
            prop_assert!(text.len() > Comment::MAX_LEN || text.chars().any(|c| !(' '..='~').contains(&c) || c == ';' || c == '='));
            return Ok(());
        };
        prop_assert!(!text.contains([';', '=']));
        assert_shape(&Cmd::disk_add(&DiskSpec { comment: Some(comment), ..base_spec() }), ADD_SHAPE, &["p/s.img", "s", "nqn.2026-09.com.example:s", FENCED_HOST, &text])?;
    }

    /// (ii) Sizes: exactly 1 ..= 2^63-1 accepted, written as plain digits; bigger (2^70-ish),
    /// zero, signs and suffixes refused.
    #[test]
    fn sizes_are_plain_numbers_in_range(
        text in prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            ((1u128 << 62)..(1u128 << 72)).prop_map(|n| n.to_string()),
            "[0-9]{1,25}",
            NASTY,
        ],
    ) {
        let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let in_range = digits_only && text.parse::<u128>().is_ok_and(|n| (1..=i64::MAX as u128).contains(&n));
        let parsed = text.parse::<ByteSize>();
        prop_assert_eq!(parsed.is_ok(), in_range, "{}", text);
        let Ok(size) = parsed else { return Ok(()) };
        let n = size.get();
        let cmd = Cmd::disk_add(&DiskSpec { size, ..base_spec() });
        assert_shape(&cmd, &ADD_SHAPE.replace("file-size=1", &format!("file-size={n}")), &["p/s.img", "s", "nqn.2026-09.com.example:s", FENCED_HOST, "c"])?;
        let slot = Slot::parse("s").unwrap();
        assert_shape(&Cmd::disk_set_size(&slot, size), &format!("/disk set [find where slot=Q] file-size={n}"), &["s"])?;
    }
}

#[test]
fn skeleton_sees_through_escapes() {
    let (shape, values) = skeleton(r#"/x a="b\"c" d="\$e""#);
    assert_eq!(shape, "/x a=Q d=Q");
    assert_eq!(values, vec!["b\"c", "$e"]);
}
