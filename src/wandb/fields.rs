//! The fields of W&B's SCIM resources, read by one set of serde visitors from either the
//! response bytes (a list page, without building its `Value` tree: a 10,000-user page is
//! ~5 MB) or an already parsed `Value` (single-resource replies). Either way the semantics
//! in `wire` then see the same fields, so there is one definition of them.
//!
//! Keys match as [`crate::scim::field`] finds them in a parsed object (a `BTreeMap`): the
//! exact key first, else the smallest case variant; a repeated key keeps its last value.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::wire::names_service_account;
use crate::scim::bool_value;

/// One field by name, as the object map would have resolved it.
#[derive(Debug)]
struct Slot<T> {
    exact: Option<T>,
    variant: Option<(String, T)>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            exact: None,
            variant: None,
        }
    }
}

impl<T> Slot<T> {
    /// Whether a value under `key` would be the one the map lookup finds (so losing
    /// values are skipped unread).
    fn takes(&self, key: &str, exact: bool) -> bool {
        exact || (self.exact.is_none() && self.variant.as_ref().is_none_or(|(k, _)| key <= k.as_str()))
    }

    fn put(&mut self, key: &str, exact: bool, value: T) {
        if exact {
            self.exact = Some(value);
            self.variant = None;
        } else {
            self.variant = Some((key.to_string(), value));
        }
    }

    fn get(&self) -> Option<&T> {
        self.exact.as_ref().or(self.variant.as_ref().map(|(_, v)| v))
    }

    fn take(&mut self) -> Option<T> {
        self.exact.take().or(self.variant.take().map(|(_, v)| v))
    }
}

/// Which of `names` a key is: `(index, exact)`.
fn match_key(names: &[&str], key: &str) -> Option<(usize, bool)> {
    if let Some(i) = names.iter().position(|n| *n == key) {
        return Some((i, true));
    }
    names.iter().position(|n| n.eq_ignore_ascii_case(key)).map(|i| (i, false))
}

/// Reads one value into the slot it belongs to, or skips it.
fn offer<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A, slot: &mut Slot<T>, key: &str, exact: bool) -> Result<(), A::Error> {
    if slot.takes(key, exact) {
        let v = map.next_value::<T>()?;
        slot.put(key, exact, v);
    } else {
        map.next_value::<IgnoredAny>()?;
    }
    Ok(())
}

/// A map key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

// ---- users -------------------------------------------------------------------------

const USER_KEYS: [&str; 13] = [
    "id",
    "userName",
    "displayName",
    "emails",
    "organizationRole",
    "active",
    "teamRoles",
    "lastActiveAt",
    "daysActive",
    "schemas",
    "userType",
    "type",
    "accountType",
];

/// What `wire::user_from` reads of a `/Users` entry. Each field is a small `Value` (their
/// shapes vary too much for types); every other field is skipped unread.
#[derive(Debug, Default)]
pub struct UserFields {
    slots: [Slot<Value>; USER_KEYS.len()],
    /// Keys naming a service account, and whether their value marks one (an object or a
    /// true flag; not a list: a person may own service accounts).
    service_keys: BTreeMap<String, bool>,
}

impl UserFields {
    fn index(name: &str) -> Option<usize> {
        USER_KEYS.iter().position(|n| *n == name)
    }

    /// [`crate::scim::field`]: `null` is absent.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.field_or_null(name).filter(|v| !v.is_null())
    }

    /// [`crate::scim::field_or_null`].
    pub fn field_or_null(&self, name: &str) -> Option<&Value> {
        Self::index(name).and_then(|i| self.slots[i].get())
    }

    /// [`crate::scim::raw_str`], moving the string out.
    pub fn take_str(&mut self, name: &str) -> Option<String> {
        match Self::index(name).and_then(|i| self.slots[i].take())? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn marked_by_key(&self) -> bool {
        self.service_keys.values().any(|marks| *marks)
    }
}

/// Whether a key can name a service account, without allocating: the letters
/// "serviceaccount" need 14 bytes and a `v`. Nearly every key fails this.
fn may_name_service_account(key: &str) -> bool {
    key.len() >= 14 && key.bytes().any(|b| b.eq_ignore_ascii_case(&b'v')) && names_service_account(key)
}

impl<'de> Deserialize<'de> for UserFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(UserVisitor)
    }
}

struct UserVisitor;

impl<'de> Visitor<'de> for UserVisitor {
    type Value = UserFields;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a user object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserFields, A::Error> {
        let mut out = UserFields::default();
        while let Some(key) = map.next_key_seed(Key)? {
            if let Some((i, exact)) = match_key(&USER_KEYS, &key) {
                offer(&mut map, &mut out.slots[i], &key, exact)?;
            } else if may_name_service_account(&key) {
                let v: Value = map.next_value()?;
                let marks = v.is_object() || (!v.is_array() && bool_value(&v) == Some(true));
                // Last value wins, as in the parsed map.
                out.service_keys.insert(key.into_owned(), marks);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

// ---- teams -------------------------------------------------------------------------

const TEAM_KEYS: [&str; 3] = ["id", "displayName", "members"];

/// `members` as sent: `null`, or the member ids found in it.
#[derive(Debug)]
pub enum Members {
    Null,
    Ids(Vec<String>),
}

/// What `wire::team_from` reads of a `/Groups` entry. Members are read straight to ids:
/// a team's member list can be tens of thousands of objects.
#[derive(Debug, Default)]
pub struct TeamFields {
    id: Slot<Value>,
    display_name: Slot<Value>,
    members: Slot<Members>,
}

impl TeamFields {
    pub fn take_id(&mut self) -> Option<String> {
        self.id.take().as_ref().and_then(crate::scim::raw_str_of)
    }

    pub fn take_display_name(&mut self) -> Option<String> {
        self.display_name.take().as_ref().and_then(crate::scim::raw_str_of)
    }

    /// `null` or missing: none.
    pub fn take_members(&mut self) -> Vec<String> {
        match self.members.take() {
            Some(Members::Ids(ids)) => ids,
            Some(Members::Null) | None => Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for TeamFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TeamVisitor)
    }
}

struct TeamVisitor;

impl<'de> Visitor<'de> for TeamVisitor {
    type Value = TeamFields;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a team object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TeamFields, A::Error> {
        let mut out = TeamFields::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match match_key(&TEAM_KEYS, &key) {
                Some((0, exact)) => offer(&mut map, &mut out.id, &key, exact)?,
                Some((1, exact)) => offer(&mut map, &mut out.display_name, &key, exact)?,
                Some((_, exact)) => offer(&mut map, &mut out.members, &key, exact)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MembersVisitor)
    }
}

/// `members`: a list of members, or one member on its own; any other value has none.
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("members")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Members, E> {
        Ok(Members::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Members, E> {
        Ok(Members::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Members, E> {
        Ok(Members::Ids(Vec::new()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Members, E> {
        Ok(Members::Ids(Vec::new()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Members, E> {
        Ok(Members::Ids(Vec::new()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Members, E> {
        Ok(Members::Ids(Vec::new()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Members, E> {
        Ok(Members::Ids(non_empty(v).into_iter().collect()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Members, A::Error> {
        Ok(Members::Ids(MemberVisitor.visit_map(map)?.into_iter().collect()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Members, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(id) = seq.next_element_seed(MemberVisitor)? {
            ids.extend(id);
        }
        Ok(Members::Ids(ids))
    }
}

/// One member: its id as a string, or an object's `value`; anything else has none.
struct MemberVisitor;

impl<'de> DeserializeSeed<'de> for MemberVisitor {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(non_empty(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value: Slot<Value> = Slot::default();
        while let Some(key) = map.next_key_seed(Key)? {
            if let Some((_, exact)) = match_key(&["value"], &key) {
                offer(&mut map, &mut value, &key, exact)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(value.get().and_then(crate::scim::raw_str_of).and_then(|s| non_empty(&s)))
    }
}

// ---- list pages ----------------------------------------------------------------------

/// A resource read from a list page: its fields, then the `wire` semantics on them.
pub trait Resource: Sized {
    type Fields: for<'de> Deserialize<'de>;
    /// `whole` is the parsed resource when there is one, for error messages.
    fn build(fields: Self::Fields, whole: Option<&Value>) -> Result<Self, String>;
    /// The same resource from a parsed `Value` (`wire::parse_user`, `wire::parse_team`):
    /// the slow path a refused page is read again by.
    fn parse_value(v: &Value) -> Result<Self, String>;
}

/// A list page's `totalResults` (as sent) and resources (`None`: `null`).
pub struct RawPage<T> {
    pub total: Option<Value>,
    pub resources: Option<Vec<T>>,
}

/// Reads a list page straight from JSON text. Any resource that does not build fails the
/// whole read (the caller then reads the page again the slow way, for the message).
pub fn read_page<T: Resource>(text: &str) -> Result<RawPage<T>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let page = PageSeed::<T>(PhantomData).deserialize(&mut de)?;
    de.end()?;
    Ok(page)
}

struct PageSeed<T>(PhantomData<T>);

impl<'de, T: Resource> DeserializeSeed<'de> for PageSeed<T> {
    type Value = RawPage<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Resource> Visitor<'de> for PageSeed<T> {
    type Value = RawPage<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a SCIM list response")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut total: Slot<Value> = Slot::default();
        let mut resources: Slot<Option<Vec<T>>> = Slot::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match match_key(&["totalResults", "Resources"], &key) {
                Some((0, exact)) => offer(&mut map, &mut total, &key, exact)?,
                Some((_, exact)) if resources.takes(&key, exact) => {
                    let items = map.next_value_seed(ResourcesSeed::<T>(PhantomData))?;
                    resources.put(&key, exact, items);
                }
                // Not a field, or a case variant the map lookup would not find.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawPage {
            total: total.take(),
            resources: resources.take().flatten(),
        })
    }
}

/// `Resources`: `null` or a list; anything else is an error.
struct ResourcesSeed<T>(PhantomData<T>);

impl<'de, T: Resource> DeserializeSeed<'de> for ResourcesSeed<T> {
    type Value = Option<Vec<T>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Resource> Visitor<'de> for ResourcesSeed<T> {
    type Value = Option<Vec<T>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of resources")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The hint is the server's claim, so it is capped.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16_384));
        while let Some(fields) = seq.next_element::<T::Fields>()? {
            items.push(T::build(fields, None).map_err(de::Error::custom)?);
        }
        Ok(Some(items))
    }
}
