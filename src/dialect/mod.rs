//! Dialects: how an `Event` is written on the wire for each family of consumers.
//!
//! `native` is the project's own JSON; `routr`, `enswitch` and `portsip` reproduce the
//! wire formats that existing consumers of those systems already parse.
//!
//! A new dialect is a file here with one pure function,
//! `encode(&Event, &mut Encoded) -> Result<…, EncodeError>`: it writes the event's bytes
//! into the caller's buffer (never allocating), returns what the sink needs besides the
//! bytes (a subject suffix, or `None` for an event the dialect does not send), and is
//! tested against the consumer's documented or recorded payloads. It knows nothing of
//! sockets: the sinks choose a dialect by config and carry its bytes.

pub mod enswitch;
pub mod native;
pub mod portsip;
pub mod routr;

/// Largest encoded event, in bytes. Events are written into buffers of this size; an
/// event that does not fit is an `EncodeError::TooLarge` (it cannot happen with the
/// field bounds in `event`, and a test checks the largest possible event fits).
pub const MAX_ENCODED_LEN: usize = 16 * 1024;

/// A buffer holding one encoded event: `MAX_ENCODED_LEN` bytes, zeroed once when made, so
/// that writing an event neither clears nor copies the whole buffer. Reads as the bytes
/// written so far.
pub struct Encoded {
    bytes: [u8; MAX_ENCODED_LEN],
    len: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("encoded event larger than {MAX_ENCODED_LEN} bytes")]
    TooLarge,
}

impl Encoded {
    pub const fn new() -> Self {
        Encoded {
            bytes: [0; MAX_ENCODED_LEN],
            len: 0,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`; when they do not fit, nothing is appended.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(EncodeError::TooLarge)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// Writes `value` as JSON into `out` in place of what it held, with serde-json-core: no
/// allocation, no copy. On error `out` is left empty.
pub fn write_json(value: &impl serde::Serialize, out: &mut Encoded) -> Result<(), EncodeError> {
    out.len = 0;
    out.len =
        serde_json_core::to_slice(value, &mut out.bytes).map_err(|_| EncodeError::TooLarge)?;
    Ok(())
}

/// A string for `write_json`. serde-json-core checks every char for escaping; a string with
/// nothing to escape (no `"`, `\\` or control character: nearly all of them) is handed over
/// as already escaped, which it copies byte by byte, two to three times faster.
#[derive(Clone, Copy)]
pub struct JsonStr<'a>(pub &'a str);

impl serde::Serialize for JsonStr<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            serde_json_core::str::EscapedStr(self.0).serialize(s)
        } else {
            s.serialize_str(self.0)
        }
    }
}

impl Default for Encoded {
    fn default() -> Self {
        Encoded::new()
    }
}

impl core::ops::Deref for Encoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl core::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Encoded({:?})", String::from_utf8_lossy(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = Encoded::new();
        write_json(&JsonStr(s), &mut out).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn json_strings_are_escaped_only_where_needed() {
        assert_eq!(json("PJSIP/101-00000000"), r#""PJSIP/101-00000000""#);
        assert_eq!(json("Zoë ☎"), r#""Zoë ☎""#);
        assert_eq!(json(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json("tab\there\u{1}"), r#""tab\there\u0001""#);
        assert_eq!(json(""), r#""""#);
    }

    #[test]
    fn a_write_that_does_not_fit_leaves_the_buffer_as_it_was_or_empty() {
        let mut out = Encoded::new();
        out.extend_from_slice(b"abc").unwrap();
        let big = [b'x'; MAX_ENCODED_LEN];
        assert_eq!(out.extend_from_slice(&big), Err(EncodeError::TooLarge));
        assert_eq!(&out[..], b"abc");
        let big = "y".repeat(MAX_ENCODED_LEN);
        assert_eq!(
            write_json(&JsonStr(&big), &mut out),
            Err(EncodeError::TooLarge)
        );
        assert!(out.is_empty());
    }
}
