# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Shared by cross/setup, cross/build-debs and cross/test: the target table,
# the paths everything agrees on, and small helpers. Sourced, never run.

# The three architectures we ship. Debian's name, Rust's target triple and
# the GNU triple of Debian's cross toolchain (also the directory under /usr
# that holds that architecture's libc, which QEMU's -L needs).
PEACH_ARCHES=(amd64 arm64 armhf)
declare -A RUST_TRIPLE=(
  [amd64]=x86_64-unknown-linux-gnu
  [arm64]=aarch64-unknown-linux-gnu
  [armhf]=armv7-unknown-linux-gnueabihf
)
declare -A GNU_TRIPLE=(
  [amd64]=x86_64-linux-gnu
  [arm64]=aarch64-linux-gnu
  [armhf]=arm-linux-gnueabihf
)
# qemu-user-static binary that runs each foreign architecture.
declare -A QEMU_BIN=(
  [arm64]=qemu-aarch64-static
  [armhf]=qemu-arm-static
)

# The two packages, and the Cargo profile each is built with: the daemon
# aborts on panic (systemd restarts it, and the binary is smaller); the
# server keeps unwinding so a panicking request task does not take the
# whole pub down. Both profiles are defined in the root Cargo.toml.
PEACH_PACKAGES=(peach-dyndns-server peach-dyndns-daemon)
declare -A CARGO_PROFILE=(
  [peach-dyndns-server]=release
  [peach-dyndns-daemon]=release-daemon
)

PEACH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One target directory shared by every checkout on the machine (the team's
# convention); outside the clone so a fresh clone builds warm.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/peach-dyndns/target}
# Debootstrap tarballs, the rustc-web sysroot and other slow-to-make things.
PEACH_CACHE=${PEACH_CACHE:-$HOME/.cache/peach-dyndns}
# Debian release the packages are built for: Debian 12 and Raspberry Pi OS
# bookworm (glibc 2.36).
PEACH_SUITE=${PEACH_SUITE:-bookworm}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mFAILED: %s\033[0m\n' "$*" >&2; exit 1; }

# Root, or sudo when we are not root (apt-get, dpkg, debootstrap, chroot).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian mirror the machine's apt already uses (never hard-coded: the
# repository must not name a registry host). Reads one-line sources.list
# entries and deb822 .sources files; picks the first "deb" entry that serves
# the main archive (not -security, not -updates).
debian_mirror() {
  local f uri=
  if [ -n "${PEACH_DEBIAN_MIRROR:-}" ]; then printf '%s\n' "$PEACH_DEBIAN_MIRROR"; return; fi
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) !~ /-(security|updates|backports)$/ && $(i+1) !~ /\//) { print $i; exit }
      }' "$f")
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -r "$f" ] || continue
      # deb822: blank-line separated stanzas; want Types: deb and a Suites
      # line naming the plain release.
      uri=$(awk -v RS= -v suite="$PEACH_SUITE" '
        /(^|\n)Types:[^\n]*deb([ \n]|$)/ && $0 ~ ("Suites:[^\n]*[ ]" suite "([ \n]|$)") {
          n = split($0, l, "\n")
          for (k = 1; k <= n; k++) if (l[k] ~ /^URIs:/) { split(l[k], w, " "); print w[2]; exit }
        }' "$f")
      [ -n "$uri" ] && break
    done
  fi
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list*; set PEACH_DEBIAN_MIRROR"
  printf '%s\n' "$uri"
}

# Seconds since the epoch, for step timings.
now() { date +%s; }
