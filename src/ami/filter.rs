//! Filters at the source: the AMI `Filter` actions that make Asterisk send only the events
//! pbxtap reads, so that the PBX neither formats nor writes the rest (on a call, two
//! messages in three are events pbxtap passes over: `VarSet`, `Newexten`, `CEL`, bridges).
//!
//! Asterisk 18.26, 20.11, 21.6, 22.1 and later match a filter against one header's value
//! (`MatchCriteria`); older versions would read the same action as a regular expression over
//! the whole event and let nothing through, so the session asks `CoreSettings` for the
//! version first and sends these only where they work. Elsewhere, and when Asterisk refuses
//! them (the AMI user needs `write = system`), everything comes and the parser passes over
//! what is not read (`frame::EventFilter`), as before. Filters last as long as the session.
//! Pure: the session sends what this writes.

/// What a handler reads, for Asterisk to filter on.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// The names of the events read.
    pub events: &'static [&'static str],
    /// Of `VarSet` events, only those whose `Variable` matches this regular expression
    /// (`None`: every `VarSet` in `events`).
    pub variables: Option<&'static str>,
}

/// ActionID prefix of the filter actions; the last one ends with [`LAST`].
pub const ACTION_ID: &str = "pbxtap-filter-";
/// Suffix of the last filter action's ActionID.
pub const LAST: &str = "last";

/// Versions whose `Filter` action takes `MatchCriteria`: `(major, first minor)`; every
/// major after the last has it.
const ADVANCED_SINCE: [(u32, u32); 4] = [(18, 26), (20, 11), (21, 6), (22, 1)];

/// Whether Asterisk `version` (`CoreSettings`' `AsteriskVersion`: `22.10.1`) filters by
/// header. Certified, Git and other builds not numbered `major.minor` are taken as not.
pub fn advanced(version: &str) -> bool {
    let mut parts = version.split(['.', '-']);
    let (Some(Ok(major)), Some(Ok(minor))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<u32>),
    ) else {
        return false;
    };
    let last = ADVANCED_SINCE[ADVANCED_SINCE.len() - 1].0;
    major > last
        || ADVANCED_SINCE
            .iter()
            .any(|&(m, since)| m == major && minor >= since)
}

/// The `Filter` actions for `wanted`, plus `FullyBooted` (which the client watches): an
/// include filter per event name, and one for `VarSet` by variable. Asterisk sends an
/// event that any include filter lets through.
///
/// A filter on the name alone (`name(Newchannel)`, no pattern) is the cheapest Asterisk
/// has: it compares the event name's hash, which Asterisk computes once per event. One
/// regular expression over the `Event` header instead makes Asterisk copy each event and
/// scan its lines for every session, which cost it more than writing every event did
/// (`benches/asterisk_cost.rs`, docs/performance.md).
pub fn actions(wanted: &Wanted) -> String {
    let names = wanted
        .events
        .iter()
        .copied()
        .filter(|&n| !(n == "VarSet" && wanted.variables.is_some()))
        .chain(["FullyBooted"]);
    let mut filters: Vec<(String, &str)> = names
        .map(|n| (format!("action(include),name({n})"), ""))
        .collect();
    if let Some(variables) = wanted.variables {
        filters.push((
            "action(include),name(VarSet),header(Variable),method(regex)".to_string(),
            variables,
        ));
    }
    let n = filters.len();
    filters
        .iter()
        .enumerate()
        .map(|(i, (criteria, filter))| {
            // The last action's id says the filters are all answered.
            let id = if i + 1 == n {
                LAST.to_string()
            } else {
                i.to_string()
            };
            format!(
                "Action: Filter\r\nActionID: {ACTION_ID}{id}\r\nOperation: Add\r\n\
                 MatchCriteria: {criteria}\r\nFilter: {filter}\r\n\r\n"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_with_header_filters() {
        for yes in [
            "18.26.0",
            "20.11.1",
            "21.6.0",
            "22.1.0",
            "22.10.1",
            "23.0.0-rc1",
            "30.1",
        ] {
            assert!(advanced(yes), "{yes}");
        }
        for no in [
            "18.25.9",
            "19.8.0",
            "20.10.0",
            "21.5.1",
            "22.0.0",
            "17.9.4",
            "certified-20.7-cert5",
            "GIT-master-1234abc",
            "",
            "22",
        ] {
            assert!(!advanced(no), "{no}");
        }
    }

    #[test]
    fn a_filter_per_name_and_one_for_x_variables() {
        let wanted = Wanted {
            events: &["Newchannel", "VarSet", "Hangup"],
            variables: Some("[xX]-"),
        };
        let filter = |id: &str, criteria: &str, pattern: &str| {
            format!(
                "Action: Filter\r\nActionID: pbxtap-filter-{id}\r\nOperation: Add\r\n\
                 MatchCriteria: {criteria}\r\nFilter: {pattern}\r\n\r\n"
            )
        };
        assert_eq!(
            actions(&wanted),
            filter("0", "action(include),name(Newchannel)", "")
                + &filter("1", "action(include),name(Hangup)", "")
                + &filter("2", "action(include),name(FullyBooted)", "")
                + &filter(
                    "last",
                    "action(include),name(VarSet),header(Variable),method(regex)",
                    "[xX]-"
                )
        );
        let every_varset = Wanted {
            events: &["VarSet"],
            variables: None,
        };
        assert_eq!(
            actions(&every_varset),
            filter("0", "action(include),name(VarSet)", "")
                + &filter("last", "action(include),name(FullyBooted)", "")
        );
    }
}
