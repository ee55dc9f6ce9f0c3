#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the store conformance suite (SQLite), the
# crash test, and the kubectl integration tests against a real `skiff server`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
