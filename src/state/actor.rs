//! Who is acting, for the audit log's `actor` and `by` fields and an approval's
//! `approved_by`: the command and the human behind it.
//!
//! The human is the invoking OS user, except that `SUDO_USER` wins when set: `sudo -u
//! idsync idsync approve …` was typed by the sudoer, not by the service identity it runs
//! as, and the audit trail must name the person. The actor string then shows both.
//!
//! Invariant: never fails and never returns an empty name: `SUDO_USER`, then `USER`, then
//! `LOGNAME`, then the uid (systemd `DynamicUser=` services have no `USER`), then
//! `unknown`. These are what the process was told; a root caller can set any of them, so
//! the audit names who the OS says ran the command, not an authenticated identity.

/// The actor string for audit lines: the command and the human, e.g.
/// `idsync apply (user alice)`, or `idsync approve (user alice via sudo as idsync)`.
pub fn actor(command: &str) -> String {
    actor_with(command, &|v| std::env::var(v).ok(), uid())
}

/// The human acting: `SUDO_USER` when set, else the OS user (see the module docs).
pub fn human() -> String {
    who(&|v| std::env::var(v).ok(), uid()).human
}

struct Who {
    human: String,
    /// The OS user the process runs as, when sudo made it someone else.
    via_sudo_as: Option<String>,
}

fn actor_with(command: &str, lookup: &dyn Fn(&str) -> Option<String>, uid: Option<u32>) -> String {
    let w = who(lookup, uid);
    match w.via_sudo_as {
        Some(os) => format!("idsync {command} (user {} via sudo as {os})", w.human),
        None => format!("idsync {command} (user {})", w.human),
    }
}

fn who(lookup: &dyn Fn(&str) -> Option<String>, uid: Option<u32>) -> Who {
    let var = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let os = var("USER")
        .or_else(|| var("LOGNAME"))
        // DynamicUser services have no USER; the uid still identifies them.
        .or_else(|| uid.map(|u| format!("uid {u}")))
        .unwrap_or_else(|| "unknown".into());
    match var("SUDO_USER") {
        Some(sudoer) if sudoer != os => Who {
            human: sudoer,
            via_sudo_as: Some(os),
        },
        Some(sudoer) => Who {
            human: sudoer,
            via_sudo_as: None,
        },
        None => Who {
            human: os,
            via_sudo_as: None,
        },
    }
}

fn uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return Some(m.uid());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_sudoer_is_the_human_never_the_service_identity() {
        let sudo = env(&[("USER", "idsync"), ("SUDO_USER", "alice")]);
        assert_eq!(who(&sudo, Some(990)).human, "alice");
        assert_eq!(
            actor_with("approve", &sudo, Some(990)),
            "idsync approve (user alice via sudo as idsync)"
        );
        // sudo to oneself adds nothing worth saying.
        let same = env(&[("USER", "alice"), ("SUDO_USER", "alice")]);
        assert_eq!(actor_with("revoke", &same, None), "idsync revoke (user alice)");
    }

    #[test]
    fn without_sudo_the_os_user_then_the_uid() {
        assert_eq!(actor_with("apply", &env(&[("USER", " bob ")]), None), "idsync apply (user bob)");
        assert_eq!(who(&env(&[("LOGNAME", "carol"), ("SUDO_USER", "")]), None).human, "carol");
        assert_eq!(who(&env(&[]), Some(61234)).human, "uid 61234");
        assert_eq!(who(&env(&[]), None).human, "unknown");
    }
}
