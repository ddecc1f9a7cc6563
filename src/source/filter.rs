//! A small RFC 4515 LDAP search filter parser and evaluator over an [`Entry`].
//!
//! Used to select entries from an LDIF export (where no server evaluates the filter) and
//! to validate filters in the configuration. Matching follows the common LDAP matching
//! rules: attribute names and values compare case-insensitively.

use super::entries::Entry;

/// Deeper nesting than this is rejected, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// AD's bitwise matching rules, common in AD filters such as
/// `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`.
const RULE_BIT_AND: &str = "1.2.840.113556.1.4.803";
const RULE_BIT_OR: &str = "1.2.840.113556.1.4.804";

/// An assertion value: raw bytes, plus the lower-cased text when they are UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub raw: Vec<u8>,
    folded: Option<String>,
}

impl Value {
    fn new(raw: Vec<u8>) -> Value {
        let folded = std::str::from_utf8(&raw).ok().map(str::to_lowercase);
        Value { raw, folded }
    }

    /// The bytes to compare against an entry value: both folded when both are text.
    fn compare_with<'a>(&'a self, v: &'a [u8]) -> (Cow<'a>, Cow<'a>) {
        match (&self.folded, std::str::from_utf8(v)) {
            (Some(f), Ok(s)) => (Cow::Borrowed(f.as_bytes()), Cow::Owned(s.to_lowercase().into_bytes())),
            _ => (Cow::Borrowed(&self.raw), Cow::Borrowed(v)),
        }
    }
}

type Cow<'a> = std::borrow::Cow<'a, [u8]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Equal(String, Value),
    /// `~=`: no phonetic matching here, so the same as equality.
    Approx(String, Value),
    Present(String),
    Substrings {
        attr: String,
        initial: Option<Value>,
        any: Vec<Value>,
        last: Option<Value>,
    },
    GreaterOrEqual(String, Value),
    LessOrEqual(String, Value),
    /// `attr:1.2.840.113556.1.4.803:=mask`: every bit of the mask set.
    BitAnd(String, u64),
    /// `attr:1.2.840.113556.1.4.804:=mask`: any bit of the mask set.
    BitOr(String, u64),
}

/// Parses a filter. Outer parentheses may be omitted (`objectClass=person`), whitespace
/// between components is tolerated, and an empty filter matches everything, as with
/// `ldapsearch`.
pub fn parse(s: &str) -> Result<Filter, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(Filter::And(Vec::new()));
    }
    let wrapped;
    let text = if t.starts_with('(') {
        t
    } else {
        wrapped = format!("({t})");
        wrapped.as_str()
    };
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let f = p.filter(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the filter at position {}", p.i + 1));
    }
    Ok(f)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r') {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected '{}' at position {}, found '{}'",
                c as char,
                self.i + 1,
                x as char
            )),
            None => Err(format!(
                "expected '{}' at position {}, found the end of the filter (unbalanced parentheses?)",
                c as char,
                self.i + 1
            )),
        }
    }

    fn filter(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > MAX_DEPTH {
            return Err(format!("filter is nested more than {MAX_DEPTH} levels deep"));
        }
        self.skip_ws();
        self.expect(b'(')?;
        self.skip_ws();
        let f = match self.peek() {
            Some(b'&') => {
                self.i += 1;
                Filter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.i += 1;
                Filter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.i += 1;
                let inner = self.filter(depth + 1)?;
                Filter::Not(Box::new(inner))
            }
            _ => self.item()?,
        };
        self.skip_ws();
        self.expect(b')')?;
        Ok(f)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<Filter>, String> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b')') | None => return Ok(out),
                _ => out.push(self.filter(depth + 1)?),
            }
        }
    }

    fn item(&mut self) -> Result<Filter, String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b';' || c == b'.' || c == b'_')
        {
            self.i += 1;
        }
        let attr = String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase();
        let op_pos = self.i + 1;
        match self.peek() {
            Some(b'=') => {
                self.i += 1;
                need_attr(&attr, op_pos)?;
                let raw = self.raw_value()?;
                equality_or_substrings(attr, raw)
            }
            Some(c @ (b'~' | b'>' | b'<')) => {
                self.i += 1;
                self.expect(b'=')?;
                need_attr(&attr, op_pos)?;
                let v = Value::new(unescape(self.raw_value()?)?);
                Ok(match c {
                    b'~' => Filter::Approx(attr, v),
                    b'>' => Filter::GreaterOrEqual(attr, v),
                    _ => Filter::LessOrEqual(attr, v),
                })
            }
            Some(b':') => self.extensible(attr, op_pos),
            Some(c) => Err(format!("unexpected '{}' at position {op_pos} in an attribute name", c as char)),
            None => Err("unexpected end of the filter".to_string()),
        }
    }

    /// `attr:rule:=value`; only AD's bitwise rules can be evaluated locally.
    fn extensible(&mut self, attr: String, op_pos: usize) -> Result<Filter, String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c != b'=' && c != b')' && c != b'(') {
            self.i += 1;
        }
        let spec = String::from_utf8_lossy(&self.s[start..self.i]).to_string();
        self.expect(b'=')?;
        let Some(rule) = spec.strip_prefix(':').and_then(|r| r.strip_suffix(':')) else {
            return Err(format!("malformed extensible match at position {op_pos}"));
        };
        if attr.is_empty() || rule.contains(':') {
            return Err(format!(
                "extensible match '{attr}{spec}=' is not supported (only attr:{RULE_BIT_AND}:= and attr:{RULE_BIT_OR}:=)"
            ));
        }
        let and = match rule {
            RULE_BIT_AND => true,
            RULE_BIT_OR => false,
            _ => {
                return Err(format!(
                    "matching rule {rule} is not supported (only {RULE_BIT_AND} and {RULE_BIT_OR})"
                ))
            }
        };
        let raw = unescape(self.raw_value()?)?;
        let mask: u64 = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("bitwise match on {attr} needs a decimal number"))?;
        Ok(if and {
            Filter::BitAnd(attr, mask)
        } else {
            Filter::BitOr(attr, mask)
        })
    }

    /// The still-escaped value up to the closing parenthesis.
    fn raw_value(&mut self) -> Result<&[u8], String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b')' => return Ok(&self.s[start..self.i]),
                b'(' => return Err(format!("unescaped '(' in a value at position {}: write it as \\28", self.i + 1)),
                _ => self.i += 1,
            }
        }
        Err("missing ')' after a value".to_string())
    }
}

fn need_attr(attr: &str, pos: usize) -> Result<(), String> {
    if attr.is_empty() {
        Err(format!("missing attribute name before position {pos}"))
    } else {
        Ok(())
    }
}

fn equality_or_substrings(attr: String, raw: &[u8]) -> Result<Filter, String> {
    if raw == b"*" {
        return Ok(Filter::Present(attr));
    }
    // `*` separates substrings; escaped stars (`\2a`) are hex escapes, never bare.
    let parts: Vec<&[u8]> = raw.split(|&c| c == b'*').collect();
    if parts.len() == 1 {
        return Ok(Filter::Equal(attr, Value::new(unescape(raw)?)));
    }
    let piece = |p: &[u8]| -> Result<Option<Value>, String> {
        if p.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Value::new(unescape(p)?)))
        }
    };
    let n = parts.len();
    let initial = piece(parts[0])?;
    let last = piece(parts[n - 1])?;
    let mut any = Vec::new();
    for p in &parts[1..n - 1] {
        if let Some(v) = piece(p)? {
            any.push(v);
        }
    }
    Ok(Filter::Substrings { attr, initial, any, last })
}

/// Resolves `\XX` hex escapes.
fn unescape(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => {
                    return Err(
                        "invalid escape in a value: use \\ followed by two hex digits (\\2a for *, \\28 for (, \\29 for ), \\5c for \\)"
                            .to_string(),
                    )
                }
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

impl Filter {
    /// Whether `e` matches. `(objectClass=*)` matches every entry, as on a server.
    pub fn matches(&self, e: &Entry) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(e)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(e)),
            Filter::Not(f) => !f.matches(e),
            Filter::Equal(a, v) | Filter::Approx(a, v) => e.values(a).iter().any(|x| {
                let (want, have) = v.compare_with(x);
                want == have
            }),
            Filter::Present(a) => a == "objectclass" || e.has(a),
            Filter::Substrings { attr, initial, any, last } => {
                e.values(attr).iter().any(|x| substrings(x, initial.as_ref(), any, last.as_ref()))
            }
            Filter::GreaterOrEqual(a, v) => e.values(a).iter().any(|x| order(x, v).is_ge()),
            Filter::LessOrEqual(a, v) => e.values(a).iter().any(|x| order(x, v).is_le()),
            Filter::BitAnd(a, m) => e.values(a).iter().any(|x| as_bits(x).is_some_and(|b| b & m == *m)),
            Filter::BitOr(a, m) => e.values(a).iter().any(|x| as_bits(x).is_some_and(|b| b & m != 0)),
        }
    }
}

/// Integers compare numerically (uidNumber), everything else case-insensitively by
/// bytes, which orders generalized times correctly.
fn order(x: &[u8], v: &Value) -> std::cmp::Ordering {
    let num = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| s.trim().parse::<i64>().ok());
    if let (Some(a), Some(b)) = (num(x), num(&v.raw)) {
        return a.cmp(&b);
    }
    let (want, have) = v.compare_with(x);
    have.as_ref().cmp(want.as_ref())
}

/// AD integers are signed 32-bit decimals; negative values keep their bit pattern.
fn as_bits(x: &[u8]) -> Option<u64> {
    let v: i64 = std::str::from_utf8(x).ok()?.trim().parse().ok()?;
    Some(if v < 0 { u64::from(v as i32 as u32) } else { v as u64 })
}

/// Which bytes of a piece to search for: folded text or raw bytes.
type Pick = fn(&Value) -> &[u8];

fn substrings(x: &[u8], initial: Option<&Value>, any: &[Value], last: Option<&Value>) -> bool {
    // Fold the entry value once; pieces are folded at parse time.
    let text = std::str::from_utf8(x).ok().map(str::to_lowercase);
    let pieces_text = initial.into_iter().chain(any).chain(last).all(|v| v.folded.is_some());
    let (hay, pick): (&[u8], Pick) = match (&text, pieces_text) {
        (Some(t), true) => (t.as_bytes(), |v: &Value| v.folded.as_deref().map(str::as_bytes).unwrap_or(&[])),
        _ => (x, |v: &Value| v.raw.as_slice()),
    };
    let mut rest = hay;
    if let Some(i) = initial {
        match rest.strip_prefix(pick(i)) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    if let Some(l) = last {
        match rest.strip_suffix(pick(l)) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for a in any {
        let needle = pick(a);
        match find(rest, needle) {
            Some(p) => rest = &rest[p + needle.len()..],
            None => return false,
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Entry {
        Entry::new("uid=alice,ou=people,dc=example,dc=com")
            .with("objectClass", "top")
            .with("objectClass", "inetOrgPerson")
            .with("uid", "alice")
            .with("cn", "Alice Ångström")
            .with("mail", "Alice@Example.com")
            .with("uidNumber", "1001")
            .with("createTimestamp", "20240102030405Z")
            .with("userAccountControl", "514")
            .with("description", "a*b(c)")
    }

    fn m(f: &str) -> bool {
        parse(f).unwrap_or_else(|e| panic!("{f}: {e}")).matches(&alice())
    }

    #[test]
    fn equality_is_case_insensitive_for_names_and_values() {
        assert!(m("(objectClass=inetOrgPerson)"));
        assert!(m("(OBJECTCLASS=INETORGPERSON)"));
        assert!(m("(mail=alice@example.com)"));
        assert!(m("(cn=alice ångström)"));
        assert!(!m("(objectClass=groupOfNames)"));
        assert!(!m("(nosuch=alice)"));
        assert!(m("(mail~=ALICE@example.com)"));
    }

    #[test]
    fn boolean_operators() {
        assert!(m("(&(objectClass=inetOrgPerson)(uid=alice))"));
        assert!(!m("(&(objectClass=inetOrgPerson)(uid=bob))"));
        assert!(m("(|(uid=bob)(uid=alice))"));
        assert!(!m("(|(uid=bob)(uid=carol))"));
        assert!(m("(!(uid=bob))"));
        assert!(!m("(!(uid=alice))"));
        assert!(m("(&)"), "empty AND is true");
        assert!(!m("(|)"), "empty OR is false");
        assert!(
            m("( & (uid=alice) ( | (cn=x) (mail=*) ) )"),
            "whitespace between components is tolerated"
        );
        assert!(m("uid=alice"), "outer parentheses are optional");
        assert!(m(""), "an empty filter matches everything");
    }

    #[test]
    fn presence() {
        assert!(m("(mail=*)"));
        assert!(!m("(telephoneNumber=*)"));
        assert!(
            Filter::Present("objectclass".into()).matches(&Entry::new("cn=bare")),
            "every entry has an objectClass"
        );
    }

    #[test]
    fn substrings() {
        assert!(m("(cn=ali*)"));
        assert!(m("(cn=*STRÖM)"));
        assert!(m("(cn=a*ce*gs*m)"));
        assert!(m("(mail=*@example.com)"));
        assert!(!m("(cn=*bob*)"));
        assert!(!m("(uid=al*ice*e)"), "pieces may not overlap");
        assert!(m("(uid=al*ice)"));
        assert!(!m("(uid=ali*lice)"), "initial and final may not overlap");
        assert!(m("(uid=**alice)"), "empty pieces are ignored");
    }

    #[test]
    fn escapes() {
        assert!(m("(description=a\\2ab\\28c\\29)"));
        assert!(m("(description=a\\2a*)"));
        assert!(!m("(description=a\\2ax*)"));
        assert!(m("(uid=\\61lice)"));
        let guid = Entry::new("cn=x").with("objectGUID", vec![0x10u8, 0xff, 0x00]);
        assert!(parse("(objectGUID=\\10\\ff\\00)").unwrap().matches(&guid));
        assert!(!parse("(objectGUID=\\10\\FE\\00)").unwrap().matches(&guid));
    }

    #[test]
    fn ordering() {
        assert!(m("(uidNumber>=1000)"));
        assert!(m("(uidNumber<=1001)"));
        assert!(!m("(uidNumber>=999999)"));
        assert!(m("(uidNumber>=999)"), "integers compare numerically");
        assert!(m("(createTimestamp>=20240101000000Z)"));
        assert!(!m("(createTimestamp<=20231231000000Z)"));
        assert!(m("(uid<=BOB)"), "text compares lexically, case-insensitively");
    }

    #[test]
    fn ad_bitwise_rules() {
        assert!(m("(userAccountControl:1.2.840.113556.1.4.803:=2)"));
        assert!(!m("(!(userAccountControl:1.2.840.113556.1.4.803:=2))"));
        assert!(!m("(userAccountControl:1.2.840.113556.1.4.803:=3)"));
        assert!(m("(userAccountControl:1.2.840.113556.1.4.804:=3)"));
        let neg = Entry::new("cn=x").with("userAccountControl", "-2147483646");
        assert!(parse("(userAccountControl:1.2.840.113556.1.4.803:=2147483650)")
            .unwrap()
            .matches(&neg));
    }

    #[test]
    fn malformed_filters_are_errors_with_a_position() {
        for (bad, want) in [
            ("(uid=alice", "missing ')'"),
            ("(&(uid=a)", "expected ')'"),
            ("(uid=a))", "unexpected text"),
            ("(=a)", "missing attribute name"),
            ("(uid=a\\zz)", "invalid escape"),
            ("(uid=a\\2)", "invalid escape"),
            ("(cn=a(b)", "unescaped '('"),
            ("(u id=a)", "unexpected ' '"),
            ("(memberOf:1.2.840.113556.1.4.1941:=cn=x)", "not supported"),
            ("(cn:dn:2.5.13.5:=x)", "not supported"),
            ("(uac:1.2.840.113556.1.4.803:=two)", "decimal"),
            ("(uid>a)", "expected '='"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing() {
        let deep = format!("{}(uid=a){}", "(!".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().contains("nested"));
        let ok = format!("{}(uid=alice){}", "(!".repeat(10), ")".repeat(10));
        assert!(parse(&ok).unwrap().matches(&alice()));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            if let Ok(f) = parse(&s) {
                let _ = f.matches(&alice());
            }
        }
    }
}
