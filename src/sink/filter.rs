//! Per-customer feeds: a sink's `[sinks.filter]` lets through only the events of one
//! customer, told by the call's Asterisk account code, dialplan context or tenant, or by
//! extension. Pure (no I/O); a fixed table of the calls let through.
//!
//! A call belongs to the feed when its `call.started` matches: its `account_code`,
//! `context` or `tenant_id` is listed, or its caller or callee is one of `extensions`.
//! Every later event of that call (targets, queue, end, CDR) follows it. Registrations and
//! presence go by extension, a queue member's status by its endpoint. `system.*` events
//! are about the appliance, not a customer: a filtered feed does not get them.

use heapless::Deque;
use serde::Deserialize;

use crate::event::{Body, Event, Id};
use crate::settings::ConfigError;

/// Most values in one list of a filter.
pub const MAX_VALUES: usize = 64;
/// Calls a filter remembers as let through; the oldest is forgotten past this (a call
/// older than the 256 calls started after it may lose its last events).
pub const MAX_CALLS: usize = 256;

/// `[sinks.filter]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub account_codes: Vec<String>,
    pub contexts: Vec<String>,
    pub tenant_ids: Vec<String>,
    pub extensions: Vec<String>,
}

impl FilterConfig {
    /// Checks the table at `key` (`sinks[1].filter`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let lists = [
            ("account_codes", &self.account_codes),
            ("contexts", &self.contexts),
            ("tenant_ids", &self.tenant_ids),
            ("extensions", &self.extensions),
        ];
        if lists.iter().all(|(_, l)| l.is_empty()) {
            return Err(ConfigError::new(
                key,
                "names no account_codes, contexts, tenant_ids or extensions: it would let nothing through (remove it to send everything)",
            ));
        }
        for (name, list) in lists {
            if list.len() > MAX_VALUES {
                return Err(ConfigError::new(
                    format!("{key}.{name}"),
                    format!("at most {MAX_VALUES} values"),
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|v| v.is_empty() || v.len() > crate::event::TEXT_LEN)
            {
                return Err(ConfigError::new(
                    format!("{key}.{name}"),
                    format!(
                        "`{bad}`: each value is 1 to {} bytes",
                        crate::event::TEXT_LEN
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A filter at work: its settings and the calls it let through.
#[derive(Debug)]
pub struct Filter {
    cfg: FilterConfig,
    calls: Deque<Id, MAX_CALLS>,
}

impl Filter {
    pub fn new(cfg: FilterConfig) -> Self {
        Filter {
            cfg,
            calls: Deque::new(),
        }
    }

    fn extension(&self, ext: &str) -> bool {
        listed(&self.cfg.extensions, ext)
    }

    /// Whether `ev` belongs to this feed.
    pub fn admits(&mut self, ev: &Event) -> bool {
        match &ev.body {
            Body::CallStarted(c) => {
                let mine = listed(&self.cfg.account_codes, &c.account_code)
                    || listed(&self.cfg.contexts, &c.context)
                    || listed(&self.cfg.tenant_ids, &c.tenant_id)
                    || self.extension(&c.from)
                    || self.extension(&c.to);
                if mine {
                    if self.calls.is_full() {
                        self.calls.pop_front();
                    }
                    // Cannot fail: room was made above.
                    let _ = self.calls.push_back(c.call_id.clone());
                }
                mine
            }
            Body::EndpointRegistered(r) | Body::EndpointUnregistered(r) => self.extension(&r.aor),
            Body::EndpointPresence(p) => self.extension(&p.extension),
            Body::QueueAgentStatus(a) => {
                // `PJSIP/102` → `102`.
                let endpoint = a.agent.rsplit('/').next().unwrap_or("");
                self.extension(endpoint)
            }
            body => match body.call_id() {
                Some(id) => self.calls.iter().any(|c| c == id),
                None => false,
            },
        }
    }
}

/// Whether `value` (not empty) is in `list`.
fn listed(list: &[String], value: &str) -> bool {
    !value.is_empty() && list.iter().any(|x| x == value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{text, CallEnded, CallStarted, Presence, QueueAgent, Registration};

    fn ev(body: Body) -> Event {
        Event::new(1, &text("h"), body)
    }

    fn start(id: &str, from: &str, to: &str, context: &str) -> Event {
        ev(Body::CallStarted(CallStarted {
            call_id: text(id),
            from: text(from),
            to: text(to),
            context: text(context),
            ..Default::default()
        }))
    }

    fn end(id: &str) -> Event {
        ev(Body::CallEnded(CallEnded {
            call_id: text(id),
            ..Default::default()
        }))
    }

    #[test]
    fn a_call_follows_its_start_and_other_customers_calls_stay_out() {
        let mut acme = Filter::new(FilterConfig {
            contexts: vec!["acme".into()],
            extensions: vec!["201".into()],
            ..Default::default()
        });
        assert!(acme.admits(&start("1.1", "101", "102", "acme")));
        assert!(!acme.admits(&start("2.1", "103", "104", "globex")));
        assert!(
            acme.admits(&start("3.1", "105", "201", "globex")),
            "to an extension of ours"
        );
        assert!(acme.admits(&end("1.1")));
        assert!(!acme.admits(&end("2.1")));
        let reg = |aor: &str| {
            ev(Body::EndpointRegistered(Registration {
                aor: text(aor),
                ..Default::default()
            }))
        };
        assert!(acme.admits(&reg("201")) && !acme.admits(&reg("202")));
        let presence = ev(Body::EndpointPresence(Presence {
            extension: text("201"),
            ..Default::default()
        }));
        assert!(acme.admits(&presence));
        let agent = ev(Body::QueueAgentStatus(QueueAgent {
            agent: text("PJSIP/201"),
            ..Default::default()
        }));
        assert!(acme.admits(&agent));
        assert!(!acme.admits(&ev(Body::AmiConnected(Default::default()))));
    }

    #[test]
    fn the_call_table_stays_bounded() {
        let mut f = Filter::new(FilterConfig {
            contexts: vec!["acme".into()],
            ..Default::default()
        });
        for i in 0..(MAX_CALLS + 10) {
            assert!(f.admits(&start(&format!("{i}.1"), "1", "2", "acme")));
        }
        assert_eq!(f.calls.len(), MAX_CALLS);
        assert!(!f.admits(&end("0.1")), "the oldest was forgotten");
        assert!(f.admits(&end(&format!("{}.1", MAX_CALLS + 9))));
    }

    #[test]
    fn a_filter_that_names_nothing_is_refused() {
        let e = FilterConfig::default()
            .validate("sinks[0].filter")
            .unwrap_err();
        assert_eq!(e.key, "sinks[0].filter");
        let e = FilterConfig {
            extensions: vec![String::new()],
            ..Default::default()
        }
        .validate("sinks[0].filter")
        .unwrap_err();
        assert_eq!(e.key, "sinks[0].filter.extensions");
    }
}
