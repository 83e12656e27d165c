//! Election message decoder: any datagram gives a message or an error, never a
//! panic; whatever decodes re-encodes to the same message (and, without a site
//! key, to the same bytes: the format has one encoding per message).
#![no_main]

use contentdist::election::{decode, encode, SiteKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SiteKey::new(b"fuzzing site key");
    for k in [None, Some(&key)] {
        if let Ok(msg) = decode(data, k) {
            let again = encode(&msg, k).expect("a decoded message encodes");
            assert_eq!(
                decode(&again, k).expect("a re-encoded message decodes"),
                msg
            );
            if k.is_none() {
                assert_eq!(again.as_slice(), data);
            }
        }
    }
});
