//! The script forms: `:put [print detail as-value]` and `:put [:serialize to=json [...]]`.

use super::{ParseError, Record, lines};

/// `.id=*1;type=file;slot=x;…;.id=*2;…`: one line, records joined by `;`, a new record at each
/// `.id=`.
///
/// RouterOS does not escape this form, so a value holding `;` or `=` cannot be told apart from
/// the next property; [`crate::rds::value::Comment`] refuses both so the driver never writes one.
/// A piece without `=` is taken as the next element of a list value and rejoined with `;`.
/// Lines are joined without a separator, in case the terminal wrapped a long line.
pub fn parse_as_value(output: &str) -> Result<Vec<Record>, ParseError> {
    let line: String = lines(output).collect();
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let mut records: Vec<Record> = Vec::new();
    let mut last_name: Option<String> = None;
    for piece in line.split(';') {
        let Some((name, value)) = piece.split_once('=') else {
            let Some(record) = records.last_mut() else {
                return Err(ParseError::Line {
                    line: 1,
                    reason: "as-value output must start with name=value",
                    text: line.to_owned(),
                });
            };
            append_list_element(record, last_name.as_deref(), piece);
            continue;
        };
        if name == ".id" || records.is_empty() {
            records.push(Record::default());
        }
        let record = records.last_mut().expect("a record was pushed above");
        if name == "comment" {
            record.comment = Some(value.to_owned()).filter(|comment| !comment.is_empty());
        } else {
            record.insert(name, value.to_owned())?;
        }
        last_name = Some(name.to_owned());
    }
    Ok(records)
}

fn append_list_element(record: &mut Record, name: Option<&str>, element: &str) {
    let value = match name {
        Some("comment") => record.comment.get_or_insert_with(String::new),
        Some(name) => match record.props.iter_mut().find(|(key, _)| key == name) {
            Some((_, value)) => value,
            None => return,
        },
        None => return,
    };
    value.push(';');
    value.push_str(element);
}

/// `[{".id":"*1","type":"file",…},…]`, or a single object. Numbers and booleans become their JSON
/// text (`1099511627776`, `true`), `null` becomes empty, and an array value becomes its elements
/// joined by `;` as in the as-value form.
pub fn parse_json(output: &str) -> Result<Vec<Record>, ParseError> {
    let output = output.trim();
    if output.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        serde_json::Value::Array(items) => items.into_iter().map(json_record).collect(),
        object @ serde_json::Value::Object(_) => Ok(vec![json_record(object)?]),
        other => Err(ParseError::Json(format!(
            "expected an array of objects, got {other}"
        ))),
    }
}

fn json_record(item: serde_json::Value) -> Result<Record, ParseError> {
    let serde_json::Value::Object(map) = item else {
        return Err(ParseError::Json(format!("expected an object, got {item}")));
    };
    let mut record = Record::default();
    for (name, value) in map {
        let text = json_text(&name, value)?;
        if name == "comment" {
            record.comment = Some(text).filter(|comment| !comment.is_empty());
        } else {
            record.insert(&name, text)?;
        }
    }
    Ok(record)
}

fn json_text(name: &str, value: serde_json::Value) -> Result<String, ParseError> {
    use serde_json::Value;
    Ok(match value {
        Value::String(text) => text,
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(elements) => {
            let texts = elements
                .into_iter()
                .map(|element| json_text(name, element))
                .collect::<Result<Vec<_>, _>>()?;
            texts.join(";")
        }
        Value::Object(_) => {
            return Err(ParseError::Json(format!("property {name} holds an object")));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_value_splits_records_at_each_id() {
        let output = ".id=*1;type=file;slot=pvc-a;size=1073741824;comment=rds-csi:1,kind:volume;mounted=false;.id=*2;type=file;slot=pvc-b;comment=\r\n";
        let records = parse_as_value(output).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].get(".id"), Some("*1"));
        assert_eq!(records[0].get("size"), Some("1073741824"));
        assert_eq!(records[0].get("mounted"), Some("false"));
        assert_eq!(records[0].comment.as_deref(), Some("rds-csi:1,kind:volume"));
        assert_eq!(records[1].get("slot"), Some("pvc-b"));
        assert_eq!(records[1].comment, None);
    }

    #[test]
    fn as_value_list_elements_rejoin() {
        let records = parse_as_value(".id=*1;hosts=a;b;slot=x").unwrap();
        assert_eq!(records[0].get("hosts"), Some("a;b"));
        assert_eq!(records[0].get("slot"), Some("x"));
    }

    #[test]
    fn as_value_wrapped_line_is_rejoined() {
        let records = parse_as_value(".id=*1;slot=pv\r\nc-a;size=5\r\n").unwrap();
        assert_eq!(records[0].get("slot"), Some("pvc-a"));
    }

    #[test]
    fn as_value_empty_and_malformed() {
        assert_eq!(parse_as_value("\r\n").unwrap(), Vec::new());
        assert!(parse_as_value("garbage").is_err());
        assert!(parse_as_value(".id=*1;slot=a;slot=b").is_err());
    }

    #[test]
    fn json_values_become_text() {
        let output = r#"[{".id":"*1A","slot":"pvc-a","size":1099511627776,"nvme-tcp-export":true,"comment":"x","parent":null,"list":["a","b"]}]"#;
        let records = parse_json(output).unwrap();
        let record = &records[0];
        assert_eq!(record.get(".id"), Some("*1A"));
        assert_eq!(record.get("size"), Some("1099511627776"));
        assert_eq!(record.get("nvme-tcp-export"), Some("true"));
        assert_eq!(record.get("parent"), Some(""));
        assert_eq!(record.get("list"), Some("a;b"));
        assert_eq!(record.comment.as_deref(), Some("x"));
    }

    #[test]
    fn json_single_object_empty_and_malformed() {
        assert_eq!(
            parse_json(r#"{"slot":"a"}"#).unwrap()[0].get("slot"),
            Some("a")
        );
        assert_eq!(parse_json("[]\r\n").unwrap(), Vec::new());
        assert_eq!(parse_json("").unwrap(), Vec::new());
        for bad in ["[1]", "\"x\"", "[{\"a\":{}}]", "no such item"] {
            assert!(parse_json(bad).is_err(), "{bad:?} accepted");
        }
    }
}
