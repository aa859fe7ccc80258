# Sourced by the devnet scripts: builds once, then knows where the binaries and the devnet
# directory are (KEEL_DEVNET, default ./devnet-data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# KEEL_NO_BUILD=1: use the binaries already in the target dir (e.g. the tests just built
# them) instead of building the whole workspace first.
[ -n "${KEEL_NO_BUILD:-}" ] || "$ROOT/scripts/build"
. "$ROOT/scripts/env.sh"
KEEL="$CARGO_TARGET_DIR/$KEEL_PROFILE/keel"
KEEL_LOAD="$CARGO_TARGET_DIR/$KEEL_PROFILE/keel-load"
# Absolute (symlinks kept), so every script names a devnet's processes the same way however
# it was spelled; scripts/devnet names its directory so too.
DIR="$(realpath -ms "${KEEL_DEVNET:-./devnet-data}")"
# Validator I's process: `keel run --home $DIR/nodeI` exactly as keel devnet and start_node
# spell it (never another devnet's or a test cluster's validator on the same machine).
node_pid() {
  local home
  home="$(printf '%s' "$DIR/node$1" | sed 's/[][\\.*^$+?(){}|]/\\&/g')"
  pgrep -f -- "keel run --home $home\$" | head -1
}
node_count() { local n=0; while [ -f "$DIR/node$n/config.toml" ]; do n=$((n + 1)); done; echo "$n"; }
# A devnet started with `devnet/up --netns` runs each validator in a network namespace of
# devnet/netns; this file remembers which (TAG=…, SUBNET=…), so restarts and chaos use them.
NETNS_ENV="$DIR/netns.env"
netns_on() { [ -f "$NETNS_ENV" ]; }
netns() {
  (. "$NETNS_ENV"; KEEL_NETNS_TAG="$TAG" KEEL_NETNS_SUBNET="$SUBNET" "$ROOT/devnet/netns" "$@")
}
# Starts validator I in the background the way `keel devnet` did (in its namespace if any).
start_node() {
  local wrap=()
  if netns_on; then wrap=(ip netns exec "keel-$(. "$NETNS_ENV"; echo "$TAG")-$1"); fi
  nohup "${wrap[@]}" "$KEEL" run --home "$DIR/node$1" >>"$DIR/node$1/node.log" 2>&1 &
}
# Validator I's RPC URL (from its config.toml) and finalized height (empty if it does not
# answer).
rpc_url() { sed -n '/^\[rpc\]/,/^\[/s/^listen = "\(.*\)"/http:\/\/\1/p' "$DIR/node$1/config.toml"; }
height() { "$KEEL" query status --rpc "$(rpc_url "$1")" 2>/dev/null | jq -r '.height // empty' || true; }
