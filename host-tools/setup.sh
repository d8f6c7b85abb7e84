#!/usr/bin/env bash
# Sets up a machine to build, run and test homemx. Idempotent: installs only what is missing.
#
# - Firmware toolchain: rustup's standard libraries for both boards' targets,
#   thumbv7em-none-eabihf (QEMU's mps2-an386) and thumbv8m.main-none-eabihf (the
#   STM32H573I-DK), where `rustup target add` works (a developer laptop); otherwise Debian's
#   rustc-web with its std source, which the build uses with RUSTC_BOOTSTRAP=1 -Zbuild-std for
#   either target (see qemu/src/firmware.rs).
# - QEMU (qemu-system-arm, mps2-an386), iproute2 (network namespaces), socat (the serial
#   console), dnsmasq (the test network's DHCP server), openssl (test certificates),
#   aiosmtpd from PyPI (the test LAN's mailbox host and the provider's smarthost), dnslib
#   from PyPI (the provider's DNS server), cryptography from PyPI (the rogue TLS 1.3
#   server), cargo-fuzz (fuzz smoke runs), Dovecot's core and POP3 server (the provider's
#   backup MX mailbox: the tests run a private instance each; the system service Debian
#   starts on install would listen on every interface, so this script stops and disables it
#   when it installed Dovecot itself), Postfix (the provider's smarthost in the certificate
#   tests: the tests run a private instance each; debconf is told "No configuration", so the
#   package writes no /etc/postfix/main.cf and its service cannot start, and the service is
#   stopped and disabled as well; apt may not remove another mail server to make room for
#   it: where one is installed, Postfix is left out with a note), swaks and testssl.sh (the
#   submission and TLS-listener tests' clients: AUTH on 587/465, the protocol, cipher and
#   vulnerability scan of 25/587/465; Postfix also sends to the appliance in the inbound TLS
#   test), Pebble (`pebble` and `pebble-challtestsrv`, Let's Encrypt's ACME test CA: the ACME
#   client's test runs a private instance on 127.0.0.1; the package starts no service).
# - The instruction-counting QEMU plugin (qemu/plugin/operation_counts.c, gcc, xz-utils):
#   built into target/qemu-plugin/ against include/qemu/qemu-plugin.h of Debian's qemu source
#   package (Debian's QEMU ships no plugin header and no plugins). The source package comes
#   from deb-src entries made from the machine's own Debian sources, in a private apt state
#   directory (the system's apt configuration is not changed); only the header is kept, not
#   vendored. Skipped when built and newer than its source.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

packages=()
have() { command -v "$1" >/dev/null 2>&1; }

have qemu-system-arm || packages+=(qemu-system-arm)
have ip || packages+=(iproute2)
have dnsmasq || packages+=(dnsmasq-base)
have curl || packages+=(curl)
have socat || packages+=(socat)
have openssl || packages+=(openssl)
have gcc || packages+=(gcc libc6-dev)
have xz || packages+=(xz-utils)
have python3 || packages+=(python3 python3-pip)
have chromium || packages+=(chromium fonts-dejavu-core)
have swaks || packages+=(swaks)
# swaks's TLS (--tls, --tls-on-connect) is Net::SSLeay, only a recommendation of the package.
perl -MNet::SSLeay -e 1 >/dev/null 2>&1 || packages+=(libnet-ssleay-perl)
have testssl || packages+=(testssl.sh)
{ have pebble && have pebble-challtestsrv; } || packages+=(pebble)
installing_dovecot=""
if ! { [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ]; }; then
  packages+=(dovecot-core dovecot-pop3d)
  installing_dovecot=yes
fi

installing_postfix=""
if ! { [ -x /usr/sbin/postfix ] && [ -x /usr/lib/postfix/sbin/master ]; }; then
  installing_postfix=yes
fi

targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf)
have_rustup_targets() {
  local installed target
  installed=$(rustup target list --installed 2>/dev/null) || return 1
  for target in "${targets[@]}"; do grep -qx "$target" <<<"$installed" || return 1; done
}
firmware_toolchain=""
if have rustup && have_rustup_targets; then
  firmware_toolchain=rustup
elif have rustup && timeout 300 rustup target add "${targets[@]}" >/dev/null 2>&1 && have_rustup_targets; then
  firmware_toolchain=rustup
  log "installed the ${targets[*]} standard libraries with rustup"
else
  firmware_toolchain=debian
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] || packages+=(rustc-web cargo-web rust-web-src)
  [ -x /usr/bin/rust-lld ] || packages+=(lld-22)
fi

if [ ${#packages[@]} -gt 0 ]; then
  log "installing Debian packages: ${packages[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=""; fi
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
  if [ -n "$installing_dovecot" ] && [ -d /run/systemd/system ] && have systemctl; then
    log "stopping and disabling the system Dovecot service (the tests run their own instances)"
    $sudo systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
fi

if [ -n "$installing_postfix" ]; then
  log "installing Postfix (the provider's smarthost in the certificate tests; no system configuration)"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=""; fi
  [ ${#packages[@]} -gt 0 ] || $sudo apt-get update -q >/dev/null
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  # --no-remove: never replace a mail server the machine already has (Postfix conflicts with
  # every other MTA package).
  if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends --no-remove postfix >/dev/null; then
    if [ -d /run/systemd/system ] && have systemctl; then
      log "stopping and disabling the system Postfix service (the tests run their own instances)"
      $sudo systemctl disable --now postfix.service >/dev/null 2>&1 || true
    elif [ -x /usr/sbin/postfix ] && [ -f /etc/postfix/main.cf ]; then
      $sudo /usr/sbin/postfix stop >/dev/null 2>&1 || true
    fi
  else
    log "NOTE: Postfix not installed (another mail server is installed and apt would remove it);"
    log "      the provider_certificates and postfix_peer tests need it: install postfix yourself"
  fi
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  log "installing aiosmtpd (the test LAN's mailbox host)"
  python3 -m pip install --quiet --disable-pip-version-check aiosmtpd
fi

if ! python3 -c 'import dnslib' >/dev/null 2>&1; then
  log "installing dnslib (the provider's DNS server in the end-to-end tests)"
  python3 -m pip install --quiet --disable-pip-version-check dnslib
fi

if ! python3 -c 'import cryptography.hazmat.primitives.asymmetric.x25519' >/dev/null 2>&1; then
  log "installing cryptography (the rogue TLS 1.3 server in the end-to-end tests)"
  python3 -m pip install --quiet --disable-pip-version-check cryptography
fi

# The firmware links through flip-link (the stack below the statics: an overflow faults).
if ! have flip-link && [ ! -x "$HOME/.cargo/bin/flip-link" ]; then
  log "installing flip-link (the firmware's linker wrapper)"
  cargo install --quiet --locked flip-link@0.1.12
fi

if ! have cargo-fuzz && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz (takes a couple of minutes once)"
  cargo install --quiet --locked cargo-fuzz
fi

# QEMU's plugin header from Debian's qemu source package, for the installed QEMU's release.
fetch_qemu_plugin_header() {
  local header=$1 work codename
  work=$(mktemp -d)
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || { log "cannot tell the Debian release (VERSION_CODENAME)"; return 1; }
  mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/source"
  # deb-src twins of the machine's deb822 entries for $codename main.
  awk -v codename="$codename" '
    BEGIN { RS = ""; FS = "\n" }
    {
      types = uris = suites = components = signed = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Types:/) types = $i; else if ($i ~ /^URIs:/) uris = $i
        else if ($i ~ /^Suites:/) suites = $i; else if ($i ~ /^Components:/) components = $i
        else if ($i ~ /^Signed-By:/) signed = $i
      }
      if (types ~ /deb/ && (suites " ") ~ (" " codename " ") && components ~ / main( |$)/)
        printf "Types: deb-src\n%s\nSuites: %s\nComponents: main\n%s\n\n", uris, codename, signed
    }' /etc/apt/sources.list.d/*.sources > "$work/parts/deb-src.sources" 2>/dev/null || true
  # One-line sources.list entries, where the machine has those instead.
  if [ -f /etc/apt/sources.list ]; then
    awk -v codename="$codename" '$1 == "deb" && $3 == codename && / main/ { $1 = "deb-src"; print $1, $2, $3, "main" }' \
      /etc/apt/sources.list > "$work/sources.list"
  else
    : > "$work/sources.list"
  fi
  if [ ! -s "$work/parts/deb-src.sources" ] && [ ! -s "$work/sources.list" ]; then
    log "no Debian $codename main entry in /etc/apt to fetch QEMU's source package from"
    return 1
  fi
  local apt=(apt-get -q -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
  "${apt[@]}" update > "$work/apt.log" 2>&1 \
    && (cd "$work/source" && "${apt[@]}" source --download-only qemu >> "$work/apt.log" 2>&1) \
    || { log "fetching Debian's qemu source package failed:"; tail -5 "$work/apt.log" >&2; return 1; }
  local tarball
  tarball=$(ls "$work"/source/qemu_*.orig.tar.* 2>/dev/null | head -1)
  [ -n "$tarball" ] || { log "Debian's qemu source package has no upstream tarball"; return 1; }
  tar -xf "$tarball" -C "$work" --wildcards --no-anchored 'include/qemu/qemu-plugin.h'
  mkdir -p "$(dirname "$header")"
  cp "$(find "$work" -path '*/include/qemu/qemu-plugin.h' | head -1)" "$header"
}

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugin_directory="$repository/target/qemu-plugin"
plugin_source="$repository/qemu/plugin/operation_counts.c"
plugin="$plugin_directory/libhomemx_operation_counts.so"
plugin_header="$plugin_directory/include/qemu-plugin.h"
if [ ! -f "$plugin" ] || [ "$plugin_source" -nt "$plugin" ]; then
  if [ ! -f "$plugin_header" ]; then
    log "fetching QEMU's plugin header from Debian's qemu source package (about 24 MB, once)"
    fetch_qemu_plugin_header "$plugin_header"
  fi
  log "building the instruction-counting QEMU plugin: $plugin"
  gcc -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -I "$(dirname "$plugin_header")" \
    -o "$plugin" "$plugin_source"
fi

log "firmware toolchain: $firmware_toolchain; qemu: $(qemu-system-arm --version | head -1)"
