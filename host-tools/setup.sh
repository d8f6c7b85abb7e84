#!/usr/bin/env bash
# Sets up a machine to build, run and test homemx. Idempotent: installs only what is missing.
#
# - Firmware toolchain: rustup's thumbv7em-none-eabihf standard library where `rustup target
#   add` works (a developer laptop); otherwise Debian's rustc-web with its std source, which
#   the build uses with RUSTC_BOOTSTRAP=1 -Zbuild-std (see qemu/src/firmware.rs).
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
#   it: where one is installed, Postfix is left out with a note).
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
have python3 || packages+=(python3 python3-pip)
have chromium || packages+=(chromium fonts-dejavu-core)
installing_dovecot=""
if ! { [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ]; }; then
  packages+=(dovecot-core dovecot-pop3d)
  installing_dovecot=yes
fi

installing_postfix=""
if ! { [ -x /usr/sbin/postfix ] && [ -x /usr/lib/postfix/sbin/master ]; }; then
  installing_postfix=yes
fi

target=thumbv7em-none-eabihf
firmware_toolchain=""
if have rustup && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  firmware_toolchain=rustup
elif have rustup && timeout 300 rustup target add "$target" >/dev/null 2>&1 \
     && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  firmware_toolchain=rustup
  log "installed the $target standard library with rustup"
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

if ! have cargo-fuzz && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz (takes a couple of minutes once)"
  cargo install --quiet --locked cargo-fuzz
fi

log "firmware toolchain: $firmware_toolchain; qemu: $(qemu-system-arm --version | head -1)"
