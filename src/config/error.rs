//! Config errors, and the translation of the TOML parser's errors into messages that
//! name the file, the line, the key, and what to do. Only the parser's message is used,
//! never its rendering of the offending line: that line could hold a secret pasted inline.

use std::io;
use std::path::PathBuf;

use super::doc::{key_label, table_label, Doc, Hit, Seg};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file does not exist.
    #[error("config file {} not found; pass another with `-c FILE` or set $IDSYNC_CONFIG", path.display())]
    NotFound { path: PathBuf },
    /// A file the config names could not be read.
    #[error("{what}: cannot read {}: {source}", path.display())]
    Read {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid TOML, or not the shape of SPEC §3. `location` is `file:line:column`.
    #[error("{location}: {message}")]
    Syntax { location: String, message: String },
    /// Valid TOML whose values do not make sense together; every problem found, each
    /// starting with `file:line:column: [table] key:`.
    #[error("{}", render_problems(origin, problems))]
    Invalid { origin: String, problems: Vec<String> },
    /// A secret could not be read. Names the key and the file or variable, never the value.
    #[error("{message}")]
    Secret { message: String },
}

fn render_problems(origin: &str, problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => {
            let mut s = format!("{origin}: {} errors in the configuration:", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(p);
            }
            s
        }
    }
}

/// Translates a TOML parse/deserialise error into a located, actionable message.
pub(crate) fn from_toml(doc: &Doc<'_>, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    let location = doc.at(span.as_ref());
    let hit = span.as_ref().and_then(|s| doc.find_span(s));
    let raw = err.message().trim();
    let ticks = backquoted(raw);
    let message = if raw.starts_with("unknown field") && !ticks.is_empty() {
        let table = hit.as_ref().map(|(p, _)| parent(p)).unwrap_or_default();
        unknown_key(ticks[0], &ticks[1..], &table)
    } else if raw.starts_with("unknown variant") && !ticks.is_empty() {
        let key = hit.as_ref().map(|(p, _)| key_label(p));
        unknown_value(ticks[0], &ticks[1..], key.as_deref())
    } else if raw.starts_with("missing field") && !ticks.is_empty() {
        // The span is the header of the table missing the key (or nothing, at the top).
        let table = match &hit {
            Some((p, Hit::Value)) => p.clone(),
            _ => Vec::new(),
        };
        missing_key(ticks[0], &table)
    } else if raw == "duplicate key" {
        let header = span.as_ref().and_then(|s| doc.header_at(s));
        let key = span.as_ref().and_then(|s| doc.key_at(s));
        duplicate(hit.as_ref().map(|(p, _)| p.as_slice()).and_then(last_key).or(key), header)
    } else {
        let key = match &hit {
            Some((p, Hit::Value)) if !p.is_empty() => Some(p.as_slice()),
            _ => None,
        };
        let detail = humanize(raw, key.and_then(last_key));
        match key {
            Some(p) => format!("{}: {detail}", key_label(p)),
            None => detail,
        }
    };
    ConfigError::Syntax { location, message }
}

/// The table a key path sits in.
fn parent(path: &[Seg]) -> Vec<Seg> {
    path.get(..path.len().saturating_sub(1)).map(<[Seg]>::to_vec).unwrap_or_default()
}

/// Text between backquotes, in order: serde names fields and variants that way.
fn backquoted(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn unknown_key(key: &str, known: &[&str], table: &[Seg]) -> String {
    let place = table_label(table);
    let mut msg = format!("unknown key \"{key}\" in {place}");
    // A secret written inline (`api_key = "..."`) is the mistake most worth catching.
    let file_key = format!("{key}_file");
    if known.contains(&file_key.as_str()) {
        msg.push_str(&format!(
            "; secrets are never written in the config: use \"{key}_file\" (a path to a file holding it) or \"{key}_env\" (an environment variable name)"
        ));
        return msg;
    }
    if let Some(near) = nearest(key, known) {
        msg.push_str(&format!("; did you mean \"{near}\"?"));
    } else if let Some(home) = other_table_with(key, table) {
        msg.push_str(&format!("; \"{key}\" belongs in {home}"));
    } else if known.is_empty() {
        msg.push_str("; this table takes no keys");
    } else {
        msg.push_str(&format!("; known keys: {}", known.join(", ")));
    }
    msg
}

fn unknown_value(value: &str, allowed: &[&str], key: Option<&str>) -> String {
    let list = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let mut msg = match key {
        Some(k) => format!("{k}: invalid value \"{value}\"; allowed values: {list}"),
        None => format!("invalid value \"{value}\"; allowed values: {list}"),
    };
    if let Some(near) = nearest(value, allowed) {
        msg.push_str(&format!("; did you mean \"{near}\"?"));
    }
    msg
}

fn missing_key(key: &str, table: &[Seg]) -> String {
    if table.is_empty() && REQUIRED_TABLES.contains(&key) {
        format!("the required table [{key}] is missing; see config.example.toml")
    } else {
        format!("{} is missing the required key \"{key}\"", table_label(table))
    }
}

/// Tables the file must have (no defaults).
const REQUIRED_TABLES: [&str; 3] = ["source", "target", "policy"];

/// Every table's keys, for "this key belongs in another table". Kept honest by a test
/// that compares it with the structs' serialised field names.
pub(crate) const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "source", "target", "policy", "guards", "daemon", "log", "report", "notify", "state", "ha",
        ],
    ),
    (
        "source",
        &[
            "kind",
            "url",
            "start_tls",
            "ca_file",
            "bind_dn",
            "bind_password_file",
            "bind_password_env",
            "timeout",
            "page_size",
            "dialect",
            "token_file",
            "token_env",
            "tenant_id",
            "client_id",
            "client_secret_file",
            "client_secret_env",
            "authority",
            "graph_url",
            "path",
            "users",
            "groups",
        ],
    ),
    (
        "source.users",
        &["base", "filter", "email_attr", "username_attr", "name_attr", "anchor_attr"],
    ),
    (
        "source.groups",
        &["base", "filter", "member_attr", "name_attr", "nested", "in_chain"],
    ),
    (
        "target",
        &[
            "kind",
            "url",
            "scim_path",
            "deployment",
            "server_version",
            "username",
            "auth",
            "api_key_file",
            "api_key_env",
            "timeout",
            "max_concurrency",
            "max_retries",
        ],
    ),
    (
        "policy",
        &[
            "managed_domains",
            "ignore_users",
            "auto_add",
            "auto_add_group",
            "default_org_role",
            "deprovision",
            "grace_period",
            "disabled_grace_period",
            "restore_window",
            "team_membership",
            "org_roles",
            "teams",
        ],
    ),
    ("policy.org_roles", &["group", "role"]),
    ("policy.teams", &["team", "group", "role", "create"]),
    (
        "guards",
        &[
            "min_org_admins",
            "min_team_admins",
            "max_deprovisions",
            "max_deprovision_percent",
            "max_team_removals",
            "max_source_shrink_percent",
            "source_health_window",
            "max_seats",
            "pipeline_key_owners",
            "pipeline_inventory",
            "approval_ttl",
        ],
    ),
    ("daemon", &["schedule", "run_on_start", "listen", "state_dir"]),
    ("log", &["format", "level"]),
    ("report", &["seat_price", "inactive_days"]),
    ("state", &["backend", "url_file", "url_env", "ca_file", "retention"]),
    ("ha", &["enabled", "lease_ttl", "node_name"]),
    ("report.seat_price", &["member", "viewer", "admin"]),
    ("notify", &["webhook_url_file", "webhook_url_env", "format", "on"]),
];

/// The table (other than `here`) that has a key of exactly this name, if just one does.
fn other_table_with(key: &str, here: &[Seg]) -> Option<String> {
    let here: Vec<&str> = here
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let here = here.join(".");
    let homes: Vec<&str> = KNOWN_KEYS
        .iter()
        .filter(|(t, ks)| *t != here && ks.contains(&key))
        .map(|(t, _)| *t)
        .collect();
    match homes.as_slice() {
        [""] => Some("the top level".to_string()),
        [one] if one.starts_with("policy.") => Some(format!("[[{one}]]")),
        [one] => Some(format!("[{one}]")),
        _ => None,
    }
}

/// The known name closest to a misspelt one, when it is close enough to be a typo.
pub(crate) fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let w = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| {
            (
                *k,
                strsim::damerau_levenshtein(&w, &k.to_ascii_lowercase()),
                strsim::jaro_winkler(&w, &k.to_ascii_lowercase()),
            )
        })
        .filter(|(k, dist, jw)| *dist <= 2.max(k.len() / 4) || *jw >= 0.88)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(k, _, _)| k)
}

/// The last key name of a path (`managed_domains` in `[policy] managed_domains`).
fn last_key(path: &[Seg]) -> Option<&str> {
    path.iter().rev().find_map(|s| match s {
        Seg::Key(k) => Some(k.as_str()),
        Seg::Index(_) => None,
    })
}

/// `duplicate key`: TOML allows a key or a table once; a second `[policy.teams]` is the
/// usual way to get here (a list of tables needs double brackets).
fn duplicate(key: Option<&str>, header: Option<&str>) -> String {
    let list = |t: &str| format!("{t} is defined twice; for several entries write each as [{t}] (double brackets: a list of tables)");
    match (header, key) {
        (Some(h), _) if h.starts_with("[[") => {
            format!("{h} follows a single-bracket table of the same name above; write every entry as {h}")
        }
        (Some(h), _) if h == "[policy.teams]" || h == "[policy.org_roles]" => list(h),
        (Some(h), _) => format!("the table {h} is defined twice; merge the two into one"),
        (None, Some(k)) => format!("\"{k}\" is set twice in the same table; keep one"),
        (None, None) => "a key is set twice in the same table; keep one".into(),
    }
}

/// Translates serde's `invalid type: X, expected Y` / `invalid value: X, expected Y` /
/// `invalid length N, expected Y` into words an admin editing a config file knows, with
/// the fix when there is an obvious one. Anything else keeps serde's words, with its type
/// names translated.
fn humanize(raw: &str, key: Option<&str>) -> String {
    let split = |rest: &str| rest.rsplit_once(", expected ").map(|(f, e)| (f.to_string(), e.to_string()));
    if let Some((found, expected)) = raw.strip_prefix("invalid type: ").and_then(split) {
        let (found, expected) = (found_words(&found), expected_words(&expected, key));
        return format!("expected {expected}, but found {found}{}", fix_for(raw, key));
    }
    if let Some((found, expected)) = raw.strip_prefix("invalid value: ").and_then(split) {
        return format!(
            "{} is out of range; expected {}",
            found_words(&found),
            expected_words(&expected, key)
        );
    }
    if let Some((n, expected)) = raw.strip_prefix("invalid length ").and_then(split) {
        return format!("has {n} entries; expected {}", expected_words(&expected, key));
    }
    type_words(raw)
}

/// `string "x"` -> `the text "x"`; ``integer `7` `` -> `the number 7`.
fn found_words(found: &str) -> String {
    let tick = backquoted(found).first().map(|s| s.to_string());
    let f = found.trim();
    if f.starts_with("integer") && f.ends_with("as i128") {
        return format!("the number {}, which is far too large", tick.unwrap_or_default());
    }
    match (f.split_whitespace().next().unwrap_or(""), tick) {
        ("integer", Some(n)) | ("floating", Some(n)) => format!("the number {n}"),
        ("boolean", Some(b)) => b,
        ("string", _) => format!("the text {}", f.trim_start_matches("string").trim()),
        ("map", _) => "a table".into(),
        ("sequence", _) => "a list".into(),
        _ => type_words(f),
    }
}

/// Durations are the strings people most often write as bare numbers.
const DURATION_KEYS: [&str; 6] = [
    "timeout",
    "grace_period",
    "disabled_grace_period",
    "source_health_window",
    "approval_ttl",
    "lease_ttl",
];

fn expected_words(expected: &str, key: Option<&str>) -> String {
    if expected.trim() == "a string" && key.is_some_and(|k| DURATION_KEYS.contains(&k)) {
        return "a duration in quotes, like \"90s\", \"15m\", \"72h\" or \"7d\"".into();
    }
    type_words(expected)
}

/// The obvious edit, for the two mistakes that have one.
fn fix_for(raw: &str, key: Option<&str>) -> String {
    let Some(k) = key else { return String::new() };
    let found = raw.strip_prefix("invalid type: ").unwrap_or("");
    if raw.ends_with("expected a sequence") {
        if let Some(text) = found
            .strip_prefix("string ")
            .and_then(|r| r.rsplit_once(", expected"))
            .map(|(t, _)| t)
        {
            return format!("; put it in brackets: {k} = [{text}]");
        }
        return format!("; write a list in brackets: {k} = [\"...\", \"...\"]");
    }
    if DURATION_KEYS.contains(&k) {
        if let Some(n) = backquoted(found).first() {
            return format!("; add a unit and quotes, like {k} = \"{n}h\" ({n} hours) or \"{n}s\" ({n} seconds)");
        }
    }
    String::new()
}

/// serde's type names mean little to an admin editing a config file.
fn type_words(msg: &str) -> String {
    let mut s = msg.to_string();
    for (from, to) in [
        ("usize", "a whole number (0 or more)"),
        ("u8", "a whole number (0 or more)"),
        ("u16", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("a boolean", "true or false"),
        ("a sequence", "a list in brackets, like [\"a\", \"b\"]"),
        ("a string", "text in quotes"),
        ("a map", "a table"),
    ] {
        s = replace_word(&s, &format!("expected {from}"), &format!("expected {to}"));
        if s.trim() == from {
            return to.to_string();
        }
    }
    if s.trim().starts_with("struct ") {
        return "a table".into();
    }
    if let Some(rest) = s.split_once("expected struct ") {
        return format!("{}expected a table", rest.0);
    }
    s
}

/// Replaces `from` when it is a whole phrase (not `u8` inside `u80`).
fn replace_word(s: &str, from: &str, to: &str) -> String {
    match s.find(from) {
        Some(i) if !s[i + from.len()..].starts_with(|c: char| c.is_ascii_alphanumeric()) => {
            format!("{}{to}{}", &s[..i], &s[i + from.len()..])
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_but_not_unrelated_words() {
        let known = ["managed_domains", "ignore_users", "auto_add"];
        assert_eq!(nearest("managed_domain", &known), Some("managed_domains"));
        assert_eq!(nearest("ignore_user", &known), Some("ignore_users"));
        assert_eq!(nearest("autoadd", &known), Some("auto_add"));
        assert_eq!(nearest("schedule", &known), None);
    }

    #[test]
    fn several_problems_are_listed_one_per_line() {
        let e = ConfigError::Invalid {
            origin: "f.toml".into(),
            problems: vec!["f.toml:1:1: a".into(), "f.toml:2:1: b".into()],
        };
        assert_eq!(
            e.to_string(),
            "f.toml: 2 errors in the configuration:\n  f.toml:1:1: a\n  f.toml:2:1: b"
        );
    }
}
