//! What the plan and seat benchmarks generate alike.

use idsync::model::Person;

/// Directory person number `i`: `user{i}@example.com`, anchored `a{i}`, one in 97
/// disabled.
pub fn person(i: usize) -> Person {
    Person {
        anchor: format!("a{i}"),
        email: Some(format!("user{i}@example.com")),
        username: format!("user{i}"),
        display_name: format!("User {i}"),
        enabled: !i.is_multiple_of(97),
        source_ref: format!("uid=user{i},ou=people,dc=example,dc=com"),
    }
}
