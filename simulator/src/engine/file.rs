//! `/file add|get|remove`.

use super::items::{file_items, prop_text};
use super::{Args, Engine, ExecError, Target, invalid, no_such_item};
use crate::routeros::script::{Arg, Command};

/// A `/file` name as RouterOS takes it: a leading `/` is accepted (`name=/flash/filename` in the
/// Files page) and dropped; empty, `.` and `..` segments and control characters are refused.
pub(super) fn file_name(param: &str, text: &str) -> Result<String, ExecError> {
    let name = text.trim_start_matches('/');
    let bad_segment = name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    if name.is_empty() || bad_segment || name.chars().any(char::is_control) {
        return Err(invalid(param));
    }
    Ok(name.to_string())
}

impl Engine {
    /// `/file add name=… [type=file|directory] [contents=…]`; returns the new entry's id.
    pub(super) fn file_add(&mut self, args: &Args) -> Result<u32, ExecError> {
        let name = match args.text("name") {
            Some(n) => file_name("name", n)?,
            None => return Err(ExecError("failure: name must be set".into())),
        };
        let directory = match args.text("type") {
            None | Some("file") => false,
            Some("directory") => true,
            Some(_) => return Err(ExecError("input does not match any value of type".into())),
        };
        let contents = args.text("contents");
        if directory && contents.is_some() {
            return Err(ExecError("failure: a directory has no contents".into()));
        }
        let bytes = (!directory).then(|| contents.unwrap_or_default().as_bytes());
        self.store.add_file(&name, bytes)?;
        Ok(file_items(&self.store)
            .iter()
            .find(|i| prop_text(i, "name").as_deref() == Some(name.as_str()))
            .map_or(0, |i| i.id))
    }

    /// `/file get <item> <value-name>`: `contents` (files up to 60 KiB) or any other property.
    pub(super) fn file_get(
        &mut self,
        ids: Vec<u32>,
        value_name: Option<&String>,
    ) -> Result<String, ExecError> {
        if value_name.is_none_or(|v| v != "contents") {
            return self.get("file", ids, value_name);
        }
        let name = self.get("file", ids, Some(&"name".to_string()))?;
        let bytes = self.store.file_contents(&name)?;
        // The console is text: bytes that are not UTF-8 print as U+FFFD (FIDELITY.md).
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The entries `/file remove "a,b"` names, each looked up alone; `None` where the argument is
    /// not plain names (ids, a `[find]`) or the command is another. Numbering the entries, which
    /// a name's id needs, lists the whole tree: most of what `/file remove` cost.
    pub(super) fn files_named(
        &self,
        cmd: &Command,
        arg: &Arg,
    ) -> Result<Option<Vec<String>>, ExecError> {
        let Arg::Text { text, .. } = arg else {
            return Ok(None);
        };
        let parts: Vec<&str> = text.split(',').filter(|p| !p.is_empty()).collect();
        if cmd.menu.path != "file"
            || cmd.verb.name != "remove"
            || parts.is_empty()
            || parts.iter().any(|p| p.starts_with('*'))
        {
            return Ok(None);
        }
        let names = parts
            .into_iter()
            .map(|part| {
                // As the listing prints it: relative, no empty, `.` or `..` segment.
                let listed = !part.starts_with('/') && file_name("name", part).is_ok();
                if listed && std::fs::metadata(self.store.host_path(part)).is_ok() {
                    Ok(part.to_string())
                } else {
                    Err(no_such_item())
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(names))
    }

    pub(super) fn file_remove(&mut self, target: Target) -> Result<(), ExecError> {
        let mut names = match target {
            Target::Files(names) => names,
            Target::Ids(ids) => {
                let items = file_items(&self.store);
                ids.iter()
                    .map(|id| {
                        items
                            .iter()
                            .find(|i| i.id == *id)
                            .and_then(|i| prop_text(i, "name"))
                            .ok_or_else(no_such_item)
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        // Deepest first, so a directory and its contents can go in one command.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for name in names {
            self.store.remove_file(&name)?;
        }
        Ok(())
    }
}
