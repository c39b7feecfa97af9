//! sbot's muxrpc decoding of what ssb-server sends: 9-byte headers, bodies,
//! the reply decoders (JSON, UTF-8, error bodies), read as the connection's
//! reader reads them. A decoded header encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    let _ = peach_dyndns_sbot::fuzzing::read_packets(stream);
});
