#!/usr/bin/env bash
# Build the operator images and the receiver's without any image registry.
#
#   docker/build-images.sh               # on the public base image (python:3.11-slim-bookworm)
#   docker/build-images.sh --local-base  # on a Debian base built here with mmdebstrap (offline)
#
# Python packages come from a wheelhouse made on this host (docker/build/wheelhouse): the
# project's own wheel plus the dependencies of all its extras, as Linux wheels for CPython 3.11;
# each image installs its own extra from it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
build="$here/build"
python="${PYTHON:-python3}"
tag="${IMAGE_TAG:-0.1.0}"
base_image="${BASE_IMAGE:-python:3.11-slim-bookworm}"
local_base=local/debian-python:bookworm-slim

build_local_base() {
    if docker image inspect "$local_base" >/dev/null 2>&1; then
        echo "== base image $local_base exists"
        return
    fi
    echo "== building base image $local_base with mmdebstrap"
    mkdir -p "$build"
    # merged /usr by mmdebstrap's hook rather than the usrmerge package, which brings perl (50 MB)
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        bookworm "$build/rootfs.tar" /etc/apt/sources.list.d/debian.sources
    docker import --change 'ENV LANG=C.UTF-8' "$build/rootfs.tar" "$local_base"
    rm -f "$build/rootfs.tar"
}

build_wheelhouse() {
    echo "== wheelhouse"
    local arch
    arch="$(uname -m)"
    [[ $arch == arm64 ]] && arch=aarch64
    rm -rf "$build/wheelhouse" "$root/build/lib"  # setuptools' build/lib may hold deleted modules
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$build/wheelhouse" "$root"
    "$python" -m pip download --quiet --only-binary=:all: --dest "$build/wheelhouse" \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform "manylinux_2_28_$arch" --platform "manylinux2014_$arch" --platform any \
        "$(echo "$build"/wheelhouse/*.whl)[all]"  # every operator's extra
}

if [[ ${1:-} == --local-base ]]; then
    build_local_base
    base_image="$local_base"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--local-base]" >&2
    exit 2
fi
build_wheelhouse
# In parallel: most of a classic build is the engine committing each step, not CPU.
operators=(dicom-parser series-selector dicom-receiver series-report)
builds=()
for operator in "${operators[@]}"; do
    echo "== image series-selection/$operator:$tag on $base_image"
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$base_image" \
        --file "$here/$operator.Dockerfile" --tag "series-selection/$operator:$tag" "$here" \
        >"$build/$operator.log" 2>&1 &
    builds+=($!)
done
failed=0
for index in "${!builds[@]}"; do
    operator=${operators[$index]}
    if ! wait "${builds[$index]}"; then
        echo "image series-selection/$operator:$tag failed to build; its last lines" \
            "($build/$operator.log):" >&2
        tail -n 5 "$build/$operator.log" >&2
        failed=1
    fi
done
[[ $failed == 0 ]] || exit 1
# The install stages and the images these builds replaced are left untagged: remove ours only.
docker image prune --force --filter label=series-selection.image >/dev/null
