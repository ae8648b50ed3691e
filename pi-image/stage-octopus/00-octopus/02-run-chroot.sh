#!/bin/bash -e
# pi-gen, inside the image: the service user, the venv, the wheel, the unit.

if ! id octopus >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/octopus --no-create-home --shell /usr/sbin/nologin octopus
fi
usermod --append --groups video,gpio octopus
chgrp octopus /etc/octopus /etc/octopus/config.toml

# --system-site-packages: picamera2 and lgpio come from apt (libcamera's bindings are not on PyPI);
# numpy<2 keeps apt's numpy 1.x, which picamera2's compiled helpers are built against.
wheels=(/opt/octopus/wheels/octopus_agent-*.whl)
python3 -m venv --system-site-packages /opt/octopus/venv
/opt/octopus/venv/bin/pip install --no-cache-dir --disable-pip-version-check "numpy<2" "${wheels[-1]}[device]"
/opt/octopus/venv/bin/octopus functions >/dev/null

systemctl enable octopus.service
