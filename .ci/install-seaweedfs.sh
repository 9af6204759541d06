#!/usr/bin/env bash
# Builds the SeaweedFS `weed` binary the contract tests run against, once
# per version, and caches it.
#
# `go install github.com/seaweedfs/seaweedfs/weed@VERSION` is refused (its
# go.mod has replace directives), so: download the module, copy it to a
# writable directory and build ./weed inside the copy. About 5 minutes cold
# on 2 cores; the binary is about 230 MB.
#
# The binary is kept as $GOBIN/weed-<version> (GOBIN defaults to
# $(go env GOPATH)/bin) and $GOBIN/weed is pointed at it, so a rerun with
# the same version skips the build.
set -euo pipefail

SEAWEEDFS_MODULE=github.com/seaweedfs/seaweedfs
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
mkdir -p "$gobin"
cached="$gobin/weed-$SEAWEEDFS_VERSION"

if [ -x "$cached" ] && "$cached" version >/dev/null 2>&1; then
	echo "install-seaweedfs: $cached already built" >&2
else
	echo "install-seaweedfs: building SeaweedFS $SEAWEEDFS_VERSION (about 5 minutes when cold)" >&2
	start=$SECONDS
	dir="$(go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "install-seaweedfs: go mod download gave no module directory" >&2
		exit 1
	fi
	work="$(mktemp -d)"
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	cp -R "$dir" "$work/src"
	chmod -R u+w "$work/src"
	(cd "$work/src" && GOFLAGS=-mod=mod go build -o "$work/weed" ./weed)
	mv "$work/weed" "$cached.tmp"
	mv "$cached.tmp" "$cached"
	echo "install-seaweedfs: built in $((SECONDS - start))s" >&2
fi
ln -sfn "$(basename "$cached")" "$gobin/weed"
"$gobin/weed" version >&2
