#!/usr/bin/env bash
# Runs every test of clusterd, installing first what the tests need and is missing:
# Debian packages (a C toolchain for aws-lc, Python's venv, Mesa's software Vulkan driver
# lavapipe so the WGSL kernels run without a GPU) and a Python venv (.venv) holding
# grpcurl and moto (an S3-compatible server). Formatting and clippy are checked too. Works
# as root or with sudo.
#
# The integration tests run twice: on local directory stores, then (same build) with
# CLUSTERD_TEST_STORE=s3 against a moto_server the test process starts on 127.0.0.1.
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

if [ ! -x .venv/bin/grpcurl ] || [ ! -x .venv/bin/moto_server ]; then
  echo "== installing .venv: grpcurl, moto_server"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
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
# A missing moto_server fails the S3 tests instead of skipping them.
export CLUSTERD_REQUIRE_S3=1
echo "== cargo test"
cargo test --release
# The load generator (examples/load.rs) that `cargo test` just built (under
# CARGO_TARGET_DIR in CI, see .ci/run), against the server binary it built: 64 clients
# for 10 s of mixed requests; any error other than a 429 queue-full refusal fails the run.
echo "== load smoke: 64 clients, 10 s"
"${CARGO_TARGET_DIR:-target}/release/examples/load" --clients 64 --seconds 10
echo "== cargo test --test api, on S3 (moto)"
s3_started=$(date +%s)
CLUSTERD_TEST_STORE=s3 cargo test --release --test api
echo "== the S3 pass took $(( $(date +%s) - s3_started )) s"
