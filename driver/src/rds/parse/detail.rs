//! `print detail`: the human layout, wrapped at the terminal width.
//!
//! ```text
//! Flags: B - BLOCK-DEVICE; t - NVME-TCP-EXPORT
//! 31 Bt type=file slot="vm-storage-001" … nvme-tcp-export=yes
//!       nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2026-09.com.mikrotik:rds2216.vm-storage-001" …
//!       file-path=/raid10/vm-storage-001.img file-size=1024.0GiB file-offset=0
//! ```
//!
//! RouterOS packs `name=value` tokens greedily into lines; a token longer than a whole line is
//! split mid-token (routeros/README.md). Joining the lines back is the hard part, decided at each
//! line break:
//! * a line shorter than the longest property line ends at a token boundary: a mid-token split
//!   only happens on a full line;
//! * after a full line, the break is inside a token when it falls inside a quoted value, or when
//!   the next line does not start with `name=`;
//! * a full line whose last word is a bare name fragment (`… nvme-tcp-`) followed by a line
//!   starting `name=` (`server-nqn="…"`) is a split inside a property name when the joined token
//!   would not have fitted on a line, which is the only case in which RouterOS splits it.
//!
//! Also tolerated: CRLF or LF, the `Flags:` legend present, absent or wrapped, items separated by
//! a line holding one space or by an empty line, trailing spaces, unknown properties, and
//! `;;; comment` lines.

use super::{ParseError, Record, lines, property_name_len, unquote};

/// Every item of a `print detail` output; no items for an empty output or a lone legend.
pub fn parse_detail(output: &str) -> Result<Vec<Record>, ParseError> {
    let items = split_items(output)?;
    let limit = items
        .iter()
        .flat_map(|item| &item.prop_lines)
        .map(|line| char_len(line.text))
        .max()
        .unwrap_or(0);
    items
        .into_iter()
        .map(|item| item.into_record(limit))
        .collect()
}

/// An item's lines, sorted out but not yet joined.
struct RawItem<'a> {
    /// Line number (0-based) of the item line, for error messages.
    number: usize,
    index: u32,
    flags: Vec<char>,
    /// Column where the properties (or `;;;`) start on the item line; continuation lines are
    /// indented to it.
    indent: usize,
    comment: Option<String>,
    prop_lines: Vec<PropLine<'a>>,
}

/// A line holding properties: the whole line (its length tells whether it is full) and the byte
/// offset where its properties start.
struct PropLine<'a> {
    text: &'a str,
    start: usize,
}

impl PropLine<'_> {
    fn body(&self) -> &str {
        &self.text[self.start..]
    }
}

fn split_items(output: &str) -> Result<Vec<RawItem<'_>>, ParseError> {
    let mut items: Vec<RawItem> = Vec::new();
    let mut current: Option<RawItem> = None;
    let mut in_legend = false;
    for (number, line) in lines(output).enumerate() {
        if line.trim().is_empty() {
            items.extend(current.take());
            in_legend = false;
            continue;
        }
        if items.is_empty() && current.is_none() && line.starts_with("Flags:") {
            in_legend = true;
            continue;
        }
        let item_start = item_line(line);
        if in_legend && line.starts_with(' ') && item_start.is_none() {
            continue;
        }
        in_legend = false;
        // An indented line continues the item; a line starting with an index further left than
        // the item's properties starts the next one.
        let continuing = current
            .as_mut()
            .filter(|item| item_start.is_none() || leading_spaces(line) >= item.indent);
        if let Some(item) = continuing {
            item.push_line(line, number)?;
            continue;
        }
        let Some(start) = item_start else {
            return Err(ParseError::Line {
                line: number + 1,
                reason: "expected an item line (`<index> <flags> name=value…`)",
                text: line.to_owned(),
            });
        };
        items.extend(current.take());
        current = Some(RawItem::start(line, number, start));
    }
    items.extend(current);
    Ok(items)
}

/// The index of an item line and the byte offset just after it, if `line` starts like one.
fn item_line(line: &str) -> Option<(u32, usize)> {
    let digits_start = leading_spaces(line);
    let digits = line[digits_start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let end = digits_start + digits;
    if digits == 0 || !matches!(line.as_bytes().get(end), None | Some(b' ')) {
        return None;
    }
    Some((line[digits_start..end].parse().ok()?, end))
}

impl<'a> RawItem<'a> {
    fn start(line: &'a str, number: usize, (index, after_index): (u32, usize)) -> Self {
        let mut item = RawItem {
            number,
            index,
            flags: Vec::new(),
            indent: line.len(),
            comment: None,
            prop_lines: Vec::new(),
        };
        let mut position = after_index;
        while position < line.len() {
            let word_start = position + leading_spaces(&line[position..]);
            let word_end = line[word_start..]
                .find(' ')
                .map_or(line.len(), |end| word_start + end);
            let word = &line[word_start..word_end];
            if let Some(comment) = word.starts_with(";;;").then(|| &line[word_start + 3..]) {
                item.indent = word_start;
                item.comment = Some(comment.trim().to_owned());
                break;
            }
            if word.contains('=') {
                item.indent = word_start;
                item.prop_lines.push(PropLine {
                    text: line,
                    start: word_start,
                });
                break;
            }
            item.flags.extend(word.chars());
            position = word_end;
        }
        item
    }

    fn push_line(&mut self, line: &'a str, number: usize) -> Result<(), ParseError> {
        let leading = leading_spaces(line);
        let start = leading.min(self.indent);
        if self.prop_lines.is_empty() {
            let Some(comment) = self.comment.as_mut() else {
                return Err(ParseError::Line {
                    line: number + 1,
                    reason: "a continuation line follows an item line without properties",
                    text: line.to_owned(),
                });
            };
            // Comment lines come before the properties: further lines of a multi-line comment
            // start at column 0; an indented line without `=` is taken as a wrapped comment
            // (undocumented; exact for comments without spaces, like the driver's metadata).
            if leading == 0 {
                comment.push('\n');
                comment.push_str(line.trim_end());
                return Ok(());
            }
            if !line.contains('=') {
                comment.push_str(line[start..].trim_end());
                return Ok(());
            }
        }
        self.prop_lines.push(PropLine { text: line, start });
        Ok(())
    }

    fn into_record(self, limit: usize) -> Result<Record, ParseError> {
        let capacity = limit.saturating_sub(self.indent);
        let mut body = String::new();
        let mut previous: Option<&PropLine> = None;
        for line in &self.prop_lines {
            match previous {
                Some(previous)
                    if splits_token(
                        &body,
                        char_len(previous.text) >= limit,
                        line.body(),
                        capacity,
                    ) =>
                {
                    body.push_str(line.body());
                }
                Some(_) => {
                    body.truncate(body.trim_end().len());
                    body.push(' ');
                    body.push_str(line.body().trim_start());
                }
                None => body.push_str(line.body()),
            }
            previous = Some(line);
        }
        let mut record = Record {
            index: Some(self.index),
            flags: self.flags,
            comment: self.comment.filter(|comment| !comment.is_empty()),
            props: Vec::new(),
        };
        let tokens = tokens(&body).map_err(|reason| ParseError::Line {
            line: self.number + 1,
            reason,
            text: body.clone(),
        })?;
        for (name, value) in tokens {
            record.insert(name, value)?;
        }
        Ok(record)
    }
}

/// Whether the break between `body` (the joined text so far) and `next` falls inside a token.
fn splits_token(body: &str, full: bool, next: &str, capacity: usize) -> bool {
    if !full {
        return false;
    }
    let scan = Scan::of(body);
    if scan.in_quote {
        return true;
    }
    if property_name_len(next).is_none() {
        return true;
    }
    // `next` starts like a token; it is the rest of one only if the last word of `body` is a
    // bare name fragment and the whole token was too long for a line (else RouterOS would have
    // moved it to the next line whole).
    let fragment = &body[scan.word_start..];
    let is_fragment = !fragment.is_empty()
        && fragment.as_bytes()[0].is_ascii_lowercase()
        && fragment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    is_fragment && char_len(fragment) + char_len(&next[..first_token_len(next)]) > capacity
}

/// Where quoting leaves a text: inside a quoted value or not, and where its last unquoted word
/// starts. A `"` opens a quote only right after `=`.
struct Scan {
    in_quote: bool,
    word_start: usize,
}

impl Scan {
    fn of(text: &str) -> Scan {
        let mut scan = Scan {
            in_quote: false,
            word_start: 0,
        };
        let mut escaped = false;
        let mut previous = 0u8;
        for (i, byte) in text.bytes().enumerate() {
            if scan.in_quote {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => scan.in_quote = false,
                    _ => {}
                }
            } else if byte == b'"' && previous == b'=' {
                scan.in_quote = true;
            } else if byte == b' ' {
                scan.word_start = i + 1;
            }
            previous = byte;
        }
        scan
    }
}

/// The `name=value` tokens of a joined item body. A quoted value runs to its closing quote; a
/// bare value runs to the next ` name=` (bare values may hold spaces: `size=1 099 511 627 776`,
/// `type=.img file`, `last-modified=2025-11-11 14:32:41`).
fn tokens(body: &str) -> Result<Vec<(&str, String)>, &'static str> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_len = property_name_len(rest).ok_or("expected name=value")?;
        let name = &rest[..name_len];
        let after = &rest[name_len + 1..];
        let (value, remainder) = if after.starts_with('"') {
            let end = quoted_end(after).ok_or("a quoted value is not terminated")?;
            let remainder = &after[end..];
            if !(remainder.is_empty() || remainder.starts_with(' ')) {
                return Err("text follows a quoted value");
            }
            let value = unquote(&after[..end])
                .map_err(|_| "a quoted value holds a bad escape or non-UTF-8 bytes")?;
            (value, remainder)
        } else {
            let end = bare_value_end(after);
            (after[..end].trim_end().to_owned(), &after[end..])
        };
        out.push((name, value));
        rest = remainder.trim_start();
    }
    Ok(out)
}

/// Byte length of the `name=value` token `text` starts with, as far as `text` goes.
fn first_token_len(text: &str) -> usize {
    let Some(name_len) = property_name_len(text) else {
        return text.len();
    };
    let value = &text[name_len + 1..];
    let value_len = if value.starts_with('"') {
        quoted_end(value).unwrap_or(value.len())
    } else {
        bare_value_end(value)
    };
    name_len + 1 + value_len
}

/// Byte length of the quoted literal at the start of `text`, both quotes included.
fn quoted_end(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate().skip(1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn bare_value_end(text: &str) -> usize {
    text.match_indices(' ')
        .map(|(i, _)| i)
        .find(|&i| property_name_len(&text[i + 1..]).is_some())
        .unwrap_or(text.len())
}

fn leading_spaces(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

fn char_len(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(record: &Record) -> Vec<(&str, &str)> {
        record
            .props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn empty_outputs_have_no_items() {
        for empty in ["", "\r\n", "Flags: B - BLOCK-DEVICE\r\n", " \r\n"] {
            assert_eq!(parse_detail(empty).unwrap(), Vec::new(), "{empty:?}");
        }
    }

    #[test]
    fn wrapped_legend_is_skipped() {
        let output = "Flags: B - BLOCK-DEVICE; M - MOUNTED, S - SWAP-ENABLED\n       g - GUID-PARTITION-TABLE, p - PARTITION\n 0 B   slot=\"a\"\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].flags, vec!['B']);
        assert_eq!(props(&records[0]), vec![("slot", "a")]);
    }

    #[test]
    fn comment_line_precedes_properties() {
        let output = " 0  R   ;;; rds-csi:1,kind:volume\r\n        name=\"ether1\" mtu=1500\r\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(records[0].comment.as_deref(), Some("rds-csi:1,kind:volume"));
        assert_eq!(records[0].flags, vec!['R']);
        assert_eq!(
            props(&records[0]),
            vec![("name", "ether1"), ("mtu", "1500")]
        );
    }

    #[test]
    fn multi_line_comment_continues_at_column_zero() {
        let output = " 0 ;;; first\nsecond\n   name=x\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(records[0].comment.as_deref(), Some("first\nsecond"));
        assert_eq!(props(&records[0]), vec![("name", "x")]);
    }

    #[test]
    fn quoted_values_keep_spaces_and_escapes() {
        let output = " 3 state=\"clean, sync:repair\" model=\"a \\\"b\\\" c\" x=\"\"\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(
            props(&records[0]),
            vec![
                ("state", "clean, sync:repair"),
                ("model", "a \"b\" c"),
                ("x", "")
            ]
        );
    }

    #[test]
    fn mid_token_split_inside_a_bare_path() {
        // The first line is the longest, so it is full: the break is inside `file-path`.
        let output = concat!(
            " 0 type=file file-path=/storage-pool/metal-csi/pvc-0123\r\n",
            "   456789.img file-size=10.0GiB\r\n",
        );
        let records = parse_detail(output).unwrap();
        assert_eq!(
            props(&records[0]),
            vec![
                ("type", "file"),
                ("file-path", "/storage-pool/metal-csi/pvc-0123456789.img"),
                ("file-size", "10.0GiB")
            ]
        );
    }

    #[test]
    fn split_inside_a_property_name_is_rejoined() {
        // `nvme-tcp-server-nqn="…"` is longer than a line, so RouterOS cut it after `nvme-tcp-`.
        // Lines of at most 16 characters, the token cut wherever a line was full.
        let output = concat!(
            " 0 a=1 nvme-tcp-\n",
            "   server-nqn=\"n\n",
            "   qn.2026-09.co\n",
            "   m.example:x\"\n",
        );
        let records = parse_detail(output).unwrap();
        assert_eq!(
            props(&records[0]),
            vec![
                ("a", "1"),
                ("nvme-tcp-server-nqn", "nqn.2026-09.com.example:x")
            ]
        );
    }

    #[test]
    fn a_short_word_before_a_full_line_break_stays_a_value_word() {
        // `type=.json file` filled the line by chance; `size=0` fits a line, so it was not split.
        let output = " 4 name=flash/skins/newskin.json type=.json file\n   size=0 last-modified=2024-11-25 13:10:52\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(records[0].get("type"), Some(".json file"));
        assert_eq!(records[0].get("size"), Some("0"));
    }

    #[test]
    fn a_line_shorter_than_the_longest_ends_at_a_token_boundary() {
        // `file` could be a name fragment and `model="…"` is as long as a line, but the first line
        // is not full, so nothing was cut there.
        let output = format!(
            " 4 name=x type=.img file\n   model=\"{}\"\n",
            "a".repeat(50)
        );
        let records = parse_detail(&output).unwrap();
        assert_eq!(records[0].get("type"), Some(".img file"));
        assert_eq!(records[0].get("model"), Some("a".repeat(50).as_str()));
    }

    #[test]
    fn continuation_starting_with_digits_is_not_an_item() {
        let output = " 0 a=1 size=1 099 511 \n   627 776 b=2\n";
        let records = parse_detail(output).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].get("size"), Some("1 099 511 627 776"));
    }

    #[test]
    fn stray_text_is_an_error() {
        assert!(parse_detail("no such item\r\n").is_err());
        assert!(parse_detail(" 0 a=\"open\n").is_err());
        assert!(parse_detail(" 0 a=\"x\"y\n").is_err());
        assert!(parse_detail(" 0 a=1 a=2\n").is_err());
    }
}
