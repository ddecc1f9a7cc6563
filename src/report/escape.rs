//! Terminal escape injection: text that came from a directory or a server (a DN, a name,
//! an error body) is shown with its control characters made visible, so a hostile value
//! cannot clear the screen, move the cursor, recolour or reorder what a human reads.
//!
//! [`neutralise`] is the one function that decides this; every human-readable renderer,
//! the CLI's stdout/stderr and the log writer pass their text through it, and
//! [`write_json`] applies it to the JSON reports' strings. A control character becomes
//! `\xHH` (C0) or `\uHHHH` (DEL, C1, bidi controls). The latter is also a JSON escape,
//! so JSON stays valid and still decodes to the exact value: C0 never reaches it raw
//! (serde_json escapes C0 itself), and DEL, C1 and bidi controls can only occur inside
//! JSON strings.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What the caller's own layout puts in the text and must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: the text is one value or one line (newlines in it are escaped too).
    Nothing,
    /// Newlines and tabs: a whole rendered report, error or log line.
    Layout,
    /// Newlines, tabs and ESC: text whose only ESCs are the colour codes its formatter
    /// added, because that formatter already escaped ESC in the values (tracing's
    /// coloured log lines do).
    LayoutAndEsc,
}

/// `s` with every control character a terminal would act on shown as text: C0 controls
/// (except what `keep` keeps), DEL, C1 controls (U+0080–U+009F, including the one-byte
/// CSI U+009B) and the bidi embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069). Borrows when there is nothing to change, which is the common case,
/// found by one pass over the bytes.
pub fn neutralise(s: &str, keep: Keep) -> Cow<'_, str> {
    let Some(first) = first_unsafe(s.as_bytes(), keep) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if is_unsafe(c, keep) {
            let n = u32::from(c);
            // Infallible: writing to a String.
            let _ = if n < 0x20 {
                write!(out, "\\x{n:02x}")
            } else {
                write!(out, "\\u{n:04x}")
            };
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`neutralise`] for an owned string: no copy when it is clean.
pub fn neutralised(s: String, keep: Keep) -> String {
    match neutralise(&s, keep) {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => o,
    }
}

fn is_unsafe(c: char, keep: Keep) -> bool {
    match c {
        '\n' | '\t' => keep == Keep::Nothing,
        '\x1b' => keep != Keep::LayoutAndEsc,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// The byte offset of the first character [`is_unsafe`] rejects, read off the UTF-8
/// bytes: C1 controls are `C2 80`–`C2 9F`, the bidi controls `E2 80 AA`–`E2 80 AE` and
/// `E2 81 A6`–`E2 81 A9`. The offset is a character boundary (ASCII or a lead byte).
fn first_unsafe(b: &[u8], keep: Keep) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        let hit = match x {
            0x20..=0x7e => false,
            b'\n' | b'\t' => keep == Keep::Nothing,
            0x1b => keep != Keep::LayoutAndEsc,
            0x00..=0x1f | 0x7f => true,
            0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
            0xe2 => matches!(
                (b.get(i + 1), b.get(i + 2)),
                (Some(0x80), Some(0xaa..=0xae)) | (Some(0x81), Some(0xa6..=0xa9))
            ),
            _ => false,
        };
        if hit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// serde_json's pretty formatter with every string fragment passed through
/// [`neutralise`], so a JSON report piped to a terminal cannot act on it either, while
/// any JSON reader gets the exact value back.
struct Formatter(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for Formatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        // serde_json hands over the text between its own escapes: no C0 is left in it.
        w.write_all(neutralise(fragment, Keep::Layout).as_bytes())
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Pretty JSON of `value` into `w`, strings neutralised (see [`Formatter`]). Every JSON
/// report is written by this.
pub fn write_json<T: serde::Serialize + ?Sized>(w: impl std::io::Write, value: &T) -> Result<(), serde_json::Error> {
    let mut ser = serde_json::Serializer::with_formatter(w, Formatter(serde_json::ser::PrettyFormatter::new()));
    value.serialize(&mut ser)
}

/// [`write_json`] into a string, with a trailing newline.
pub fn json_string<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    write_json(&mut buf, value)?;
    buf.push(b'\n');
    // serde_json writes UTF-8 only, and neutralise keeps it UTF-8.
    Ok(String::from_utf8(buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a\x1b[2Jb\x07c\u{9b}31md\u{202e}e\r\x7f\u{2066}f";

    #[test]
    fn clean_text_is_borrowed_not_copied() {
        for s in [
            "",
            "jane@example.com",
            "cn=ml,ou=groups",
            "Zoë Ångström 日本 👍",
            "tab\tand\nnewline",
        ] {
            assert!(matches!(neutralise(s, Keep::Layout), Cow::Borrowed(_)), "{s:?}");
        }
        // Near misses of the multi-byte controls stay as they are.
        for s in ["\u{a0}", "\u{2029}", "\u{202f}", "\u{2065}", "\u{206a}", "\u{2019}"] {
            assert!(matches!(neutralise(s, Keep::Nothing), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn every_terminal_control_is_made_visible() {
        assert_eq!(
            neutralise(HOSTILE, Keep::Layout),
            "a\\x1b[2Jb\\x07c\\u009b31md\\u202ee\\x0d\\u007f\\u2066f"
        );
        let all: String = ('\0'..='\u{9f}')
            .chain('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .collect();
        let out = neutralise(&all, Keep::Nothing);
        assert!(out.chars().all(|c| (' '..='~').contains(&c)), "{out:?}");
        // Printable ASCII passes through among the escapes.
        assert!(out.contains(" !\"#"), "{out:?}");
    }

    #[test]
    fn layout_is_kept_only_when_asked() {
        assert_eq!(neutralise("a\nb\tc", Keep::Layout), "a\nb\tc");
        assert_eq!(neutralise("a\nb\tc", Keep::Nothing), "a\\x0ab\\x09c");
        assert_eq!(neutralise("\x1b[31mred\x1b[0m\r", Keep::LayoutAndEsc), "\x1b[31mred\x1b[0m\\x0d");
    }

    #[test]
    fn every_char_the_byte_scan_passes_is_safe() {
        // The fast path and the slow path agree on every character class boundary.
        for n in (0..0x300).chain(0x2000..0x2100).chain([0xfeff, 0x1f600]) {
            let Some(c) = char::from_u32(n) else { continue };
            let s = format!("x{c}y");
            for keep in [Keep::Nothing, Keep::Layout, Keep::LayoutAndEsc] {
                let scan = first_unsafe(s.as_bytes(), keep).is_some();
                assert_eq!(scan, is_unsafe(c, keep), "U+{n:04X} {keep:?}");
            }
        }
    }

    #[test]
    fn json_stays_exact_and_carries_no_raw_control() {
        let value = serde_json::json!({ "name": HOSTILE, "list": [HOSTILE, "plain \\ \u{9b}"] });
        let text = json_string(&value).unwrap();
        assert!(!text.chars().any(|c| is_unsafe(c, Keep::Layout)), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        // Still pretty, like serde_json's own.
        assert_eq!(
            json_string(&serde_json::json!({"a": [1]})).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}\n"
        );
    }
}
