//! Local channels: the dialplan's plumbing, never a party. `Local/102@from-internal-0000002a;1`
//! is the half the dialler holds, `...;2` the half that runs the dialplan (and dials the
//! phone, the trunk, or another Local channel). FreePBX routes nearly every call through
//! them: extensions, ring groups, follow-me, queue members, click-to-dial.
//!
//! A name tells all that is needed: which half, and which channel is the other half (the
//! same name but the last character). Pure.

/// Which half of a Local channel pair a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// `;1`: what the dialler (or an Originate) holds.
    One,
    /// `;2`: the half that runs the dialplan.
    Two,
}

/// The half of a Local channel `name` is, or `None` for any other channel.
pub fn half(name: &str) -> Option<Half> {
    if !name.starts_with("Local/") {
        return None;
    }
    if name.ends_with(";1") {
        Some(Half::One)
    } else if name.ends_with(";2") {
        Some(Half::Two)
    } else {
        None
    }
}

/// Whether `a` and `b` are the two halves of one Local channel.
pub fn pair(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.len() > 2 && a[..a.len() - 2] == b[..b.len() - 2] && a != b
}

/// The extension a Local channel runs: `Local/102@from-internal-0000002a;1` → `102`.
pub fn exten(name: &str) -> &str {
    let rest = name.strip_prefix("Local/").unwrap_or(name);
    rest.split_once('@').map_or(rest, |(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_pairs_and_extensions_from_names() {
        let one = "Local/102@from-internal-0000002a;1";
        let two = "Local/102@from-internal-0000002a;2";
        assert_eq!(half(one), Some(Half::One));
        assert_eq!(half(two), Some(Half::Two));
        assert_eq!(half("PJSIP/102-00000001"), None);
        assert_eq!(half("SIP/alice-0000ab;1"), None);
        assert!(pair(one, two) && pair(two, one));
        assert!(!pair(one, one));
        assert!(!pair(one, "Local/103@from-internal-0000002a;2"));
        assert_eq!(exten(one), "102");
        assert_eq!(
            exten("Local/FMGL-102#@from-internal-00000003;2"),
            "FMGL-102#"
        );
    }
}
