//! Maps byte offsets and key paths of a TOML document to lines, so every
//! config error can name file, line and key.

use std::ops::Range;

use toml_edit::{Document, Item, Table, Value};

/// Spans of every key in a document, with their dotted paths.
pub struct KeyMap {
    /// (path, key span, value span), outermost first.
    entries: Vec<(String, Range<usize>, Range<usize>)>,
    line_starts: Vec<usize>,
}

impl KeyMap {
    /// Builds the map; a document that does not parse yields an empty map
    /// (the parse error itself carries a position).
    pub fn new(src: &str) -> KeyMap {
        let mut entries = Vec::new();
        if let Ok(doc) = Document::parse(src) {
            walk_table(doc.as_table(), "", &mut entries);
        }
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        KeyMap {
            entries,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The innermost key whose key or value contains `offset`.
    pub fn key_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, k, v)| k.contains(&offset) || v.contains(&offset) || v.end == offset)
            .max_by_key(|(p, _, _)| p.len())
            .map(|(p, _, _)| p.as_str())
    }

    /// The line where `path` (e.g. `web.listen`) is written.
    pub fn line_of_key(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, k, _)| self.line_of(k.start))
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(t: &Table, prefix: &str, out: &mut Vec<(String, Range<usize>, Range<usize>)>) {
    for (name, _) in t.iter() {
        let Some((key, item)) = t.get_key_value(name) else {
            continue;
        };
        let path = join(prefix, name);
        let kspan = key.span().unwrap_or(0..0);
        let vspan = item.span().unwrap_or_else(|| kspan.clone());
        out.push((path.clone(), kspan, vspan));
        walk_item(item, &path, out);
    }
}

fn walk_item(item: &Item, path: &str, out: &mut Vec<(String, Range<usize>, Range<usize>)>) {
    match item {
        Item::Table(t) => walk_table(t, path, out),
        Item::Value(v) => walk_value(v, path, out),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                walk_table(t, &format!("{path}[{i}]"), out);
            }
        }
        Item::None => {}
    }
}

fn walk_value(v: &Value, path: &str, out: &mut Vec<(String, Range<usize>, Range<usize>)>) {
    match v {
        Value::InlineTable(t) => {
            for (name, _) in t.iter() {
                let Some((key, item)) = t.get_key_value(name) else {
                    continue;
                };
                let p = join(path, name);
                let kspan = key.span().unwrap_or(0..0);
                out.push((p.clone(), kspan.clone(), item.span().unwrap_or(kspan)));
                walk_item(item, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, elem) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let span = elem.span().unwrap_or(0..0);
                out.push((p.clone(), span.clone(), span));
                walk_value(elem, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_lines() {
        let src = "[node]\nid = \"a\"\n\n[web]\nlisten = \"x\"\nsocket = \"\"\n";
        let m = KeyMap::new(src);
        assert_eq!(m.line_of_key("web.listen"), Some(5));
        let off = src.find("\"x\"").expect("offset");
        assert_eq!(m.key_at(off), Some("web.listen"));
        assert_eq!(m.line_of(off), 5);
    }
}
