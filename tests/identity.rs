//! Identity through the real binary: an email change under the same anchor stays one held
//! pair in every run until a human decides (SPEC §4).

mod common;

use common::*;
use serde_json::Value;

/// root, and alice's entry (anchor-alice) with `mail`.
fn directory(mail: &str) -> String {
    let mut text = ldif(&[P("root", true)], &[]);
    text.push_str(&format!(
        "dn: uid=alice,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: alice\ncn: alice\nsn: alice\nmail: {mail}\nentryUUID: anchor-alice\n\n"
    ));
    text
}

fn identity_holds(out: &std::process::Output) -> Vec<String> {
    let p: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "held" && a["guard"] == "identity-change")
        .map(|a| format!("{} {}", a["kind"].as_str().unwrap(), a["user"].as_str().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_change_is_held_in_plan_plan_apply_plan() {
    let f = Fixture::start(Setup {
        org: org(&[("root@example.com", "admin", &[]), ("alice@example.com", "member", &[])], &[]),
        ldif: directory("alice@example.com"),
        ..Setup::default()
    })
    .await;
    // A first apply records the anchors.
    let first = f.run(&["apply", "--yes"]).await;
    assert_eq!(code(&first), 0, "{}", text(&first));
    f.write_ldif(&directory("alice.smith@example.com"));
    let pair = vec![
        "create_user alice.smith@example.com".to_string(),
        "deprovision_user alice@example.com".to_string(),
    ];
    for step in ["plan", "plan", "apply", "plan"] {
        let out = match step {
            "apply" => {
                let out = f.run(&["apply", "--yes"]).await;
                assert_eq!(code(&out), 3, "{}", text(&out));
                f.run(&["plan", "--format", "json"]).await
            }
            _ => f.run(&["plan", "--format", "json"]).await,
        };
        assert_eq!(code(&out), 3, "{step}: {}", text(&out));
        let mut held = identity_holds(&out);
        held.sort();
        assert_eq!(held, pair, "after {step}");
    }
    let users = f.users().await;
    assert!(users.contains_key("alice@example.com") && !users.contains_key("alice.smith@example.com"));
}
