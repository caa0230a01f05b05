//! Which AMI read classes the manager user has, and what pbxtap cannot see without each.
//!
//! Asterisk never tells a manager session what it may read: events of a class the user
//! lacks are left out in silence. pbxtap runs beside Asterisk, so it reads the user's
//! `read =` lines from `manager.conf` (`ami.manager_conf`), and says at start-up, once,
//! which events it will not see. `read_classes` and `missing` are pure; `check` reads the
//! file, bounded.

use super::config::AmiConfig;

/// The read classes pbxtap uses, and what each brings.
pub const CLASSES: [(&str, &str); 6] = [
    (
        "system",
        "endpoint.registered / endpoint.unregistered (ContactStatus) and trunk.* (Registry)",
    ),
    ("call", "call.*, target.* and endpoint.presence"),
    ("agent", "queue.caller_* and queue.agent_status"),
    ("cdr", "call.cdr"),
    (
        "security",
        "system.login_failures (bursts of failed SIP and AMI logins)",
    ),
    (
        "dialplan",
        "extra headers from X- variables set in the dialplan (VarSet)",
    ),
];

/// Largest `manager.conf` read; a larger one is not checked.
pub const MAX_MANAGER_CONF: u64 = 1024 * 1024;

/// The read classes of `user` in the text of a `manager.conf` (with one level of
/// templates, `[user](template)`); `None` when there is no such section.
pub fn read_classes(text: &str, user: &str) -> Option<Vec<String>> {
    let mut sections: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix('[') {
            let (name, tail) = rest.split_once(']').unwrap_or((rest, ""));
            let parents = tail
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "!")
                .map(String::from)
                .collect();
            sections.push((name.trim().to_string(), parents, Vec::new()));
        } else if let Some((key, value)) = line.split_once('=') {
            if key.trim().eq_ignore_ascii_case("read") {
                if let Some((_, _, read)) = sections.last_mut() {
                    read.extend(
                        value
                            .trim_start_matches('>')
                            .split(',')
                            .map(|c| c.trim().to_ascii_lowercase())
                            .filter(|c| !c.is_empty()),
                    );
                }
            }
        }
    }
    let (_, parents, own) = sections.iter().find(|(name, _, _)| name == user)?;
    let mut all = own.clone();
    for p in parents {
        if let Some((_, _, read)) = sections.iter().find(|(name, _, _)| name == p) {
            all.extend(read.iter().cloned());
        }
    }
    Some(all)
}

/// The classes of [`CLASSES`] that neither `read` (the user's) nor `events` (the login's
/// `Events:` mask) lets through, with what each takes away.
pub fn missing(read: &[String], events: &str) -> Vec<(&'static str, &'static str)> {
    let has = |list: &[String], class: &str| list.iter().any(|c| c == "all" || c == class);
    let mask: Vec<String> = events
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let mask_all = mask.iter().any(|c| c == "on" || c == "all");
    CLASSES
        .iter()
        .copied()
        // The login mask decides what is asked for; `dialplan` is asked for only by name.
        .filter(|(class, _)| mask_all || has(&mask, class) || *class != "dialplan")
        .filter(|(class, _)| !has(read, class) || !(mask_all || has(&mask, class)))
        .collect()
}

/// The classes the configured user lacks, from `ami.manager_conf`; `Err` says why it
/// cannot be told (no file, too large, no section for the user).
pub fn check(cfg: &AmiConfig) -> Result<Vec<(&'static str, &'static str)>, String> {
    let path = &cfg.manager_conf;
    let text = crate::settings::read_limited(path, MAX_MANAGER_CONF)
        .map_err(|why| format!("{}: {why}", path.display()))?;
    let read = read_classes(&text, &cfg.username).ok_or_else(|| {
        format!(
            "{} has no [{}] section (included files are not read)",
            path.display(),
            cfg.username
        )
    })?;
    Ok(missing(&read, &cfg.events))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "[general]\nenabled = yes\n\n[tpl](!)\nread = agent ; queues\n\n\
                        [pbxtap](tpl)\nsecret = x\nread = system,call\nread = user\n\n\
                        [admin]\nread = all\n";

    #[test]
    fn a_users_read_lines_and_its_template_are_its_classes() {
        let pbxtap = read_classes(CONF, "pbxtap").unwrap();
        assert_eq!(pbxtap, ["system", "call", "user", "agent"]);
        assert_eq!(read_classes(CONF, "admin").unwrap(), ["all"]);
        assert_eq!(read_classes(CONF, "nobody"), None);
    }

    #[test]
    fn missing_classes_are_named_with_what_they_take_away() {
        let read = read_classes(CONF, "pbxtap").unwrap();
        let gone = missing(&read, "system,call,agent,user,cdr,security");
        assert_eq!(
            gone.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ["cdr", "security"]
        );
        assert!(gone[0].1.contains("call.cdr"));
        // Not asked for at login: not seen either, whatever the user may read.
        let gone = missing(&["all".to_string()], "system,call");
        assert_eq!(
            gone.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            ["agent", "cdr", "security"]
        );
        assert!(missing(&["all".to_string()], "on").is_empty());
    }
}
