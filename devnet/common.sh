# Sourced by the devnet scripts: builds once, then knows where the binaries and the devnet
# directory are (KEEL_DEVNET, default ./devnet).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build"
. "$ROOT/scripts/env.sh"
KEEL="$CARGO_TARGET_DIR/$KEEL_PROFILE/keel"
KEEL_LOAD="$CARGO_TARGET_DIR/$KEEL_PROFILE/keel-load"
DIR="${KEEL_DEVNET:-./devnet-data}"
node_pid() { pgrep -f -- "keel run --home .*node$1\$" | head -1; }
node_count() { local n=0; while [ -f "$DIR/node$n/config.toml" ]; do n=$((n + 1)); done; echo "$n"; }
