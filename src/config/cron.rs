//! Checks `daemon.schedule` at load time: a cron expression with a seconds field
//! (`sec min hour day-of-month month day-of-week [year]`), as the `cron` crate reads it,
//! so that a typo fails `check-config` instead of the daemon at start.

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names accepted for values `min..`, upper case (`JAN` = 1, `SUN` = 1).
    names: &'static [&'static [&'static str]],
    /// Whether `?` ("no specific value") is allowed.
    question: bool,
}

const MONTHS: &[&[&str]] = &[
    &["JAN", "JANUARY"],
    &["FEB", "FEBRUARY"],
    &["MAR", "MARCH"],
    &["APR", "APRIL"],
    &["MAY", "MAY"],
    &["JUN", "JUNE"],
    &["JUL", "JULY"],
    &["AUG", "AUGUST"],
    &["SEP", "SEPTEMBER"],
    &["OCT", "OCTOBER"],
    &["NOV", "NOVEMBER"],
    &["DEC", "DECEMBER"],
];

const DAYS: &[&[&str]] = &[
    &["SUN", "SUNDAY"],
    &["MON", "MONDAY"],
    &["TUE", "TUES", "TUESDAY"],
    &["WED", "WEDNESDAY"],
    &["THU", "THURS", "THURSDAY"],
    &["FRI", "FRIDAY"],
    &["SAT", "SATURDAY"],
];

const FIELDS: [Field; 7] = [
    Field {
        name: "seconds",
        min: 0,
        max: 59,
        names: &[],
        question: false,
    },
    Field {
        name: "minutes",
        min: 0,
        max: 59,
        names: &[],
        question: false,
    },
    Field {
        name: "hours",
        min: 0,
        max: 23,
        names: &[],
        question: false,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        question: true,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        question: false,
    },
    // The cron crate counts days of the week 1-7 from Sunday.
    Field {
        name: "day-of-week",
        min: 1,
        max: 7,
        names: DAYS,
        question: true,
    },
    Field {
        name: "year",
        min: 1970,
        max: 2100,
        names: &[],
        question: false,
    },
];

const SHORTHANDS: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];

/// `Ok` when `expr` is a schedule the daemon can run; otherwise what is wrong with it.
pub(crate) fn check_schedule(expr: &str) -> Result<(), String> {
    let t = expr.trim();
    if t.starts_with('@') {
        return if SHORTHANDS.contains(&t.to_ascii_lowercase().as_str()) {
            parse_schedule(t).map(|_| ())
        } else {
            Err(format!("unknown shorthand {t:?}; use one of {}", SHORTHANDS.join(", ")))
        };
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    match fields.len() {
        6 | 7 => {}
        5 => {
            return Err(format!(
                "{t:?} has 5 fields, but the schedule needs a seconds field first \
                 (sec min hour day-of-month month day-of-week [year]); for example \"0 {t}\""
            ))
        }
        n => {
            return Err(format!(
                "{t:?} has {n} fields; expected 6 or 7 (sec min hour day-of-month month day-of-week [year]), like \"0 */15 * * * *\""
            ))
        }
    }
    for (text, field) in fields.iter().zip(FIELDS.iter()) {
        check_field(text, field).map_err(|e| format!("{} field {text:?}: {e}", field.name))?;
    }
    // The checks above give the precise message; the crate the daemon schedules with has
    // the last word, so `check-config` never accepts what the daemon cannot run.
    parse_schedule(t).map(|_| ())
}

/// The schedule as the daemon runs it (the `cron` crate), or why it cannot be parsed.
pub fn parse_schedule(expr: &str) -> Result<::cron::Schedule, String> {
    let t = expr.trim();
    let t = if t.starts_with('@') {
        t.to_ascii_lowercase()
    } else {
        t.to_string()
    };
    t.parse::<::cron::Schedule>()
        .map_err(|e| format!("{:?} is not a schedule the daemon can run: {e}", expr.trim()))
}

fn check_field(text: &str, f: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n >= 1 => {}
                _ => return Err(format!("step {s:?} must be a whole number of at least 1")),
            }
        }
        match base {
            "*" => {}
            "?" if f.question => {}
            "?" => return Err("\"?\" is only allowed in day-of-month and day-of-week".into()),
            _ => match base.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a, f)?, value(b, f)?);
                    if a > b {
                        return Err(format!("range {base:?} runs backwards"));
                    }
                }
                None => {
                    value(base, f)?;
                }
            },
        }
    }
    Ok(())
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return if (f.min..=f.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is out of range {}-{}", f.min, f.max))
        };
    }
    let upper = text.to_ascii_uppercase();
    f.names
        .iter()
        .zip(f.min..)
        .find(|(aliases, _)| aliases.contains(&upper.as_str()))
        .map(|(_, n)| n)
        .ok_or_else(|| {
            if f.names.is_empty() {
                format!("{text:?} is not a number in {}-{}", f.min, f.max)
            } else {
                format!(
                    "{text:?} is neither a number in {}-{} nor a name like {}",
                    f.min, f.max, f.names[0][0]
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_six_and_seven_field_schedules_and_shorthands() {
        for ok in [
            "0 */15 * * * *",
            "0 0 2 * * MON-FRI",
            "30 5,35 8-18 ? JAN-dec 2,4,6",
            "0 0 9 * * Tues,thursday",
            "0 0 0 1 1 ? 2030",
            "0 0/5 * * * *",
            "@hourly",
        ] {
            assert_eq!(check_schedule(ok), Ok(()), "{ok}");
            // What check-config accepts, the scheduler runs, and it has a next tick.
            let s = parse_schedule(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(s.upcoming(chrono::Utc).next().is_some(), "{ok}");
        }
    }

    #[test]
    fn five_field_unix_cron_gets_the_seconds_hint() {
        let e = check_schedule("*/15 * * * *").unwrap_err();
        assert!(e.contains("seconds field"), "{e}");
        assert!(e.contains("\"0 */15 * * * *\""), "{e}");
    }

    #[test]
    fn rejects_bad_fields_naming_the_field() {
        for (bad, what) in [
            ("60 * * * * *", "seconds"),
            ("0 * 24 * * *", "hours"),
            ("0 * * 0 * *", "day-of-month"),
            ("0 * * * 13 *", "month"),
            ("0 * * * * FUNDAY", "day-of-week"),
            ("0 */0 * * * *", "minutes"),
            ("0 5-1 * * * *", "minutes"),
            ("? * * * * *", "seconds"),
            ("0 * * * * * * *", "8 fields"),
            ("@sometimes", "shorthand"),
        ] {
            let e = check_schedule(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }
}
