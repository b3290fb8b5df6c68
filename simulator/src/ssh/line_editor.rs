//! Line editing for the interactive console: turns the bytes a terminal sends into echo and
//! whole lines. Pure: no I/O, so every key is testable.

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const ESCAPE: u8 = 0x1b;

/// What the console does in answer to input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Edit {
    /// Bytes to write back to the terminal.
    Echo(Vec<u8>),
    /// Enter was pressed: run this line.
    Line(String),
    /// Ctrl-C: the line is discarded.
    Interrupt,
    /// Ctrl-D on an empty line: log out.
    EndOfInput,
}

/// Where the editor is inside a terminal escape sequence (arrow keys and the like), which it
/// swallows whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// After `ESC [`: parameters until a final byte.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

#[derive(Debug, Default)]
pub(super) struct LineEditor {
    line: Vec<u8>,
    after_cr: bool,
    escape: Escape,
}

impl LineEditor {
    pub(super) fn feed(&mut self, input: &[u8]) -> Vec<Edit> {
        let mut edits = Vec::new();
        let mut echo = Vec::new();
        for &byte in input {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            if self.swallow_escape(byte) {
                continue;
            }
            match byte {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    flush(&mut echo, &mut edits);
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    edits.push(Edit::Line(line));
                }
                BACKSPACE | DELETE => {
                    if self.erase_char() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                CTRL_C => {
                    flush(&mut echo, &mut edits);
                    self.line.clear();
                    edits.push(Edit::Interrupt);
                }
                CTRL_D if self.line.is_empty() => {
                    flush(&mut echo, &mut edits);
                    edits.push(Edit::EndOfInput);
                    return edits;
                }
                ESCAPE => self.escape = Escape::Start,
                // Other control characters (tab, Ctrl-D within a line, ...) do nothing.
                0..=0x1f => {}
                _ => {
                    self.line.push(byte);
                    echo.push(byte);
                }
            }
        }
        flush(&mut echo, &mut edits);
        edits
    }

    /// Consumes `byte` if it belongs to an escape sequence.
    fn swallow_escape(&mut self, byte: u8) -> bool {
        self.escape = match (self.escape, byte) {
            (Escape::None, _) => return false,
            (Escape::Start, b'[') => Escape::Csi,
            (Escape::Start, b'O') => Escape::Ss3,
            (Escape::Csi, 0x20..=0x3f) => Escape::Csi,
            (Escape::Start | Escape::Csi | Escape::Ss3, _) => Escape::None,
        };
        true
    }

    /// Removes the last character (all bytes of a UTF-8 sequence); false on an empty line.
    fn erase_char(&mut self) -> bool {
        while let Some(byte) = self.line.pop() {
            if byte & 0b1100_0000 != 0b1000_0000 {
                return true;
            }
        }
        false
    }
}

fn flush(echo: &mut Vec<u8>, edits: &mut Vec<Edit>) {
    if !echo.is_empty() {
        edits.push(Edit::Echo(std::mem::take(echo)));
    }
}

#[cfg(test)]
mod tests {
    use super::{Edit, LineEditor};

    fn echo(text: &str) -> Edit {
        Edit::Echo(text.as_bytes().to_vec())
    }

    fn line(text: &str) -> Edit {
        Edit::Line(text.to_owned())
    }

    #[test]
    fn typed_characters_are_echoed_and_enter_ends_the_line() {
        let mut editor = LineEditor::default();
        assert_eq!(editor.feed(b"/disk pr"), vec![echo("/disk pr")]);
        assert_eq!(
            editor.feed(b"int\r"),
            vec![echo("int"), line("/disk print")]
        );
    }

    #[test]
    fn cr_lf_lf_and_cr_each_end_one_line() {
        let mut editor = LineEditor::default();
        assert_eq!(
            editor.feed(b"a\r\nb\nc\r"),
            vec![
                echo("a"),
                line("a"),
                echo("b"),
                line("b"),
                echo("c"),
                line("c")
            ]
        );
        // The LF of a CR LF split across two reads is still one Enter.
        assert_eq!(editor.feed(b"\n"), vec![]);
        assert_eq!(editor.feed(b"\n"), vec![line("")]);
    }

    #[test]
    fn backspace_erases_whole_characters() {
        let mut editor = LineEditor::default();
        assert_eq!(
            editor.feed("xé\x7f\x08\x08y\r".as_bytes()),
            vec![
                Edit::Echo("xé\x08 \x08\x08 \x08y".as_bytes().to_vec()),
                line("y")
            ]
        );
    }

    #[test]
    fn ctrl_c_discards_the_line() {
        let mut editor = LineEditor::default();
        assert_eq!(
            editor.feed(b"abc\x03d\r"),
            vec![echo("abc"), Edit::Interrupt, echo("d"), line("d")]
        );
    }

    #[test]
    fn ctrl_d_logs_out_only_on_an_empty_line() {
        let mut editor = LineEditor::default();
        assert_eq!(editor.feed(b"ab\x04"), vec![echo("ab")]);
        assert_eq!(
            editor.feed(b"\x03\x04rest"),
            vec![Edit::Interrupt, Edit::EndOfInput]
        );
    }

    #[test]
    fn escape_sequences_are_swallowed() {
        let mut editor = LineEditor::default();
        // Up arrow (CSI), F1 (SS3), Delete (CSI with a parameter), Alt-x.
        assert_eq!(
            editor.feed(b"a\x1b[Ab\x1bOPc\x1b[3~d\x1bxe\r"),
            vec![echo("abcde"), line("abcde")]
        );
    }
}
