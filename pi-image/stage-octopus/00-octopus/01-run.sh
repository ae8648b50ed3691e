#!/bin/bash -e
# pi-gen, on the build host: copy what build.sh staged into the image.
FILES="$(dirname "$0")/files"
[ -f "${FILES}/octopus.service" ] || { echo "stage-octopus: run pi-image/build.sh first (files/ is empty)" >&2; exit 1; }

install -d -m 755 "${ROOTFS_DIR}/opt/octopus/wheels" "${ROOTFS_DIR}/opt/octopus/model"
install -m 644 "${FILES}"/wheels/*.whl "${ROOTFS_DIR}/opt/octopus/wheels/"
cp -r "${FILES}/model/." "${ROOTFS_DIR}/opt/octopus/model/"
chmod -R a+rX,go-w "${ROOTFS_DIR}/opt/octopus/model"
install -m 644 "${FILES}/README.md" "${ROOTFS_DIR}/opt/octopus/README.md"
install -m 644 "${FILES}/octopus.service" "${ROOTFS_DIR}/etc/systemd/system/octopus.service"
install -d -m 750 "${ROOTFS_DIR}/etc/octopus"
install -d -m 700 "${ROOTFS_DIR}/etc/octopus/credentials"
if [ ! -f "${ROOTFS_DIR}/etc/octopus/config.toml" ]; then
    install -m 640 "${FILES}/config.toml" "${ROOTFS_DIR}/etc/octopus/config.toml"
fi
