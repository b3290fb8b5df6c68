//! The script forms: what `:put` prints for `print detail as-value`, bare or through
//! `:serialize to=json`.
//!
//! `print as-value` returns a list of RouterOS associative arrays, and RouterOS keeps the keys of
//! an associative array **sorted**: TIK (danikf/tik4net `Docs/findings-cli.md`, measured on 7.24)
//! shows `.id=*3;actual-mtu=1500;comment=a;…;disabled=false;name=ether2;…` for an interface, whose
//! print order starts with `name`, and a RouterOS JSON reference verified on 7.21+/7.22beta5 shows
//! `{"z"=1;"a"=2;"m"=3}` serialising as `{"a":2,"m":3,"z":1}`. Both forms therefore list each item's
//! keys in byte order, which puts `.id` first; `comment` is one key among the others.
//!
//! Flags are not printed here: RouterOS includes them as boolean keys (`disabled=false`,
//! `mounted=true`), so a menu adds them to [`Item::props`] itself when it builds items for these
//! forms.

use std::fmt::Write as _;

use super::{CRLF, Item, Value};

/// One value in a record, typed the way the RouterOS script value is.
#[derive(Clone, Copy)]
enum Field<'a> {
    Id(u32),
    Text(&'a str),
    Bool(bool),
    Number(u64),
}

/// The sorted order of a record's keys. The items of a listing share their keys, so the order
/// found for one item serves the next ones: sorting each record was a tenth of a JSON listing.
#[derive(Default)]
struct KeyOrder {
    keys: Vec<&'static str>,
    order: Vec<usize>,
}

/// An item as its sorted `(key, value)` record.
fn record<'a>(item: &'a Item, sorted: &mut KeyOrder) -> Vec<(&'static str, Field<'a>)> {
    let mut fields = Vec::with_capacity(item.props.len() + 2);
    fields.push((".id", Field::Id(item.id)));
    if let Some(comment) = &item.comment {
        fields.push(("comment", Field::Text(comment)));
    }
    fields.extend(item.props.iter().map(|(name, value)| {
        let field = match value {
            Value::Str(s) | Value::Bare(s) => Field::Text(s),
            Value::Bool(b) => Field::Bool(*b),
            Value::Num(n) | Value::Int(n) | Value::Size(n) => Field::Number(*n),
            Value::Percent(p) => Field::Number(u64::from(*p)),
        };
        (*name, field)
    }));
    if !fields
        .iter()
        .map(|(key, _)| *key)
        .eq(sorted.keys.iter().copied())
    {
        sorted.keys = fields.iter().map(|(key, _)| *key).collect();
        let keys = &sorted.keys;
        sorted.order = (0..keys.len()).collect();
        sorted
            .order
            .sort_by(|a, b| keys[*a].as_bytes().cmp(keys[*b].as_bytes()));
    }
    sorted.order.iter().map(|i| fields[*i]).collect()
}

/// `:put [/… print detail as-value]`: one line, every record's `key=value` pairs joined by `;`
/// and records joined by `;` too (a new record starts at each `.id=`). Values are raw: `.id` as
/// `*HEX`, numbers and sizes as plain digits, a percentage as its number, booleans `true`/`false`,
/// strings as they are, with **no quoting or escaping** (REFERENCE.md §5.5). Keys are sorted (see
/// the module documentation). Zero items print an empty line.
pub fn as_value(items: &[Item]) -> String {
    let mut out = String::new();
    let mut sorted = KeyOrder::default();
    let fields = items.iter().flat_map(|item| record(item, &mut sorted));
    for (field_number, (key, field)) in fields.enumerate() {
        if field_number > 0 {
            out.push(';');
        }
        let _ = match field {
            Field::Id(id) => write!(out, "{key}=*{id:X}"),
            Field::Text(text) => write!(out, "{key}={text}"),
            Field::Bool(b) => write!(out, "{key}={b}"),
            Field::Number(n) => write!(out, "{key}={n}"),
        };
    }
    out.push_str(CRLF);
    out
}

/// `:put [:serialize to=json [/… print detail as-value]]`: a compact JSON array with one object
/// per item, on one line.
///
/// The choices, from the public evidence (MikroTik's scripting manual; a RouterOS JSON reference
/// verified on 7.21+/7.22beta5; TIK's measurements on 7.24; a tool pushing `:serialize` output from
/// real routers):
/// * compact, no spaces: `{"a":1,"b":2}` (`json.pretty` is an opt-in option); the list is always an
///   array, `[]` when empty, `[{…}]` for one item;
/// * keys sorted in byte order, so `.id` comes first (module documentation);
/// * numbers (`Num`, `Int`, `Size` in bytes, `Percent` as its number) are JSON integers:
///   `"mtu":1500` (TIK). TIK and a tool ingesting real routers' output also saw some integer
///   fields as `2048.000000`: fields RouterOS holds as strings. A menu reproduces one by giving it
///   as `Value::Bare` digits, which the string conversion below prints that way;
/// * booleans are JSON `true`/`false`; `.id` is the string `"*1A"`;
/// * strings are JSON strings, except that without `options=json.no-string-conversion` RouterOS
///   converts a string that reads as a number into a JSON number printed with six decimals:
///   `{"id"="456"}` → `{"id":456.000000}`. Here a string of decimal digits (optionally signed,
///   optionally with a fractional part) is converted that way; any other string stays a string;
/// * string escaping is standard JSON: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\u00XX` for
///   other control characters; `/` and non-ASCII text are left as they are (`"192.168.0.0/24"`).
pub fn json(items: &[Item]) -> String {
    // About what a disk's record takes, so that a long listing is not copied as it grows.
    let mut out = String::with_capacity(2 + items.len() * 800);
    out.push('[');
    let mut sorted = KeyOrder::default();
    for (item_number, item) in items.iter().enumerate() {
        if item_number > 0 {
            out.push(',');
        }
        out.push('{');
        for (field_number, (key, field)) in record(item, &mut sorted).into_iter().enumerate() {
            if field_number > 0 {
                out.push(',');
            }
            push_json_string(&mut out, key);
            out.push(':');
            let _ = match field {
                Field::Id(id) => write!(out, "\"*{id:X}\""),
                Field::Text(text) => match numeric_string(text) {
                    Some(number) => write!(out, "{number:.6}"),
                    None => {
                        push_json_string(&mut out, text);
                        Ok(())
                    }
                },
                Field::Bool(b) => write!(out, "{b}"),
                Field::Number(n) => write!(out, "{n}"),
            };
        }
        out.push('}');
    }
    out.push(']');
    out.push_str(CRLF);
    out
}

/// The number a string converts to under `:serialize`'s default string conversion, if it reads
/// as one: `-?[0-9]+(\.[0-9]+)?`.
fn numeric_string(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if all_digits(whole) && fraction.is_none_or(all_digits) {
        text.parse().ok()
    } else {
        None
    }
}

/// Copies the runs between escapes whole: character by character, this was a tenth of the
/// simulator's cost in a JSON listing.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    // Nearly every value has nothing to escape: one scan, one copy.
    if !text
        .bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut run = 0;
    // Every byte escaped is ASCII, so the runs split on character boundaries.
    for (at, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0C => Some("\\f"),
            0..0x20 => None,
            _ => continue,
        };
        out.push_str(&text[run..at]);
        match short {
            Some(escape) => out.push_str(escape),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        run = at + 1;
    }
    out.push_str(&text[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::file_disk;
    use super::*;

    fn item(id: u32, comment: Option<&str>, props: Vec<(&'static str, Value)>) -> Item {
        Item {
            index: 0,
            id,
            flags: Vec::new(),
            comment: comment.map(str::to_owned),
            props,
        }
    }

    #[test]
    fn as_value_prints_the_disk_as_one_raw_sorted_record() {
        let expected = concat!(
            ".id=*2B;compress=false;file-offset=0;file-path=/raid10/vm-storage-001.img;",
            "file-size=1099511627776;fs=-;iscsi-export=false;media-interface=none;media-sharing=false;",
            "model=/raid10/vm-storage-001.img;mount-filesystem=false;mount-read-only=false;",
            "nfs-sharing=false;nvme-tcp-export=true;nvme-tcp-server-allow-host-name=;",
            "nvme-tcp-server-nqn=nqn.2026-09.com.mikrotik:rds2216.vm-storage-001;",
            "nvme-tcp-server-port=4420;parent=;raid-master=none;sector-size=512;size=1099511627776;",
            "slot=vm-storage-001;slot-default=;smb-sharing=false;swap=false;type=file\r\n",
        );
        assert_eq!(
            as_value(&[file_disk("/raid10/vm-storage-001.img")]),
            expected
        );
    }

    #[test]
    fn as_value_chains_records_and_escapes_nothing() {
        let items = [
            item(
                0x1A,
                Some("from pvc-1"),
                vec![
                    ("use", Value::Percent(8)),
                    ("free", Value::Num(14_789_895_307_264)),
                    ("slot", Value::Str("raid10".into())),
                ],
            ),
            item(0x1B, None, vec![("slot", Value::Str("a;b=\"c\"".into()))]),
        ];
        assert_eq!(
            as_value(&items),
            ".id=*1A;comment=from pvc-1;free=14789895307264;slot=raid10;use=8;.id=*1B;slot=a;b=\"c\"\r\n"
        );
        assert_eq!(as_value(&[]), "\r\n");
    }

    #[test]
    fn json_prints_the_disk_as_a_compact_sorted_typed_object() {
        let expected = concat!(
            r#"[{".id":"*2B","compress":false,"file-offset":0,"file-path":"/raid10/vm-storage-001.img","#,
            r#""file-size":1099511627776,"fs":"-","iscsi-export":false,"media-interface":"none","#,
            r#""media-sharing":false,"model":"/raid10/vm-storage-001.img","mount-filesystem":false,"#,
            r#""mount-read-only":false,"nfs-sharing":false,"nvme-tcp-export":true,"#,
            r#""nvme-tcp-server-allow-host-name":"","#,
            r#""nvme-tcp-server-nqn":"nqn.2026-09.com.mikrotik:rds2216.vm-storage-001","#,
            r#""nvme-tcp-server-port":4420,"parent":"","raid-master":"none","sector-size":512,"#,
            r#""size":1099511627776,"slot":"vm-storage-001","slot-default":"","smb-sharing":false,"#,
            r#""swap":false,"type":"file"}]"#,
            "\r\n",
        );
        let printed = json(&[file_disk("/raid10/vm-storage-001.img")]);
        assert_eq!(printed, expected);
        let parsed: serde_json::Value = serde_json::from_str(&printed).expect("valid JSON");
        assert_eq!(parsed[0]["size"], 1_099_511_627_776_u64);
    }

    #[test]
    fn json_converts_numeric_strings_and_escapes_the_rest() {
        let items = [
            item(
                0x1,
                Some("line1\nsaid \"hi\" \\ \u{1}"),
                vec![
                    ("slot", Value::Str("456".into())),
                    ("offset", Value::Bare("-5".into())),
                    ("ratio", Value::Str("1.5".into())),
                    ("version", Value::Str("7.24.4".into())),
                    ("name", Value::Str("12a".into())),
                    ("dash", Value::Bare("-".into())),
                    ("use", Value::Percent(8)),
                ],
            ),
            item(0xAB, None, Vec::new()),
        ];
        let expected = concat!(
            r#"[{".id":"*1","comment":"line1\nsaid \"hi\" \\ \u0001","dash":"-","name":"12a","#,
            r#""offset":-5.000000,"ratio":1.500000,"slot":456.000000,"use":8,"version":"7.24.4"},"#,
            r#"{".id":"*AB"}]"#,
            "\r\n",
        );
        let printed = json(&items);
        assert_eq!(printed, expected);
        serde_json::from_str::<serde_json::Value>(&printed).expect("valid JSON");
        assert_eq!(json(&[]), "[]\r\n");
    }

    #[test]
    fn records_of_different_keys_in_one_listing_are_each_sorted() {
        let short = || vec![("b", Value::Int(2)), ("a", Value::Int(1))];
        let long = vec![
            ("z", Value::Int(26)),
            ("b", Value::Int(2)),
            ("a", Value::Int(1)),
        ];
        let items = [
            item(1, None, short()),
            item(2, Some("c"), long),
            item(3, None, short()),
        ];
        assert_eq!(
            json(&items),
            concat!(
                r#"[{".id":"*1","a":1,"b":2},{".id":"*2","a":1,"b":2,"comment":"c","z":26},"#,
                r#"{".id":"*3","a":1,"b":2}]"#,
                "\r\n"
            )
        );
        assert_eq!(
            as_value(&items),
            ".id=*1;a=1;b=2;.id=*2;a=1;b=2;comment=c;z=26;.id=*3;a=1;b=2\r\n"
        );
    }
}
