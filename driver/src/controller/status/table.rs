//! The error-code table of `docs/operations.md` against the classifier, and every error text
//! rds-sim can print against the table: a new simulator text without a row, a row the classifier
//! disagrees with, or a classifier change the table does not show, fails here.

use std::path::{Path, PathBuf};

use tonic::{Code, Status};

use crate::rds::command::Cmd;
use crate::rds::disk::RdsError;
use crate::rds::error::{RosError, classify};
use crate::rds::value::Slot;

const HEADING: &str = "### Error codes: what a RouterOS error becomes";

/// One row: the text with `<…>` placeholders, and the code it must become.
struct Row {
    pattern: String,
    code: Code,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the driver lives in the workspace")
        .to_owned()
}

fn rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(workspace().join("docs/operations.md")).unwrap();
    let section = doc
        .split_once(HEADING)
        .unwrap_or_else(|| panic!("docs/operations.md has no {HEADING:?}"))
        .1;
    let rows: Vec<Row> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let pattern = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let code =
                code_named(cells.get(2)?).unwrap_or_else(|| panic!("unknown code in row {line:?}"));
            Some(Row {
                pattern: pattern.to_owned(),
                code,
            })
        })
        .collect();
    assert!(
        rows.len() > 20,
        "the table is cut short: {} rows",
        rows.len()
    );
    rows
}

fn code_named(name: &str) -> Option<Code> {
    Some(match name {
        "NOT_FOUND" => Code::NotFound,
        "ALREADY_EXISTS" => Code::AlreadyExists,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "ABORTED" => Code::Aborted,
        "UNAVAILABLE" => Code::Unavailable,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "INTERNAL" => Code::Internal,
        _ => return None,
    })
}

/// The code the controller answers when a command prints `text`. Any output is an error for a
/// silent command, so unknown text is [`RosError::Unexpected`] as it would be there.
fn code_of(text: &str) -> Code {
    let cmd = Cmd::disk_remove(&Slot::parse("pvc-a").unwrap());
    let error = classify(&cmd, text).unwrap_or(RosError::Unexpected {
        command: cmd.to_string(),
        output: text.to_owned(),
    });
    Status::from(RdsError::from(error)).code()
}

/// Literal pieces of a pattern, split at its `<…>` placeholders.
fn pieces(pattern: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('<') {
        pieces.push(&rest[..open]);
        let close = rest[open..].find('>').expect("a placeholder closes") + open;
        rest = &rest[close + 1..];
    }
    pieces.push(rest);
    pieces
}

/// Does `text` match `pattern`, each placeholder standing for any non-empty text?
fn matches(pattern: &str, text: &str) -> bool {
    fn from(pieces: &[&str], text: &str, first: bool) -> bool {
        let Some((piece, rest)) = pieces.split_first() else {
            return text.is_empty();
        };
        if first {
            return text
                .strip_prefix(piece)
                .is_some_and(|text| from(rest, text, false));
        }
        // A placeholder precedes `piece`: it takes at least one character.
        (1..=text.len())
            .filter(|&at| text.is_char_boundary(at))
            .filter(|&at| text[at..].starts_with(piece))
            .any(|at| {
                let after = &text[at + piece.len()..];
                if rest.is_empty() && piece.is_empty() {
                    return true;
                }
                (!rest.is_empty() || after.is_empty()) && from(rest, after, false)
            })
    }
    from(&pieces(pattern), text, true)
}

/// The row for `text`: of those it matches, the one with the most literal text.
fn row_for<'r>(rows: &'r [Row], text: &str) -> Option<&'r Row> {
    rows.iter()
        .filter(|row| matches(&row.pattern, text))
        .max_by_key(|row| pieces(&row.pattern).concat().len())
}

/// The pattern with each placeholder filled in.
fn example(pattern: &str) -> String {
    pieces(pattern).join("pvc-x")
}

#[test]
fn every_row_is_what_the_classifier_answers() {
    let rows = rows();
    for row in &rows {
        let text = example(&row.pattern);
        assert_eq!(
            row_for(&rows, &text).map(|r| &r.pattern),
            Some(&row.pattern),
            "{text:?}: a more specific row shadows this one"
        );
        assert_eq!(code_of(&text), row.code, "{text:?} (row {:?})", row.pattern);
    }
}

#[test]
fn every_simulator_error_text_has_its_row() {
    let rows = rows();
    let texts = simulator_texts();
    assert!(texts.len() > 40, "too few texts found: {texts:?}");
    for (file, text) in &texts {
        let row = row_for(&rows, text)
            .unwrap_or_else(|| panic!("{file}: {text:?} matches no row of the table"));
        assert_eq!(
            code_of(text),
            row.code,
            "{file}: {text:?} classifies otherwise than its row {:?}",
            row.pattern
        );
    }
    // The texts this issue is about were found, so the scan did not miss them.
    for needle in [
        "is busy with another copy",
        "input does not match any value of",
    ] {
        assert!(
            texts.iter().any(|(_, text)| text.contains(needle)),
            "{needle:?} not found in the simulator"
        );
    }
}

#[test]
fn the_matcher_needs_every_literal_piece() {
    assert!(matches("failure: <d> is busy", "failure: a b is busy"));
    assert!(!matches("failure: <d> is busy", "failure:  is busy x"));
    assert!(matches("<anything else>", "what"));
    assert!(!matches("no such item", "no such item here"));
    assert!(matches("a <x> b <y>", "a 1 b 2"));
}

/// Every RouterOS error text in rds-sim's RouterOS layer, with `{…}` arguments filled in: the
/// literals given to `failure(…)` (which prefixes `failure: `), to `ExecError(…)`, in the store's
/// `#[error(…)]` texts and the script parser's `write!(f, …)`, and any literal starting
/// `failure: `.
fn simulator_texts() -> Vec<(String, String)> {
    let root = workspace().join("simulator/src");
    let mut texts = Vec::new();
    for file in rust_files(&root) {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        if name.starts_with("ssh/") || name.starts_with("nvme/") {
            continue; // the transports print no RouterOS text
        }
        let source = std::fs::read_to_string(&file).unwrap();
        let mut anchors = vec![("failure(", "failure: "), ("ExecError(", "")];
        if name.starts_with("store/") {
            anchors.push(("#[error(", ""));
        }
        if name == "routeros/script.rs" {
            anchors.push(("write!(f,", ""));
        }
        for (anchor, prefix) in anchors {
            for (at, _) in source.match_indices(anchor) {
                if let Some(text) = literal_after(&source[at + anchor.len()..]) {
                    texts.push((name.clone(), format!("{prefix}{text}")));
                }
            }
        }
        for (at, _) in source.match_indices("\"failure: ") {
            if let Some(text) = literal_after(&source[at..]) {
                texts.push((name.clone(), text));
            }
        }
    }
    texts.sort();
    texts.dedup();
    texts
        .into_iter()
        .map(|(file, text)| (file, fill_arguments(&text)))
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The string literal at the start of `code`, after blanks, `&` and `format!(`.
fn literal_after(code: &str) -> Option<String> {
    let code = code.trim_start().trim_start_matches('&');
    let code = code.strip_prefix("format!(").unwrap_or(code).trim_start();
    let mut chars = code.strip_prefix('"')?.chars();
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(text),
            '\\' => match chars.next()? {
                // A line continuation: the newline and the next line's indent vanish.
                '\n' => {
                    let rest = chars.as_str().trim_start();
                    chars = rest.chars();
                }
                'n' => text.push('\n'),
                other => text.push(other),
            },
            c => text.push(c),
        }
    }
    None
}

/// `{…}` format arguments replaced by a name, as the simulator would print one.
fn fill_arguments(text: &str) -> String {
    let mut filled = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
        filled.push_str("pvc-x");
        rest = rest.get(close + 1..).unwrap_or_default();
    }
    filled.push_str(rest);
    filled
}
