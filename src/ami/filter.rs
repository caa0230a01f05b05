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

/// The `Filter` actions for `wanted`, plus `FullyBooted` (which the client watches): one
/// include filter on the `Event` header for the names, and one for `VarSet` by variable.
/// Asterisk sends an event that any include filter lets through.
pub fn actions(wanted: &Wanted) -> String {
    let names: Vec<&str> = wanted
        .events
        .iter()
        .copied()
        .filter(|&n| !(n == "VarSet" && wanted.variables.is_some()))
        .chain(["FullyBooted"])
        .collect();
    let mut filters = vec![(
        "action(include),header(Event),method(regex)",
        format!("^({})$", names.join("|")),
    )];
    if let Some(variables) = wanted.variables {
        filters.push((
            "action(include),name(VarSet),header(Variable),method(regex)",
            variables.to_string(),
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
    fn one_filter_for_the_names_and_one_for_x_variables() {
        let wanted = Wanted {
            events: &["Newchannel", "VarSet", "Hangup"],
            variables: Some("[xX]-"),
        };
        assert_eq!(
            actions(&wanted),
            "Action: Filter\r\nActionID: pbxtap-filter-0\r\nOperation: Add\r\n\
             MatchCriteria: action(include),header(Event),method(regex)\r\n\
             Filter: ^(Newchannel|Hangup|FullyBooted)$\r\n\r\n\
             Action: Filter\r\nActionID: pbxtap-filter-last\r\nOperation: Add\r\n\
             MatchCriteria: action(include),name(VarSet),header(Variable),method(regex)\r\n\
             Filter: [xX]-\r\n\r\n"
        );
        let every_varset = Wanted {
            events: &["VarSet"],
            variables: None,
        };
        assert_eq!(
            actions(&every_varset),
            "Action: Filter\r\nActionID: pbxtap-filter-last\r\nOperation: Add\r\n\
             MatchCriteria: action(include),header(Event),method(regex)\r\n\
             Filter: ^(VarSet|FullyBooted)$\r\n\r\n"
        );
    }
}
