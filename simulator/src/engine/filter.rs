//! `where` evaluation over printed items. A property an item does not print (an unexported disk's
//! `nvme-tcp-server-nqn`, say) is absent: it equals nothing and is not "set".

use super::ExecError;
use crate::routeros::format::{Item, Value};
use crate::routeros::script::{CmpOp, Expr};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

/// The regular expressions of an expression, compiled once per evaluation.
type Regexes = HashMap<String, regex::Regex>;

/// The items `expr` selects, copied; the rest are never copied.
pub fn select<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    expr: Option<&Expr>,
) -> Result<Vec<Item>, ExecError> {
    let Some(expr) = expr else {
        return Ok(items.into_iter().cloned().collect());
    };
    let mut regexes = Regexes::new();
    compile_regexes(expr, &mut regexes)?;
    Ok(items
        .into_iter()
        .filter(|item| eval(item, expr, &regexes))
        .cloned()
        .collect())
}

fn compile_regexes(expr: &Expr, out: &mut Regexes) -> Result<(), ExecError> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            compile_regexes(a, out)?;
            compile_regexes(b, out)
        }
        Expr::Not(a) => compile_regexes(a, out),
        Expr::Compare {
            op: CmpOp::Regex,
            value,
            opaque: false,
            ..
        } if !out.contains_key(value) => {
            let re = regex::Regex::new(value)
                .map_err(|_| ExecError("failure: invalid regular expression".into()))?;
            out.insert(value.clone(), re);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn eval(item: &Item, expr: &Expr, regexes: &Regexes) -> bool {
    match expr {
        Expr::And(a, b) => eval(item, a, regexes) && eval(item, b, regexes),
        Expr::Or(a, b) => eval(item, a, regexes) || eval(item, b, regexes),
        Expr::Not(a) => !eval(item, a, regexes),
        Expr::Truthy(prop) => match lookup(item, prop).as_deref() {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => !s.is_empty(),
            Some(_) => true,
        },
        Expr::Compare {
            prop,
            op,
            value,
            opaque,
        } => {
            if *opaque {
                return false;
            }
            let Some(actual) = lookup(item, prop) else {
                return false;
            };
            if *op == CmpOp::Regex {
                return regexes
                    .get(value)
                    .is_some_and(|re| re.is_match(&raw(&actual)));
            }
            compare(&actual, *op, value)
        }
    }
}

fn lookup<'a>(item: &'a Item, prop: &str) -> Option<Cow<'a, Value>> {
    match prop {
        ".id" => Some(Cow::Owned(Value::Bare(super::id_text(item.id)))),
        "comment" => Some(Cow::Owned(Value::Str(
            item.comment.clone().unwrap_or_default(),
        ))),
        _ => item
            .props
            .iter()
            .find(|(n, _)| *n == prop)
            .map(|(_, v)| Cow::Borrowed(v)),
    }
}

fn compare(actual: &Value, op: CmpOp, wanted: &str) -> bool {
    let ord = match actual {
        Value::Num(n) | Value::Int(n) | Value::Size(n) => match wanted.parse::<u64>() {
            Ok(w) => n.cmp(&w),
            Err(_) => return op == CmpOp::Ne,
        },
        Value::Percent(p) => match wanted.trim_end_matches('%').parse::<u64>() {
            Ok(w) => u64::from(*p).cmp(&w),
            Err(_) => return op == CmpOp::Ne,
        },
        Value::Bool(b) => {
            let w = match wanted {
                "yes" | "true" => true,
                "no" | "false" => false,
                _ => return op == CmpOp::Ne,
            };
            b.cmp(&w)
        }
        Value::Str(s) | Value::Bare(s) => s.as_str().cmp(wanted),
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Regex => unreachable!("matched in eval"),
    }
}

/// A value as `as-value` would hold it, for regex matching.
fn raw(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Str(s) | Value::Bare(s) => Cow::Borrowed(s),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Num(n) | Value::Int(n) | Value::Size(n) => Cow::Owned(n.to_string()),
        Value::Percent(p) => Cow::Owned(p.to_string()),
    }
}

/// A canonical text of an expression, for the command log.
pub fn describe(expr: &Expr) -> String {
    match expr {
        Expr::And(a, b) => format!("({} and {})", describe(a), describe(b)),
        Expr::Or(a, b) => format!("({} or {})", describe(a), describe(b)),
        Expr::Not(a) => format!("!{}", describe(a)),
        Expr::Truthy(p) => p.clone(),
        Expr::Compare {
            prop, op, value, ..
        } => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Gt => ">",
                CmpOp::Le => "<=",
                CmpOp::Ge => ">=",
                CmpOp::Regex => "~",
            };
            format!(
                "{prop}{op}{}",
                serde_json::to_string(value).unwrap_or_default()
            )
        }
    }
}
