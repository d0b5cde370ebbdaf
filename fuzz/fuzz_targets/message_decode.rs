//! Message bodies: the first byte picks the wire type (0..=15) or the Noise payload
//! (16..); decoding must never panic, and whatever decodes must re-encode to a body
//! that decodes to the same message.
#![no_main]

use hyperdrive::protocol::messages::{Message, NoisePayload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if selector >= 16 {
        if let Ok(p) = NoisePayload::from_bytes(body) {
            let again =
                NoisePayload::from_bytes(&p.to_bytes()).expect("re-encoded payload decodes");
            assert_eq!(again, p);
        }
        return;
    }
    if let Ok(Some(msg)) = Message::decode(selector, body) {
        assert_eq!(msg.type_id(), selector);
        let encoded = msg.to_body();
        assert_eq!(encoded.len(), msg.encoded_len());
        let again = Message::decode(selector, &encoded).expect("re-encoded message decodes");
        assert_eq!(again, Some(msg));
    }
});
