//! The CLI engine: parses a line, runs its statements against the store, and renders RouterOS's
//! text. Deterministic given the store: the SSH server only feeds it lines.

mod btrfs;
mod disk;
mod disk_copy;
mod file;
mod filter;
mod items;
pub mod quirks;
mod system;

use crate::copies::{Copies, Running};
use crate::routeros::format::{self, Item};
use crate::routeros::menu::{ArgType, Menu};
use crate::routeros::script::{self, Arg, Command, Expr, Statement};
use crate::store::{CopySemantics, PoolFs, State, Store, StoreError};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use items::disk_flags;

/// What the appliance reports about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `/system resource print` `version:`.
    pub version: String,
    pub board_name: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            version: "7.24.4 (stable)".into(),
            board_name: "RDS2216-2XG-4S+4XS-2XQ".into(),
        }
    }
}

/// Settings that shape the engine's behaviour where RouterOS's is unknown or configurable.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Terminal width used to wrap `print detail` (exec output wraps too).
    pub width: usize,
    pub copy_from: CopySemantics,
    /// Bytes per second `/disk copy` moves; `None` is as fast as the host goes.
    pub copy_rate: Option<u64>,
    /// The pool's file system; a Btrfs pool has `/disk btrfs` subvolumes.
    pub pool_fs: PoolFs,
    pub identity: Identity,
    /// The answers to the open RouterOS questions (quirks.rs).
    pub quirks: quirks::Quirks,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            width: 80,
            copy_from: CopySemantics::Data,
            copy_rate: None,
            pool_fs: PoolFs::Xfs,
            identity: Identity::default(),
            quirks: quirks::Quirks::default(),
        }
    }
}

/// A runtime error, printed as RouterOS prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError(pub String);

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        ExecError(e.to_string())
    }
}

fn invalid(param: &str) -> ExecError {
    ExecError(format!("invalid value for argument {param}"))
}

/// The value a statement returns (what `:put` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Nothing,
    Ids(Vec<u32>),
    Items(Vec<Item>),
    /// `:serialize to=json` of items: a listing's JSON is the costliest text the engine makes,
    /// so it is made when printed, after the engine's lock is released ([`LineResult::output`]).
    Json(Vec<Item>),
    Text(String),
}

impl Val {
    fn render(self) -> String {
        match self {
            Val::Nothing => String::new(),
            Val::Ids(ids) => ids
                .iter()
                .map(|i| id_text(*i))
                .collect::<Vec<_>>()
                .join(";"),
            Val::Items(items) => format::as_value(&items),
            Val::Json(items) => format::json(&items),
            Val::Text(t) => t,
        }
    }
}

pub fn id_text(id: u32) -> String {
    format!("*{id:X}")
}

/// A change the rest of the simulator must react to (the NVMe/TCP target, mostly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A disk's size changed: tell connected hosts.
    Resized { nqn: String },
    /// A disk stopped being exported under this NQN (export off, NQN changed, or removed).
    Unexported { nqn: String },
}

/// One parsed command, as the control API's log shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedCommand {
    /// `/disk/add`
    pub path: String,
    pub args: Vec<(String, String)>,
    /// The unnamed parameters, separated by spaces.
    pub unnamed: Option<String>,
    pub switches: Vec<String>,
    pub filter: Option<String>,
}

/// The outcome of one line.
#[derive(Debug, Default)]
pub struct LineResult {
    /// The console output, but for the values in `unrendered`.
    output: String,
    /// Listings `:put` prints, each with where in `output` it goes: rendered by
    /// [`LineResult::output`], which the simulator calls after releasing the engine.
    unrendered: Vec<(usize, Val)>,
    pub error: bool,
    /// Whether any statement changed committed state.
    pub committed: bool,
    pub events: Vec<Event>,
    pub log: Vec<LoggedCommand>,
    /// A `/disk copy` the line waits for, and what runs after it.
    pub pending: Option<Pending>,
}

impl LineResult {
    /// The whole console output, listings rendered.
    pub fn output(&mut self) -> String {
        let done = std::mem::take(&mut self.output);
        if self.unrendered.is_empty() {
            return done;
        }
        let mut text = String::new();
        let mut from = 0;
        for (at, value) in self.unrendered.drain(..) {
            text.push_str(&done[from..at]);
            let rendered = value.render();
            if text.is_empty() {
                text = rendered;
            } else {
                text.push_str(&rendered);
            }
            from = at;
        }
        text.push_str(&done[from..]);
        text
    }

    /// `:put`: a listing is left to render outside the engine; any other value is cheap.
    fn put(&mut self, value: Val) {
        match value {
            Val::Items(_) | Val::Json(_) => self.unrendered.push((self.output.len(), value)),
            other => self.output.push_str(&other.render()),
        }
        self.output.push_str("\r\n");
    }
}

/// The rest of a line that waits for a `/disk copy`: run the copy
/// ([`Copies::run`](crate::copies::Copies::run)), then hand the rest to [`Engine::resume`].
#[derive(Debug)]
pub struct Pending {
    pub copy: Arc<Running>,
    rest: Vec<Statement>,
}

/// Per-disk I/O counters for `monitor-traffic`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
}

pub struct Engine {
    pub store: Store,
    pub config: EngineConfig,
    /// Set by the pool-full fault.
    pub pool_full: bool,
    /// The `/disk copy` copies running now.
    pub copies: Arc<Copies>,
    started: Instant,
    file_disk_items: items::FileDiskItems,
}

/// Mutable context of one line's run.
struct Run<'a> {
    result: &'a mut LineResult,
    traffic: &'a dyn Fn(&str) -> Traffic,
    /// A copy the current statement started: the line waits for it before going on.
    copy: Option<Arc<Running>>,
}

impl Engine {
    pub fn open(
        dir: &Path,
        pool: crate::store::Pool,
        config: EngineConfig,
    ) -> std::io::Result<Engine> {
        Ok(Engine {
            store: Store::open(dir, pool, config.pool_fs)?,
            copies: Arc::new(Copies::new(config.copy_rate)),
            config,
            pool_full: false,
            started: Instant::now(),
            file_disk_items: items::FileDiskItems::default(),
        })
    }

    /// Parses `line` only: the statements it would run, or the error text.
    /// The pool's free bytes as `/disk print` shows them and `add` checks them: measured on the
    /// host for sparse files, or less the file disks' whole sizes when they are preallocated.
    pub fn pool_free(&self) -> u64 {
        let measured = self.store.pool_free(self.pool_full);
        match self.config.quirks.allocation {
            quirks::Allocation::Sparse => measured,
            quirks::Allocation::Preallocated => {
                let sizes: u64 = self.store.state.disks.iter().map(|d| d.file_size).sum();
                measured.min(self.store.pool.size.saturating_sub(sizes))
            }
        }
    }

    pub fn parse(line: &str) -> Result<Vec<Statement>, String> {
        script::parse(line, Menu::root()).map_err(|e| e.to_string())
    }

    /// Runs one input line. `traffic` reads a slot's I/O counters.
    pub fn run_line(&mut self, line: &str, traffic: &dyn Fn(&str) -> Traffic) -> LineResult {
        let mut result = LineResult::default();
        let statements = match Self::parse(line) {
            Ok(s) => s,
            Err(e) => {
                result.output = crlf(&e);
                result.error = true;
                return result;
            }
        };
        self.run_statements(statements, &mut result, traffic);
        result
    }

    /// Runs what is left of a line after the copy it waited for has finished.
    pub fn resume(&mut self, pending: Pending, traffic: &dyn Fn(&str) -> Traffic) -> LineResult {
        let mut result = LineResult::default();
        self.run_statements(pending.rest, &mut result, traffic);
        result
    }

    fn run_statements(
        &mut self,
        statements: Vec<Statement>,
        result: &mut LineResult,
        traffic: &dyn Fn(&str) -> Traffic,
    ) {
        let mut run = Run {
            result,
            traffic,
            copy: None,
        };
        let mut statements = statements.into_iter();
        while let Some(stmt) = statements.next() {
            if let Err(e) = self.top_level(&stmt, &mut run) {
                run.result.output.push_str(&crlf(&e.0));
                run.result.error = true;
                break;
            }
            if let Some(copy) = run.copy.take() {
                run.result.pending = Some(Pending {
                    copy,
                    rest: statements.collect(),
                });
                break;
            }
        }
    }

    fn top_level(&mut self, stmt: &Statement, run: &mut Run<'_>) -> Result<(), ExecError> {
        match stmt {
            Statement::Menu(cmd) => {
                let printed = self.command(cmd, run, true)?;
                if let Some(text) = printed.1 {
                    run.result.output.push_str(&text);
                }
            }
            Statement::Put(arg) => {
                let v = self.arg_value(arg, run)?;
                run.result.put(v);
            }
            Statement::Serialize { .. } => {
                // A value with nowhere to go: RouterOS computes it and prints nothing.
                self.statement_value(stmt, run)?;
            }
        }
        Ok(())
    }

    fn statement_value(&mut self, stmt: &Statement, run: &mut Run<'_>) -> Result<Val, ExecError> {
        match stmt {
            Statement::Menu(cmd) => Ok(self.command(cmd, run, false)?.0),
            Statement::Put(arg) => {
                let v = self.arg_value(arg, run)?;
                run.result.put(v);
                Ok(Val::Nothing)
            }
            Statement::Serialize { to, value } => {
                if to != "json" {
                    return Err(ExecError(format!(
                        "failure: rds-sim serializes only to=json, not {to}"
                    )));
                }
                match self.arg_value(value, run)? {
                    Val::Items(items) => Ok(Val::Json(items)),
                    Val::Ids(ids) => Ok(Val::Text(
                        serde_json::to_string(&ids.iter().map(|i| id_text(*i)).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    )),
                    text @ (Val::Text(_) | Val::Json(_)) => Ok(Val::Text(
                        serde_json::to_string(&text.render()).unwrap_or_default(),
                    )),
                    Val::Nothing => Ok(Val::Text("[]".into())),
                }
            }
        }
    }

    fn arg_value(&mut self, arg: &Arg, run: &mut Run<'_>) -> Result<Val, ExecError> {
        match arg {
            Arg::Text { text, .. } => Ok(Val::Text(text.clone())),
            Arg::Sub(stmt) => self.statement_value(stmt, run),
        }
    }

    /// The text of an argument; a substitution is run and rendered.
    fn arg_text(&mut self, arg: &Arg, run: &mut Run<'_>) -> Result<String, ExecError> {
        Ok(self.arg_value(arg, run)?.render())
    }

    /// Runs a menu command. Returns its value and, at top level, the text it prints.
    fn command(
        &mut self,
        cmd: &Command,
        run: &mut Run<'_>,
        top: bool,
    ) -> Result<(Val, Option<String>), ExecError> {
        run.result.log.push(log_entry(cmd));
        let mut args = Args::default();
        for (name, arg) in &cmd.args {
            let ty = cmd
                .verb
                .param(name)
                .expect("parser admits only known parameters");
            let value = match ty {
                ArgType::Items => ArgValue::Items(self.items_arg(cmd.menu, arg, run)?),
                _ => ArgValue::Text(self.arg_text(arg, run)?),
            };
            args.0.push((name.clone(), ty, value));
        }
        // Unnamed parameters: the items a verb works on, then any further words (`get`'s
        // value name).
        let mut target = None;
        let mut words = Vec::new();
        for (arg, ty) in cmd.unnamed.iter().zip(cmd.verb.unnamed) {
            match ty {
                ArgType::Items => match self.files_named(cmd, arg)? {
                    Some(names) => target = Some(Target::Files(names)),
                    None => target = Some(Target::Ids(self.items_arg(cmd.menu, arg, run)?)),
                },
                _ => words.push(self.arg_text(arg, run)?),
            }
        }
        let has = |s: &str| cmd.switches.contains(&s);
        match (cmd.menu.path, cmd.verb.name) {
            (_, "print") => self.print(cmd, run, top, has),
            (_, "find") => {
                let ids = self
                    .selected(cmd.menu.path, cmd.filter.as_ref())?
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
                Ok((Val::Ids(ids), None))
            }
            ("disk", "add") => {
                let id = self.disk_add(&args, run)?;
                Ok((Val::Ids(vec![id]), None))
            }
            ("disk", "set") => {
                self.disk_set(Target::ids(target), &args, run)?;
                Ok((Val::Nothing, None))
            }
            ("disk", "remove") => {
                self.disk_remove(Target::ids(target), run)?;
                Ok((Val::Nothing, None))
            }
            ("disk", "copy") => {
                run.copy = Some(self.disk_copy(&args, top)?);
                Ok((Val::Nothing, None))
            }
            ("disk/btrfs/subvolume", "add") => {
                let id = self.subvolume_add(&args, run)?;
                Ok((Val::Ids(vec![id]), None))
            }
            ("disk/btrfs/subvolume", "remove") => {
                self.subvolume_remove(Target::ids(target), run)?;
                Ok((Val::Nothing, None))
            }
            ("disk", "monitor-traffic") => {
                let text = self.disk_monitor(Target::ids(target), has("once"), run)?;
                Ok((Val::Nothing, Some(text)))
            }
            ("file", "add") => {
                let id = self.file_add(&args)?;
                Ok((Val::Ids(vec![id]), None))
            }
            ("file", "get") => {
                let value = self.file_get(Target::ids(target), words.first())?;
                Ok((Val::Text(value), None))
            }
            (menu, "get") => {
                let value = self.get(menu, Target::ids(target), words.first())?;
                Ok((Val::Text(value), None))
            }
            ("file", "remove") => {
                self.file_remove(target.unwrap_or(Target::Ids(Vec::new())))?;
                Ok((Val::Nothing, None))
            }
            ("system/identity", "set") => {
                self.identity_set(&args, run)?;
                Ok((Val::Nothing, None))
            }
            (menu, verb) => unreachable!("menu table has /{menu} {verb} without a handler"),
        }
    }

    fn print(
        &mut self,
        cmd: &Command,
        run: &mut Run<'_>,
        top: bool,
        has: impl Fn(&str) -> bool,
    ) -> Result<(Val, Option<String>), ExecError> {
        match cmd.menu.path {
            "system/resource" => return Ok((Val::Nothing, Some(self.resource_text()))),
            "system/identity" => return Ok((Val::Nothing, Some(self.identity_text()))),
            _ => {}
        }
        let mut items = self.selected(cmd.menu.path, cmd.filter.as_ref())?;
        if let Some((_, arg)) = cmd.args.iter().find(|(n, _)| n == "proplist") {
            let names = self.arg_text(arg, run)?;
            items = items::project(items, &names)?;
        }
        if has("count-only") {
            return Ok((Val::Nothing, Some(crlf(&items.len().to_string()))));
        }
        let flags = items::flag_defs(cmd.menu.path);
        if has("as-value") {
            // An array: printed only by `:put`, never at the prompt. Script forms carry flags as
            // boolean properties (`mounted=true`), as a real RDS's scripts read them.
            return Ok((Val::Items(items::with_flag_props(items, flags)), None));
        }
        let legend_alone =
            items.is_empty() && self.config.quirks.empty_print == quirks::EmptyPrint::Legend;
        let text = if legend_alone {
            format::legend(flags, self.config.width)
        } else if has("detail") {
            format::detail(&items, flags, self.config.width)
        } else if has("terse") {
            format::terse(&items, flags)
        } else {
            return Err(ExecError(
                "failure: rds-sim prints tables only as detail, terse, as-value or count-only"
                    .into(),
            ));
        };
        Ok((Val::Nothing, top.then_some(text)))
    }

    /// Every item of a list menu, in print order.
    fn menu_items(&self, path: &str) -> Vec<Item> {
        match path {
            "disk" => items::disk_items(self),
            "file" => items::file_items(&self.store),
            "disk/btrfs/filesystem" => btrfs::filesystem_items(&self.store),
            "disk/btrfs/subvolume" => btrfs::subvolume_items(&self.store),
            _ => Vec::new(),
        }
    }

    /// The items of a list menu that `filter` selects, in print order.
    fn selected(&self, path: &str, filter: Option<&Expr>) -> Result<Vec<Item>, ExecError> {
        match path {
            "disk" => items::select_disks(self, filter),
            _ => filter::select(&self.menu_items(path), filter),
        }
    }

    /// `get <item> <value-name>`: a property of one item as `as-value` holds it (flags too).
    fn get(
        &self,
        path: &str,
        ids: Vec<u32>,
        value_name: Option<&String>,
    ) -> Result<String, ExecError> {
        let [id] = ids.as_slice() else {
            return Err(ExecError("failure: get takes one item".into()));
        };
        let items = items::with_flag_props(self.menu_items(path), items::flag_defs(path));
        let item = items
            .iter()
            .find(|i| i.id == *id)
            .ok_or_else(no_such_item)?;
        let Some(value_name) = value_name else {
            return Err(ExecError("failure: value-name must be set".into()));
        };
        match value_name.as_str() {
            "comment" => Ok(item.comment.clone().unwrap_or_default()),
            name => items::prop_text(item, name)
                .ok_or_else(|| ExecError("input does not match any value of value-name".into())),
        }
    }

    /// Resolves an item reference: `[find …]`, `*HEX`, or a name.
    fn items_arg(
        &mut self,
        menu: &'static Menu,
        arg: &Arg,
        run: &mut Run<'_>,
    ) -> Result<Vec<u32>, ExecError> {
        let text = match arg {
            Arg::Sub(stmt) => {
                return match self.statement_value(stmt, run)? {
                    Val::Ids(ids) => Ok(ids),
                    Val::Nothing => Ok(Vec::new()),
                    Val::Items(items) => Ok(items.iter().map(|i| i.id).collect()),
                    text @ (Val::Text(_) | Val::Json(_)) => {
                        self.resolve_names(menu.path, &text.render())
                    }
                };
            }
            Arg::Text { text, .. } => text.clone(),
        };
        self.resolve_names(menu.path, &text)
    }

    fn resolve_names(&self, path: &str, text: &str) -> Result<Vec<u32>, ExecError> {
        let items = self.menu_items(path);
        let key = match path {
            "file" | "disk/btrfs/subvolume" => "name",
            "disk/btrfs/filesystem" => "label",
            _ => "slot",
        };
        let mut ids = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let found = if let Some(hex) = part.strip_prefix('*') {
                let id = u32::from_str_radix(hex, 16).map_err(|_| no_such_item())?;
                items.iter().find(|i| i.id == id)
            } else {
                items
                    .iter()
                    .find(|i| items::prop_text(i, key).as_deref() == Some(part))
            };
            ids.push(found.ok_or_else(no_such_item)?.id);
        }
        if ids.is_empty() {
            return Err(no_such_item());
        }
        Ok(ids)
    }

    /// Commits a new state, or reports why it could not be written.
    fn commit(&mut self, state: State, run: &mut Run<'_>) -> Result<(), ExecError> {
        self.store
            .commit(state)
            .map_err(|e| ExecError(format!("failure: {e}")))?;
        run.result.committed = true;
        Ok(())
    }
}

fn no_such_item() -> ExecError {
    ExecError("no such item".into())
}

/// The items an unnamed argument names.
enum Target {
    Ids(Vec<u32>),
    /// `/file` entries by name, each looked up alone ([`Engine::files_named`]).
    Files(Vec<String>),
}

impl Target {
    /// The ids of a verb that works on ids only; [`Engine::files_named`] makes names for
    /// `/file remove` alone.
    fn ids(target: Option<Target>) -> Vec<u32> {
        match target {
            Some(Target::Ids(ids)) => ids,
            Some(Target::Files(_)) | None => Vec::new(),
        }
    }
}

/// Arguments of a command after substitution.
#[derive(Default)]
struct Args(Vec<(String, ArgType, ArgValue)>);

enum ArgValue {
    Text(String),
    Items(Vec<u32>),
}

impl Args {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|(n, _, v)| match v {
            ArgValue::Text(t) if n == name => Some(t.as_str()),
            _ => None,
        })
    }

    fn items(&self, name: &str) -> Option<&[u32]> {
        self.0.iter().find_map(|(n, _, v)| match v {
            ArgValue::Items(i) if n == name => Some(i.as_slice()),
            _ => None,
        })
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ExecError> {
        self.text(name)
            .map(|t| match t {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(ExecError(format!(
                    "input does not match any value of {name}"
                ))),
            })
            .transpose()
    }

    fn num(&self, name: &str) -> Result<Option<u64>, ExecError> {
        self.text(name)
            .map(|t| parse_num(name, t, false))
            .transpose()
    }

    fn size(&self, name: &str) -> Result<Option<u64>, ExecError> {
        self.text(name)
            .map(|t| parse_num(name, t, true))
            .transpose()
    }
}

/// Reads a number; with `binary_suffix`, `K`/`M`/`G`/`T` multiply by powers of 1024.
fn parse_num(name: &str, text: &str, binary_suffix: bool) -> Result<u64, ExecError> {
    let digits = text.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(invalid(name));
    }
    let n: u64 = text[..digits].parse().map_err(|_| invalid(name))?;
    let rest = &text[digits..];
    let shift = match rest {
        "" => 0,
        "K" | "k" if binary_suffix => 10,
        "M" if binary_suffix => 20,
        "G" if binary_suffix => 30,
        "T" if binary_suffix => 40,
        _ => {
            return Err(ExecError(format!(
                "value of {name} contains invalid trailing characters"
            )));
        }
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| invalid(name))
}

fn log_entry(cmd: &Command) -> LoggedCommand {
    let render = |a: &Arg| match a {
        Arg::Text { text, .. } => text.clone(),
        Arg::Sub(s) => format!("[{}]", describe(s)),
    };
    LoggedCommand {
        path: format!("/{}/{}", cmd.menu.path, cmd.verb.name).replace("//", "/"),
        args: cmd
            .args
            .iter()
            .map(|(n, a)| (n.clone(), render(a)))
            .collect(),
        unnamed: (!cmd.unnamed.is_empty())
            .then(|| cmd.unnamed.iter().map(render).collect::<Vec<_>>().join(" ")),
        switches: cmd.switches.iter().map(|s| s.to_string()).collect(),
        filter: cmd.filter.as_ref().map(filter::describe),
    }
}

fn describe(stmt: &Statement) -> String {
    match stmt {
        Statement::Menu(c) => {
            let e = log_entry(c);
            match e.filter {
                Some(f) => format!("{} where {f}", e.path),
                None => e.path,
            }
        }
        Statement::Put(_) => ":put".into(),
        Statement::Serialize { to, .. } => format!(":serialize to={to}"),
    }
}

/// Ends a text with CRLF unless it is empty.
fn crlf(text: &str) -> String {
    if text.is_empty() {
        "\r\n".into()
    } else {
        format!("{text}\r\n")
    }
}
