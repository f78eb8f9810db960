# Sourced by the scripts: one persistent cargo target folder outside the checkout, so that repeated runs and CI
# are not cold builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mobilenetdetect/target}
export CARGO_TERM_PROGRESS_WHEN=never
