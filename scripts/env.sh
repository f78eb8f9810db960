# Sourced by the scripts: one persistent cargo target folder outside the checkout, so that repeated runs and CI
# are not cold builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mobilenetdetect/target}
export CARGO_TERM_PROGRESS_WHEN=never

# Builds the workspace's plugin and programs in the one profile everything uses (release, line tables only), saying
# what is built and why; cargo's progress shows while it runs (a bar in a terminal, one "Compiling" line per crate
# in a log), since a first build on a fresh machine takes minutes. Always the whole workspace, never `-p`: cargo
# unifies features over the packages it builds, so building one package alone would compile shared crates a
# second time with other features. scripts/test builds the same plus the test targets, on top of this build.
# Usage: build_release "what is needed, for the reader"
build_release() {
  local what=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  echo "== building $what (cargo build --release --workspace: the plugin and mobilenet-trainer; the first build on a fresh machine takes about 12 minutes on 2 cores, later ones seconds)" >&2
  (cd "$root" && CARGO_TERM_PROGRESS_WHEN=auto cargo build --release --workspace)
}

# Real footage from Debian's packages, fetched on first use into .deps/media/ (printing the path): OpenCV's
# vtest.avi (795 frames of pedestrians, 768x576, MPEG-4 part 2) from opencv-doc (a 95 MB download, once).
# Usage: media_file vtest.avi
media_file() {
  local name=$1 root dir tmp
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=$root/.deps/media
  if [[ ! -f $dir/$name ]]; then
    case $name in
      vtest.avi)
        echo "== fetching Debian's opencv-doc (about 95 MB, once) for OpenCV's example video vtest.avi" >&2
        tmp=$(mktemp -d)
        # As root, apt's download user (_apt) cannot write into a private temporary folder.
        local sandbox=()
        [[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
        (cd "$tmp" && apt-get download -q "${sandbox[@]}" opencv-doc >&2)
        dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb |
          tar -x -C "$tmp" ./usr/share/doc/opencv-doc/examples/data/vtest.avi
        mkdir -p "$dir"
        mv "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$dir/$name"
        rm -rf "$tmp"
        ;;
      *) echo "media_file: no recipe for $name" >&2; return 1 ;;
    esac
  fi
  echo "$dir/$name"
}
