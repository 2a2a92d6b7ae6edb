#!/bin/sh
# base-image.sh - make the base image of contrib/Dockerfile locally, from
# Debian's apt archive, for machines that cannot pull from a container registry.
#
# Usage (as root): contrib/base-image.sh [TAG]
#     TAG defaults to docker.io/library/debian:12-slim, the name the
#     Dockerfile's FROM debian:12-slim resolves to, so that a following
#     `podman build` finds it in local storage and pulls nothing.
#
# It runs `debootstrap --variant=minbase bookworm` (essential packages plus
# apt, as debian:12-slim holds), drops what the slim image drops (apt lists,
# documentation, man pages, locales other than C), configures dpkg to skip them
# in later installs like the slim image does, and imports the tree with
# `podman import`. The result is an equivalent of debian:12-slim, not a copy:
# package versions are those of the mirror today.
#
# Environment: MIRROR (default http://deb.debian.org/debian), ENGINE (podman,
# or docker: `docker import` takes the same arguments).
# Needs (Debian): debootstrap, podman (or docker).
set -eu
tag=${1:-docker.io/library/debian:12-slim}
mirror=${MIRROR:-http://deb.debian.org/debian}
engine=${ENGINE:-podman}
for tool in debootstrap "$engine"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "base-image: $tool not found (Debian package $tool)" >&2
        exit 1
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "base-image: debootstrap needs root" >&2
    exit 1
fi
root=$(mktemp -d "${TMPDIR:-/var/tmp}/wsgate-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"
# What debian:12-slim leaves out, and dpkg told to keep leaving it out.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"* \
    "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb \
    "$root/var/log/"*.log "$root/var/log/apt/"* "$root/tmp/"*
# The image's /etc/resolv.conf and /etc/hostname come from the engine at run time.
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"
tar --numeric-owner --xattrs -C "$root" -c . |
    "$engine" import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm $mirror" - "$tag"
"$engine" image ls "$tag"
