//! Protocol tests against the libsodium vectors and random round trips.

mod props;
mod vectors;
