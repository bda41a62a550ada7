#!/usr/bin/env bash
# The browser tests (tests/e2e) drive Debian's chromium through Playwright; Playwright's
# own browser download is never used. Installs chromium when it is missing and we are
# root; otherwise says how and fails, so `make test` stops before the suite starts.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

packages=(chromium chromium-driver)
if [ "$(id -u)" -eq 0 ]; then
  # A fresh machine may have no package lists yet: update only when the install fails.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  fi
  exit 0
fi

cat >&2 <<MSG
The browser tests need chromium at /usr/bin/chromium, which is missing. Install it with:
  sudo apt-get update && sudo apt-get install -y ${packages[*]}
MSG
exit 1
