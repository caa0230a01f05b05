//! The capture file (`pbxtap capture` writes it, `pbxtap replay` reads it): a few header
//! lines (`# key: value`: what wrote it, Asterisk's version, when), then the AMI byte
//! stream as Asterisk sent it, from its banner on. The project's own recordings are the
//! same without the header. Pure: what the commands read and write passes through here.
//!
//! Also the redaction `--redact` asks for: each value given is replaced, wherever it
//! appears in a message, by a stable placeholder (the same value, the same placeholder).

use std::borrow::Cow;

/// The first header line, and the prefix of every header line.
pub const MAGIC: &str = "# pbxtap capture 1";
const HEADER_PREFIX: &[u8] = b"# ";
/// What every AMI stream opens with.
pub const BANNER_PREFIX: &[u8] = b"Asterisk Call Manager/";
/// Longest line shown in an error.
const SHOWN: usize = 60;

/// Where the message at the start of `data` ends: after its blank line (CRLF CRLF).
pub fn message_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The header lines for a capture (each ending CRLF).
pub fn header(asterisk: &str, pbxtap: &str, captured: &str, redacted: usize) -> String {
    format!(
        "{MAGIC}\r\n# asterisk: {asterisk}\r\n# pbxtap: {pbxtap}\r\n# captured: {captured}\r\n# redacted values: {redacted}\r\n"
    )
}

/// Why a file is not an AMI recording: the line (1-based) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAmi {
    pub line: usize,
    pub why: String,
}

impl std::fmt::Display for NotAmi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// A line as an error shows it: lossy UTF-8, cut to [`SHOWN`] characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out: String = text.chars().take(SHOWN).collect();
    if text.chars().count() > SHOWN {
        out.push_str("...");
    }
    out
}

/// A header line of an AMI message: empty (the end of a message), or `Key: value` with a
/// key of visible ASCII and no space.
fn is_ami_line(line: &[u8]) -> bool {
    if line.is_empty() {
        return true;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0 && line[..colon].iter().all(|b| b.is_ascii_graphic())
}

/// Checks that `data` is an AMI recording, a capture or one of the project's: optional
/// `# ` header lines, the banner, then `Key: value` lines and blank lines. Returns the
/// stream from the banner on, with bare LF line ends made CRLF (a file edited by hand).
pub fn check(data: &[u8]) -> Result<Cow<'_, [u8]>, NotAmi> {
    let mut start = 0;
    let mut line_no = 0;
    let mut banner_seen = false;
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let raw = &data[pos..end];
        let line = raw
            .strip_suffix(b"\n")
            .map_or(raw, |l| l.strip_suffix(b"\r").unwrap_or(l));
        line_no += 1;
        if !banner_seen {
            if line.starts_with(HEADER_PREFIX) || line == b"#" {
                pos = end;
                continue;
            }
            if !line.starts_with(BANNER_PREFIX) {
                return Err(NotAmi {
                    line: line_no,
                    why: format!(
                        "not an AMI recording: expected Asterisk's banner `Asterisk Call Manager/...`, found `{}`",
                        shown(line)
                    ),
                });
            }
            banner_seen = true;
            start = pos;
        } else if !is_ami_line(line) {
            return Err(NotAmi {
                line: line_no,
                why: format!("not an AMI line (`Key: value`): `{}`", shown(line)),
            });
        }
        pos = end;
    }
    if !banner_seen {
        return Err(NotAmi {
            line: line_no.max(1),
            why: "not an AMI recording: no Asterisk banner (`Asterisk Call Manager/...`)".into(),
        });
    }
    let body = &data[start..];
    let bare_lf = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'));
    if !bare_lf {
        return Ok(Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Ok(Cow::Owned(out))
}

/// The values `--redact` names and their placeholders.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest value first, so that a value inside another is not replaced first.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The placeholder of the `n`-th value (1-based): digits of the same length for a number,
/// so that what pbxtap reads from its length (the direction) stays as it was; else
/// `redacted-n`.
fn placeholder(value: &str, n: usize) -> String {
    let digits = n.to_string();
    let (lead, other) = if value.bytes().all(|b| b.is_ascii_digit()) && value.len() > digits.len() {
        let width = value.len() - 1;
        (format!("9{digits:0>width$}"), format!("8{digits:0>width$}"))
    } else {
        (format!("redacted-{n}"), format!("redacted-{n}x"))
    };
    // Never the value itself (`91` is the first number's `9` and `1`).
    if lead == value {
        other
    } else {
        lead
    }
}

impl Redactor {
    /// Replaces each of `values`; an empty value, or one holding a line break, is refused
    /// (it would match everywhere, or never).
    pub fn new(values: &[String]) -> Result<Redactor, String> {
        let mut pairs = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            if v.is_empty() || v.contains(['\r', '\n']) {
                return Err(format!(
                    "--redact value {} is empty or holds a line break",
                    i + 1
                ));
            }
            if pairs
                .iter()
                .any(|(p, _): &(Vec<u8>, Vec<u8>)| p == v.as_bytes())
            {
                continue;
            }
            pairs.push((v.as_bytes().to_vec(), placeholder(v, i + 1).into_bytes()));
        }
        pairs.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        Ok(Redactor { pairs })
    }

    /// How many distinct values it replaces.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `message` with every value replaced.
    pub fn apply<'a>(&self, message: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(message);
        for (value, with) in &self.pairs {
            if !out.windows(value.len()).any(|w| w == value.as_slice()) {
                continue;
            }
            let mut next = Vec::with_capacity(out.len());
            let mut i = 0;
            while i < out.len() {
                if out[i..].starts_with(value) {
                    next.extend_from_slice(with);
                    i += value.len();
                } else {
                    next.push(out[i]);
                    i += 1;
                }
            }
            out = Cow::Owned(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_and_a_project_recording_both_check_from_their_banner() {
        let rec = include_bytes!("../../tests/fixtures/ami/02-call-answered.ami");
        assert_eq!(check(rec).unwrap().as_ref(), &rec[..]);
        let mut capture = header("22.10.1", "0.1.0", "2026-12-07T20:00:00Z", 0).into_bytes();
        capture.extend_from_slice(rec);
        assert_eq!(check(&capture).unwrap().as_ref(), &rec[..]);
    }

    #[test]
    fn a_file_that_is_not_ami_names_the_line() {
        let err = check(b"{\"v\":1}\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            err.why.contains("banner") && err.why.contains("{\"v\":1}"),
            "{err}"
        );
        let err = check(
            b"# pbxtap capture 1\r\nAsterisk Call Manager/11.0.0\r\nEvent: A\r\nthis is not\r\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 4: not an AMI line (`Key: value`): `this is not`"
        );
        assert_eq!(check(b"").unwrap_err().line, 1);
        assert!(check(b"# only a header\n")
            .unwrap_err()
            .why
            .contains("no Asterisk banner"));
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        let got = check(b"Asterisk Call Manager/11.0.0\nEvent: A\n\n").unwrap();
        assert_eq!(
            got.as_ref(),
            b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\n"
        );
    }

    #[test]
    fn values_are_redacted_with_stable_placeholders() {
        let r =
            Redactor::new(&["0155501234".into(), "Alice".into(), "Alice Smith".into()]).unwrap();
        assert_eq!(r.len(), 3);
        let msg = b"CallerIDNum: 0155501234\r\nCallerIDName: Alice Smith\r\nConnectedLineName: Alice\r\nExten: 0155501234\r\n\r\n";
        assert_eq!(
            String::from_utf8(r.apply(msg).into_owned()).unwrap(),
            "CallerIDNum: 9000000001\r\nCallerIDName: redacted-3\r\nConnectedLineName: redacted-2\r\nExten: 9000000001\r\n\r\n"
        );
        assert!(matches!(r.apply(b"Event: X\r\n\r\n"), Cow::Borrowed(_)));
        // A number that looks like its own placeholder still changes.
        let r = Redactor::new(&["91".into()]).unwrap();
        assert_eq!(r.apply(b"Exten: 91\r\n").as_ref(), b"Exten: 81\r\n");
        assert!(Redactor::new(&[String::new()])
            .unwrap_err()
            .contains("value 1"));
        assert!(Redactor::new(&["a\nb".into()]).is_err());
    }
}
