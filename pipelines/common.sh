# Sourced by the pipeline scripts. In a source checkout: sets up (first run), builds the plugin and the trainer
# once, and points GStreamer at them. Installed (the Debian package, scripts/package): the plugin is in
# GStreamer's system plugin folder and mobilenet-trainer on PATH, so nothing is set up or built.
# Sets `trainer`: the mobilenet-trainer to run (MOBILENETDETECT_TRAINER overrides it).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -f $root/scripts/setup ]]; then
  "$root/scripts/setup"
  source "$root/scripts/env.sh"
  # scripts/test builds everything before running the tests that call these scripts (no nested cargo there).
  if [[ -z ${MOBILENETDETECT_PREBUILT:-} || ! -f $CARGO_TARGET_DIR/release/libgstmobilenetdetect.so ]]; then
    build_release "the GStreamer plugin (libgstmobilenetdetect.so) and mobilenet-trainer"
  fi
  export GST_PLUGIN_PATH="$CARGO_TARGET_DIR/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  trainer=${MOBILENETDETECT_TRAINER:-$CARGO_TARGET_DIR/release/mobilenet-trainer}
else
  trainer=${MOBILENETDETECT_TRAINER:-mobilenet-trainer}
fi

# The first H.264 encoder GStreamer has: x264enc (plugins-ugly) or openh264enc (plugins-bad).
h264_encoder() {
  for e in x264enc openh264enc; do
    if gst-inspect-1.0 "$e" >/dev/null 2>&1; then
      case $e in
        x264enc) echo "x264enc tune=zerolatency speed-preset=veryfast" ;;
        *) echo "$e" ;;
      esac
      return 0
    fi
  done
  echo "no H.264 encoder: install gstreamer1.0-plugins-ugly (x264enc) or gstreamer1.0-plugins-bad (openh264enc)" >&2
  return 1
}

# gst-launch-1.0 for a pipeline that encodes with openh264enc. gst-plugins-bad's openh264enc drains the encoder at
# EOS with an EncodeFrame call without a picture, which OpenH264 answers by printing
# "[OpenH264] ... Error:CWelsH264SVCEncoder::EncodeFrame(), cmInitParaError." although every frame was encoded and
# the MP4 is complete (it happens on every EOS, with any settings). That one line is dropped; the rest of stderr
# passes, and the exit status is gst-launch's.
launch_encoding() {
  gst-launch-1.0 "$@" 2> >(grep -v --line-buffered 'EncodeFrame(), cmInitParaError' >&2)
}

# The source part of a pipeline: a file, a V4L2 camera, or the synthetic test source.
source_part() {
  local kind=$1 arg=$2 frames=$3
  local n=""
  [[ -n $frames ]] && n="num-buffers=$frames"
  case $kind in
    file) echo "filesrc location=\"$arg\" ! decodebin ! videoconvert" ;;
    camera) echo "v4l2src device=\"$arg\" $n ! videoconvert" ;;
    test) echo "detecttestsrc is-live=true $n ${arg:+seed=$arg} ! video/x-raw,width=640,height=480,framerate=30/1" ;;
  esac
}
