#!/usr/bin/env bash
# Installs the out-of-process S3 servers the contract tests run against.
# The tests start (and stop) the servers themselves, each on a free
# loopback port (see internal/s3servers), so this script only makes sure
# the binaries are there and says which ones are.
#
#   versitygw v1.8.0: installed with `go install` into $(go env GOPATH)/bin
#                     (or $GOBIN) unless that exact version is already there.
#   SeaweedFS:        built by .ci/install-seaweedfs.sh into the same
#                     directory, once per version (about 5 minutes cold).
#   moto_server:      cannot be installed here (PyPI is unreachable); used
#                     when present, otherwise its tests skip.
#
# It prints the S3LOCK_REQUIRE_SERVERS value to use for `go test` as its
# last line: "versitygw,seaweedfs" or "versitygw,seaweedfs,moto".
set -euo pipefail

VERSITYGW_MODULE=github.com/versity/versitygw
VERSITYGW_VERSION=v1.8.0

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
vgw="$gobin/versitygw"

installed_version() {
	# `go version -m` reports the main module's version of a binary built
	# by `go install module@version`.
	go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "'"$VERSITYGW_MODULE"'" { print $3 }'
}

if [ -x "$vgw" ] && [ "$(installed_version "$vgw")" = "$VERSITYGW_VERSION" ]; then
	echo "start-servers: versitygw $VERSITYGW_VERSION already installed at $vgw" >&2
else
	echo "start-servers: installing versitygw $VERSITYGW_VERSION into $gobin (about a minute when cold)" >&2
	start=$SECONDS
	GOBIN="$gobin" GOFLAGS=-mod=mod go install "$VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION"
	echo "start-servers: versitygw installed in $((SECONDS - start))s" >&2
fi
got="$(installed_version "$vgw")"
if [ "$got" != "$VERSITYGW_VERSION" ]; then
	echo "start-servers: $vgw reports version '$got', want $VERSITYGW_VERSION" >&2
	exit 1
fi

bash "$(dirname "$0")/install-seaweedfs.sh"

require=versitygw,seaweedfs
if moto="$(command -v moto_server)" && "$moto" --help >/dev/null 2>&1; then
	echo "start-servers: moto_server found at $moto" >&2
	require=versitygw,seaweedfs,moto
else
	echo "start-servers: moto_server not available; its tests will skip" >&2
fi
echo "$require"
