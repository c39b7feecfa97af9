//! muxrpc client for ssb-server (work in progress).
