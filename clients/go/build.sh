#!/bin/sh
# Build the Go example offline from Debian's packages (see README, "Wire contract"):
#   apt-get install golang-go golang-github-linkedin-goavro-dev golang-google-grpc-dev \
#                   protobuf-compiler golang-goprotobuf-dev
# Usage: clients/go/build.sh OUT_DIR   -> OUT_DIR/proximadb-go-example
#
# The gRPC stubs are generated here from proto/ (never committed). Debian 12's
# protoc-gen-go (1.3.5, golang-goprotobuf-dev) predates proto3 `optional`, so the
# stubs are generated from a copy with that keyword removed: the wire format is
# the same (an optional field only gains presence tracking), so the stubs speak
# the unmodified contract. With protoc-gen-go >= 1.26 no copy would be needed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src="$out/gopath/src/proximadbclient"
rm -rf "$out/gopath" "$out/proto"
mkdir -p "$src/pb" "$out/proto/proximadb/v1"
sed -E 's/^([[:space:]]*)optional[[:space:]]+/\1/' "$repo/proto/proximadb/v1/proximadb.proto" \
    > "$out/proto/proximadb/v1/proximadb.proto"
protoc -I "$out/proto" \
    --go_out="plugins=grpc,paths=source_relative,Mproximadb/v1/proximadb.proto=proximadbclient/pb:$out/proto" \
    "$out/proto/proximadb/v1/proximadb.proto"
mv "$out/proto/proximadb/v1/proximadb.pb.go" "$src/pb/"
cp "$here/main.go" "$src/"
# GOPATH mode over Debian's /usr/share/gocode; nothing is downloaded.
cd "$src"
GOPATH="$out/gopath:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local \
    go build -o "$out/proximadb-go-example" .
