//! Link flags for the daemon's binary (not its tests or examples).
//!
//! **Hot code first** (release builds, every Linux target): `hot-code.ld`
//! lists the functions the daemon runs while idle (start, no-change
//! checks, the JSON-RPC status), as patterns of their section names. The
//! linker places them in an output section `.text.hot` before `.text`, so
//! they share about 1 MiB instead of being spread over all 2.5 MiB of the
//! code. Linux maps code in 64 KiB windows around every page a process
//! touches, so spread out they kept nearly the whole binary resident; packed
//! together the idle daemon's code takes 1.0–1.1 MiB of RSS instead of
//! 2.2 MiB (docs/benchmarks-daemon.md, "Hot code first"). `INSERT BEFORE`
//! adds to the linker's default layout instead of replacing it, and both
//! linkers the project uses take it: rustc's LLD on x86_64 and Debian's GNU
//! ld for armhf and arm64. A pattern that matches nothing is no error, so a
//! stale list costs memory, never a build: `scripts/hot-code` regenerates
//! it, and the daemon's RSS step (`scripts/test.d/50-daemon-rss`) says when
//! it is due. Debug builds (the tests) link as before, and so does a build
//! with `PEACH_DYNDNS_HOT_CODE=off`: `scripts/hot-code` profiles the
//! default layout, since valgrind names no function outside `.text`.
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

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=hot-code.ld");
    println!("cargo:rerun-if-env-changed=PEACH_DYNDNS_HOT_CODE");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu && var("PROFILE") == "release" && var("PEACH_DYNDNS_HOT_CODE") != "off" {
        let script = Path::new(&var("CARGO_MANIFEST_DIR")).join("hot-code.ld");
        // `-Xlinker`, not `-Wl,`: a path with a comma or a space in it
        // reaches the linker whole.
        for arg in ["-Xlinker", "-T", "-Xlinker"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        println!("cargo:rustc-link-arg-bins={}", script.display());
    }
    if linux_gnu && var("CARGO_CFG_TARGET_ARCH") == "x86_64" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
