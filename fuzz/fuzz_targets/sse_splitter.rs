//! An engine's event stream, cut into reads at arbitrary places. However the bytes are cut, the splitter
//! yields the same events as when it gets them in one read (unless an event outgrew the bound, in which case
//! both ways must say so), and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmopsd::gateway::SseSplitter;

fuzz_target!(|data: &[u8]| {
    // The first bytes give the read sizes (1..=64 each, cycled); the rest is the stream.
    let Some((&count, rest)) = data.split_first() else { return };
    let count = usize::from(count % 8) + 1;
    if rest.len() < count {
        return;
    }
    let (sizes, stream) = rest.split_at(count);

    let mut whole = SseSplitter::default();
    let expected = whole.push(stream);

    let mut pieces = SseSplitter::default();
    let mut events = Vec::new();
    let mut offset = 0;
    for size in sizes.iter().cycle() {
        if offset >= stream.len() {
            break;
        }
        let end = (offset + usize::from(size % 64) + 1).min(stream.len());
        events.extend(pieces.push(&stream[offset..end]));
        offset = end;
    }
    assert_eq!(whole.overflowed, pieces.overflowed, "overflow must not depend on how reads are cut");
    if !whole.overflowed {
        assert_eq!(expected, events, "events must not depend on how reads are cut");
    }
});
