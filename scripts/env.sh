# Sourced by the scripts: one persistent target dir outside the clone, one cargo profile.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel-target}"
export KEEL_PROFILE="${KEEL_PROFILE:-ci}"
mkdir -p "$CARGO_TARGET_DIR"
