#!/usr/bin/env bash
# Build a Raspberry Pi OS (Bookworm, arm64) image that boots into the octopus daemon.
#
#   pi-image/build.sh --model runs/quick/onnx [--pi-gen DIR] [--hostname octopus] [--ssh-key ~/.ssh/id_ed25519.pub]
#   pi-image/build.sh --model runs/quick/onnx --stage-only      # only fill stage-octopus/ (your own pi-gen run)
#
# Steps: check the exported model against its manifest, build our wheel, copy wheel + model + systemd unit +
# config template into stage-octopus/00-octopus/files/, write a pi-gen config, run pi-gen (Docker by default:
# build-docker.sh; --no-docker runs build.sh natively, which needs root on Debian). The image appears in
# DIR/deploy/. Needs network for pi-gen (apt) and for pip inside the image (onnxruntime, tokenizers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
STAGE="$HERE/stage-octopus"
FILES="$STAGE/00-octopus/files"
PI_GEN_URL="https://github.com/RPi-Distro/pi-gen.git"
PI_GEN_REF="2025-05-13-raspios-bookworm-arm64"  # a tested release tag of the arm64 branch

MODEL=""
PI_GEN_DIR="$REPO/build/pi-gen"
HOSTNAME_="octopus"
SSH_KEY=""
STAGE_ONLY=0
USE_DOCKER=1
PYTHON="${PYTHON:-python3}"

die() { echo "build.sh: $*" >&2; exit 2; }

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="${2:-}"; shift 2 ;;
        --pi-gen) PI_GEN_DIR="${2:-}"; shift 2 ;;
        --hostname) HOSTNAME_="${2:-}"; shift 2 ;;
        --ssh-key) SSH_KEY="${2:-}"; shift 2 ;;
        --stage-only) STAGE_ONLY=1; shift ;;
        --no-docker) USE_DOCKER=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[[ -n "$MODEL" ]] || die "--model DIR is required (an exported folder: octopus export --int8)"
[[ -f "$MODEL/manifest.json" ]] || die "$MODEL has no manifest.json (export it with: octopus export --int8)"
[[ -z "$SSH_KEY" || -f "$SSH_KEY" ]] || die "no SSH public key at $SSH_KEY"
[[ "$HOSTNAME_" =~ ^[a-z0-9-]{1,63}$ ]] || die "--hostname must be lower-case letters, digits and dashes"

echo "==> checking $MODEL against its manifest"
# every file the runtime reads (graphs of each precision, embedding table, tokenizer), as `octopus doctor` does
"$PYTHON" "$REPO/core/bundle.py" verify "$MODEL" || die "$MODEL does not match its manifest (export it again)"

echo "==> building the octopus wheel"
rm -rf "$FILES"
mkdir -p "$FILES/wheels" "$FILES/model"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$FILES/wheels" "$REPO"

echo "==> staging the model, the unit and the config template"
cp -r "$MODEL"/. "$FILES/model/"
cp "$REPO/device/systemd/octopus.service" "$FILES/octopus.service"
cp "$REPO/device/systemd/config.toml" "$FILES/config.toml"
cp "$REPO/README.md" "$FILES/README.md"

if [[ "$STAGE_ONLY" -eq 1 ]]; then
    echo "==> stage ready: $STAGE (add it to your pi-gen STAGE_LIST after stage2)"
    exit 0
fi

if [[ ! -d "$PI_GEN_DIR" ]]; then
    echo "==> fetching pi-gen $PI_GEN_REF"
    git clone --depth 1 --branch "$PI_GEN_REF" "$PI_GEN_URL" "$PI_GEN_DIR"
fi

echo "==> writing the pi-gen config"
{
    echo "IMG_NAME=octopus"
    echo "RELEASE=bookworm"
    echo "TARGET_HOSTNAME=$HOSTNAME_"
    echo "FIRST_USER_NAME=pi"
    echo "ENABLE_SSH=1"
    echo "DISABLE_FIRST_BOOT_USER_RENAME=0"
    echo "STAGE_LIST=\"stage0 stage1 stage2 $STAGE\""
    if [[ -n "$SSH_KEY" ]]; then
        echo "PUBKEY_SSH_FIRST_USER=\"$(cat "$SSH_KEY")\""
        echo "PUBKEY_ONLY_SSH=1"
    fi
} > "$PI_GEN_DIR/config"
touch "$PI_GEN_DIR/stage2/SKIP_IMAGES"  # export only the final image, with octopus in it

echo "==> running pi-gen (this takes 30-60 minutes)"
cd "$PI_GEN_DIR"
if [[ "$USE_DOCKER" -eq 1 ]]; then
    ./build-docker.sh
else
    ./build.sh
fi
shopt -s nullglob
images=("$PI_GEN_DIR"/deploy/*.img*)
echo "==> done: ${images[*]:-no image in $PI_GEN_DIR/deploy (see the pi-gen log above)}"
