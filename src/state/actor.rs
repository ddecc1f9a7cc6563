//! Who is acting, for the audit log's `actor` field: the command and the OS user.
//!
//! Invariant: never fails and never returns an empty user: `USER`, then `LOGNAME`, then
//! the uid (systemd `DynamicUser=` services have no `USER`), then `unknown`.

/// The actor string for audit lines: the command and the OS user, e.g.
/// `idsync apply (user alice)`.
pub fn actor(command: &str) -> String {
    format!("idsync {command} (user {})", os_user())
}

fn os_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.trim().is_empty() {
                return u.trim().to_string();
            }
        }
    }
    // DynamicUser services have no USER; the uid still identifies them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid {}", m.uid());
        }
    }
    "unknown".into()
}
