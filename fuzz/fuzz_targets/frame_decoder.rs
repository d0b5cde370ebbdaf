//! Frames: random bytes in random chunkings must never panic, never yield a body over
//! the limit and never buffer past the decoder's capacity; every frame's body goes
//! through the message decoder too.
#![no_main]

use hyperdrive::protocol::frame::{FrameDecoder, FrameEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&params, input)) = data.split_first() else {
        return;
    };
    // Small limits and chunk sizes reach the size checks and split varints.
    let max_body = usize::from(params & 0x3f) * 7;
    let chunk = usize::from(params >> 6) * 5 + 1;
    let mut dec = FrameDecoder::with_max_body(max_body);
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        loop {
            let n = dec.push(rest);
            rest = &rest[n..];
            assert!(dec.buffered() <= dec.capacity());
            loop {
                match dec.next_frame() {
                    Ok(Some(FrameEvent::Frame(f))) => {
                        assert!(f.body.len() <= max_body);
                        let _ = f.message();
                    }
                    Ok(Some(FrameEvent::KeepAlive)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            if rest.is_empty() {
                break;
            }
        }
    }
});
