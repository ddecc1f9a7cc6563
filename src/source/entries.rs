//! Raw directory entries and the one pure step every LDAP-like source shares: turning
//! user and group entries into a [`DirectorySnapshot`].
//!
//! The LDIF reader and the LDAP client both produce [`Entry`] values, turn people into
//! records through [`People`] and resolve groups with [`assemble`] (the LDIF reader in
//! one call, [`build_snapshot`]; the LDAP client page by page), so both read people,
//! disabled flags and nested groups alike.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{LdapDialect, LdapGroupsConfig, LdapUsersConfig};
use crate::model::{normalize_dn, DirectorySnapshot, Group, Person};

use super::SourceError;

/// One directory entry: its DN and its attributes, keyed by lower-cased attribute name
/// (options such as `;binary` or `;range=0-1499` stay part of the key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    pub fn new(dn: impl Into<String>) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: BTreeMap::new(),
        }
    }

    /// Adds one value; the attribute name is lower-cased.
    pub fn add(&mut self, attr: &str, value: impl Into<Vec<u8>>) {
        let key = lower_key(attr);
        // Look up before inserting: most values join an attribute already present, and
        // `entry()` would need an owned key every time.
        match self.attrs.get_mut(key.as_ref()) {
            Some(vs) => vs.push(value.into()),
            None => {
                self.attrs.insert(key.into_owned(), vec![value.into()]);
            }
        }
    }

    /// Builder form of [`Entry::add`], for tests and fixtures.
    pub fn with(mut self, attr: &str, value: impl Into<Vec<u8>>) -> Entry {
        self.add(attr, value);
        self
    }

    /// The raw values of `attr` (any case), empty when absent.
    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs.get(lower_key(attr).as_ref()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the entry has at least one value of `attr`.
    pub fn has(&self, attr: &str) -> bool {
        !self.values(attr).is_empty()
    }

    /// The first value of `attr` as text (invalid UTF-8 replaced), or `None` when absent.
    pub fn first_str(&self, attr: &str) -> Option<String> {
        self.values(attr).first().map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of `attr` as text (invalid UTF-8 replaced).
    pub fn values_str(&self, attr: &str) -> Vec<String> {
        self.values(attr).iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect()
    }
}

/// `attr` lower-cased, borrowing when it already is.
fn lower_key(attr: &str) -> Cow<'_, str> {
    if attr.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(attr.to_ascii_lowercase())
    } else {
        Cow::Borrowed(attr)
    }
}

/// The attributes that hold member DNs for a configured `member_attr`. `member` and
/// `uniqueMember` are read together because the default group filter selects both
/// `groupOfNames` (member) and `groupOfUniqueNames` (uniqueMember); an LDAP source must
/// request all of them. `memberUid` holds usernames and is read alone.
pub fn member_attrs(gcfg: &LdapGroupsConfig) -> Vec<String> {
    let configured = gcfg.member_attr.to_ascii_lowercase();
    match configured.as_str() {
        "member" | "uniquemember" => vec!["member".into(), "uniquemember".into()],
        _ => vec![configured],
    }
}

fn is_uid_member_attr(gcfg: &LdapGroupsConfig) -> bool {
    gcfg.member_attr.eq_ignore_ascii_case("memberUid")
}

/// Parses AD's ranged attribute names: `member;range=0-1499` gives
/// `("member", 0, Some(1499))`, `member;range=1500-*` gives `("member", 1500, None)` (the
/// last chunk). The base name is returned as written; other options are dropped. `None`
/// when the name has no well-formed range option.
pub fn parse_range_attr(name: &str) -> Option<(String, u32, Option<u32>)> {
    let mut parts = name.split(';');
    let base = parts.next().filter(|b| !b.is_empty())?;
    let range = parts.find_map(|opt| {
        let (k, v) = opt.split_once('=')?;
        k.eq_ignore_ascii_case("range").then_some(v)
    })?;
    let (lo, hi) = range.split_once('-')?;
    let lo: u32 = parse_digits(lo)?;
    let hi = if hi == "*" {
        None
    } else {
        let hi = parse_digits(hi)?;
        if hi < lo {
            return None;
        }
        Some(hi)
    };
    Some((base.to_string(), lo, hi))
}

/// Digits only: `str::parse` would also accept a leading `+`.
fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Renders a 16-byte AD `objectGUID` as the canonical GUID string. AD stores the first
/// three fields little-endian and the last two big-endian, so the bytes are reordered.
pub fn guid_to_string(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

/// The first value of `attr` as trimmed text, allocating once.
fn first_trimmed(e: &Entry, attr: &str) -> Option<String> {
    e.values(attr).first().map(|v| String::from_utf8_lossy(v).trim().to_string())
}

/// The anchor of an entry from `anchor_attr`, or `None` when the attribute is absent.
fn anchor_of(e: &Entry, anchor_attr: &str) -> Option<String> {
    let v = e.values(anchor_attr).first()?;
    if anchor_attr.eq_ignore_ascii_case("objectGUID") {
        if let Ok(bytes) = <&[u8; 16]>::try_from(v.as_slice()) {
            return Some(guid_to_string(bytes));
        }
    }
    match std::str::from_utf8(v) {
        Ok(s) if anchor_attr.eq_ignore_ascii_case("objectGUID") => Some(s.trim().to_ascii_lowercase()),
        Ok(s) => Some(s.trim().to_string()),
        // Some other binary id: hex keeps it stable and printable.
        Err(_) => Some(v.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// Whether the dialect's disabled/locked flag leaves the account enabled.
fn enabled_of(e: &Entry, dialect: LdapDialect) -> Result<bool, SourceError> {
    match dialect {
        LdapDialect::Openldap => Ok(!e.has("pwdAccountLockedTime")),
        LdapDialect::Ds389 => Ok(!e.values_str("nsAccountLock").iter().any(|v| v.trim().eq_ignore_ascii_case("true"))),
        LdapDialect::ActiveDirectory => {
            let Some(raw) = e.first_str("userAccountControl") else {
                return Ok(true);
            };
            // AD reports the flags as a signed 32-bit decimal.
            let v: i64 = raw.trim().parse().map_err(|_| SourceError::Entry {
                dn: e.dn.clone(),
                msg: format!("userAccountControl {:?} is not a number", raw.trim()),
            })?;
            const ACCOUNTDISABLE: i64 = 0x2;
            Ok(v & ACCOUNTDISABLE == 0)
        }
    }
}

/// [`normalize_dn`], borrowing the DN when it is already normal (servers usually send
/// DNs as stored, lower-case with no spaces) and allocating once for other ASCII DNs: a
/// large directory normalises several DNs per entry. Same result (property-tested);
/// non-ASCII DNs take the model's path so Unicode lower-casing stays identical.
pub fn dn_key(dn: &str) -> Cow<'_, str> {
    if already_normal(dn) {
        return Cow::Borrowed(dn);
    }
    if !dn.is_ascii() {
        return Cow::Owned(normalize_dn(dn));
    }
    fn push_lower(out: &mut String, s: &str) {
        out.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    }
    let mut out = String::with_capacity(dn.len());
    let mut part_start = 0;
    let mut escaped = false;
    let bytes = dn.as_bytes();
    for i in 0..=bytes.len() {
        // Split on unescaped commas exactly as the model does.
        let end = match bytes.get(i) {
            Some(b'\\') if !escaped => {
                escaped = true;
                continue;
            }
            Some(b',') if !escaped => true,
            Some(_) => {
                escaped = false;
                false
            }
            None => true,
        };
        if !end {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let part = dn[part_start..i].trim();
        match part.split_once('=') {
            Some((k, v)) => {
                push_lower(&mut out, k.trim());
                out.push('=');
                push_lower(&mut out, v.trim());
            }
            None => push_lower(&mut out, part),
        }
        part_start = i + 1;
    }
    Cow::Owned(out)
}

/// Whether normalising `dn` would leave it unchanged: ASCII without upper case or
/// white space (so no trimming or lower-casing applies) and not starting with a comma
/// (the model drops leading empty parts).
fn already_normal(dn: &str) -> bool {
    !dn.starts_with(',')
        && dn
            .bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && !matches!(b, b'\t'..=b'\r' | b' '))
}

/// Strips the optional `#'0101'B` unique-identifier suffix of a `uniqueMember` value.
fn strip_unique_id(v: &str) -> &str {
    let Some(body) = v.strip_suffix("'B").or_else(|| v.strip_suffix("'b")) else {
        return v;
    };
    let Some(pos) = body.rfind("#'") else {
        return v;
    };
    let bits = &body[pos + 2..];
    // An escaped `\#` is part of the DN, not the start of a suffix.
    let escaped = body[..pos].ends_with('\\');
    if !escaped && bits.bytes().all(|b| b == b'0' || b == b'1') {
        &v[..pos]
    } else {
        v
    }
}

use crate::model::FastMap;

/// People as they arrive from the source, each turned into a [`Person`] at once, so a
/// paged read can convert one page while the server prepares the next and never holds
/// every raw entry at the same time.
#[derive(Debug, Default)]
pub struct People {
    people: Vec<Person>,
    /// The normalised DN of each person, in the same order: what group members name.
    /// `None` when the DN (the person's `source_ref`) is normal already.
    dn_keys: Vec<Option<String>>,
    /// How many people had no anchor attribute and are anchored by their DN.
    dn_anchors: usize,
}

impl People {
    pub fn with_capacity(n: usize) -> People {
        People {
            people: Vec::with_capacity(n),
            dn_keys: Vec::with_capacity(n),
            dn_anchors: 0,
        }
    }

    /// Adds one person entry; fails on a value the dialect cannot read (an AD
    /// `userAccountControl` that is not a number).
    pub fn push(&mut self, e: Entry, ucfg: &LdapUsersConfig, dialect: LdapDialect) -> Result<(), SourceError> {
        let dn_key = match dn_key(&e.dn) {
            Cow::Borrowed(_) => None,
            Cow::Owned(k) => Some(k),
        };
        let anchor = match anchor_of(&e, &ucfg.anchor_attr) {
            Some(a) if !a.is_empty() => a,
            _ => {
                self.dn_anchors += 1;
                dn_key.clone().unwrap_or_else(|| e.dn.clone())
            }
        };
        let username = first_trimmed(&e, &ucfg.username_attr).unwrap_or_default();
        let display_name = first_trimmed(&e, &ucfg.name_attr)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| username.clone());
        let email = e.first_str(&ucfg.email_attr);
        let enabled = enabled_of(&e, dialect)?;
        self.people.push(Person {
            anchor,
            email,
            username,
            display_name,
            enabled,
            // The entry is consumed: its DN moves instead of being copied.
            source_ref: e.dn,
        });
        self.dn_keys.push(dn_key);
        Ok(())
    }
}

/// Builds the snapshot from user and group entries (already selected by base and
/// filter). People keep their input order; group members are the anchors of the people
/// they contain directly or (when `nested`) through other groups, sorted and unique.
/// Fails as [`People::push`] and [`assemble`] do.
pub fn build_snapshot(
    kind: &str,
    users: Vec<Entry>,
    groups: Vec<Entry>,
    ucfg: &LdapUsersConfig,
    gcfg: &LdapGroupsConfig,
    dialect: LdapDialect,
) -> Result<DirectorySnapshot, SourceError> {
    let mut people = People::with_capacity(users.len());
    for e in users {
        people.push(e, ucfg, dialect)?;
    }
    assemble(kind, people, groups, ucfg, gcfg)
}

/// The second half of [`build_snapshot`]: resolves the groups' members against the
/// people already converted.
///
/// Fails on a group whose member list is a partial AD range (`member;range=0-1499`): a
/// partial list would make a smaller directory, so the LDAP source must merge all ranges
/// into the plain attribute first.
pub fn assemble(
    kind: &str,
    people: People,
    groups: Vec<Entry>,
    ucfg: &LdapUsersConfig,
    gcfg: &LdapGroupsConfig,
) -> Result<DirectorySnapshot, SourceError> {
    let People {
        people,
        dn_keys,
        dn_anchors,
    } = people;
    if dn_anchors > 0 {
        // Renames then look like a person leaving and another arriving; worth a warning.
        tracing::warn!(
            count = dn_anchors,
            anchor_attr = %ucfg.anchor_attr,
            "directory entries without the anchor attribute: using their DN as the anchor"
        );
    }

    let person_by_dn: FastMap<&str, usize> = dn_keys
        .iter()
        .zip(&people)
        .enumerate()
        .map(|(i, (k, p))| (k.as_deref().unwrap_or(&p.source_ref), i))
        .collect();
    let group_by_dn: FastMap<Cow<'_, str>, usize> = groups.iter().enumerate().map(|(i, e)| (dn_key(&e.dn), i)).collect();
    let uid_members = is_uid_member_attr(gcfg);
    // Only memberUid groups name people by username; other reads skip this index.
    let mut person_by_username: FastMap<String, Vec<usize>> = FastMap::default();
    if uid_members {
        for (i, p) in people.iter().enumerate() {
            if !p.username.is_empty() {
                person_by_username.entry(p.username.to_lowercase()).or_default().push(i);
            }
        }
    }

    let dn_attrs = member_attrs(gcfg);
    let mut direct: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); groups.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    let mut unknown = 0usize;
    for (gi, g) in groups.iter().enumerate() {
        for (name, _) in g.attrs.iter() {
            if let Some((base, lo, hi)) = parse_range_attr(name) {
                let base = base.to_ascii_lowercase();
                if hi.is_some() && (dn_attrs.contains(&base) || (uid_members && base == "memberuid")) {
                    return Err(SourceError::Entry {
                        dn: g.dn.clone(),
                        msg: format!(
                            "member list is incomplete ({name} ends at {}, starting from {lo}): all ranges must be retrieved",
                            hi.unwrap_or(lo)
                        ),
                    });
                }
            }
        }
        if uid_members {
            for uid in member_values(g, "memberuid") {
                match person_by_username.get(&uid.trim().to_lowercase()) {
                    Some(ps) => direct[gi].extend(ps.iter().copied()),
                    None => unknown += 1,
                }
            }
            continue;
        }
        for attr in &dn_attrs {
            for v in member_values(g, attr) {
                let dn = dn_key(strip_unique_id(v.trim()));
                let mut known = false;
                if let Some(&pi) = person_by_dn.get(dn.as_ref()) {
                    direct[gi].insert(pi);
                    known = true;
                }
                if let Some(&ci) = group_by_dn.get(dn.as_ref()) {
                    if gcfg.nested && ci != gi {
                        children[gi].push(ci);
                    }
                    known = true;
                }
                if !known {
                    unknown += 1;
                }
            }
        }
    }
    if unknown > 0 {
        // Usually members outside the users base or filter: not an error, by design.
        tracing::debug!(
            count = unknown,
            "group members that are neither selected people nor groups were ignored"
        );
    }

    // Each group's anchor first: a group names its nested groups by their anchors.
    let group_anchors: Vec<String> = groups
        .iter()
        .map(|g| match anchor_of(g, &ucfg.anchor_attr) {
            Some(a) if !a.is_empty() => a,
            _ => dn_key(&g.dn).into_owned(),
        })
        .collect();
    let mut out_groups = Vec::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        let members = flatten(gi, &direct, &children);
        let mut anchors: Vec<String> = members.iter().map(|&pi| people[pi].anchor.clone()).collect();
        // Anchors can collide (two entries with one id); a member list holds each once.
        anchors.sort();
        anchors.dedup();
        let anchor = group_anchors[gi].clone();
        let mut subgroups: Vec<String> = children[gi].iter().map(|&ci| group_anchors[ci].clone()).collect();
        subgroups.sort();
        subgroups.dedup();
        let name = first_trimmed(g, &gcfg.name_attr)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| g.dn.clone());
        out_groups.push(Group {
            anchor,
            name,
            dn: Some(g.dn.clone()),
            members: anchors,
            subgroups,
        });
    }

    Ok(DirectorySnapshot {
        kind: kind.to_string(),
        people,
        groups: out_groups,
    })
}

/// Values of `attr` plus those of its final range chunk (`attr;range=N-*`), as text.
fn member_values<'a>(g: &'a Entry, attr: &str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    let attr = attr.to_string();
    g.attrs
        .iter()
        .filter(move |(name, _)| {
            **name == attr || parse_range_attr(name).is_some_and(|(base, _, hi)| hi.is_none() && base.eq_ignore_ascii_case(&attr))
        })
        .flat_map(|(_, vs)| vs.iter().map(|v| String::from_utf8_lossy(v)))
}

/// The people in group `start` and, transitively, in its child groups. A visited set
/// makes cycles (A→B→A) terminate with the union of the cycle.
fn flatten(start: usize, direct: &[BTreeSet<usize>], children: &[Vec<usize>]) -> BTreeSet<usize> {
    if children[start].is_empty() {
        return direct[start].clone();
    }
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    let mut out = BTreeSet::new();
    while let Some(g) = stack.pop() {
        out.extend(direct[g].iter().copied());
        for &c in &children[g] {
            if seen.insert(c) {
                stack.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucfg() -> LdapUsersConfig {
        LdapUsersConfig::default()
    }

    fn gcfg(member_attr: &str, nested: bool) -> LdapGroupsConfig {
        LdapGroupsConfig {
            member_attr: member_attr.into(),
            nested,
            ..LdapGroupsConfig::default()
        }
    }

    fn person(uid: &str) -> Entry {
        Entry::new(format!("uid={uid},ou=people,dc=example,dc=com"))
            .with("objectClass", "inetOrgPerson")
            .with("uid", uid)
            .with("cn", format!("{uid} Person"))
            .with("mail", format!("{uid}@example.com"))
            .with("entryUUID", format!("uuid-{uid}"))
    }

    fn group(cn: &str, members: &[&str]) -> Entry {
        let mut g = Entry::new(format!("cn={cn},ou=groups,dc=example,dc=com"))
            .with("cn", cn)
            .with("entryUUID", format!("g-{cn}"));
        for m in members {
            g.add("member", m.to_string());
        }
        g
    }

    fn pdn(uid: &str) -> String {
        format!("uid={uid},ou=people,dc=example,dc=com")
    }

    fn gdn(cn: &str) -> String {
        format!("cn={cn},ou=groups,dc=example,dc=com")
    }

    fn members(s: &DirectorySnapshot, name: &str) -> Vec<String> {
        s.groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    #[test]
    fn entry_helpers_are_case_insensitive() {
        let e = Entry::new("cn=x").with("Mail", "A@x.com").with("MAIL", "b@x.com");
        assert!(e.has("mail"));
        assert!(e.has("mAiL"));
        assert!(!e.has("cn"));
        assert_eq!(e.first_str("mail").as_deref(), Some("A@x.com"));
        assert_eq!(e.values_str("Mail"), vec!["A@x.com", "b@x.com"]);
        assert_eq!(e.first_str("uid"), None);
    }

    #[test]
    fn people_are_read_from_the_configured_attributes() {
        let users = vec![
            person("alice"),
            Entry::new("uid=bob,ou=people,dc=example,dc=com")
                .with("uid", "bob")
                .with("entryUUID", "u-bob"),
        ];
        let s = build_snapshot("ldif", users, vec![], &ucfg(), &gcfg("member", true), LdapDialect::Openldap).unwrap();
        assert_eq!(s.kind, "ldif");
        let a = &s.people[0];
        assert_eq!(a.anchor, "uuid-alice");
        assert_eq!(a.email.as_deref(), Some("alice@example.com"));
        assert_eq!(a.username, "alice");
        assert_eq!(a.display_name, "alice Person");
        assert!(a.enabled);
        assert_eq!(a.source_ref, pdn("alice"));
        let b = &s.people[1];
        assert_eq!(b.email, None);
        assert_eq!(b.display_name, "bob", "display name falls back to the username");
    }

    #[test]
    fn a_missing_anchor_falls_back_to_the_normalised_dn() {
        let e = Entry::new("UID=Carol, OU=People,DC=Example,DC=com").with("uid", "carol");
        let s = build_snapshot("ldif", vec![e], vec![], &ucfg(), &gcfg("member", true), LdapDialect::Openldap).unwrap();
        assert_eq!(s.people[0].anchor, "uid=carol,ou=people,dc=example,dc=com");
    }

    #[test]
    fn object_guid_renders_with_ads_mixed_endian_order() {
        let bytes = [
            0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        ];
        assert_eq!(guid_to_string(&bytes), "76543210-ba98-fedc-0123-456789abcdef");
        let u = LdapUsersConfig {
            anchor_attr: "objectGUID".into(),
            username_attr: "sAMAccountName".into(),
            ..ucfg()
        };
        let e = Entry::new("CN=Dan,OU=Staff,DC=corp,DC=example")
            .with("objectGUID", bytes.to_vec())
            .with("sAMAccountName", "dan");
        let s = build_snapshot("ldif", vec![e], vec![], &u, &gcfg("member", true), LdapDialect::ActiveDirectory).unwrap();
        assert_eq!(s.people[0].anchor, "76543210-ba98-fedc-0123-456789abcdef");
        assert_eq!(s.people[0].username, "dan");
    }

    #[test]
    fn other_binary_anchors_are_hex() {
        let u = LdapUsersConfig {
            anchor_attr: "nsUniqueId".into(),
            ..ucfg()
        };
        let e = Entry::new("uid=x,dc=e").with("nsuniqueid", vec![0xff, 0x00, 0x10]);
        let s = build_snapshot("ldif", vec![e], vec![], &u, &gcfg("member", true), LdapDialect::Ds389).unwrap();
        assert_eq!(s.people[0].anchor, "ff0010");
    }

    #[test]
    fn disabled_flags_follow_the_dialect() {
        let snap = |e: Entry, d| {
            build_snapshot("ldif", vec![e], vec![], &ucfg(), &gcfg("member", true), d)
                .unwrap()
                .people[0]
                .enabled
        };
        // OpenLDAP ppolicy: any lock time means locked.
        assert!(snap(person("a"), LdapDialect::Openldap));
        assert!(!snap(
            person("a").with("pwdAccountLockedTime", "000001010000Z"),
            LdapDialect::Openldap
        ));
        // 389ds: nsAccountLock: true (any case) means locked.
        assert!(snap(person("a").with("nsAccountLock", "false"), LdapDialect::Ds389));
        assert!(!snap(person("a").with("nsAccountLock", "TRUE"), LdapDialect::Ds389));
        assert!(
            snap(person("a").with("pwdAccountLockedTime", "x"), LdapDialect::Ds389),
            "other dialects' flags are ignored"
        );
        // AD: userAccountControl bit 0x2.
        assert!(snap(person("a"), LdapDialect::ActiveDirectory));
        assert!(snap(person("a").with("userAccountControl", "512"), LdapDialect::ActiveDirectory));
        assert!(!snap(person("a").with("userAccountControl", "514"), LdapDialect::ActiveDirectory));
        assert!(!snap(person("a").with("userAccountControl", "66050"), LdapDialect::ActiveDirectory));
        assert!(!snap(
            person("a").with("userAccountControl", "-2147483646"),
            LdapDialect::ActiveDirectory
        ));
    }

    #[test]
    fn an_unparsable_user_account_control_fails_the_read() {
        let e = person("a").with("userAccountControl", "lots");
        let err = build_snapshot(
            "ldif",
            vec![e],
            vec![],
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::ActiveDirectory,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("uid=a,ou=people") && msg.contains("userAccountControl"), "{msg}");
    }

    #[test]
    fn direct_members_match_people_by_normalised_dn_and_ignore_unknowns() {
        let users = vec![person("alice"), person("bob")];
        let g = group(
            "devs",
            &[
                "UID=Bob, OU=People, DC=Example, DC=Com",
                &pdn("alice"),
                "uid=ghost,ou=people,dc=example,dc=com",
                &pdn("alice"),
            ],
        );
        let s = build_snapshot("ldif", users, vec![g], &ucfg(), &gcfg("member", true), LdapDialect::Openldap).unwrap();
        assert_eq!(members(&s, "devs"), vec!["uuid-alice", "uuid-bob"]);
        assert_eq!(s.groups[0].dn.as_deref(), Some(gdn("devs").as_str()));
        assert_eq!(s.groups[0].anchor, "g-devs");
    }

    #[test]
    fn nested_groups_are_flattened_and_cycles_terminate_with_the_union() {
        let users = vec![person("a"), person("b"), person("c")];
        let groups = vec![
            group("ga", &[&pdn("a"), &gdn("gb")]),
            group("gb", &[&pdn("b"), &gdn("ga"), &gdn("gc")]),
            group("gc", &[&pdn("c")]),
            group("self", &[&gdn("self")]),
        ];
        let s = build_snapshot(
            "ldif",
            users.clone(),
            groups.clone(),
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::Openldap,
        )
        .unwrap();
        let all = vec!["uuid-a", "uuid-b", "uuid-c"];
        assert_eq!(members(&s, "ga"), all);
        assert_eq!(members(&s, "gb"), all);
        assert_eq!(members(&s, "gc"), vec!["uuid-c"]);
        assert!(members(&s, "self").is_empty());

        let flat = build_snapshot("ldif", users, groups, &ucfg(), &gcfg("member", false), LdapDialect::Openldap).unwrap();
        assert_eq!(members(&flat, "ga"), vec!["uuid-a"], "nested = false reads direct members only");
        assert_eq!(members(&flat, "gb"), vec!["uuid-b"]);
    }

    #[test]
    fn nested_groups_are_recorded_by_anchor_for_explaining_a_path() {
        let users = vec![person("a"), person("c")];
        let groups = vec![group("ga", &[&pdn("a"), &gdn("gc")]), group("gc", &[&pdn("c")])];
        let sub = |s: &DirectorySnapshot, name: &str| s.groups.iter().find(|g| g.name == name).unwrap().subgroups.clone();
        let s = build_snapshot(
            "ldif",
            users.clone(),
            groups.clone(),
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::Openldap,
        )
        .unwrap();
        assert_eq!(sub(&s, "ga"), vec!["g-gc"]);
        assert!(sub(&s, "gc").is_empty());
        let flat = build_snapshot("ldif", users, groups, &ucfg(), &gcfg("member", false), LdapDialect::Openldap).unwrap();
        assert!(sub(&flat, "ga").is_empty(), "nested = false records no nesting");
    }

    #[test]
    fn unique_member_values_lose_their_uid_suffix() {
        assert_eq!(strip_unique_id("uid=a,dc=x#'0101'B"), "uid=a,dc=x");
        assert_eq!(strip_unique_id("uid=a,dc=x"), "uid=a,dc=x");
        assert_eq!(strip_unique_id("uid=a\\#'01'B"), "uid=a\\#'01'B");
        assert_eq!(strip_unique_id("uid=a#'0x'B"), "uid=a#'0x'B");
        let users = vec![person("a"), person("b")];
        let mut g = Entry::new(gdn("u")).with("cn", "u").with("objectClass", "groupOfUniqueNames");
        g.add("uniqueMember", format!("{}#'0101'B", pdn("a")));
        g.add("uniqueMember", pdn("b"));
        // The default member_attr still reads uniqueMember (groupOfUniqueNames).
        let s = build_snapshot(
            "ldif",
            users.clone(),
            vec![g.clone()],
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::Openldap,
        )
        .unwrap();
        assert_eq!(members(&s, "u"), vec!["uuid-a", "uuid-b"]);
        let s = build_snapshot("ldif", users, vec![g], &ucfg(), &gcfg("uniqueMember", true), LdapDialect::Openldap).unwrap();
        assert_eq!(members(&s, "u"), vec!["uuid-a", "uuid-b"]);
    }

    #[test]
    fn member_uid_groups_match_usernames() {
        let users = vec![person("alice"), person("bob")];
        let g = Entry::new(gdn("posix"))
            .with("cn", "posix")
            .with("memberUid", "Alice")
            .with("memberUid", "nobody")
            .with("member", pdn("bob"));
        let s = build_snapshot("ldif", users, vec![g], &ucfg(), &gcfg("memberUid", true), LdapDialect::Openldap).unwrap();
        assert_eq!(members(&s, "posix"), vec!["uuid-alice"], "only memberUid is read");
    }

    #[test]
    fn group_name_falls_back_to_the_dn() {
        let g = Entry::new(gdn("nameless"));
        let gc = LdapGroupsConfig {
            name_attr: "displayName".into(),
            ..gcfg("member", true)
        };
        let s = build_snapshot("ldif", vec![], vec![g], &ucfg(), &gc, LdapDialect::Openldap).unwrap();
        assert_eq!(s.groups[0].name, gdn("nameless"));
        assert_eq!(s.groups[0].anchor, normalize_dn(&gdn("nameless")));
    }

    #[test]
    fn ranged_member_lists_are_read_when_final_and_rejected_when_partial() {
        let users = vec![person("a")];
        let last = Entry::new(gdn("big")).with("cn", "big").with("member;range=0-*", pdn("a"));
        let s = build_snapshot(
            "ldap",
            users.clone(),
            vec![last],
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::ActiveDirectory,
        )
        .unwrap();
        assert_eq!(members(&s, "big"), vec!["uuid-a"]);
        let partial = Entry::new(gdn("big")).with("cn", "big").with("member;range=0-1499", pdn("a"));
        let err = build_snapshot(
            "ldap",
            users,
            vec![partial],
            &ucfg(),
            &gcfg("member", true),
            LdapDialect::ActiveDirectory,
        )
        .unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
    }

    #[test]
    fn range_attribute_names_parse() {
        assert_eq!(parse_range_attr("member;range=0-1499"), Some(("member".into(), 0, Some(1499))));
        assert_eq!(parse_range_attr("member;range=1500-*"), Some(("member".into(), 1500, None)));
        assert_eq!(
            parse_range_attr("Member;Range=3000-3999"),
            Some(("Member".into(), 3000, Some(3999)))
        );
        assert_eq!(parse_range_attr("member;binary;range=10-*"), Some(("member".into(), 10, None)));
        for bad in [
            "member",
            "member;range=",
            "member;range=a-b",
            "member;range=5-1",
            "member;range=1",
            ";range=0-1",
            "member;range=+1-*",
            "member;range=0-99999999999",
        ] {
            assert_eq!(parse_range_attr(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn dn_key_equals_the_model_normalisation(dn in r"[a-zA-Z0-9=,\\ #'+\t.Éé-]{0,40}") {
            proptest::prop_assert_eq!(dn_key(&dn), normalize_dn(&dn));
        }

        #[test]
        fn normal_dns_are_borrowed_as_they_are(dn in r"[a-z0-9=,\\#'+.é-]{0,40}") {
            let key = dn_key(&dn);
            proptest::prop_assert_eq!(key.as_ref(), normalize_dn(&dn));
            // Only what normalising leaves unchanged may be borrowed.
            proptest::prop_assert_eq!(matches!(key, Cow::Borrowed(_)), !dn.starts_with(',') && dn.is_ascii());
        }
    }

    #[test]
    fn dn_key_examples() {
        for dn in [
            "",
            ",",
            ",dc=x",
            "dc=x,",
            "CN=A\\,B , OU=X",
            "cn=a\\\\,dc=x",
            "cn = A=B ,DC=Com",
            "nokey,  ,x",
        ] {
            assert_eq!(dn_key(dn), normalize_dn(dn), "{dn:?}");
        }
    }

    #[test]
    fn member_attrs_for_the_ldap_request() {
        assert_eq!(member_attrs(&gcfg("member", true)), vec!["member", "uniquemember"]);
        assert_eq!(member_attrs(&gcfg("memberUid", true)), vec!["memberuid"]);
    }
}
