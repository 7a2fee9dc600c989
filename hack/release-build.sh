#!/usr/bin/env bash
# Builds the release binaries, linux/amd64 and linux/arm64, into dist/ with SHA-256 checksums
# — what .goreleaser.yaml builds in the release workflow, without goreleaser, so that a
# release can be built and checked on any machine with Go and (for arm64 on an amd64
# machine) Debian's gcc-aarch64-linux-gnu: NVML is loaded through cgo.
#
#   hack/release-build.sh [VERSION]     (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(git describe --tags --always --dirty)}
commit=$(git rev-parse HEAD)
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.37.1 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
ldflags+=" -X github.com/gpuwarden/gpuwarden/internal/version.Version=$version"
ldflags+=" -X github.com/gpuwarden/gpuwarden/internal/version.Commit=$commit"
ldflags+=" -X github.com/gpuwarden/gpuwarden/internal/version.Date=$date"
export CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}
rm -rf dist && mkdir -p dist
for arch in amd64 arm64; do
  cc=gcc
  if [ "$arch" != "$(go env GOARCH)" ]; then
    cc=$( [ "$arch" = arm64 ] && echo aarch64-linux-gnu-gcc || echo x86_64-linux-gnu-gcc )
    command -v "$cc" >/dev/null || { echo "hack/release-build.sh: $cc is needed for linux/$arch (apt-get install gcc-${cc%-gcc})" >&2; exit 1; }
  fi
  name=gpuwarden_${version#v}_linux_$arch
  mkdir -p "dist/$name"
  echo "hack/release-build.sh: building $name"
  CGO_ENABLED=1 GOOS=linux GOARCH=$arch CC=$cc go build -trimpath -ldflags "$ldflags" -o "dist/$name/gpuwarden" ./cmd/gpuwarden
  cp README.md LICENSE "dist/$name/" 2>/dev/null || cp README.md "dist/$name/"
  tar -C dist -czf "dist/$name.tar.gz" "$name"
done
(cd dist && sha256sum ./*.tar.gz | sed 's# \./# #' > checksums.txt && sha256sum -c checksums.txt)
echo "hack/release-build.sh: dist/checksums.txt"
