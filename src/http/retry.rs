//! The one retry policy for every W&B request (SPEC §5), as pure functions.
//!
//! Exponential backoff with full jitter, stretched (never shortened) by what the server
//! asks for in `Retry-After` / `RateLimit-Reset`. No clock or randomness inside: callers
//! pass `now` and a jitter draw, so the policy is unit-tested exactly.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest wait a server hint may impose; a hint of "come back in a day" should fail the
/// run (and page someone) rather than silently park the daemon.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(120);

/// Exponential backoff bounds: the wait before retry `n` (0-based) is drawn uniformly from
/// `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The upper bound of the wait before retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^30 * base already exceeds any sane cap; clamping keeps the shift defined.
        let factor = 1u32 << attempt.min(30);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: `unit` is a uniform draw from `[0, 1]`; anything else is clamped.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 1.0 };
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * unit)
            .unwrap_or(ceiling)
            .min(ceiling)
    }
}

/// Whether an HTTP status is worth retrying: 429 and 5xx, except 501 (the server says it
/// will never do this, so asking again cannot help).
pub fn retryable_status(status: u16) -> bool {
    status == 429 || ((500..600).contains(&status) && status != 501)
}

/// Whether a failed answer with this status may still have followed the work being done:
/// a 5xx (other than 501) can come from a proxy or a crash after the change was committed.
/// A 4xx, 429 included, says the server refused it; 501 says it never does this.
pub fn status_may_have_landed(status: u16) -> bool {
    (500..600).contains(&status) && status != 501
}

/// Parses `Retry-After`: delay seconds or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Some(d) = parse_seconds(v) {
        return Some(d);
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// Parses `RateLimit-Reset`: seconds until the window resets. Some servers send a Unix
/// timestamp instead; a value that large is read as one.
pub fn parse_ratelimit_reset(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let d = parse_seconds(value.trim())?;
    // No window lasts 30 years, so this can only be an epoch time.
    const EPOCH_THRESHOLD: u64 = 1_000_000_000;
    if d.as_secs() >= EPOCH_THRESHOLD {
        let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
        return Some(Duration::from_secs(d.as_secs().saturating_sub(now_secs)));
    }
    Some(d)
}

fn parse_seconds(v: &str) -> Option<Duration> {
    if let Ok(n) = v.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let f = v.parse::<f64>().ok()?;
    if f.is_finite() && f >= 0.0 {
        Duration::try_from_secs_f64(f).ok()
    } else {
        None
    }
}

/// The wait a response asks for, from its headers. `RateLimit-Reset` describes the quota
/// window, so it only counts when the quota is the problem (429, or nothing remaining);
/// otherwise a 503 carrying it would park the client for a whole window needlessly.
pub fn server_wait(
    status: u16,
    retry_after: Option<&str>,
    ratelimit_reset: Option<&str>,
    ratelimit_remaining: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let ra = retry_after.and_then(|v| parse_retry_after(v, now));
    let quota_exhausted = status == 429 || ratelimit_remaining.is_some_and(|r| r.trim().parse::<u64>() == Ok(0));
    let reset = if quota_exhausted {
        ratelimit_reset.and_then(|v| parse_ratelimit_reset(v, now))
    } else {
        None
    };
    match (ra, reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The wait before retry number `attempt`: the jittered backoff, or the server's hint
/// (capped at [`MAX_SERVER_WAIT`]) when that is longer.
pub fn retry_delay(backoff: &Backoff, attempt: u32, unit: f64, hint: Option<Duration>) -> Duration {
    let b = backoff.jittered(attempt, unit);
    match hint {
        Some(h) => b.max(h.min(MAX_SERVER_WAIT)),
        None => b,
    }
}

/// What to do after a failed attempt, for every client (W&B and the sources alike).
pub enum Next<E> {
    /// Wait this long, then try again; the error is for the log line.
    Retry(Duration, E),
    /// Give up with this error.
    Fail(E),
}

/// Decides after failed attempt number `attempt` (0-based): errors that are not
/// `retryable` fail at once; after `max` retries the error is wrapped by `exhausted`
/// (unless retries were off, when it stands as it is); otherwise wait the jittered
/// backoff or the server's `hint`.
pub fn next_attempt<E>(
    err: E,
    retryable: bool,
    attempt: u32,
    max: u32,
    backoff: &Backoff,
    hint: Option<Duration>,
    exhausted: impl FnOnce(E) -> E,
) -> Next<E> {
    if !retryable {
        return Next::Fail(err);
    }
    if attempt >= max {
        return Next::Fail(if max == 0 { err } else { exhausted(err) });
    }
    let unit: f64 = rand::Rng::random(&mut rand::rng());
    Next::Retry(retry_delay(backoff, attempt, unit, hint), err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(200));
        assert_eq!(b.ceiling(1), Duration::from_millis(400));
        assert_eq!(b.ceiling(4), Duration::from_millis(3200));
        assert_eq!(b.ceiling(8), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling() {
        let b = Backoff::default();
        for attempt in 0..40 {
            for unit in [0.0, 0.25, 0.5, 0.999, 1.0, -3.0, 7.0, f64::NAN, f64::INFINITY] {
                let d = b.jittered(attempt, unit);
                assert!(d <= b.ceiling(attempt), "{attempt} {unit} {d:?}");
            }
        }
        assert_eq!(b.jittered(2, 0.0), Duration::ZERO);
        assert_eq!(b.jittered(2, 0.5), Duration::from_millis(400));
        // A huge cap must not overflow the float conversion.
        let huge = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        assert!(huge.jittered(3, 1.0) <= Duration::MAX);
    }

    #[test]
    fn only_429_and_5xx_are_retryable() {
        for s in [429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 201, 204, 301, 400, 401, 403, 404, 409, 412, 422, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn only_a_5xx_other_than_501_may_have_landed() {
        for s in [500, 502, 503, 504, 599] {
            assert!(status_may_have_landed(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 412, 422, 429, 501] {
            assert!(!status_may_have_landed(s), "{s}");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", now()), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now()), Some(Duration::ZERO));
        for bad in ["", "soon", "-3", "NaN", "inf"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn ratelimit_reset_accepts_delta_seconds_and_epoch_times() {
        assert_eq!(parse_ratelimit_reset("12", now()), Some(Duration::from_secs(12)));
        let epoch = (now().timestamp() + 20).to_string();
        assert_eq!(parse_ratelimit_reset(&epoch, now()), Some(Duration::from_secs(20)));
        assert_eq!(parse_ratelimit_reset("x", now()), None);
    }

    #[test]
    fn server_wait_takes_the_larger_hint_and_ignores_reset_unless_throttled() {
        let w = |status, ra, reset, rem| server_wait(status, ra, reset, rem, now());
        assert_eq!(w(429, Some("3"), Some("9"), None), Some(Duration::from_secs(9)));
        assert_eq!(w(429, Some("9"), Some("3"), None), Some(Duration::from_secs(9)));
        assert_eq!(w(429, None, Some("4"), None), Some(Duration::from_secs(4)));
        assert_eq!(w(503, None, Some("40"), Some("100")), None);
        assert_eq!(w(503, None, Some("40"), Some("0")), Some(Duration::from_secs(40)));
        assert_eq!(w(503, Some("2"), Some("40"), None), Some(Duration::from_secs(2)));
        assert_eq!(w(429, Some("junk"), None, None), None);
    }

    #[test]
    fn retry_delay_honours_hints_but_caps_them() {
        let b = Backoff::default();
        let hint = Some(Duration::from_secs(5));
        assert_eq!(retry_delay(&b, 0, 1.0, hint), Duration::from_secs(5));
        // Backoff longer than the hint wins.
        assert_eq!(retry_delay(&b, 10, 1.0, Some(Duration::from_secs(1))), Duration::from_secs(30));
        assert_eq!(retry_delay(&b, 0, 0.0, Some(Duration::from_secs(86_400))), MAX_SERVER_WAIT);
        assert!(retry_delay(&b, 3, 0.7, None) <= b.ceiling(3));
    }
}
