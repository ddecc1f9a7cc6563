//! Where things are in a config file. The TOML parser reports byte spans; these helpers
//! turn them into `file:line:column` and `[table] key` labels, so that every error message
//! points at a line a human can open.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a key in a table, or an entry in an array (of tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `keys(&["policy", "managed_domains"])`.
pub(crate) fn keys(ks: &[&str]) -> Vec<Seg> {
    ks.iter().map(|k| Seg::Key((*k).to_string())).collect()
}

/// The path of `key` in entry `index` of the array of tables `table`
/// (`entry(&["policy", "teams"], 1, "create")`).
pub(crate) fn entry(table: &[&str], index: usize, key: &str) -> Vec<Seg> {
    let mut p = keys(table);
    p.push(Seg::Index(index));
    p.push(Seg::Key(key.to_string()));
    p
}

/// `path` with one more segment.
pub(crate) fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// How a table is named in messages: `[policy]`, `[source.users]`, `[[policy.teams]] #2`.
pub(crate) fn table_label(path: &[Seg]) -> String {
    let names: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    if names.is_empty() {
        return "the top level".to_string();
    }
    match path.last() {
        Some(Seg::Index(i)) => format!("[[{}]] #{}", names.join("."), i + 1),
        _ => format!("[{}]", names.join(".")),
    }
}

/// How a key is named in messages: `[policy] managed_domains`, `[[policy.teams]] #2 create`.
/// Trailing array indices (an entry of a list value) are left out: the line says which.
pub(crate) fn key_label(path: &[Seg]) -> String {
    let Some(k) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
        return table_label(path);
    };
    let Seg::Key(key) = &path[k] else {
        return table_label(path);
    };
    if k == 0 {
        key.clone()
    } else {
        format!("{} {key}", table_label(&path[..k]))
    }
}

/// What a span found by [`Doc::find_span`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// A key (the span of its name).
    Key,
    /// A value, or a table's `[header]`.
    Value,
}

/// A config file's text and its parse tree, for locating keys.
pub(crate) struct Doc<'a> {
    origin: String,
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Doc<'a> {
    pub(crate) fn new(origin: &Path, text: &'a str) -> Doc<'a> {
        Doc {
            origin: origin.display().to_string(),
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// A document without text, for checking a config built in code: messages name
    /// `origin` and no line.
    pub(crate) fn detached(origin: &str) -> Doc<'static> {
        Doc {
            origin: origin.to_string(),
            text: "",
            root: None,
        }
    }

    /// The table header (`[policy.teams]`, brackets included) on the line where `span`
    /// starts, if that line is one. Only headers: a `key = value` line may hold a secret.
    pub(crate) fn header_at(&self, span: &Range<usize>) -> Option<&'a str> {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(line_start..)?.lines().next()?;
        let line = line.split('#').next()?.trim();
        (line.starts_with('[') && line.ends_with(']')).then_some(line)
    }

    /// The key of the `key = value` line where `span` starts (never the value: it may be
    /// a secret).
    pub(crate) fn key_at(&self, span: &Range<usize>) -> Option<&'a str> {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(line_start..)?.lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.\"".contains(c));
        bare.then_some(key)
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before.get(line_start..).map(|s| s.chars().count()).unwrap_or(0) + 1;
        (line, column)
    }

    /// `file:line:column` for a span, or just `file` without one.
    pub(crate) fn at(&self, span: Option<&Range<usize>>) -> String {
        match span {
            Some(s) if self.root.is_some() || !self.text.is_empty() => {
                let (line, column) = self.position(s.start);
                format!("{}:{line}:{column}", self.origin)
            }
            _ => self.origin.clone(),
        }
    }

    /// Whether a key path is written in the file (as opposed to taking its default).
    pub(crate) fn has(&self, path: &[Seg]) -> bool {
        let Some(root) = &self.root else { return false };
        let (depth, _) = walk(root, path);
        depth == path.len()
    }

    /// The span of the deepest part of `path` that is written in the file: the key itself
    /// when present, else the table it belongs in; `None` when not even that is.
    pub(crate) fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        walk(self.root.as_ref()?, path).1
    }

    /// The key path whose name or value has exactly this span.
    pub(crate) fn find_span(&self, span: &Range<usize>) -> Option<(Vec<Seg>, Hit)> {
        let root = self.root.as_ref()?;
        let mut path = Vec::new();
        find_in_table(root.get_ref(), span, &mut path)
    }
}

/// Follows `path` as far as the file has it. Returns how many segments matched and the
/// span of the last part reached (a key's name; an array entry's whole entry).
fn walk(root: &Spanned<DeTable<'_>>, path: &[Seg]) -> (usize, Option<Range<usize>>) {
    let mut table = Some(root.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    let mut last = None;
    for (depth, seg) in path.iter().enumerate() {
        let next = match seg {
            // A `[table]` header starts before its key name: point at the header.
            Seg::Key(k) => table.and_then(|t| t.iter().find(|(name, _)| name.get_ref() == k)).map(|(name, v)| {
                let span = if v.get_ref().is_table() && v.span().start < name.span().start {
                    v.span()
                } else {
                    name.span()
                };
                (span, v)
            }),
            Seg::Index(i) => array.and_then(|a| a.get(*i)).map(|v| (v.span(), v)),
        };
        let Some((span, value)) = next else {
            return (depth, last);
        };
        table = value.get_ref().as_table();
        array = value.get_ref().as_array().map(|a| &a[..]);
        last = Some(span);
    }
    (path.len(), last)
}

fn find_in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<Seg>) -> Option<(Vec<Seg>, Hit)> {
    for (name, value) in table.iter() {
        path.push(Seg::Key(name.get_ref().to_string()));
        if &name.span() == span {
            return Some((path.clone(), Hit::Key));
        }
        if let Some(found) = find_in_value(value, span, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

fn find_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Seg>) -> Option<(Vec<Seg>, Hit)> {
    // An array of tables shares its span with its first entry: prefer the entry.
    if let DeValue::Array(a) = value.get_ref() {
        for (i, v) in a.iter().enumerate() {
            path.push(Seg::Index(i));
            if let Some(found) = find_in_value(v, span, path) {
                return Some(found);
            }
            path.pop();
        }
    }
    if &value.span() == span {
        return Some((path.clone(), Hit::Value));
    }
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, span, path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Doc<'_> {
        fn locate(&self, path: &[Seg]) -> String {
            self.at(self.span_of(path).as_ref())
        }
    }

    const TEXT: &str = "# comment\n[policy]\nmanaged_domains = [\"a.com\", \"b.com\"]\n\n[[policy.teams]]\nteam = \"x\"\n[[policy.teams]]\nteam = \"y\"\ncreate = true\n";

    #[test]
    fn locates_keys_entries_and_missing_keys_by_their_table() {
        let d = Doc::new(Path::new("idsync.toml"), TEXT);
        assert_eq!(d.locate(&keys(&["policy", "managed_domains"])), "idsync.toml:3:1");
        assert_eq!(
            d.locate(&with(&keys(&["policy", "managed_domains"]), Seg::Index(1))),
            "idsync.toml:3:29"
        );
        assert_eq!(d.locate(&entry(&["policy", "teams"], 1, "create")), "idsync.toml:9:1");
        // Not written: point at the table it belongs in.
        assert_eq!(d.locate(&keys(&["policy", "auto_add"])), "idsync.toml:2:1");
        assert_eq!(d.locate(&keys(&["guards", "max_seats"])), "idsync.toml");
        assert!(d.has(&entry(&["policy", "teams"], 0, "team")));
        assert!(!d.has(&entry(&["policy", "teams"], 0, "create")));
    }

    #[test]
    fn labels_name_tables_and_array_entries() {
        assert_eq!(key_label(&keys(&["policy", "managed_domains"])), "[policy] managed_domains");
        assert_eq!(key_label(&keys(&["source", "users", "base"])), "[source.users] base");
        assert_eq!(key_label(&entry(&["policy", "teams"], 1, "create")), "[[policy.teams]] #2 create");
        assert_eq!(
            key_label(&with(&keys(&["policy", "ignore_users"]), Seg::Index(3))),
            "[policy] ignore_users"
        );
        assert_eq!(table_label(&[]), "the top level");
    }

    #[test]
    fn finds_the_key_a_span_belongs_to() {
        let d = Doc::new(Path::new("f.toml"), TEXT);
        let start = TEXT.find("create").unwrap();
        let (path, hit) = d.find_span(&(start..start + 6)).unwrap();
        assert_eq!(path, entry(&["policy", "teams"], 1, "create"));
        assert_eq!(hit, Hit::Key);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let d = Doc::new(Path::new("f.toml"), "a = \"é\"\nb = 1\n");
        assert_eq!(d.position("a = \"é\"\nb".len() - 1), (2, 1));
        assert_eq!(d.position(7), (1, 7));
    }
}
