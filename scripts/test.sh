#!/usr/bin/env bash
# Runs every test of clusterd, installing first what the tests need and is missing:
# Debian packages (a C toolchain for aws-lc, Python's venv, Mesa's software Vulkan driver
# lavapipe so the WGSL kernels run without a GPU) and a Python venv (.venv) holding
# grpcurl. Formatting and clippy are checked too. Works as root or with sudo.
#
# GPU tests need a wgpu adapter. With CLUSTERD_REQUIRE_GPU=1 (CI sets it) a missing
# adapter fails them; otherwise they skip with a visible "SKIPPED" message.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || missing+=(libvulkan1)
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
# wgpu and Vulkan warn when this is unset; a private 0700 directory silences them.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/clusterd-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release
