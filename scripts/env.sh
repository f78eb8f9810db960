# Sourced by the scripts: one persistent cargo target folder outside the checkout, so that repeated runs and CI
# are not cold builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mobilenetdetect/target}
export CARGO_TERM_PROGRESS_WHEN=never

# Builds one release package, saying what is built and why; cargo's progress shows while it runs (a bar in a
# terminal, one "Compiling" line per crate in a log), since a first build on a fresh machine takes minutes.
# Usage: build_release PACKAGE "what it is, for the reader"
build_release() {
  local package=$1 what=$2 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  echo "== building $what (cargo build --release -p $package; the first build on a fresh machine takes about 12 minutes on 2 cores, later ones seconds)" >&2
  (cd "$root" && CARGO_TERM_PROGRESS_WHEN=auto cargo build --release -p "$package")
}
