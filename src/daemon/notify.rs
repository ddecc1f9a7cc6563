//! The systemd notification protocol (`sd_notify(3)`): `READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `STOPPING=1` as datagrams to `$NOTIFY_SOCKET`. Without systemd (no socket) it does
//! nothing. A dozen lines do not justify a dependency.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Sends one notification; errors are logged, never fatal (systemd may be gone at exit).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket (Linux).
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// `WATCHDOG_USEC` (systemd's `WatchdogSec=`), when the watchdog is meant for this process.
pub fn watchdog_limit() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Milliseconds since the Unix epoch of the last sign of progress: the run loop beating
/// while it waits for the next tick, a run finishing a phase, the apply settling an action.
/// Process-wide, as systemd's watchdog is.
static LAST_BEAT_MS: AtomicI64 = AtomicI64::new(0);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Records progress: the watchdog pinger only says `WATCHDOG=1` while beats keep coming.
pub fn beat() {
    LAST_BEAT_MS.store(now_ms(), Ordering::Relaxed);
}

/// Whether the last beat is younger than `limit`.
pub fn beating_within(limit: Duration) -> bool {
    fresh(LAST_BEAT_MS.load(Ordering::Relaxed), now_ms(), limit)
}

fn fresh(last_ms: i64, now_ms: i64, limit: Duration) -> bool {
    let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(last_ms) < limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_writes_the_state_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        // Only this test sets NOTIFY_SOCKET in the unit-test process.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1\nSTATUS=idle");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=idle");
    }

    #[test]
    fn the_heartbeat_goes_stale_without_beats() {
        let limit = Duration::from_secs(2);
        assert!(fresh(10_000, 11_999, limit));
        assert!(!fresh(10_000, 12_000, limit), "2 s without a beat is not within 2 s");
        assert!(!fresh(0, 1_767_268_800_000, limit), "never beaten");
        // Other tests beat too (the apply does), so only the fresh side is checked here.
        beat();
        assert!(beating_within(Duration::from_secs(60)));
    }
}
