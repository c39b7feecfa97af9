//! Test harness for the real parts (work in progress).
