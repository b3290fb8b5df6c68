//! RouterOS error text → [`RosError`].
//!
//! RouterOS has no error channel and its exit status is unreliable: an error is a line of text
//! (routeros/README.md, "Errors"). `add`, `set` and `remove` print nothing on success, so any
//! output from them is an error ([`expect_silent`]); a print's output is an error when its first
//! line is one of the known texts ([`check_output`]).

use std::fmt;

use super::command::Cmd;

/// What went wrong with one command. Every message names the command and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosError {
    #[error("RouterOS ran `{command}` and answered `{text}`: the item does not exist")]
    NotFound { command: String, text: String },
    #[error(
        "RouterOS refused `{command}` with `{text}`: an item with this slot or file already exists; \
         read it back and compare it before retrying"
    )]
    AlreadyExists { command: String, text: String },
    #[error(
        "RouterOS refused `{command}` with `{text}`: the pool is out of space; free space on the RDS \
         or ask for a smaller volume"
    )]
    OutOfSpace { command: String, text: String },
    #[error(
        "RouterOS could not run `{command}`: `{text}`{near}; the driver sent a command this RouterOS \
         does not accept (RouterOS 7.21 or later is required): report it with this message",
        near = near(command, *position)
    )]
    Syntax {
        command: String,
        text: String,
        position: Option<Position>,
    },
    #[error(
        "RouterOS denied `{command}` with `{text}`: give the RDS user the ssh, read, write and test \
         policies"
    )]
    Permission { command: String, text: String },
    #[error(
        "RouterOS refused `{command}` with `{text}`: the disk or file is in use (a copy runs from \
         or into it, or a disk or subvolume still holds it); retry once that is done"
    )]
    Busy { command: String, text: String },
    #[error(
        "RouterOS stopped `{command}`: `{text}`; the copy did not finish and running it again \
         starts it anew"
    )]
    Interrupted { command: String, text: String },
    #[error(
        "RouterOS refused `{command}` with `{text}`: the pool cannot take it; check that rds.pool \
         names the mount point of a mounted, writable pool disk on the RDS"
    )]
    Storage { command: String, text: String },
    #[error("RouterOS failed `{command}` with `{text}`")]
    Failure { command: String, text: String },
    #[error(
        "`{command}` prints nothing when it succeeds, but printed {output:?}: treat it as failed and \
         check the item on the RDS"
    )]
    Unexpected { command: String, output: String },
}

/// `(line L column C)` of a RouterOS error, both 1-based positions in the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// The error in `output`, if its first non-blank line is a known RouterOS error text.
pub fn classify(cmd: &Cmd, output: &str) -> Option<RosError> {
    let first = output
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    let text = first.strip_prefix("Script Error: ").unwrap_or(first);
    let lower = text.to_ascii_lowercase();
    let command = cmd.as_str().to_owned();
    let text = text.to_owned();
    let has = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    let error = if names_a_missing_item(&lower) {
        RosError::NotFound { command, text }
    } else if is_syntax(&lower) {
        RosError::Syntax {
            command,
            position: position(&lower),
            text,
        }
    } else if has(&["not enough permissions", "not allowed (9)"]) {
        RosError::Permission { command, text }
    } else if has(&["no such item"]) {
        RosError::NotFound { command, text }
    } else if has(&["already have", "already exist"]) {
        RosError::AlreadyExists { command, text }
    } else if has(&[
        "not enough space",
        "not enough disk space",
        "no space",
        "no free space",
        "out of space",
        "disk full",
        "disk is full",
    ]) {
        RosError::OutOfSpace { command, text }
    } else if has(&["is busy", "is used by disk", " holds ", "in use"]) {
        RosError::Busy { command, text }
    } else if has(&["copy was interrupted", "copy stopped"]) {
        RosError::Interrupted { command, text }
    } else if has(&["no such mount point", "read-only file system"]) {
        RosError::Storage { command, text }
    } else if lower.starts_with("failure:") || lower.starts_with("std failure:") {
        RosError::Failure { command, text }
    } else {
        return None;
    };
    Some(error)
}

/// For add, set and remove: success is no output at all.
pub fn expect_silent(cmd: &Cmd, output: &str) -> Result<(), RosError> {
    debug_assert!(cmd.is_silent(), "`{cmd}` prints on success");
    if output.trim().is_empty() {
        return Ok(());
    }
    Err(
        classify(cmd, output).unwrap_or_else(|| RosError::Unexpected {
            command: cmd.as_str().to_owned(),
            output: output.trim().to_owned(),
        }),
    )
}

/// For prints: the output itself, unless it is an error text.
pub fn check_output<'o>(cmd: &Cmd, output: &'o str) -> Result<&'o str, RosError> {
    match classify(cmd, output) {
        Some(error) => Err(error),
        None => Ok(output),
    }
}

/// `input does not match any value of <param>` where `<param>` names an item (RouterOS types
/// `/disk copy`'s `src` and `dst` and a subvolume's `parent` and `fs` as enums of the existing
/// items): the item is gone, which a retry after recreating it would fix. For any other
/// parameter (`type`, `proplist`, a boolean) the driver sent a value RouterOS does not know.
fn names_a_missing_item(lower: &str) -> bool {
    const ITEM_PARAMS: [&str; 5] = ["src", "dst", "parent", "fs", "copy-from"];
    lower
        .strip_prefix("input does not match any value of ")
        .is_some_and(|param| ITEM_PARAMS.contains(&param.trim()))
}

fn is_syntax(lower: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "syntax error",
        "expected end of command",
        "bad command name",
        "bad parameter",
        "input does not match any value of",
        "invalid value for argument",
        "expected item id",
    ];
    PREFIXES.iter().any(|prefix| lower.starts_with(prefix))
        || (lower.starts_with("value of ")
            && lower.contains("contains invalid trailing characters"))
}

/// `(line L column C)` anywhere in the text.
fn position(lower: &str) -> Option<Position> {
    let rest = &lower[lower.find("(line ")? + "(line ".len()..];
    let (line, rest) = rest.split_once(" column ")?;
    let (column, _) = rest.split_once(')')?;
    Some(Position {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// ` at column C (near "…")`, showing the command from the reported column.
fn near(command: &str, position: Option<Position>) -> impl fmt::Display {
    let shown = position.filter(|p| p.line == 1).and_then(|p| {
        let from: String = command
            .chars()
            .skip(usize::try_from(p.column).ok()?.checked_sub(1)?)
            .take(24)
            .collect();
        Some(format!(" at column {} (near {from:?})", p.column))
    });
    shown.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rds::value::Slot;

    fn remove() -> Cmd {
        Cmd::disk_remove(&Slot::parse("pvc-1").unwrap())
    }

    #[test]
    fn silent_commands_succeed_only_without_output() {
        assert_eq!(expect_silent(&remove(), ""), Ok(()));
        assert_eq!(expect_silent(&remove(), "\r\n"), Ok(()));
        assert_eq!(
            expect_silent(&remove(), "*1A\r\n"),
            Err(RosError::Unexpected {
                command: remove().as_str().into(),
                output: "*1A".into()
            })
        );
    }

    #[test]
    fn known_texts_are_typed() {
        let kind = |text: &str| match expect_silent(&remove(), text).unwrap_err() {
            RosError::NotFound { .. } => "not-found",
            RosError::AlreadyExists { .. } => "exists",
            RosError::OutOfSpace { .. } => "space",
            RosError::Syntax { .. } => "syntax",
            RosError::Permission { .. } => "permission",
            RosError::Busy { .. } => "busy",
            RosError::Interrupted { .. } => "interrupted",
            RosError::Storage { .. } => "storage",
            RosError::Failure { .. } => "failure",
            RosError::Unexpected { .. } => "unexpected",
        };
        for (text, expected) in [
            ("no such item\r\n", "not-found"),
            ("failure: no such item", "not-found"),
            ("failure: already have such entry\r\n", "exists"),
            ("already have device with such name", "exists"),
            ("item with such name already exists", "exists"),
            ("failure: file already exists", "exists"),
            ("failure: not enough space", "space"),
            ("failure: no space left on device", "space"),
            ("syntax error (line 1 column 10)", "syntax"),
            ("expected end of command (line 1 column 24)", "syntax"),
            ("bad command name this (line 1 column 1)", "syntax"),
            ("bad parameter once (line 1 column 54)", "syntax"),
            ("input does not match any value of interface", "syntax"),
            ("input does not match any value of src", "not-found"),
            ("input does not match any value of dst", "not-found"),
            ("input does not match any value of parent", "not-found"),
            ("failure: pvc-a is busy with another copy", "busy"),
            ("failure: file is used by disk pvc-a", "busy"),
            ("failure: subvolume pvc-a holds snap-b", "busy"),
            ("failure: the copy was interrupted", "interrupted"),
            ("failure: no such mount point", "storage"),
            ("failure: read-only file system", "storage"),
            ("invalid value for argument file-size", "syntax"),
            (
                "value of mtu contains invalid trailing characters",
                "syntax",
            ),
            ("expected item id (line 1 column 13)", "syntax"),
            ("not enough permissions (9)", "permission"),
            ("std failure: not allowed (9)", "permission"),
            ("failure: execution error", "failure"),
            ("Script Error: failure: disk is in use", "busy"),
            ("failure: slot name too long (max 32 characters)", "failure"),
            ("something else entirely", "unexpected"),
        ] {
            assert_eq!(kind(text), expected, "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_carry_and_show_the_position() {
        let cmd = Cmd::system_resource();
        let error = classify(&cmd, "expected end of command (line 1 column 9)\r\n").unwrap();
        let RosError::Syntax { position, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(*position, Some(Position { line: 1, column: 9 }));
        let message = error.to_string();
        assert!(message.contains("`/system resource print`"), "{message}");
        assert!(
            message.contains("at column 9 (near \"resource print\")"),
            "{message}"
        );
        let no_position = classify(&cmd, "invalid value for argument x").unwrap();
        assert!(matches!(
            no_position,
            RosError::Syntax { position: None, .. }
        ));
        assert!(!no_position.to_string().contains("near"));
    }

    #[test]
    fn prints_pass_unless_they_are_errors() {
        let cmd = Cmd::system_identity();
        assert_eq!(check_output(&cmd, "  name: rds\r\n"), Ok("  name: rds\r\n"));
        assert_eq!(check_output(&cmd, ""), Ok(""));
        assert!(matches!(
            check_output(&cmd, "not enough permissions (9)\r\n"),
            Err(RosError::Permission { .. })
        ));
    }

    #[test]
    fn messages_name_the_command_and_the_remedy() {
        let message = classify(&remove(), "failure: not enough space")
            .unwrap()
            .to_string();
        assert!(
            message.contains("/disk remove [find where slot=\"pvc-1\"]"),
            "{message}"
        );
        assert!(message.contains("free space on the RDS"), "{message}");
    }
}
