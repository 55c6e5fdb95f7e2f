#!/usr/bin/env bash
# Runs every test of clusterd, installing first what the tests need and is missing:
# Debian packages (a C toolchain for aws-lc, Python's venv) and a Python venv (.venv)
# holding grpcurl. Formatting and clippy are checked too. Works as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "== installing the Rust toolchain (rustup)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

if [ ! -x .venv/bin/grpcurl ]; then
  echo "== creating .venv with grpcurl"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/test-requirements.txt
fi
export PATH="$PWD/.venv/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release
