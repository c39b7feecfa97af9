//! Link flags for the daemon's binary (not its tests or examples).
//!
//! `-z pack-relative-relocs` (DT_RELR) on x86_64: a position-independent
//! binary carries one relocation per pointer in its read-only data (vtables
//! mostly). As classic `RELA` entries, 24 bytes each, they fill about
//! 150 KiB that the dynamic loader reads at every start and that then stay
//! resident; RELR packs them into a bitmap of a few KiB. The binary stays
//! PIE (ASLR), and its resident memory drops by about 0.15 MiB
//! (docs/benchmarks-daemon.md).
//!
//! It needs glibc 2.36 (Debian 12) at run time: the linker records a need
//! for `GLIBC_ABI_DT_RELR`, so an older glibc refuses the binary at start
//! with that name rather than misbehaving, and the `.deb` depends on
//! `libc6 (>= 2.36)`. Only x86_64: Debian 12's GNU ld for armhf and arm64
//! (what cross/build-debs links the Pi's binaries with) ignores the option
//! with a warning, so there it would only add noise.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
