//! Kubernetes label selectors as the API server reads `?labelSelector=` (apimachinery's
//! `labels.Parse`): comma-separated requirements, each `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k`, `!k`, `k>n` or `k<n`. Written independently of the code under test,
//! which passes selectors through untouched.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// The API server's 400 message for a selector it cannot parse is "unable to parse
    /// requirement: …"; the `Err` carries the part after the colon.
    pub fn parse(text: &str) -> Result<Self, String> {
        split_top_level(text)
            .into_iter()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(requirement)
            .collect::<Result<_, _>>()
            .map(LabelSelector)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::GreaterThan(k, n) => number(labels, k).is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => number(labels, k).is_some_and(|l| l < *n),
        })
    }
}

fn number(labels: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    labels.get(key)?.parse().ok()
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key.trim())?));
    }
    for (op, build) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            return Ok(build(key_of(key.trim())?, value_of(value.trim())?));
        }
    }
    for (op, build) in [
        (
            ">",
            Requirement::GreaterThan as fn(String, i64) -> Requirement,
        ),
        ("<", Requirement::LessThan),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            let n = value.trim().parse().map_err(|_| {
                format!("for 'Gt', 'Lt' operators, the value must be an integer: {value:?}")
            })?;
            return Ok(build(key_of(key.trim())?, n));
        }
    }
    let Some(open) = part.find('(') else {
        return match part.split_whitespace().collect::<Vec<_>>().as_slice() {
            [key] => Ok(Requirement::Exists(key_of(key)?)),
            [_, op, ..] => Err(format!(
                "found '{op}', expected: in, notin, =, ==, !=, gt, lt"
            )),
            [] => Err("found '', expected: identifier".to_owned()),
        };
    };
    let values = value_set(part[open..].trim())?;
    match part[..open]
        .split_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
    {
        [key, "in"] => Ok(Requirement::In(key_of(key)?, values)),
        [key, "notin"] => Ok(Requirement::NotIn(key_of(key)?, values)),
        _ => Err(format!(
            "found '{}', expected: in, notin, =, ==, !=, gt, lt",
            &part[..open]
        )),
    }
}

fn value_set(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("found '{text}', expected: '(' values ')'"))?;
    inner.split(',').map(|v| value_of(v.trim())).collect()
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn key_of(key: &str) -> Result<String, String> {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    if name.is_empty() || !valid_value(name) {
        return Err(format!(
            "Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(key.to_owned())
}

fn value_of(value: &str) -> Result<String, String> {
    if !value.is_empty() && !valid_value(value) {
        return Err(format!(
            "Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(value.to_owned())
}

fn valid_value(text: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.len() <= 63
        && edge(text.chars().next())
        && edge(text.chars().last())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[test]
fn selectors_match_as_the_api_server_does() {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let db = labels(&[("backup", "daily"), ("tier", "db"), ("size", "10")]);
    let web = labels(&[("tier", "web")]);
    for (selector, on_db, on_web) in [
        ("", true, true),
        ("backup=daily", true, false),
        ("backup==daily", true, false),
        ("backup!=daily", false, true),
        ("tier in (db,queue)", true, false),
        ("tier in(db, web)", true, true),
        ("tier notin (db)", false, true),
        ("backup", true, false),
        ("!backup", false, true),
        ("backup,tier=web", false, false),
        ("size>5", true, false),
        ("size<5", false, false),
        ("example.com/team=x", false, false),
    ] {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(parsed.matches(&db), on_db, "{selector} on db");
        assert_eq!(parsed.matches(&web), on_web, "{selector} on web");
    }
    for bad in ["tier in db", "-bad=x", "a=b c", "x=", "size>x"] {
        let parsed = LabelSelector::parse(bad);
        // `x=` is valid: an empty value.
        assert_eq!(parsed.is_ok(), bad == "x=", "{bad}: {parsed:?}");
    }
}
