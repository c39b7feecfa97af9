//! The SSB secret file (ssb-server's `#`-commented form and go-sbot's plain
//! JSON), as `peach_dyndns_sbot::secret` reads it: whatever it reads writes
//! back to a file that reads as the same identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peach_dyndns_protocol::identity::parse_secret_file;

fuzz_target!(|data: &[u8]| {
    // `secret::load_secret` reads the file with `read_to_string`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(keypair) = parse_secret_file(text) {
        let again = parse_secret_file(&keypair.to_secret_file())
            .expect("a secret we read, written out, reads again");
        assert_eq!(again.public(), keypair.public());
    }
});
