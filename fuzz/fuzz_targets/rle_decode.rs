//! bitfield-rle: decoding must respect the caller's bound and never panic; what
//! decodes must re-encode (canonically) to something that decodes to the same bytes.
#![no_main]

use hyperdrive::protocol::rle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&bound, encoded)) = data.split_first() else {
        return;
    };
    let max = usize::from(bound) * 64;
    if let Ok(bits) = rle::decode(encoded, max) {
        assert!(bits.len() <= max);
        let canonical = rle::encode(&bits);
        let again = rle::decode(&canonical, max).expect("canonical encoding decodes");
        let trimmed = bits.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        assert_eq!(again, &bits[..trimmed]);
    }
});
