//! SCIM 2.0 JSON, read tolerantly: the one set of field readers for what the W&B client
//! and the SCIM directory source receive. Servers deviate from RFC 7643 (W&B capitalises
//! keys and sends `emails` as one object; some send booleans as strings), so readers
//! match keys case-insensitively and take `null` as absent. Pure.

use serde_json::Value;

/// A field by name, falling back to a case-insensitive match (`Value` vs `value`);
/// JSON `null` counts as absent.
pub fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// Like [`field`], but a `null` value is returned as `Some(Value::Null)`: for the few
/// fields where `null` and a missing key mean different things (W&B's `lastActiveAt`).
pub fn field_or_null<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A string field as sent; numbers are accepted too, since ids are opaque.
pub fn raw_str(obj: &Value, name: &str) -> Option<String> {
    field(obj, name).and_then(raw_str_of)
}

/// [`raw_str`] on a field's value already looked up.
pub fn raw_str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string field trimmed, `None` when empty.
pub fn text(obj: &Value, name: &str) -> Option<String> {
    raw_str(obj, name).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A boolean, also as `"true"`/`"False"` or `0`/`1`; anything else is unknown.
pub fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        _ => None,
    }
}

pub fn bool_field(obj: &Value, name: &str) -> Option<bool> {
    field(obj, name).and_then(bool_value)
}

/// The address a resource is joined on (trimmed): from `emails` as the SCIM array, as
/// W&B's single object or as a bare string, the `primary` one, else the `work` one, else
/// the first with a value. `None` when there is none: the person is then skipped,
/// never guessed from `userName`.
pub fn pick_email(resource: &Value) -> Option<String> {
    field(resource, "emails").and_then(pick_email_of)
}

/// [`pick_email`] on the `emails` value already looked up (`null` has none).
pub fn pick_email_of(emails: &Value) -> Option<String> {
    let value_of = |it: &Value| match it {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Object(_) => text(it, "value"),
        _ => None,
    };
    let items: Vec<&Value> = match emails {
        Value::Null => return None,
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    let with_value: Vec<(&Value, String)> = items.into_iter().filter_map(|e| Some((e, value_of(e)?))).collect();
    with_value
        .iter()
        .find(|(e, _)| bool_field(e, "primary") == Some(true))
        .or_else(|| {
            with_value
                .iter()
                .find(|(e, _)| text(e, "type").is_some_and(|t| t.eq_ignore_ascii_case("work")))
        })
        .or_else(|| with_value.first())
        .map(|(_, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_email_is_primary_then_work_then_first_in_every_shape() {
        let list = json!({"emails": [{"value": "home@x.com", "type": "home"}, {"value": "work@x.com", "type": "work"}, {"value": "p@x.com", "primary": "True"}]});
        assert_eq!(pick_email(&list).as_deref(), Some("p@x.com"));
        let no_primary = json!({"emails": [{"value": "home@x.com"}, {"Value": " work@x.com ", "Type": "Work"}]});
        assert_eq!(pick_email(&no_primary).as_deref(), Some("work@x.com"));
        let wandb = json!({"emails": {"Value": "w@x.com", "Display": "", "Type": "work", "Primary": true}});
        assert_eq!(pick_email(&wandb).as_deref(), Some("w@x.com"));
        assert_eq!(pick_email(&json!({"emails": "bare@x.com"})).as_deref(), Some("bare@x.com"));
        for none in [
            json!({}),
            json!({"emails": null}),
            json!({"emails": []}),
            json!({"emails": [{"value": "  "}]}),
        ] {
            assert_eq!(pick_email(&none), None, "{none}");
        }
    }

    #[test]
    fn fields_match_case_insensitively_and_null_is_absent() {
        let v = json!({"Active": "FALSE", "id": 7, "name": null, "userName": " bob "});
        assert_eq!(bool_field(&v, "active"), Some(false));
        assert_eq!(raw_str(&v, "id").as_deref(), Some("7"));
        assert_eq!(field(&v, "name"), None);
        assert_eq!(raw_str(&v, "userName").as_deref(), Some(" bob "));
        assert_eq!(text(&v, "userName").as_deref(), Some("bob"));
    }
}
