//! The RouterOS command-line parser: one input line → statements, resolved against the menu table.
//!
//! RouterOS compiles a whole line before it runs any of it, so a syntax error anywhere means nothing
//! runs. This parser does the same: [`parse`] either returns every statement or the first error, with
//! RouterOS's text and 1-based line/column.

use super::menu::{Menu, Verb};
use std::fmt;

/// A parse error, printed exactly as RouterOS prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax {
        line: usize,
        col: usize,
    },
    ExpectedEnd {
        line: usize,
        col: usize,
    },
    BadCommand {
        word: String,
        line: usize,
        col: usize,
    },
    BadParameter {
        word: String,
        line: usize,
        col: usize,
    },
    /// A command RouterOS has that rds-sim does not model: never silently ignored.
    Unmodeled {
        what: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { line, col } => {
                write!(f, "syntax error (line {line} column {col})")
            }
            ParseError::ExpectedEnd { line, col } => {
                write!(f, "expected end of command (line {line} column {col})")
            }
            ParseError::BadCommand { word, line, col } => {
                write!(f, "bad command name {word} (line {line} column {col})")
            }
            ParseError::BadParameter { word, line, col } => {
                write!(f, "bad parameter {word} (line {line} column {col})")
            }
            ParseError::Unmodeled { what } => write!(f, "failure: rds-sim does not model {what}"),
        }
    }
}

/// An argument value as written: literal text (quotes and escapes already resolved) or a
/// `[command]` substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text { text: String, quoted: bool },
    Sub(Box<Statement>),
}

/// A `where` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// A bare property name: true when the property is set and not `false`/`no`.
    Truthy(String),
    Compare {
        prop: String,
        op: CmpOp,
        value: String,
        /// An unquoted value holding `/` or `:` is an arithmetic expression to RouterOS, never a
        /// string, so it equals no property value.
        opaque: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Regex,
}

/// A menu command, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub menu: &'static Menu,
    pub verb: &'static Verb,
    /// The unnamed parameters given, in order.
    pub unnamed: Vec<Arg>,
    pub args: Vec<(String, Arg)>,
    pub switches: Vec<&'static str>,
    pub filter: Option<Expr>,
}

impl PartialEq for Menu {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}
impl Eq for Menu {}
impl PartialEq for Verb {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Verb {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Menu(Command),
    /// `:put <value>`
    Put(Arg),
    /// `:serialize to=<format> <value>`
    Serialize {
        to: String,
        value: Arg,
    },
}

/// Parses one input (usually one line) into statements, resolving paths from `menu`.
pub fn parse(input: &str, menu: &'static Menu) -> Result<Vec<Statement>, ParseError> {
    let mut p = Parser {
        src: input.chars().collect(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => break,
            Some(';') | Some('\n') => {
                p.pos += 1;
                continue;
            }
            Some('#') => p.skip_comment(),
            _ => {
                out.push(p.statement(menu)?);
                p.skip_ws();
                match p.peek() {
                    None => break,
                    Some(';') | Some('\n') => p.pos += 1,
                    Some('#') => p.skip_comment(),
                    _ => return Err(p.expected_end()),
                }
            }
        }
    }
    Ok(out)
}

/// Characters that may stand in an unquoted word.
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '-' | '_' | '.' | '*' | '+' | ':' | '/' | ',' | '@' | '%')
}

struct Parser {
    src: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.src.get(self.pos + offset).copied()
    }

    /// 1-based line and column of a position.
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let mut line = 1;
        let mut col = 1;
        for &c in &self.src[..pos.min(self.src.len())] {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        (line, col)
    }

    fn syntax_at(&self, pos: usize) -> ParseError {
        let (line, col) = self.line_col(pos);
        ParseError::Syntax { line, col }
    }

    /// `$`, `\` or `'` outside quotes. For `$name` RouterOS points at the name, one past the `$`
    /// (`:put $myVar` → column 7).
    fn illegal_here(&self) -> ParseError {
        let name_follows =
            self.peek() == Some('$') && self.peek_at(1).is_some_and(|c| c.is_ascii_alphanumeric());
        self.syntax_at(self.pos + usize::from(name_follows))
    }

    fn expected_end(&self) -> ParseError {
        let (line, col) = self.line_col(self.pos);
        ParseError::ExpectedEnd { line, col }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.pos += 1;
        }
        // A `\` at the very end of a line joins it with the next one.
        if self.peek() == Some('\\') && matches!(self.peek_at(1), Some('\n')) {
            self.pos += 2;
            self.skip_ws();
        }
    }

    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.pos += 1;
        }
    }

    /// Is the parser at the end of the current command?
    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(';' | '\n' | ']' | '#'))
    }

    /// Reads an unquoted word; `$`, `\` and `'` are never legal outside quotes.
    fn word(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if word_char(c) {
                self.pos += 1;
            } else if matches!(c, '$' | '\\' | '\'') {
                return Err(self.illegal_here());
            } else {
                break;
            }
        }
        Ok(self.src[start..self.pos].iter().collect())
    }

    /// Reads a name: lower-case letters, digits, `-` and `.`.
    fn name(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.src[start..self.pos].iter().collect()
    }

    /// Reads a double-quoted string with RouterOS escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        debug_assert_eq!(self.peek(), Some('"'));
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.syntax_at(open));
            };
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let at = self.pos - 1;
                    let Some(e) = self.peek() else {
                        return Err(self.syntax_at(at));
                    };
                    self.pos += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '$' => out.push('$'),
                        '?' => out.push('?'),
                        '_' => out.push(' '),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        h1 if is_upper_hex(h1) => {
                            let Some(h2) = self.peek().filter(|c| is_upper_hex(*c)) else {
                                return Err(self.syntax_at(at));
                            };
                            self.pos += 1;
                            let byte = (hex_val(h1) << 4) | hex_val(h2);
                            out.push(char::from(byte));
                        }
                        _ => return Err(self.syntax_at(at)),
                    }
                }
                '$' => {
                    // Inside quotes RouterOS substitutes `$name` silently, and an undefined variable
                    // is empty: `"x$y z"` stores `x z`. rds-sim defines no variables.
                    let name = self.name();
                    if name.is_empty() {
                        return Err(self.syntax_at(self.pos - 1));
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// A value after `name=` (or an unnamed parameter).
    fn value(&mut self, menu: &'static Menu) -> Result<Arg, ParseError> {
        match self.peek() {
            Some('"') => Ok(Arg::Text {
                text: self.quoted()?,
                quoted: true,
            }),
            Some('[') => self.substitution(menu),
            Some('$' | '\\' | '\'') => Err(self.illegal_here()),
            Some(c) if word_char(c) => Ok(Arg::Text {
                text: self.word()?,
                quoted: false,
            }),
            _ => Err(self.syntax_at(self.pos)),
        }
    }

    fn substitution(&mut self, menu: &'static Menu) -> Result<Arg, ParseError> {
        self.pos += 1;
        self.skip_ws();
        let stmt = self.statement(menu)?;
        self.skip_ws();
        if self.peek() != Some(']') {
            return Err(if self.peek().is_none() {
                self.syntax_at(self.pos)
            } else {
                self.expected_end()
            });
        }
        self.pos += 1;
        Ok(Arg::Sub(Box::new(stmt)))
    }

    fn statement(&mut self, menu: &'static Menu) -> Result<Statement, ParseError> {
        if self.peek() == Some(':') {
            return self.global(menu);
        }
        self.command(menu).map(Statement::Menu)
    }

    fn global(&mut self, menu: &'static Menu) -> Result<Statement, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let name = self.name();
        match name.as_str() {
            "put" => {
                self.skip_ws();
                if self.at_end() {
                    return Ok(Statement::Put(Arg::Text {
                        text: String::new(),
                        quoted: true,
                    }));
                }
                Ok(Statement::Put(self.value(menu)?))
            }
            "serialize" => {
                let mut to = None;
                let mut value = None;
                loop {
                    self.skip_ws();
                    if self.at_end() {
                        break;
                    }
                    let at = self.pos;
                    if self.peek() == Some('[') || self.peek() == Some('"') {
                        value = Some(self.value(menu)?);
                        continue;
                    }
                    let word = self.name();
                    if self.peek() == Some('=') {
                        self.pos += 1;
                        let v = self.value(menu)?;
                        match (word.as_str(), v) {
                            ("to", Arg::Text { text, .. }) => to = Some(text),
                            ("value", v) => value = Some(v),
                            _ => {
                                self.pos = at;
                                return Err(self.expected_end());
                            }
                        }
                    } else {
                        self.pos = at;
                        return Err(self.expected_end());
                    }
                }
                match (to, value) {
                    (Some(to), Some(value)) => Ok(Statement::Serialize { to, value }),
                    _ => Err(self.expected_end()),
                }
            }
            _ => {
                let (line, col) = self.line_col(start + 1);
                Err(ParseError::BadCommand {
                    word: name,
                    line,
                    col,
                })
            }
        }
    }

    fn command(&mut self, start_menu: &'static Menu) -> Result<Command, ParseError> {
        let mut menu = start_menu;
        if self.peek() == Some('/') {
            menu = Menu::root();
            self.pos += 1;
        }
        // Path words, separated by spaces or `/`, until a verb.
        let verb = loop {
            self.skip_ws();
            let at = self.pos;
            let word = self.name();
            if word.is_empty() {
                return Err(if self.at_end() {
                    // A bare menu path (`/disk`) changes the current menu in a terminal; over exec
                    // it does nothing useful, and rds-sim keeps no per-session menu.
                    self.expected_end()
                } else {
                    self.syntax_at(self.pos)
                });
            }
            if let Some(child) = menu.child(&word) {
                menu = child;
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                continue;
            }
            if let Some(verb) = menu.verb(&word) {
                break verb;
            }
            if menu.unmodeled.contains(&word.as_str()) {
                return Err(ParseError::Unmodeled {
                    what: format!("/{}/{}", menu.path, word),
                });
            }
            if self.peek() == Some('/') {
                return Err(self.syntax_at(self.pos));
            }
            let (line, col) = self.line_col(at);
            return Err(ParseError::BadCommand { word, line, col });
        };
        self.arguments(menu, verb)
    }

    fn arguments(
        &mut self,
        menu: &'static Menu,
        verb: &'static Verb,
    ) -> Result<Command, ParseError> {
        let mut cmd = Command {
            menu,
            verb,
            unnamed: Vec::new(),
            args: Vec::new(),
            switches: Vec::new(),
            filter: None,
        };
        loop {
            let before_ws = self.pos;
            self.skip_ws();
            if self.at_end() {
                return Ok(cmd);
            }
            if self.pos == before_ws {
                // Arguments must be separated by whitespace.
                return Err(self.expected_end());
            }
            let at = self.pos;
            match self.peek() {
                Some('"' | '[') => {
                    self.unnamed(&mut cmd, menu, at)?;
                    continue;
                }
                Some('$' | '\\' | '\'') => return Err(self.illegal_here()),
                _ => {}
            }
            let word = self.name();
            if word.is_empty() {
                if self.peek().is_some_and(word_char) {
                    self.pos = at;
                    self.unnamed(&mut cmd, menu, at)?;
                    continue;
                }
                return Err(self.syntax_at(at));
            }
            if self.peek() == Some('=') && verb.filter && verb.param(&word).is_none() {
                let compare = self.find_argument(menu, word, at)?;
                cmd.filter = Some(match cmd.filter.take() {
                    Some(left) => Expr::And(Box::new(left), Box::new(compare)),
                    None => compare,
                });
                continue;
            }
            if self.peek() == Some('=') {
                if verb.param(&word).is_none() {
                    self.pos = at;
                    return Err(self.expected_end());
                }
                self.pos += 1;
                // Whitespace after `=` is legal: the next token becomes the value.
                self.skip_ws();
                if self.at_end() {
                    cmd.args.push((
                        word,
                        Arg::Text {
                            text: String::new(),
                            quoted: false,
                        },
                    ));
                    continue;
                }
                let value = self.value(menu)?;
                if cmd.args.iter().any(|(n, _)| *n == word) {
                    self.pos = at;
                    return Err(self.expected_end());
                }
                cmd.args.push((word, value));
                continue;
            }
            if word == "where" && verb.filter {
                self.skip_ws();
                let expr = self.or_expr()?;
                self.skip_ws();
                if !self.at_end() {
                    return Err(self.expected_end());
                }
                cmd.filter = Some(match cmd.filter.take() {
                    Some(left) => Expr::And(Box::new(left), Box::new(expr)),
                    None => expr,
                });
                return Ok(cmd);
            }
            if let Some(s) = verb.switches.iter().find(|s| **s == word) {
                cmd.switches.push(s);
                continue;
            }
            if word_boundary_continues(self.peek()) {
                return Err(self.illegal_here());
            }
            self.pos = at;
            if cmd.unnamed.len() < verb.unnamed.len() {
                self.unnamed(&mut cmd, menu, at)?;
                continue;
            }
            if !verb.unnamed.is_empty() {
                let (line, col) = self.line_col(at);
                return Err(ParseError::BadParameter { word, line, col });
            }
            return Err(self.expected_end());
        }
    }

    /// `find prop=value`: `find` takes the arguments of the menu's `set` (REFERENCE §3.3), each
    /// an equality the items must meet, like `where prop=value`. In a menu whose `set` rds-sim
    /// does not model (`/file`, Btrfs subvolumes), `add`'s arguments stand in for it: the
    /// reference's own `remove [find name="…"]` there names a property `add` sets. The cursor is
    /// on the `=`.
    fn find_argument(
        &mut self,
        menu: &'static Menu,
        prop: String,
        at: usize,
    ) -> Result<Expr, ParseError> {
        let verb = |name: &str| menu.verbs.iter().find(|v| v.name == name);
        let settable = verb("set")
            .or_else(|| verb("add"))
            .is_some_and(|set| set.param(&prop).is_some());
        if !settable {
            self.pos = at;
            return Err(self.expected_end());
        }
        self.pos += 1;
        let value_at = self.pos;
        match self.value(menu)? {
            // An argument's value, unlike a `where` operand, is never arithmetic.
            Arg::Text { text, .. } => Ok(Expr::Compare {
                opaque: false,
                prop,
                op: CmpOp::Eq,
                value: text,
            }),
            // A command's result is a list of ids, never a property's value.
            Arg::Sub(_) => {
                self.pos = value_at;
                Err(self.expected_end())
            }
        }
    }

    fn unnamed(
        &mut self,
        cmd: &mut Command,
        menu: &'static Menu,
        at: usize,
    ) -> Result<(), ParseError> {
        if cmd.unnamed.len() >= cmd.verb.unnamed.len() {
            self.pos = at;
            return Err(self.expected_end());
        }
        let value = self.value(menu)?;
        cmd.unnamed.push(value);
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and_expr()?;
        loop {
            self.skip_ws();
            if self.eat_keyword("or") || self.eat_str("||") {
                self.skip_ws();
                let right = self.and_expr()?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not_expr()?;
        loop {
            self.skip_ws();
            if self.eat_keyword("and") || self.eat_str("&&") {
                self.skip_ws();
                let right = self.not_expr()?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.peek() == Some('!') && self.peek_at(1) != Some('=') {
            self.pos += 1;
            let inner = self.not_expr()?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            self.pos += 1;
            let e = self.or_expr()?;
            self.skip_ws();
            if self.peek() != Some(')') {
                return Err(self.syntax_at(self.pos));
            }
            self.pos += 1;
            return Ok(e);
        }
        let at = self.pos;
        let prop = self.name();
        if prop.is_empty() {
            return Err(self.syntax_at(at));
        }
        self.skip_ws();
        let op = if self.eat_str("!=") {
            CmpOp::Ne
        } else if self.eat_str("<=") {
            CmpOp::Le
        } else if self.eat_str(">=") {
            CmpOp::Ge
        } else if self.eat_str("=") {
            CmpOp::Eq
        } else if self.eat_str("<") {
            CmpOp::Lt
        } else if self.eat_str(">") {
            CmpOp::Gt
        } else if self.eat_str("~") {
            CmpOp::Regex
        } else {
            return Ok(Expr::Truthy(prop));
        };
        self.skip_ws();
        let (value, opaque) = match self.peek() {
            Some('"') => (self.quoted()?, false),
            Some('$' | '\\' | '\'') => return Err(self.illegal_here()),
            Some(c) if word_char(c) => {
                let start = self.pos;
                while self.peek().is_some_and(|c| word_char(c) && c != ',') {
                    self.pos += 1;
                }
                if matches!(self.peek(), Some('$' | '\\' | '\'')) {
                    return Err(self.illegal_here());
                }
                let text: String = self.src[start..self.pos].iter().collect();
                let opaque = text.contains('/') || text.contains(':');
                (text, opaque)
            }
            _ => return Err(self.syntax_at(self.pos)),
        };
        Ok(Expr::Compare {
            prop,
            op,
            value,
            opaque,
        })
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.src.len() >= self.pos + n
            && self.src[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// Consumes a keyword only when a non-name character follows it.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        if self.eat_str(kw)
            && !self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return true;
        }
        self.pos = save;
        false
    }
}

/// After a name, these characters cannot start anything legal.
fn word_boundary_continues(c: Option<char>) -> bool {
    matches!(c, Some('$' | '\\' | '\''))
}

fn is_upper_hex(c: char) -> bool {
    c.is_ascii_digit() || ('A'..='F').contains(&c)
}

fn hex_val(c: char) -> u8 {
    c.to_digit(16).map_or(0, |d| d as u8)
}
