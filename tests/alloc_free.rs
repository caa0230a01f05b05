//! The hot path allocates nothing per event: framing, normalizing, publishing on the bus
//! and encoding in every dialect, counted with a counting global allocator over the
//! recorded Asterisk sessions replayed many times (after one warm-up round, which may
//! allocate what is allocated once, such as the tables and the parser's buffers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pbxtap::ami::frame::{Frame, Limits, Parser};
use pbxtap::bus::{Bus, TryRecv};
use pbxtap::dialect::{enswitch, native, portsip, routr, Encoded};
use pbxtap::event::{text, Event};
use pbxtap::normalize::{NormalizeConfig, Normalizer};

mod common;

/// Counts allocations (and reallocations) made while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn framing_normalizing_publishing_and_encoding_allocate_nothing_per_event() {
    let stream = common::bench::recordings();
    let mut parser = Parser::new(Limits::default());
    // As the daemon does: events the normalizer does not read are passed over.
    parser.set_filter(pbxtap::normalize::reads);
    let mut normalizer = Normalizer::new(NormalizeConfig::default());
    let bus = Bus::new(1024, text("pbx1"));
    let mut sink = bus.subscribe("counted");
    let mut portsip_state = portsip::State::default();
    let ctx = |version| portsip::Context {
        version,
        domain: "pbx1.example",
        tenant_id: "1",
        tenant_name: "one",
    };
    // Boxed: four 16 KiB buffers are too much for a test thread's stack.
    let mut out: Box<[Encoded; 4]> = Box::default();
    let (mut events, mut bytes) = (0u64, 0usize);

    for round in 0..20u64 {
        // Round 0 warms up; from round 1 on every allocation counts.
        COUNTING.store(round > 0, Ordering::Relaxed);
        // 4 KiB pushes, as the AMI client reads, so the incomplete-tail path runs too.
        for chunk in stream.chunks(4096) {
            parser.push(chunk, &mut |f| {
                let Ok(Frame::Message(m)) = f else { return };
                normalizer.handle(&m, 1_700_000_000_000_000 + round, &mut |b| {
                    bus.publish(Event::new(1_700_000_000_000_000, bus.host(), b))
                });
            });
            while let TryRecv::Event(ev) = sink.try_recv() {
                let ev: &Event = &ev;
                let seen = portsip_state.observe(ev);
                let [a, b, c, d] = &mut *out;
                native::encode(ev, a).unwrap();
                enswitch::encode_form(ev, &enswitch::Context::default(), b).unwrap();
                enswitch::encode_json(ev, &enswitch::Context::default(), c).unwrap();
                routr::encode(
                    ev,
                    &routr::Context {
                        domain: "pbx1",
                        metadata: &[],
                        endpoints: &[],
                        prefix: "",
                    },
                    d,
                )
                .unwrap();
                bytes += a.len() + b.len() + c.len() + d.len();
                // Both PortSIP generations, each message written into the same buffer.
                for version in [portsip::Version::V16, portsip::Version::V22] {
                    let mut emit = |_: &portsip::Route, m: &[u8]| bytes += m.len();
                    let mut to = portsip::Out::new(a, &mut emit);
                    portsip::encode(ev, &seen, &portsip_state, &ctx(version), &mut to).unwrap();
                }
                events += 1;
            }
        }
    }
    COUNTING.store(false, Ordering::Relaxed);
    assert!(
        events > 19 * 100,
        "the recordings gave only {events} events"
    );
    assert!(bytes > 0);
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "heap allocations on the hot path over {events} events"
    );
}
