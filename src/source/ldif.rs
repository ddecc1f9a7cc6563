//! The LDIF source: an RFC 2849 export (e.g. `ldapsearch -LLL` output) read as a
//! directory, for demos, tests and offline planning.
//!
//! Only content records are accepted. Any problem fails the whole read with the file, the
//! line and what is wrong: a partial directory is never returned.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::config::{LdapDialect, LdapGroupsConfig, LdapUsersConfig};
use crate::model::DirectorySnapshot;

use super::entries::{build_snapshot, dn_key, Entry};
use super::{filter, SourceError};

/// Standard alphabet; padding optional, since hand-written LDIF often drops it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads an LDIF file and builds the directory: users are the entries under `users.base`
/// matching `users.filter`, groups likewise with the groups configuration.
pub fn read_ldif(
    path: &Path,
    ucfg: &LdapUsersConfig,
    gcfg: &LdapGroupsConfig,
    dialect: LdapDialect,
) -> Result<DirectorySnapshot, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        SourceError::Ldif {
            path: path.to_path_buf(),
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            msg: "not valid UTF-8: values that are not UTF-8 text must be base64-encoded ('attr:: ...')".into(),
        }
    })?;
    read_ldif_text(&text, path, ucfg, gcfg, dialect)
}

/// [`read_ldif`] on text already read (`path` names it in errors).
pub fn read_ldif_text(
    text: &str,
    path: &Path,
    ucfg: &LdapUsersConfig,
    gcfg: &LdapGroupsConfig,
    dialect: LdapDialect,
) -> Result<DirectorySnapshot, SourceError> {
    let entries = parse_named(text, path)?;
    let user_filter = filter::parse(&ucfg.filter).map_err(|msg| SourceError::Filter {
        key: "source.users.filter".into(),
        msg,
    })?;
    let group_filter = filter::parse(&gcfg.filter).map_err(|msg| SourceError::Filter {
        key: "source.groups.filter".into(),
        msg,
    })?;
    let user_base = dn_key(&ucfg.base);
    let group_base = dn_key(&gcfg.base);
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for e in entries {
        let dn = dn_key(&e.dn);
        let is_user = under_base(&dn, &user_base) && user_filter.matches(&e);
        let is_group = under_base(&dn, &group_base) && group_filter.matches(&e);
        match (is_user, is_group) {
            (true, true) => {
                groups.push(e.clone());
                users.push(e);
            }
            (true, false) => users.push(e),
            (false, true) => groups.push(e),
            (false, false) => {}
        }
    }
    build_snapshot("ldif", users, groups, ucfg, gcfg, dialect)
}

/// Whether normalised `dn` is `base` or below it (subtree scope). An empty base holds
/// everything.
fn under_base(dn: &str, base: &str) -> bool {
    if base.is_empty() || dn == base {
        return true;
    }
    let Some(prefix) = dn.strip_suffix(base).and_then(|p| p.strip_suffix(',')) else {
        return false;
    };
    // `cn=a\,ou=x` is one RDN: a comma escaped by an odd run of backslashes is not a
    // separator.
    let backslashes = prefix.bytes().rev().take_while(|&b| b == b'\\').count();
    backslashes.is_multiple_of(2)
}

/// Parses LDIF content records. Errors name the line; see [`read_ldif`] for files.
pub fn parse_ldif(text: &str) -> Result<Vec<Entry>, SourceError> {
    parse_named(text, Path::new("<ldif>"))
}

/// One unfolded line and the physical line it starts on. Borrowed unless folded, so a
/// large export is not copied line by line.
struct Logical<'a> {
    line: usize,
    text: Cow<'a, str>,
}

fn parse_named(text: &str, path: &Path) -> Result<Vec<Entry>, SourceError> {
    let err = |line: usize, msg: String| SourceError::Ldif {
        path: path.to_path_buf(),
        line,
        msg,
    };
    let records = unfold(text.strip_prefix('\u{feff}').unwrap_or(text), &err)?;
    let mut entries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for mut rec in records {
        // `version: 1` heads a file; concatenated exports repeat it, so accept it at the
        // start of any record.
        if let Some(first) = rec.first() {
            if let Some((name, value)) = first.text.split_once(':') {
                if name.eq_ignore_ascii_case("version") {
                    if value.trim() != "1" {
                        return Err(err(
                            first.line,
                            format!("unsupported LDIF version {:?} (only version 1 exists)", value.trim()),
                        ));
                    }
                    rec.remove(0);
                }
            }
        }
        let Some(first) = rec.first() else { continue };
        let first_name = first.text.split(':').next().unwrap_or("");
        if first_name.eq_ignore_ascii_case("search") {
            check_search_trailer(&rec, &err)?;
            continue;
        }
        if !first_name.eq_ignore_ascii_case("dn") {
            return Err(err(
                first.line,
                "expected 'dn:' at the start of a record (records are separated by blank lines)".into(),
            ));
        }
        let mut entry: Option<Entry> = None;
        for l in &rec {
            let (name, value) = attr_value(l, &err)?;
            let lname = name.to_ascii_lowercase();
            match (lname.as_str(), entry.as_mut()) {
                ("dn", None) => {
                    let dn = String::from_utf8(value).map_err(|_| err(l.line, "the dn is not valid UTF-8".into()))?;
                    if let Some(prev) = seen.insert(dn_key(&dn).into_owned(), l.line) {
                        return Err(err(l.line, format!("entry {dn:?} appears twice (first at line {prev})")));
                    }
                    entry = Some(Entry::new(dn));
                }
                ("dn", Some(_)) => {
                    return Err(err(
                        l.line,
                        "a second 'dn:' in one record: separate records with a blank line".into(),
                    ))
                }
                ("changetype" | "control", _) => {
                    return Err(err(
                        l.line,
                        format!("change records are not supported ('{name}:'); export content records, e.g. with ldapsearch -LLL"),
                    ));
                }
                (_, Some(e)) => e.add(name, value),
                // The first line was checked to be `dn:`.
                (_, None) => return Err(err(l.line, "expected 'dn:' at the start of a record".into())),
            }
        }
        if let Some(e) = entry {
            entries.push(e);
        }
    }
    Ok(entries)
}

/// Splits the text into records of unfolded lines, dropping comments.
fn unfold<'a>(text: &'a str, err: &dyn Fn(usize, String) -> SourceError) -> Result<Vec<Vec<Logical<'a>>>, SourceError> {
    #[derive(PartialEq)]
    enum Last {
        None,
        Comment,
        Line,
    }
    let mut records = Vec::new();
    let mut cur: Vec<Logical> = Vec::new();
    let mut last = Last::None;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cont) = line.strip_prefix(' ') {
            match last {
                Last::Line => {
                    if let Some(l) = cur.last_mut() {
                        l.text.to_mut().push_str(cont);
                    }
                    continue;
                }
                Last::Comment => continue,
                // Whitespace-only lines between records are taken as blank.
                Last::None if line.trim().is_empty() => {}
                Last::None => {
                    return Err(err(
                        line_no,
                        "line starts with a space but there is no line before it to continue".into(),
                    ))
                }
            }
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                records.push(std::mem::take(&mut cur));
            }
            last = Last::None;
        } else if line.starts_with('#') {
            last = Last::Comment;
        } else {
            cur.push(Logical {
                line: line_no,
                text: Cow::Borrowed(line),
            });
            last = Last::Line;
        }
    }
    if !cur.is_empty() {
        records.push(cur);
    }
    Ok(records)
}

/// Splits `name: value`, `name:: base64` and rejects `name:< url`.
fn attr_value<'a>(l: &'a Logical<'_>, err: &dyn Fn(usize, String) -> SourceError) -> Result<(&'a str, Vec<u8>), SourceError> {
    let Some((name, rest)) = l.text.split_once(':') else {
        return Err(err(l.line, "expected 'attribute: value' (no ':' on this line)".into()));
    };
    if name.is_empty() {
        return Err(err(l.line, "missing attribute name before ':'".into()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';' || b == b'.')
    {
        let shown: String = name.chars().take(40).collect();
        return Err(err(l.line, format!("invalid attribute name {shown:?}")));
    }
    if let Some(b64) = rest.strip_prefix(':') {
        let data = B64
            .decode(b64.trim())
            .map_err(|_| err(l.line, format!("invalid base64 in attribute {name}")))?;
        return Ok((name, data));
    }
    if rest.starts_with('<') {
        return Err(err(
            l.line,
            format!("URL values ('{name}:< ...') are not supported: inline the value, base64-encoded if binary ('{name}:: ...')"),
        ));
    }
    Ok((name, rest.trim_start_matches(' ').as_bytes().to_vec()))
}

/// `ldapsearch` without `-LLL` ends with `search: N` / `result: 0 Success`; a non-zero
/// result (e.g. a size limit) means the export is incomplete.
fn check_search_trailer(rec: &[Logical<'_>], err: &dyn Fn(usize, String) -> SourceError) -> Result<(), SourceError> {
    for l in rec {
        let (name, value) = attr_value(l, err)?;
        if name.eq_ignore_ascii_case("result") {
            let v = String::from_utf8_lossy(&value).trim().to_string();
            if v != "0" && !v.starts_with("0 ") {
                return Err(err(l.line, format!("the export is incomplete: ldapsearch reported 'result: {v}'")));
            }
        }
    }
    Ok(())
}

/// The path an LDIF source reads: `source.path`, relative to the config file's directory.
pub fn resolve_path(path: &str, config_dir: &Path) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line_err(text: &str) -> (usize, String) {
        match parse_ldif(text) {
            Err(SourceError::Ldif { line, msg, .. }) => (line, msg),
            other => panic!("expected an LDIF error, got {other:?}"),
        }
    }

    #[test]
    fn content_records_with_folding_base64_comments_and_version() {
        let text = "version: 1\n\
                    # a comment\n\
                    #  folded comment\n  still the comment\n\
                    dn: uid=alice,ou=people,\n dc=example,dc=com\n\
                    objectClass: inetOrgPerson\n\
                    cn:   Alice\n\
                    description: long\n  value\n\
                    jpegPhoto:: AAEC/w==\n\
                    sn:: w4VuZ3N0csO2bQ\n\
                    empty:\n\
                    \n\
                    \n\
                    dn:: dWlkPWJvYixvdT1wZW9wbGUsZGM9ZXhhbXBsZSxkYz1jb20=\n\
                    UID: bob\n";
        let es = parse_ldif(text).unwrap();
        assert_eq!(es.len(), 2);
        let a = &es[0];
        assert_eq!(a.dn, "uid=alice,ou=people,dc=example,dc=com");
        assert_eq!(a.first_str("cn").as_deref(), Some("Alice"));
        assert_eq!(a.first_str("description").as_deref(), Some("long value"));
        assert_eq!(a.values("jpegphoto"), &[vec![0u8, 1, 2, 255]]);
        assert_eq!(a.first_str("sn").as_deref(), Some("Ångström"), "unpadded base64 is accepted");
        assert_eq!(a.first_str("empty").as_deref(), Some(""));
        assert_eq!(es[1].dn, "uid=bob,ou=people,dc=example,dc=com");
        assert_eq!(es[1].first_str("uid").as_deref(), Some("bob"));
    }

    #[test]
    fn crlf_line_endings_and_bom() {
        let text = "\u{feff}dn: cn=a,dc=x\r\ncn: a\r\n b\r\n\r\ndn: cn=c,dc=x\r\ncn: c\r\n";
        let es = parse_ldif(text).unwrap();
        assert_eq!(es.len(), 2);
        assert_eq!(es[0].first_str("cn").as_deref(), Some("ab"));
        assert_eq!(es[1].first_str("cn").as_deref(), Some("c"));
    }

    #[test]
    fn ldapsearch_trailer_is_accepted_only_when_successful() {
        let ok = "dn: cn=a,dc=x\ncn: a\n\n# search result\nsearch: 2\nresult: 0 Success\n\n# numEntries: 1\n";
        assert_eq!(parse_ldif(ok).unwrap().len(), 1);
        let (line, msg) = line_err("dn: cn=a,dc=x\n\nsearch: 2\nresult: 4 Size limit exceeded\n");
        assert_eq!(line, 4);
        assert!(msg.contains("incomplete"), "{msg}");
    }

    #[test]
    fn malformed_ldif_names_the_line() {
        for (text, want_line, want) in [
            (
                "dn: cn=a,dc=x\ncn: a\njpegPhoto:: !!!notbase64\n",
                3,
                "invalid base64 in attribute jpegPhoto",
            ),
            ("dn: cn=a,dc=x\nchangetype: add\ncn: a\n", 2, "change records are not supported"),
            ("dn: cn=a,dc=x\ncn:< file:///etc/passwd\n", 2, "URL values"),
            ("cn: a\ndn: cn=a,dc=x\n", 1, "expected 'dn:'"),
            ("dn: cn=a,dc=x\njust text\n", 2, "no ':'"),
            ("dn: cn=a,dc=x\n: value\n", 2, "missing attribute name"),
            ("dn: cn=a,dc=x\nbad name: v\n", 2, "invalid attribute name"),
            ("dn: cn=a,dc=x\ncn: a\ndn: cn=b,dc=x\n", 3, "second 'dn:'"),
            ("dn: cn=a,dc=x\n\n continued\n", 3, "no line before it"),
            ("version: 2\n\ndn: cn=a,dc=x\n", 1, "unsupported LDIF version"),
            ("dn: cn=a,dc=x\n\ndn: CN=A, DC=X\n", 3, "appears twice (first at line 1)"),
            ("dn:: //79\n", 1, "not valid UTF-8"),
            ("# c\n\ndn: cn=a,\n dc=x\ncn: a\nx::\n  ???\n", 6, "invalid base64 in attribute x"),
        ] {
            let (line, msg) = line_err(text);
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert_eq!(line, want_line, "{text:?}: {msg}");
        }
    }

    #[test]
    fn errors_display_file_and_line() {
        let e = parse_named("dn: cn=a\nphoto:: %%\n", Path::new("examples/x.ldif")).unwrap_err();
        assert_eq!(e.to_string(), "examples/x.ldif:2: invalid base64 in attribute photo");
    }

    #[test]
    fn whitespace_only_lines_between_records_are_blank() {
        let es = parse_ldif("dn: cn=a,dc=x\n\n   \ndn: cn=b,dc=x\n").unwrap();
        assert_eq!(es.len(), 2);
        assert!(parse_ldif("").unwrap().is_empty());
        assert!(parse_ldif("version: 1\n").unwrap().is_empty());
    }

    #[test]
    fn base_matching_is_a_normalised_subtree_suffix() {
        let base = dn_key("ou=People, dc=Example,dc=com");
        assert!(under_base(&dn_key("uid=a,ou=people,dc=example,dc=com"), &base));
        assert!(under_base(&dn_key("uid=a,ou=x,ou=people,dc=example,dc=com"), &base));
        assert!(under_base(&base, &base));
        assert!(!under_base(&dn_key("uid=a,ou=groups,dc=example,dc=com"), &base));
        assert!(!under_base(&dn_key("uid=a,ou=xpeople,dc=example,dc=com"), &base));
        assert!(
            !under_base(&dn_key("cn=a\\,ou=people,dc=example,dc=com"), &base),
            "an escaped comma is not a separator"
        );
        assert!(under_base("anything", ""));
    }

    const DIRECTORY: &str = "\
dn: dc=example,dc=com
objectClass: domain
dc: example

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice
mail: alice@example.com
entryUUID: 1111

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: bob
cn: Bob
mail: bob@example.com
entryUUID: 2222
pwdAccountLockedTime: 20240101000000Z

dn: uid=svc,ou=services,dc=example,dc=com
objectClass: inetOrgPerson
uid: svc
mail: svc@example.com
entryUUID: 3333

dn: cn=ml,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: ml
member: uid=alice,ou=people,dc=example,dc=com
member: cn=ops,ou=groups,dc=example,dc=com
member: uid=svc,ou=services,dc=example,dc=com

dn: cn=ops,ou=groups,dc=example,dc=com
objectClass: groupOfUniqueNames
cn: ops
uniqueMember: uid=bob,ou=people,dc=example,dc=com#'01'B

dn: cn=other,ou=elsewhere,dc=example,dc=com
objectClass: groupOfNames
cn: other
member: uid=alice,ou=people,dc=example,dc=com
";

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn read_ldif_selects_users_and_groups_by_base_and_filter() {
        let f = write(DIRECTORY);
        let u = LdapUsersConfig {
            base: "ou=people,dc=example,dc=com".into(),
            ..LdapUsersConfig::default()
        };
        let g = LdapGroupsConfig {
            base: "ou=groups,dc=example,dc=com".into(),
            ..LdapGroupsConfig::default()
        };
        let s = read_ldif(f.path(), &u, &g, LdapDialect::Openldap).unwrap();
        assert_eq!(s.kind, "ldif");
        let people: Vec<_> = s.people.iter().map(|p| (p.username.as_str(), p.enabled)).collect();
        assert_eq!(people, vec![("alice", true), ("bob", false)]);
        let groups: Vec<_> = s.groups.iter().map(|g| (g.name.as_str(), g.members.clone())).collect();
        assert_eq!(
            groups,
            vec![
                ("ml", vec!["1111".to_string(), "2222".to_string()]),
                ("ops", vec!["2222".to_string()])
            ]
        );

        // Empty bases take everything the filters match.
        let all = read_ldif(
            f.path(),
            &LdapUsersConfig::default(),
            &LdapGroupsConfig::default(),
            LdapDialect::Openldap,
        )
        .unwrap();
        assert_eq!(all.people.len(), 3);
        assert_eq!(all.groups.len(), 3);

        let narrow = LdapUsersConfig {
            filter: "(&(objectClass=inetOrgPerson)(!(uid=bob)))".into(),
            ..u
        };
        let s = read_ldif(f.path(), &narrow, &g, LdapDialect::Openldap).unwrap();
        assert_eq!(s.people.len(), 1);
    }

    #[test]
    fn read_ldif_errors_name_the_file() {
        let missing = Path::new("/nonexistent/dir/x.ldif");
        let e = read_ldif(
            missing,
            &LdapUsersConfig::default(),
            &LdapGroupsConfig::default(),
            LdapDialect::Openldap,
        )
        .unwrap_err();
        assert!(matches!(e, SourceError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/dir/x.ldif"), "{e}");

        let f = write("dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\nphoto:: ***\n");
        let e = read_ldif(
            f.path(),
            &LdapUsersConfig::default(),
            &LdapGroupsConfig::default(),
            LdapDialect::Openldap,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}:5: invalid base64 in attribute photo", f.path().display())
        );

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        bad.write_all(b"dn: cn=a,dc=x\ncn: \xff\n").unwrap();
        let e = read_ldif(
            bad.path(),
            &LdapUsersConfig::default(),
            &LdapGroupsConfig::default(),
            LdapDialect::Openldap,
        )
        .unwrap_err();
        assert!(e.to_string().contains(":2: not valid UTF-8"), "{e}");

        let f = write(DIRECTORY);
        let u = LdapUsersConfig {
            filter: "(uid=a".into(),
            ..LdapUsersConfig::default()
        };
        let e = read_ldif(f.path(), &u, &LdapGroupsConfig::default(), LdapDialect::Openldap).unwrap_err();
        assert!(e.to_string().contains("source.users.filter"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "(dn: |cn:: |[a-z]{1,3}: |\n| |#|version: 1\n|[ -~]{0,8}|\r\n){0,24}") {
            let _ = parse_ldif(&s);
        }
    }
}
