# Sourced by the scripts: one persistent target dir outside the clone, one cargo profile.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel-target}"
export KEEL_PROFILE="${KEEL_PROFILE:-ci}"
mkdir -p "$CARGO_TARGET_DIR"
# The Python venv with web3.py that scripts/setup installs (cli/tests/eth_rpc.rs uses it).
export KEEL_PY_VENV="${KEEL_PY_VENV:-$HOME/.cache/keel-py}"
export KEEL_PYTHON="${KEEL_PYTHON:-$KEEL_PY_VENV/bin/python}"
# ethers, viem and playwright-core (cli/tests/js), installed by scripts/setup from the committed lock file.
export KEEL_JS_DIR="${KEEL_JS_DIR:-$HOME/.cache/keel-js}"
