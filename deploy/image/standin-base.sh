#!/usr/bin/env bash
# Builds a local stand-in for node:20-bookworm-slim where no container registry is reachable:
# a Debian bookworm minbase (debootstrap) plus this machine's node and npm, and the `node` user
# (uid 1000) the official image has. Imported into podman as localhost/cairn-node-standin:20.
# Needs root, debootstrap and podman; takes a few minutes (it downloads Debian packages).
set -euo pipefail
root="$(mktemp -d /var/tmp/cairn-standin.XXXXXX)"
trap 'rm -rf "${root}"' EXIT
debootstrap --variant=minbase bookworm "${root}" http://deb.debian.org/debian >/dev/null
cp "$(readlink -f "$(command -v node)")" "${root}/usr/local/bin/node"
mkdir -p "${root}/usr/local/lib/node_modules"
cp -a "$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" "${root}/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "${root}/usr/local/bin/npm"
chroot "${root}" groupadd --gid 1000 node
chroot "${root}" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
chroot "${root}" node --version
tar -C "${root}" -c . | podman import - localhost/cairn-node-standin:20
