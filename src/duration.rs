//! Human durations (`"90s"`, `"15m"`, `"72h"`, `"7d"`): parsed from config files and shown
//! in reports. Pure, so the plan core may use it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The longest duration a config may say: a century. Longer ones are typos (and
    /// `now + d` would leave the calendar), so they are refused, never wrapped.
    pub const MAX: HumanDuration = HumanDuration(Duration::from_secs(36_500 * 86_400));

    pub const fn from_secs(s: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(s))
    }

    /// Parses `<number><unit>` with unit `s`, `m`, `h` or `d` (also `ms`). A bare `0` is
    /// accepted; anything else without a unit is rejected so "30" is never misread.
    pub fn parse(s: &str) -> Result<HumanDuration, String> {
        let t = s.trim();
        if t == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected a number and a unit, like \"90s\", \"15m\", \"72h\" or \"7d\""))?;
        let secs = match unit {
            "ms" => {
                let d = Duration::from_millis(n);
                return if d > Self::MAX.0 {
                    Err(format!("invalid duration {s:?}: too large (at most {})", Self::MAX))
                } else {
                    Ok(HumanDuration(d))
                };
            }
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unit must be one of ms, s, m, h, d (like \"90s\", \"15m\", \"72h\", \"7d\")"
                ))
            }
        };
        secs.filter(|secs| *secs <= Self::MAX.0.as_secs())
            .map(|s| HumanDuration(Duration::from_secs(s)))
            .ok_or_else(|| format!("invalid duration {s:?}: too large (at most {})", Self::MAX))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if self.0.subsec_millis() != 0 {
            write!(f, "{}ms", self.0.as_millis())
        } else if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(HumanDuration::parse("90s").unwrap().0, Duration::from_secs(90));
        assert_eq!(HumanDuration::parse("15m").unwrap().0, Duration::from_secs(900));
        assert_eq!(HumanDuration::parse("72h").unwrap().0, Duration::from_secs(259_200));
        assert_eq!(HumanDuration::parse("7d").unwrap().0, Duration::from_secs(604_800));
        assert_eq!(HumanDuration::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(HumanDuration::parse("0").unwrap().0, Duration::ZERO);
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        for bad in ["30", "m", "", "5w", "-1s", "1.5h"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_beyond_a_century_are_refused_not_wrapped() {
        for huge in ["99999999999d", "36501d", "999999999999999h", "18446744073709551615ms"] {
            let e = HumanDuration::parse(huge).unwrap_err();
            assert!(e.contains("too large"), "{huge}: {e}");
        }
        assert_eq!(HumanDuration::parse("36500d").unwrap(), HumanDuration::MAX);
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(HumanDuration::from_secs(259_200).to_string(), "3d");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "90s");
    }
}
