#!/usr/bin/env bash
# deploy/images.sh: builds mlp-lab's image on a machine whose Docker engine cannot pull.
#
# `docker build .` needs two base images from a registry (the Dockerfile's RUST_IMAGE, the
# official Rust image, and RUNTIME_IMAGE, Debian's slim image). Where no registry can be
# reached, this script makes stand-ins for both from what the machine can reach, then builds
# the Dockerfile unchanged with them as build arguments:
#   - a Debian bookworm root file system made by `debootstrap --variant=minbase` from Debian's
#     mirror, imported with `docker import`               → $BASE_IMAGE (the runtime's base);
#   - that, plus Debian's C compiler, the host's own Rust toolchain (the one `cargo` runs
#     here, copied in: the toolchain's servers are not reachable) and the certificate
#     authorities the host adds to Debian's                → $RUST_IMAGE (the builder).
# The build stage fetches crates from crates.io and the runtime stage installs curl from
# Debian's mirror, both from inside the build's containers: on these machines both are
# reachable from a container as from the host (checked), so nothing is vendored.
#
# Each base image is made once and reused while it exists (REBUILD_BASE=1 makes them again).
#
#   deploy/images.sh            → mlp-lab:latest (prints its size)
#
# Settings (environment):
#   IMAGE          the image to build                         [mlp-lab:latest]
#   SUITE, MIRROR  Debian suite and mirror for debootstrap    [bookworm, http://deb.debian.org/debian]
#   TOOLCHAIN      the Rust toolchain directory to copy in    [rustc --print sysroot]
#   REBUILD_BASE=1 make the base images again
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "images.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

IMAGE=${IMAGE:-mlp-lab:latest}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TOOLCHAIN=${TOOLCHAIN:-$(rustc --print sysroot)}
RUST_VERSION=$("$TOOLCHAIN/bin/rustc" --version | awk '{print $2}')
BASE_IMAGE=mlp-lab-base/debian:$SUITE-minbase
RUST_IMAGE=mlp-lab-base/rust:$RUST_VERSION-$SUITE

command -v docker >/dev/null || die "docker is not installed"
have_image() { [[ ${REBUILD_BASE:-} != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }

WORK=$(mktemp -d /tmp/mlp-lab-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if ! have_image "$BASE_IMAGE"; then
    command -v debootstrap >/dev/null || {
        log "apt-get install debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    }
    log "debootstrap $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # What a base image leaves out, as Debian's slim images do: package lists and caches,
    # logs, documentation, manual pages and translations (also of packages installed later:
    # dpkg is told to skip them), and the build's resolv.conf.
    rm -rf "$WORK/root"/var/lib/apt/lists/* "$WORK/root"/var/cache/apt/*.bin \
        "$WORK/root"/var/cache/apt/archives/*.deb "$WORK/root"/var/log/*.log \
        "$WORK/root"/usr/share/man/* "$WORK/root"/usr/share/info/* "$WORK/root"/usr/share/locale/*
    find "$WORK/root/usr/share/doc" -type f ! -name copyright -delete
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' >"$WORK/root/etc/dpkg/dpkg.cfg.d/slim"
    : >"$WORK/root/etc/resolv.conf"
    tar -C "$WORK/root" --numeric-owner -c . |
        docker import --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/root"
    log "made $BASE_IMAGE"
fi

if ! have_image "$RUST_IMAGE"; then
    log "the builder: $BASE_IMAGE + gcc + the host's Rust $RUST_VERSION"
    mkdir -p "$WORK/rust"
    # Hard links where the toolchain is on the same file system: nothing is copied twice.
    cp -al "$TOOLCHAIN" "$WORK/rust/toolchain" 2>/dev/null || cp -a "$TOOLCHAIN" "$WORK/rust/toolchain"
    rm -rf "$WORK/rust/toolchain/share/doc"
    # The certificate authorities this host adds to Debian's (a TLS-inspecting egress proxy's,
    # say): the builder reaches crates.io through the same network, so it must trust them too.
    # Only the builder has them; the image that is shipped does not.
    mkdir -p "$WORK/rust/ca"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rust/ca/" 2>/dev/null || true
    cat >"$WORK/rust/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
RUN rustc --version && cargo --version
EOF
    docker build -q -t "$RUST_IMAGE" "$WORK/rust" >/dev/null
    log "made $RUST_IMAGE"
fi

BUILD_ARGS=(--build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "RUNTIME_IMAGE=$BASE_IMAGE")
log "docker build -t $IMAGE"
docker build "${BUILD_ARGS[@]}" -t "$IMAGE" .
log "$IMAGE: $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.1f MB", $1 / 1e6}')"
