//! Plain data shared by the core and the shell: what a directory says and what W&B has.
//!
//! Nothing here does I/O. Sources build a [`DirectorySnapshot`], the target builds an
//! [`OrgSnapshot`], and the plan core compares the two.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Hash maps and sets for hot lookups over directory and W&B names: foldhash (seeded per
/// process) instead of SipHash, which took 3–4% of a 100,000-person plan.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// How idsync deprovisions a user (`policy.deprovision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeprovisionMode {
    Deactivate,
    Delete,
    Off,
}

/// What kind of W&B server this is (`target.deployment`): deactivation differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deployment {
    Saas,
    Dedicated,
    SelfManaged,
}

/// An email address normalised for joining: trimmed and lower-cased.
///
/// Email is the join key between the directory and W&B (SPEC §1), so every comparison goes
/// through this type rather than raw strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses a usable address: exactly one `@`, a non-empty local part, a domain with a
    /// dot, and no whitespace inside. Returns `None` for anything else: the person is then
    /// skipped and reported, never guessed.
    pub fn parse(raw: &str) -> Option<Email> {
        let t = raw.trim();
        // Nearly every address is ASCII, where no character is invisible and whitespace
        // and controls are the bytes up to the space and DEL: a byte scan instead of a
        // Unicode table lookup per character (the plan parses every address it meets).
        let (s, unusable) = if t.is_ascii() {
            let s = t.to_ascii_lowercase();
            let bad = s.bytes().any(|b| b <= b' ' || b == 0x7f);
            (s, bad)
        } else {
            let s = t.to_lowercase();
            let bad = s.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c));
            (s, bad)
        };
        let (local, domain) = s.split_once('@')?;
        if unusable
            || local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return None;
        }
        Some(Email(s))
    }

    /// The first invisible character in `raw` (zero-width, bidi control, BOM, ...), for
    /// telling a human why an address that looks right was refused.
    pub fn invisible_char(raw: &str) -> Option<char> {
        raw.trim().chars().find(|&c| is_invisible(c) || (c.is_control() && c != '\n'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`, lower case.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// Characters that render as nothing (Unicode format characters and their kin): an
/// address containing one looks identical to another address but is a different string,
/// so matching or creating with it would act on a guess.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Normalises a distinguished name for comparison: lower case, no spaces around `=` and
/// `,`. Good enough for the DNs admins type into a config; escaped commas are kept.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for part in split_dn(dn) {
        if !out.is_empty() {
            out.push(',');
        }
        let part = part.trim();
        match part.split_once('=') {
            Some((k, v)) => {
                out.push_str(&k.trim().to_lowercase());
                out.push('=');
                out.push_str(&v.trim().to_lowercase());
            }
            None => out.push_str(&part.to_lowercase()),
        }
    }
    out
}

/// Splits a DN on unescaped commas.
fn split_dn(dn: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                parts.push(&dn[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    parts.push(&dn[start..]);
    parts
}

/// One person as the directory describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Stable identifier across renames (entryUUID, objectGUID, IdP id).
    pub anchor: String,
    /// The email as the directory has it, unparsed; `None` when the attribute is absent.
    pub email: Option<String>,
    pub username: String,
    pub display_name: String,
    /// False when the directory marks the account disabled or locked.
    pub enabled: bool,
    /// Where the entry came from, for reasons in reports: a DN, or an IdP id.
    pub source_ref: String,
}

/// One group, with its members flattened through nested groups by the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub anchor: String,
    pub name: String,
    /// Distinguished name, for LDAP-like sources.
    pub dn: Option<String>,
    /// Anchors of the people in the group (direct and through nested groups).
    pub members: Vec<String>,
    /// Anchors of the groups directly nested in this one, where the source records
    /// nesting (LDAP/LDIF with `nested`, SCIM); empty otherwise. Only for explaining a
    /// membership's path: `members` is already flattened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subgroups: Vec<String>,
}

impl Group {
    /// Whether a policy reference (`group = "..."` in the config) names this group: by DN
    /// (normalised) when the group has one, else by name or id.
    pub fn matches(&self, reference: &str) -> bool {
        match &self.dn {
            Some(dn) => normalize_dn(dn) == normalize_dn(reference),
            None => self.name == reference || self.anchor == reference,
        }
    }
}

/// What the source says now. Built completely or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// Source kind, for reports (`ldap`, `ldif`, `scim`, ...).
    pub kind: String,
    pub people: Vec<Person>,
    pub groups: Vec<Group>,
}

/// A W&B organization role. `Viewer` is deprecated by W&B: it may be read, never sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrgRole {
    Admin,
    Member,
    Viewer,
    /// Anything else a server reports; kept verbatim, never sent.
    Other(String),
}

impl OrgRole {
    pub fn parse(s: &str) -> OrgRole {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => OrgRole::Admin,
            "member" | "user" => OrgRole::Member,
            "viewer" => OrgRole::Viewer,
            _ => OrgRole::Other(s.trim().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
            OrgRole::Viewer => "viewer",
            OrgRole::Other(s) => s,
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OrgRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OrgRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(OrgRole::parse(&s))
    }
}

/// A team role: `admin`, `member`, `viewer` or a custom role name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TeamRole(String);

impl TeamRole {
    pub fn new(s: &str) -> TeamRole {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "admin" | "member" | "viewer" => TeamRole(t.to_ascii_lowercase()),
            _ => TeamRole(t.to_string()),
        }
    }
    pub fn admin() -> TeamRole {
        TeamRole("admin".into())
    }
    pub fn member() -> TeamRole {
        TeamRole("member".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_admin(&self) -> bool {
        self.0 == "admin"
    }
    pub fn is_viewer(&self) -> bool {
        self.0 == "viewer"
    }
    /// Rank for "the highest role wins" when several groups map to one team:
    /// admin > member > custom role > viewer. Custom roles in W&B extend member or viewer
    /// and idsync cannot tell which, so they sit between the two.
    pub fn rank(&self) -> u8 {
        TeamRole::rank_of(&self.0)
    }

    /// [`TeamRole::rank`] of a role name, without building a `TeamRole`.
    pub fn rank_of(role: &str) -> u8 {
        let r = role.trim();
        if r.eq_ignore_ascii_case("admin") {
            3
        } else if r.eq_ignore_ascii_case("member") {
            2
        } else if r.eq_ignore_ascii_case("viewer") {
            0
        } else {
            1
        }
    }
}

impl fmt::Display for TeamRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One W&B user as `/Users` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUser {
    /// Opaque SCIM id.
    pub id: String,
    /// Raw email as W&B has it (may be empty or odd; joined through [`Email::parse`]).
    pub email: String,
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    /// Read as active when W&B does not say; [`OrgUser::active_stated`] records that.
    pub active: bool,
    /// False when W&B's `active` was missing or garbled: the user is then never counted
    /// as an admin for the floors (SPEC §4: count only what W&B states).
    #[serde(default = "stated")]
    pub active_stated: bool,
    pub org_role: OrgRole,
    /// Team name -> team role.
    #[serde(default)]
    pub teams: BTreeMap<String, TeamRole>,
    /// Teams in `teams` whose role W&B did not state (no `teamRoles` entry, or one without
    /// a role): the role there is a guess, so it never counts as a team admin.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unstated_team_roles: BTreeSet<String>,
    /// A service account that `/Users` lists: never in scope, never counted as an admin or
    /// a seat, never changed (SPEC §4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_account: bool,
    /// `lastActiveAt`: a time, never active (`null`), or not reported (no key).
    #[serde(default)]
    pub last_active: LastActive,
    #[serde(default)]
    pub days_active: Option<u64>,
}

/// What W&B says about a user's last activity (`lastActiveAt`, newer servers only).
/// W&B documents `null` as "never active"; a missing key means the server does not report
/// activity, which is unknown and never guessed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastActive {
    /// No `lastActiveAt` key (an older server), or a value that is not a time.
    #[default]
    Unknown,
    /// `lastActiveAt: null`: the user has never been active (invited or provisioned, never
    /// used W&B).
    Never,
    /// Last active at this time.
    At(DateTime<Utc>),
}

impl LastActive {
    /// The time, when W&B reported one.
    pub fn at(self) -> Option<DateTime<Utc>> {
        match self {
            LastActive::At(t) => Some(t),
            LastActive::Unknown | LastActive::Never => None,
        }
    }
}

fn stated() -> bool {
    true
}

impl OrgUser {
    /// Whether the user holds a W&B seat: active and a person (service accounts use none).
    /// An unstated `active` counts, so the seat limit never undercounts.
    pub fn holds_seat(&self) -> bool {
        self.active && !self.service_account
    }
}

/// One W&B team (SCIM group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    /// Member ids as `/Groups` lists them; may include service accounts that `/Users`
    /// does not list.
    #[serde(default)]
    pub members: Vec<String>,
}

/// What W&B has now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSnapshot {
    pub users: Vec<OrgUser>,
    pub teams: Vec<Team>,
}

impl OrgSnapshot {
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "alice.smith@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn unusable_emails_are_rejected() {
        for bad in ["", "alice", "@example.com", "alice@", "a@b@c.com", "a b@c.com", "a@nodot", "a@.com"] {
            assert!(Email::parse(bad).is_none(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn invisible_characters_make_an_email_unusable() {
        // Each looks identical to "alice@example.com" on screen but is another string.
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{202E}', '\u{2066}', '\u{180E}',
        ] {
            for raw in [
                format!("ali{c}ce@example.com"),
                format!("alice@exa{c}mple.com"),
                format!("{c}alice@example.com"),
            ] {
                assert!(Email::parse(&raw).is_none(), "{raw:?} must be rejected");
            }
        }
        assert!(Email::parse("alice\u{7}@example.com").is_none());
    }

    #[test]
    fn the_ascii_fast_path_refuses_exactly_whitespace_and_controls() {
        // Every ASCII character inside the local part, and the same address with a
        // non-ASCII letter elsewhere (the Unicode path): both paths must agree.
        for b in 0u8..128 {
            let c = b as char;
            let refused = c.is_whitespace() || c.is_control() || c == '@';
            for raw in [format!("a{c}b@example.com"), format!("a{c}b\u{e9}@example.com")] {
                assert_eq!(Email::parse(&raw).is_none(), refused, "{raw:?}");
            }
        }
        assert_eq!(
            Email::parse("J\u{c9}@Example.com").map(|e| e.to_string()),
            Some("j\u{e9}@example.com".into())
        );
    }

    #[test]
    fn dn_comparison_ignores_case_and_spaces() {
        assert_eq!(
            normalize_dn("CN=ML Research, OU=Groups,DC=Example,DC=com"),
            normalize_dn("cn=ml research,ou=groups, dc=example, dc=com")
        );
        assert_ne!(normalize_dn("cn=a\\,b,dc=x"), normalize_dn("cn=a,cn=b,dc=x"));
    }

    #[test]
    fn team_roles_rank_admin_over_member_over_custom_over_viewer() {
        let r = |s| TeamRole::new(s).rank();
        assert!(r("admin") > r("member"));
        assert!(r("member") > r("ml-engineer"));
        assert!(r("ml-engineer") > r("viewer"));
        assert_eq!(TeamRole::new("Admin"), TeamRole::admin());
    }
}
