//! Host side of the guest command protocol; ci/qemu/guest/agent is the guest side. The protocol has a
//! virtio-serial port to itself and moves every payload as base64, so neither kernel messages nor
//! command output can be mistaken for its framing. Lines, host to guest:
//!   `RUN <id> <base64 command>`
//! guest to host:
//!   `READY missing=<modules>` once, then per command `OUT <id>`, base64 lines of stdout, `ERR <id>`,
//!   base64 lines of stderr, `END <id> <exit status>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Output;

/// The line that asks the guest to run `command` with `sh -c`.
pub(super) fn request(id: u64, command: &str) -> String {
    format!("RUN {id} {}\n", STANDARD.encode(command))
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// The agent is listening; `missing_modules` lists required modules that failed to load.
    Ready {
        missing_modules: Vec<String>,
    },
    Reply {
        id: u64,
        output: Output,
    },
}

/// Turns the guest's lines back into messages, one line at a time.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    reply: Option<PartialReply>,
}

#[derive(Debug)]
struct PartialReply {
    id: u64,
    in_stderr: bool,
    stdout: String,
    stderr: String,
}

impl Decoder {
    pub(super) fn feed(&mut self, line: &str) -> Result<Option<Message>, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        let Some(reply) = &mut self.reply else {
            return self
                .outside_reply(line)
                .map_err(|e| format!("{e} in line {line:?}"));
        };
        let words: Vec<&str> = line.split(' ').collect();
        let is_this_reply = |id: &str| id.parse() == Ok(reply.id);
        match words[..] {
            ["ERR", id] if is_this_reply(id) && !reply.in_stderr => {
                reply.in_stderr = true;
                Ok(None)
            }
            ["END", id, rc] if is_this_reply(id) && reply.in_stderr => {
                let rc = rc
                    .parse()
                    .map_err(|_| format!("exit status {rc:?} is not a number"))?;
                let reply = self.reply.take().expect("inside a reply");
                Ok(Some(Message::Reply {
                    id: reply.id,
                    output: Output {
                        stdout: decode(&reply.stdout)?,
                        stderr: decode(&reply.stderr)?,
                        rc,
                    },
                }))
            }
            _ if line.bytes().all(is_base64) => {
                let stream = if reply.in_stderr {
                    &mut reply.stderr
                } else {
                    &mut reply.stdout
                };
                stream.push_str(line);
                Ok(None)
            }
            _ => Err(format!(
                "unexpected line {line:?} in the reply to command {}",
                reply.id
            )),
        }
    }

    fn outside_reply(&mut self, line: &str) -> Result<Option<Message>, String> {
        if let Some(missing) = line.strip_prefix("READY missing=") {
            let missing_modules = missing
                .split(',')
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect();
            return Ok(Some(Message::Ready { missing_modules }));
        }
        let id = line
            .strip_prefix("OUT ")
            .ok_or("expected READY or OUT")?
            .parse()
            .map_err(|_| "bad command id")?;
        self.reply = Some(PartialReply {
            id,
            in_stderr: false,
            stdout: String::new(),
            stderr: String::new(),
        });
        Ok(None)
    }
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

fn decode(base64: &str) -> Result<String, String> {
    let bytes = STANDARD
        .decode(base64)
        .map_err(|e| format!("bad base64 from the guest: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(decoder: &mut Decoder, text: &str) -> Vec<Message> {
        text.lines()
            .filter_map(|line| decoder.feed(line).unwrap())
            .collect()
    }

    #[test]
    fn request_carries_the_command_as_one_base64_word() {
        let line = request(7, "echo 'a b'\nexit 3");
        let words: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(words[..2], ["RUN", "7"]);
        assert_eq!(STANDARD.decode(words[2]).unwrap(), b"echo 'a b'\nexit 3");
        assert!(line.ends_with('\n') && words.len() == 3);
    }

    #[test]
    fn ready_lists_missing_modules() {
        let mut decoder = Decoder::default();
        assert_eq!(
            feed_all(&mut decoder, "READY missing=\nREADY missing=xfs,nvme_tcp\n"),
            [
                Message::Ready {
                    missing_modules: vec![]
                },
                Message::Ready {
                    missing_modules: vec!["xfs".into(), "nvme_tcp".into()]
                },
            ]
        );
    }

    #[test]
    fn reply_reassembles_wrapped_stdout_and_stderr() {
        let stdout = "END 1 0\nOUT 1\n".repeat(10);
        let encoded = STANDARD.encode(&stdout);
        let wrapped: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let text = format!(
            "OUT 1\n{}\nERR 1\n{}\nEND 1 42\n",
            wrapped.join("\n"),
            STANDARD.encode("oops\n")
        );
        assert_eq!(
            feed_all(&mut Decoder::default(), &text),
            [Message::Reply {
                id: 1,
                output: Output {
                    stdout,
                    stderr: "oops\n".into(),
                    rc: 42
                },
            }]
        );
    }

    #[test]
    fn empty_output_has_no_base64_lines() {
        assert_eq!(
            feed_all(&mut Decoder::default(), "OUT 3\nERR 3\nEND 3 0\n"),
            [Message::Reply {
                id: 3,
                output: Output {
                    stdout: String::new(),
                    stderr: String::new(),
                    rc: 0
                }
            }]
        );
    }

    #[test]
    fn framing_errors_are_reported() {
        for text in [
            "hello\n",
            "OUT x\n",
            "OUT 1\nnot base64!\n",
            "OUT 1\nEND 1 0\n",
            "OUT 1\nERR 2\n",
            "OUT 1\nERR 1\nEND 1 zero\n",
            "OUT 1\nERR 1\nEND 1 0 extra\n",
        ] {
            let mut decoder = Decoder::default();
            let results: Vec<_> = text.lines().map(|line| decoder.feed(line)).collect();
            assert!(
                results.iter().any(Result::is_err),
                "{text:?} accepted: {results:?}"
            );
        }
    }
}
