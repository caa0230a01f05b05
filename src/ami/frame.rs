//! AMI wire format: an incremental, pure parser from bytes to AMI messages.
//!
//! No I/O: the connection pushes whatever bytes it read, in any split, and the parser calls
//! back once per complete frame. Complete messages are parsed straight from the pushed
//! slice; only an incomplete tail is copied, into a buffer allocated once. With a filter
//! (`Parser::set_filter`), events the consumer does not read are counted and passed over
//! without their headers being split. Nothing grows with input: a message over
//! `Limits::max_message_len` bytes or with more than `Limits::max_headers` headers is
//! skipped up to its blank line, reported once and counted, and parsing resynchronises on
//! the next message.

/// Largest AMI message accepted, in bytes, counting line ends and the blank line that ends
/// it. Larger ones are skipped and counted (`ami.max_message_len`).
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Most headers in one message; a message with more is skipped and counted (`ami.max_headers`).
pub const MAX_HEADERS: usize = 128;
/// What the first line of an AMI connection starts with.
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// Limits fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_len: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: MAX_MESSAGE_LEN,
            max_headers: MAX_HEADERS,
        }
    }
}

/// One thing read off the wire.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// The banner line's version: `11.0.0` for `Asterisk Call Manager/11.0.0`.
    Banner(&'a str),
    Message(Message<'a>),
}

/// Key offset marking a raw command-output line, whose key is `Output`.
const OUTPUT_KEY: u32 = u32::MAX;

/// Byte offsets of one header's key and value within the message text.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    key: (u32, u32),
    value: (u32, u32),
}

/// One AMI message: `Key: Value` headers in the order sent. Borrows the parser's buffers
/// (or the pushed bytes) for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    text: &'a str,
    spans: &'a [Span],
}

impl<'a> Message<'a> {
    fn slice(&self, (a, b): (u32, u32)) -> &'a str {
        if a == OUTPUT_KEY {
            return "Output";
        }
        &self.text[a as usize..b as usize]
    }

    /// The first value of `key` (ASCII case-insensitive: real streams spell both
    /// `CallerIDNum` and `CallerIDnum`). An empty value (`Key: `) is `Some("")`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.get_all(key).next()
    }

    /// Every value of `key`, in order (repeated headers such as `ChanVariable`).
    pub fn get_all<'k>(&self, key: &'k str) -> impl Iterator<Item = &'a str> + 'k
    where
        'a: 'k,
    {
        let m = *self;
        self.spans
            .iter()
            .filter(move |s| m.slice(s.key).eq_ignore_ascii_case(key))
            .map(move |s| m.slice(s.value))
    }

    /// Every header as `(key, value)`, in order, keys as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let m = *self;
        self.spans
            .iter()
            .map(move |s| (m.slice(s.key), m.slice(s.value)))
    }

    /// The value of the first header when its key is `key`: `Event` and `Response` come first.
    fn first_if(&self, key: &str) -> Option<&'a str> {
        match self.spans.first() {
            Some(s) if self.slice(s.key).eq_ignore_ascii_case(key) => Some(self.slice(s.value)),
            _ => self.get(key),
        }
    }

    pub fn event(&self) -> Option<&'a str> {
        self.first_if("Event")
    }

    pub fn response(&self) -> Option<&'a str> {
        self.first_if("Response")
    }

    pub fn action_id(&self) -> Option<&'a str> {
        self.get("ActionID")
    }

    /// True when this is the event `name` (case-insensitive). The cheapest check there is.
    pub fn is_event(&self, name: &str) -> bool {
        self.event().is_some_and(|e| e.eq_ignore_ascii_case(name))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The message's text as parsed (after any UTF-8 repair).
    pub fn raw(&self) -> &'a str {
        self.text
    }
}

/// A message copied out of the parser, to read again later: the benchmarks normalize the
/// same messages many times without parsing them again.
#[derive(Debug, Clone)]
pub struct OwnedMessage {
    text: String,
    spans: Vec<Span>,
}

impl Message<'_> {
    pub fn to_owned_message(&self) -> OwnedMessage {
        OwnedMessage {
            text: self.text.to_owned(),
            spans: self.spans.to_vec(),
        }
    }
}

impl OwnedMessage {
    pub fn as_message(&self) -> Message<'_> {
        Message {
            text: &self.text,
            spans: &self.spans,
        }
    }
}

/// Says whether the consumer reads the event named `name` (the value of a message's first
/// header, `Event`), given the whole message's bytes. A message of an event it does not
/// read is counted and passed over without its headers being split (one split across two
/// pushes is delivered as usual): much of a busy PBX's traffic (`Newexten`, `CEL`,
/// `VarSet`, ...). It must say true for every message the consumer acts on; when unsure,
/// true.
pub type EventFilter = fn(name: &str, message: &[u8]) -> bool;

/// Counters, for the status line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameStats {
    /// Messages delivered.
    pub messages: u64,
    /// Messages of events the filter said no to, passed over.
    pub passed_over: u64,
    /// Messages skipped for being larger than `max_message_len`.
    pub oversized: u64,
    /// Messages skipped for having more than `max_headers` headers.
    pub too_many_headers: u64,
    /// Messages in which invalid UTF-8 was replaced by U+FFFD.
    pub invalid_utf8: u64,
    /// Bytes pushed.
    pub bytes: u64,
}

/// A message that was skipped. Parsing goes on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("AMI message of at least {len_at_least} bytes skipped: the limit is {limit} (raise ami.max_message_len)")]
    TooLarge { len_at_least: usize, limit: usize },
    #[error("AMI message with more than {limit} headers skipped (raise ami.max_headers)")]
    TooManyHeaders { limit: usize },
}

/// Where the bytes seen so far stand relative to a line end; enough to find a blank line
/// that straddles two pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line (just after `\n`, or at the start of the stream).
    LineStart,
    /// Just after `\n\r`: a `\n` now ends a blank line.
    LineStartCr,
    /// Inside a line.
    Inside,
}

/// The incremental parser.
pub struct Parser {
    limits: Limits,
    /// The incomplete tail of the current message; capacity `max_message_len`, never more.
    pending: Vec<u8>,
    /// Header offsets of the message being delivered; capacity `max_headers`.
    spans: Vec<Span>,
    /// UTF-8 repair space: a message's bytes with each invalid byte replaced by U+FFFD
    /// (three bytes), so at most three times `max_message_len`.
    repaired: Vec<u8>,
    /// Which events are delivered; every one unless `set_filter` says otherwise.
    reads: EventFilter,
    /// Searchers for the blank line that ends a message, by its line ends.
    crlf_blank: memchr::memmem::Finder<'static>,
    lf_blank: memchr::memmem::Finder<'static>,
    /// Expecting the banner line (stream start, or after `reset`).
    expect_banner: bool,
    /// Inside an oversized message, discarding up to its blank line; counts bytes seen.
    skipping: Option<usize>,
    /// Line position at the end of the bytes seen while skipping.
    skip_state: LineState,
    stats: FrameStats,
}

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            pending: Vec::with_capacity(limits.max_message_len),
            spans: Vec::with_capacity(limits.max_headers),
            repaired: Vec::with_capacity(limits.max_message_len * 3),
            reads: |_, _| true,
            crlf_blank: memchr::memmem::Finder::new(b"\n\r\n"),
            lf_blank: memchr::memmem::Finder::new(b"\n\n"),
            expect_banner: true,
            skipping: None,
            skip_state: LineState::LineStart,
            stats: FrameStats::default(),
        }
    }

    /// Passes over the events `reads` says no to (see `EventFilter`).
    pub fn set_filter(&mut self, reads: EventFilter) {
        self.reads = reads;
    }

    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Forgets any partial message; the next bytes are expected to start with a banner.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.expect_banner = true;
        self.skipping = None;
        self.skip_state = LineState::LineStart;
    }

    /// Feeds bytes, in any split, and calls `on_frame` for every complete frame.
    pub fn push(&mut self, data: &[u8], on_frame: &mut dyn FnMut(Result<Frame<'_>, FrameError>)) {
        self.stats.bytes += data.len() as u64;
        let mut rest = data;
        loop {
            if rest.is_empty() {
                return;
            }
            if let Some(seen) = self.skipping {
                rest = self.skip(seen, rest, on_frame);
                continue;
            }
            if !self.pending.is_empty() {
                rest = self.complete_pending(rest, on_frame);
                continue;
            }
            // At a message boundary with nothing pending: parse straight from `rest`.
            if self.expect_banner {
                match find_line_end(rest) {
                    Some(end) => {
                        self.expect_banner = false;
                        let line = trim_line(&rest[..end]);
                        if let Some(version) = line.strip_prefix(BANNER_PREFIX.as_bytes()) {
                            if let Ok(v) = std::str::from_utf8(version) {
                                on_frame(Ok(Frame::Banner(v.trim())));
                                rest = &rest[end..];
                                continue;
                            }
                        }
                        // No banner: treat the bytes as ordinary messages.
                    }
                    None => {
                        self.stash(rest);
                        return;
                    }
                }
            }
            // Blank lines between messages are ignored.
            let skip_blank = leading_blank_lines(rest);
            if skip_blank > 0 {
                rest = &rest[skip_blank..];
                continue;
            }
            if let Some(end) = self.unread_event(rest) {
                self.stats.passed_over += 1;
                rest = &rest[end..];
                continue;
            }
            // One pass finds the message's end and, usually, its headers.
            match scan_message(rest, &mut self.spans, self.limits.max_headers) {
                Some(scan) => {
                    self.deliver(&rest[..scan.end], Some(scan), on_frame);
                    rest = &rest[scan.end..];
                }
                None => {
                    self.stash(rest);
                    return;
                }
            }
        }
    }

    /// The length of the message at the start of `data` when it is an event the filter
    /// says no to, complete and within `max_message_len`. Anything else (incomplete,
    /// oversized, not `Event: ` first) takes the usual path, which reports what is wrong.
    fn unread_event(&self, data: &[u8]) -> Option<usize> {
        let rest = data.strip_prefix(b"Event: ")?;
        let line_end = memchr::memchr(b'\n', rest)?;
        let name = std::str::from_utf8(trim_line(&rest[..=line_end])).ok()?;
        // The first blank line: `\n` then `\r\n` (or `\n` alone), as `find_message_end_from`
        // finds it. Two vector searches, as neither pair of bytes occurs elsewhere in AMI
        // text: passing over runs at 2.3 GiB/s this way, 1.2 GiB/s with its search per line.
        let crlf = self.crlf_blank.find(data).map(|i| i + 3);
        let within = crlf.map_or(data, |end| &data[..end]);
        let end = self.lf_blank.find(within).map(|i| i + 2).or(crlf)?;
        let unread = end <= self.limits.max_message_len && !(self.reads)(name.trim(), &data[..end]);
        unread.then_some(end)
    }

    /// Keeps an incomplete tail for the next push, or starts skipping when it is too long.
    fn stash(&mut self, tail: &[u8]) {
        if self.pending.len() + tail.len() > self.limits.max_message_len {
            let seen = self.pending.len() + tail.len();
            let state = line_state_after(LineState::Inside, tail);
            self.pending.clear();
            self.skipping = Some(seen);
            self.skip_state = state;
        } else {
            self.pending.extend_from_slice(tail);
        }
    }

    /// Moves bytes from `rest` into the pending message until it is complete; delivers it.
    fn complete_pending<'d>(
        &mut self,
        rest: &'d [u8],
        on_frame: &mut dyn FnMut(Result<Frame<'_>, FrameError>),
    ) -> &'d [u8] {
        if self.expect_banner {
            // The banner line was incomplete: finish it.
            let Some(end) = find_line_end(rest) else {
                self.stash(rest);
                return &[];
            };
            self.stash(&rest[..end]);
            if self.skipping.is_some() {
                // An over-long first line: not a banner we can use. Resynchronise.
                self.expect_banner = false;
                return &rest[end..];
            }
            self.expect_banner = false;
            let line = std::mem::take(&mut self.pending);
            let trimmed = trim_line(&line);
            let banner = trimmed
                .strip_prefix(BANNER_PREFIX.as_bytes())
                .and_then(|v| std::str::from_utf8(v).ok());
            if let Some(v) = banner {
                on_frame(Ok(Frame::Banner(v.trim())));
                self.pending = line;
                self.pending.clear();
            } else {
                // Not a banner: it is the first line of a message.
                self.pending = line;
            }
            return &rest[end..];
        }
        // Where is the blank line? It may straddle: pending ends with "\n" or "\n\r".
        let state = line_state_after(LineState::LineStart, &self.pending);
        match find_message_end_from(state, rest) {
            Some(end) => {
                if self.pending.len() + end > self.limits.max_message_len {
                    let seen = self.pending.len() + end;
                    self.pending.clear();
                    self.report_too_large(seen, on_frame);
                } else {
                    self.pending.extend_from_slice(&rest[..end]);
                    let msg = std::mem::take(&mut self.pending);
                    // The message is whole now: the same one pass as an unsplit one, used
                    // when it reads the whole message (a first line that is blank, possible
                    // only after a missing banner, leaves it to `split_headers`).
                    let scan = scan_message(&msg, &mut self.spans, self.limits.max_headers)
                        .filter(|scan| scan.end == msg.len());
                    self.deliver(&msg, scan, on_frame);
                    self.pending = msg;
                    self.pending.clear();
                }
                &rest[end..]
            }
            None => {
                self.stash(rest);
                &[]
            }
        }
    }

    /// Discards bytes of an oversized message up to its blank line, then reports it.
    fn skip<'d>(
        &mut self,
        seen: usize,
        rest: &'d [u8],
        on_frame: &mut dyn FnMut(Result<Frame<'_>, FrameError>),
    ) -> &'d [u8] {
        match find_message_end_from(self.skip_state, rest) {
            Some(end) => {
                self.skipping = None;
                self.skip_state = LineState::LineStart;
                self.report_too_large(seen.saturating_add(end), on_frame);
                &rest[end..]
            }
            None => {
                self.skipping = Some(seen.saturating_add(rest.len()));
                self.skip_state = line_state_after(self.skip_state, rest);
                &[]
            }
        }
    }

    fn report_too_large(
        &mut self,
        len: usize,
        on_frame: &mut dyn FnMut(Result<Frame<'_>, FrameError>),
    ) {
        self.stats.oversized += 1;
        on_frame(Err(FrameError::TooLarge {
            len_at_least: len,
            limit: self.limits.max_message_len,
        }));
    }

    /// Delivers one complete message (its lines and the blank line). `scan` is what
    /// `scan_message` found in these very bytes (`self.spans` holds its spans); without it,
    /// or when it left the message to the full rules, `split_headers` reads the headers.
    fn deliver(
        &mut self,
        bytes: &[u8],
        scan: Option<Scan>,
        on_frame: &mut dyn FnMut(Result<Frame<'_>, FrameError>),
    ) {
        if bytes.len() > self.limits.max_message_len {
            self.report_too_large(bytes.len(), on_frame);
            return;
        }
        let (text, scan) = match std::str::from_utf8(bytes) {
            Ok(t) => (t, scan),
            Err(_) => {
                self.stats.invalid_utf8 += 1;
                repair_utf8(bytes, &mut self.repaired);
                // Cannot fail: repair_utf8 writes valid UTF-8 only. Its offsets differ.
                (std::str::from_utf8(&self.repaired).unwrap_or(""), None)
            }
        };
        let fits = match scan {
            Some(Scan { too_many: true, .. }) => false,
            Some(Scan { simple: true, .. }) => true,
            _ => split_headers(text, &mut self.spans, self.limits.max_headers),
        };
        if !fits {
            self.stats.too_many_headers += 1;
            on_frame(Err(FrameError::TooManyHeaders {
                limit: self.limits.max_headers,
            }));
            return;
        }
        self.stats.messages += 1;
        on_frame(Ok(Frame::Message(Message {
            text,
            spans: &self.spans,
        })));
    }
}

/// Index just past the first `\n`, if any.
fn find_line_end(data: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', data).map(|i| i + 1)
}

/// A line without its `\r\n` or `\n`.
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Bytes of blank lines (`\r\n` or `\n`) at the start of `data`.
fn leading_blank_lines(data: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match data.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// What one pass over a message's lines found.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// Index just past the blank line that ends the message.
    end: usize,
    /// Every line was a plain `Key: Value` and the spans are filled in. False when a line
    /// needs the full rules of `split_headers` (no colon, command output after
    /// `Response: Follows`, a value ending in a non-ASCII character that may be white space).
    simple: bool,
    /// More header lines than `max_headers`: the message is skipped.
    too_many: bool,
}

/// One pass over `data`, a message from its first (non-blank) line: finds the blank line
/// that ends it and, for the usual `Key: Value` lines, each header's span, exactly as
/// `split_headers` would make them. None: the blank line has not arrived yet.
fn scan_message(data: &[u8], spans: &mut Vec<Span>, max_headers: usize) -> Option<Scan> {
    spans.clear();
    let (mut simple, mut too_many) = (true, false);
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        let line = &data[start..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(Scan {
                end: nl + 1,
                simple,
                too_many,
            });
        }
        if simple && !too_many {
            match memchr::memchr(b':', line) {
                None => simple = false,
                Some(_) if spans.len() == max_headers => too_many = true,
                Some(colon) => {
                    let value = &line[colon + 1..];
                    let value = value.strip_prefix(b" ").unwrap_or(value);
                    let value = trim_white_end(value);
                    if value.last().is_some_and(|&b| b >= 0x80)
                        || (spans.is_empty() && may_be_follows(&line[..colon], value))
                    {
                        simple = false;
                    }
                    // Offsets fit u32: a message is at most `max_message_len` bytes, and a
                    // longer one is skipped before its spans are read.
                    let at = |s: &[u8]| (s.as_ptr() as usize - data.as_ptr() as usize) as u32;
                    let (k, v) = (start as u32, at(value));
                    spans.push(Span {
                        key: (k, k + colon as u32),
                        value: (v, v + value.len() as u32),
                    });
                }
            }
        }
        start = nl + 1;
    }
    None
}

/// The ASCII characters that `str::trim` removes (unlike `u8::is_ascii_whitespace`, the
/// vertical tab too).
fn is_white(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// `value` without white space at its end, as `str::trim_end` leaves an ASCII ending.
fn trim_white_end(value: &[u8]) -> &[u8] {
    let keep = value
        .iter()
        .rposition(|&b| !is_white(b))
        .map_or(0, |i| i + 1);
    &value[..keep]
}

/// A first header that is, or with non-ASCII white space around it might be,
/// `Response: Follows` (command output comes next): `split_headers` decides.
fn may_be_follows(key: &[u8], value: &[u8]) -> bool {
    let from = value
        .iter()
        .position(|&b| !is_white(b))
        .unwrap_or(value.len());
    key.eq_ignore_ascii_case(b"Response")
        && (!value.is_ascii() || value[from..].eq_ignore_ascii_case(b"Follows"))
}

/// Index just past the blank line that ends a message, when the bytes before `data` left
/// us in `state`.
fn find_message_end_from(state: LineState, data: &[u8]) -> Option<usize> {
    match (state, data) {
        (LineState::LineStart, [b'\n', ..]) | (LineState::LineStartCr, [b'\n', ..]) => {
            return Some(1)
        }
        (LineState::LineStart, [b'\r', b'\n', ..]) => return Some(2),
        _ => {}
    }
    memchr::memchr_iter(b'\n', data).find_map(|nl| match &data[nl + 1..] {
        [b'\n', ..] => Some(nl + 2),
        [b'\r', b'\n', ..] => Some(nl + 3),
        _ => None,
    })
}

/// The line position after reading `data`, starting from `state`.
fn line_state_after(state: LineState, data: &[u8]) -> LineState {
    match data {
        [] => state,
        [.., b'\n'] => LineState::LineStart,
        [.., b'\n', b'\r'] => LineState::LineStartCr,
        [b'\r'] if state == LineState::LineStart => LineState::LineStartCr,
        _ => LineState::Inside,
    }
}

/// Writes `bytes` into `out` with every invalid UTF-8 sequence replaced by U+FFFD.
fn repair_utf8(mut bytes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend_from_slice(s.as_bytes());
                return;
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.extend_from_slice(good);
                out.extend_from_slice("\u{FFFD}".as_bytes());
                let skip = e.error_len().unwrap_or(bad.len()).max(1);
                bytes = &bad[skip.min(bad.len())..];
            }
        }
    }
}

/// Splits a message into header spans. Lines are `Key: Value`; the value is taken after the
/// first `:` with one leading space removed and trailing spaces trimmed. A line without a
/// colon (command output after `Response: Follows`, or a stray line) becomes an `Output`
/// header holding the whole line, and the `--END COMMAND--` marker is dropped, so old and
/// new Asterisk command output read the same. Returns false when there are too many headers.
fn split_headers(text: &str, spans: &mut Vec<Span>, max_headers: usize) -> bool {
    spans.clear();
    let base = text.as_ptr() as usize;
    let offset = |s: &str| (s.as_ptr() as usize - base) as u32;
    let mut follows = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let span = match line.split_once(':') {
            Some((key, value)) if !follows || !key.contains(' ') => {
                let value = value.strip_prefix(' ').unwrap_or(value).trim_end();
                let v = offset(value);
                Span {
                    key: (offset(key), offset(key) + key.len() as u32),
                    value: (v, v + value.len() as u32),
                }
            }
            _ if line == "--END COMMAND--" => continue,
            _ => {
                let v = offset(line);
                Span {
                    key: (OUTPUT_KEY, OUTPUT_KEY),
                    value: (v, v + line.len() as u32),
                }
            }
        };
        if spans.len() == max_headers {
            return false;
        }
        if spans.is_empty() {
            // Command output follows a first header `Response: Follows`.
            follows = line.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("Response") && v.trim().eq_ignore_ascii_case("Follows")
            });
        }
        spans.push(span);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of what the parser delivered, to compare runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Owned {
        Banner(String),
        Message(Vec<(String, String)>),
        Error(FrameError),
    }

    fn feed(parser: &mut Parser, chunks: &[&[u8]]) -> Vec<Owned> {
        let mut out = Vec::new();
        for c in chunks {
            parser.push(c, &mut |f| {
                out.push(match f {
                    Ok(Frame::Banner(v)) => Owned::Banner(v.to_string()),
                    Ok(Frame::Message(m)) => Owned::Message(
                        m.headers()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                    Err(e) => Owned::Error(e),
                })
            });
        }
        out
    }

    fn parse_all(data: &[u8]) -> Vec<Owned> {
        feed(&mut Parser::new(Limits::default()), &[data])
    }

    fn msg(pairs: &[(&str, &str)]) -> Owned {
        Owned::Message(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const RECORDED: &[u8] = include_bytes!("../../tests/fixtures/ami/02-call-answered.ami");

    #[test]
    fn banner_then_messages_with_crlf_and_bare_lf() {
        let out = parse_all(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: ok\r\n\r\nEvent: A\nX: 1\n\n");
        assert_eq!(
            out,
            [
                Owned::Banner("11.0.0".into()),
                msg(&[("Response", "Success"), ("Message", "ok")]),
                msg(&[("Event", "A"), ("X", "1")]),
            ]
        );
    }

    #[test]
    fn values_with_colons_empty_values_and_repeated_headers() {
        let mut p = Parser::new(Limits::default());
        let data = b"Event: Newchannel\r\nAccountCode: \r\nURI: sip:101@127.0.0.1:5071\r\nChanVariable(X-A): 1\r\nChanVariable(X-B): 2\r\nCallerIDnum: 101\r\n\r\n";
        let mut seen = 0;
        p.push(data, &mut |f| {
            let Ok(Frame::Message(m)) = f else {
                panic!("{f:?}")
            };
            assert!(m.is_event("newchannel"));
            assert_eq!(m.get("accountcode"), Some(""));
            assert_eq!(m.get("URI"), Some("sip:101@127.0.0.1:5071"));
            assert_eq!(m.get("CallerIDNum"), Some("101"));
            assert_eq!(
                m.headers()
                    .filter(|(k, _)| k.starts_with("ChanVariable"))
                    .count(),
                2
            );
            assert_eq!(m.get_all("chanvariable(x-b)").collect::<Vec<_>>(), ["2"]);
            assert_eq!(m.get("Missing"), None);
            seen += 1;
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn an_owned_message_reads_as_the_parsed_one() {
        let mut p = Parser::new(Limits::default());
        let mut owned = Vec::new();
        p.push(RECORDED, &mut |f| {
            if let Ok(Frame::Message(m)) = f {
                owned.push((
                    m.to_owned_message(),
                    m.headers().count(),
                    m.raw().to_owned(),
                ));
            }
        });
        assert!(owned.len() > 10);
        for (o, headers, raw) in &owned {
            let m = o.as_message();
            assert_eq!((m.headers().count(), m.raw()), (*headers, raw.as_str()));
        }
        let newchannel = owned
            .iter()
            .find(|(o, ..)| o.as_message().is_event("Newchannel"));
        let m = newchannel.expect("a Newchannel").0.as_message();
        assert!(m.get("Uniqueid").is_some_and(|u| !u.is_empty()));
    }

    /// The filter of the tests below: events whose names start with `N` are not read.
    fn not_n(name: &str, _: &[u8]) -> bool {
        !name.starts_with('N')
    }

    #[test]
    fn a_filter_passes_over_whole_unread_events_and_counts_them() {
        let mut p = Parser::new(Limits {
            max_message_len: 64,
            max_headers: 8,
        });
        p.set_filter(not_n);
        let big = format!("Event: Newexten\r\nData: {}\r\n\r\n", "x".repeat(80));
        let data = [
            "Asterisk Call Manager/11.0.0\r\n",
            "Event: Newexten\r\nChannel: PJSIP/1\r\n\r\n",
            "Event: Hangup\r\nCause: 16\r\n\r\n",
            "Event:  Newexten \nChannel: a\n\n",
            &big,
            "Response: Success\r\n\r\n",
            "event: Newexten\r\n\r\n",
            "Event: Newstate\r\nChannelState: 6\r\n",
        ]
        .concat();
        let out = feed(&mut p, &[data.as_bytes()]);
        assert_eq!(
            out,
            [
                Owned::Banner("11.0.0".into()),
                msg(&[("Event", "Hangup"), ("Cause", "16")]),
                Owned::Error(FrameError::TooLarge {
                    len_at_least: big.len(),
                    limit: 64
                }),
                msg(&[("Response", "Success")]),
                // Not `Event: ` as sent by Asterisk: the usual path, which delivers it.
                msg(&[("event", "Newexten")]),
            ]
        );
        assert_eq!((p.stats().passed_over, p.stats().messages), (2, 3));
        // An unread event that arrives in two pushes is delivered as usual.
        let out = feed(&mut p, &[b"\r\n"]);
        assert_eq!(out, [msg(&[("Event", "Newstate"), ("ChannelState", "6")])]);
        // A name that is not UTF-8 takes the usual path too: repaired and delivered.
        let out = feed(&mut p, &[b"Event: N\xff\r\nChannel: a\r\n\r\n"]);
        assert_eq!(out, [msg(&[("Event", "N\u{FFFD}"), ("Channel", "a")])]);
        assert_eq!((p.stats().passed_over, p.stats().invalid_utf8), (2, 1));
    }

    #[test]
    fn command_output_after_response_follows() {
        let out = parse_all(b"Response: Follows\r\nPrivilege: Command\r\nChannel  Location  State\r\n0 active channels\r\n--END COMMAND--\r\n\r\n");
        assert_eq!(
            out,
            [msg(&[
                ("Response", "Follows"),
                ("Privilege", "Command"),
                ("Output", "Channel  Location  State"),
                ("Output", "0 active channels"),
            ])]
        );
    }

    #[test]
    fn oversized_message_is_skipped_and_parsing_resumes() {
        let limits = Limits {
            max_message_len: 64,
            max_headers: 8,
        };
        let mut p = Parser::new(limits);
        let mut data = b"Event: Big\r\n".to_vec();
        for i in 0..20 {
            data.extend_from_slice(format!("H{i}: {}\r\n", "x".repeat(30)).as_bytes());
        }
        data.extend_from_slice(b"\r\nEvent: Small\r\n\r\n");
        // Whole, and a byte at a time: the same result.
        let whole = feed(&mut p, &[&data]);
        let mut p2 = Parser::new(limits);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let split = feed(&mut p2, &bytes);
        for out in [&whole, &split] {
            assert!(
                matches!(out[0], Owned::Error(FrameError::TooLarge { limit: 64, .. })),
                "{out:?}"
            );
            assert_eq!(out[1], msg(&[("Event", "Small")]));
            assert_eq!(out.len(), 2);
        }
        assert_eq!(p.stats().oversized, 1);
        assert_eq!(p2.stats().oversized, 1);
        assert_eq!(p2.stats().messages, 1);
    }

    #[test]
    fn a_stream_without_blank_lines_never_grows_memory() {
        let limits = Limits {
            max_message_len: 1024,
            max_headers: 16,
        };
        let mut p = Parser::new(limits);
        let line = b"Event: Flood\r\nKey: value value value\r\n";
        let mut frames = 0;
        for _ in 0..100_000 {
            p.push(line, &mut |_| frames += 1);
        }
        assert!(p.pending.capacity() <= 1024 && p.repaired.capacity() <= 3 * 1024);
        assert_eq!(frames, 0);
        p.push(b"\r\nEvent: After\r\n\r\n", &mut |_| frames += 1);
        assert_eq!(frames, 2);
        assert_eq!(p.stats().oversized, 1);
    }

    #[test]
    fn too_many_headers_is_skipped() {
        let limits = Limits {
            max_message_len: 4096,
            max_headers: 4,
        };
        let out = feed(
            &mut Parser::new(limits),
            &[b"Event: A\r\nB: 1\r\nC: 2\r\nD: 3\r\nE: 4\r\n\r\nEvent: Z\r\n\r\n"],
        );
        assert_eq!(
            out,
            [
                Owned::Error(FrameError::TooManyHeaders { limit: 4 }),
                msg(&[("Event", "Z")])
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let mut p = Parser::new(Limits::default());
        let out = feed(&mut p, &[b"Event: A\r\nName: caf\xe9 \xff\r\n\r\n"]);
        assert_eq!(
            out,
            [msg(&[("Event", "A"), ("Name", "caf\u{FFFD} \u{FFFD}")])]
        );
        assert_eq!(p.stats().invalid_utf8, 1);
    }

    #[test]
    fn reset_expects_a_new_banner() {
        let mut p = Parser::new(Limits::default());
        let out = feed(&mut p, &[b"Asterisk Call Manager/11.0.0\r\nEvent: Half"]);
        assert_eq!(out, [Owned::Banner("11.0.0".into())]);
        p.reset();
        let out = feed(
            &mut p,
            &[b"Asterisk Call Manager/9.0.0\r\nEvent: B\r\n\r\n"],
        );
        assert_eq!(out, [Owned::Banner("9.0.0".into()), msg(&[("Event", "B")])]);
    }

    #[test]
    fn recorded_stream_gives_every_message() {
        let text = std::str::from_utf8(RECORDED).unwrap();
        let expected = text
            .lines()
            .filter(|l| l.starts_with("Event:") || l.starts_with("Response:"))
            .count();
        assert_eq!(expected, 117 + 2);
        let mut p = Parser::new(Limits::default());
        let out = feed(&mut p, &[RECORDED]);
        assert_eq!(out[0], Owned::Banner("11.0.0".into()));
        assert_eq!(out.len() - 1, expected);
        assert_eq!(p.stats().messages as usize, expected);
        let one_by_one: Vec<&[u8]> = RECORDED.chunks(1).collect();
        assert_eq!(feed(&mut Parser::new(Limits::default()), &one_by_one), out);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Splits `data` at the given cut points.
        fn chunks<'d>(data: &'d [u8], cuts: &[usize]) -> Vec<&'d [u8]> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.sort_unstable();
            let mut out = Vec::new();
            let mut prev = 0;
            for p in points {
                out.push(&data[prev..p]);
                prev = p;
            }
            out.push(&data[prev..]);
            out
        }

        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let header = (
                "[A-Za-z]{1,8}",
                prop_oneof![".{0,20}", "x{0,300}"],
                any::<bool>(),
                proptest::option::of(any::<u8>()),
            )
                .prop_map(|(k, v, crlf, junk)| {
                    let mut l = format!("{k}: {v}").into_bytes();
                    if let Some(b) = junk {
                        l.push(b | 0x80);
                    }
                    l.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                    l
                });
            proptest::collection::vec(proptest::collection::vec(header, 1..12), 0..20).prop_map(
                |msgs| {
                    let mut out = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
                    for m in msgs {
                        for h in m {
                            out.extend_from_slice(&h);
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    out
                },
            )
        }

        /// Messages whose first header is mostly `Event: <name>`, read or not by `not_n`.
        fn event_stream() -> impl Strategy<Value = Vec<u8>> {
            let first = prop_oneof![
                "Event: (Newexten|Newstate|Hangup|Cdr|VarSet)",
                "Event:  ?N[a-z]{0,3} ?",
                "(Response|event): [A-Za-z]{0,6}",
            ];
            let message = (first, stream(), any::<bool>()).prop_map(|(first, body, crlf)| {
                // A message from `stream` without its banner, after this first line.
                let body = &body[b"Asterisk Call Manager/11.0.0\r\n".len()..];
                let end = body.windows(2).position(|w| w == b"\r\n" || w[0] == b'\n');
                let mut out = first.into_bytes();
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                out.extend_from_slice(&body[..end.map_or(0, |e| e)]);
                out.extend_from_slice(b"\r\n\r\n");
                out
            });
            proptest::collection::vec(message, 0..20).prop_map(|msgs| {
                let mut out = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
                for m in msgs {
                    out.extend_from_slice(&m);
                }
                out
            })
        }

        proptest! {
            #[test]
            fn any_split_gives_the_same_frames(data in stream(), cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
                let limits = Limits { max_message_len: 512, max_headers: 8 };
                let whole = feed(&mut Parser::new(limits), &[&data]);
                let split = feed(&mut Parser::new(limits), &chunks(&data, &cuts));
                prop_assert_eq!(whole, split);
            }

            #[test]
            fn any_split_of_a_recording_gives_the_same_frames(cuts in proptest::collection::vec(any::<usize>(), 0..200)) {
                let whole = feed(&mut Parser::new(Limits::default()), &[RECORDED]);
                let split = feed(&mut Parser::new(Limits::default()), &chunks(RECORDED, &cuts));
                prop_assert_eq!(whole, split);
            }

            #[test]
            fn one_pass_scan_reads_headers_as_split_headers_does(lines in proptest::collection::vec(prop_oneof![
                "[A-Za-z]{0,6}:[ \t\x0b\x0c]{0,2}[ -~]{0,12}[ \t\x0b\x0c\r]{0,2}",
                "Response: ?[ \x0b]?(Follows|follows|Success)[\x0b ]?",
                ".{0,12}",
                Just("--END COMMAND--".to_string()),
            ], 1..10), crlf in any::<bool>()) {
                let mut data = Vec::new();
                for l in &lines {
                    let l = l.replace(['\r', '\n'], "");
                    if l.is_empty() { continue; }
                    data.extend_from_slice(l.as_bytes());
                    data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
                data.extend_from_slice(b"\r\n");
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                if let Some(scan) = scan_message(&data, &mut fast, 8) {
                    let text = std::str::from_utf8(&data[..scan.end]).unwrap();
                    let fits = split_headers(text, &mut slow, 8);
                    prop_assert_eq!(scan.too_many, !fits && scan.simple);
                    if scan.simple && !scan.too_many {
                        let pairs = |sp: &[Span]| sp.iter().map(|s| (s.key, s.value)).collect::<Vec<_>>();
                        prop_assert!(fits);
                        prop_assert_eq!(pairs(&fast), pairs(&slow));
                    }
                }
            }

            #[test]
            fn a_filter_only_passes_over_unread_events(data in event_stream(), cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
                let limits = Limits { max_message_len: 128, max_headers: 8 };
                let mut all = Parser::new(limits);
                let every = feed(&mut all, &chunks(&data, &cuts));
                let mut filtered = Parser::new(limits);
                filtered.set_filter(not_n);
                let read = feed(&mut filtered, &chunks(&data, &cuts));
                // What the filter took away is unread events only, and all of it is counted.
                let mut rest = read.iter().peekable();
                for frame in &every {
                    if rest.peek() == Some(&frame) {
                        rest.next();
                    } else {
                        let Owned::Message(headers) = frame else { panic!("{frame:?} lost") };
                        prop_assert!(headers[0].0 == "Event" && !not_n(headers[0].1.trim(), b""), "{:?} lost", headers);
                    }
                }
                prop_assert!(rest.next().is_none());
                let (a, f) = (all.stats(), filtered.stats());
                prop_assert_eq!(a.messages, f.messages + f.passed_over);
                prop_assert_eq!((a.oversized, a.too_many_headers), (f.oversized, f.too_many_headers));
            }

            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
                let limits = Limits { max_message_len: 256, max_headers: 8 };
                let mut p = Parser::new(limits);
                let out = feed(&mut p, &chunks(&data, &cuts));
                let msgs = out.iter().filter(|o| matches!(o, Owned::Message(_))).count();
                prop_assert_eq!(msgs as u64, p.stats().messages);
            }
        }
    }
}
