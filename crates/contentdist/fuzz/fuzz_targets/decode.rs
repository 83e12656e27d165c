//! Election message decoder: any datagram gives a message or an error, never a
//! panic; whatever decodes re-encodes, with its stamp, to the same message and
//! stamp (and, without a site key, to the same bytes: the format has one encoding
//! per message).
#![no_main]

use contentdist::election::{decode_stamped, encode, SiteKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SiteKey::new(b"fuzzing site key");
    for k in [None, Some(&key)] {
        if let Ok((msg, stamp)) = decode_stamped(data, k) {
            assert_eq!(stamp.is_some(), k.is_some());
            let auth = k.zip(stamp);
            let again = encode(&msg, auth).expect("a decoded message encodes");
            assert_eq!(
                decode_stamped(&again, k).expect("a re-encoded message decodes"),
                (msg, stamp)
            );
            if k.is_none() {
                assert_eq!(again.as_slice(), data);
            }
        }
    }
});
