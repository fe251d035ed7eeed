//! Any text as a broadcast segment: it parses or is refused with an error, and a parsed segment
//! prints to text that parses back to the same segment.
#![no_main]

use leadbot::broadcast::segment::Segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(segment) = Segment::parse(source) {
        let printed = segment.to_string();
        assert_eq!(Segment::parse(&printed).as_ref(), Ok(&segment), "{printed:?}");
    }
});
