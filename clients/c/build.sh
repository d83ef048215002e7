#!/bin/sh
# Build the C example against Debian's libavro-dev and libcurl:
#   apt-get install gcc pkg-config libavro-dev libcurl4-openssl-dev
# Usage: clients/c/build.sh OUT_DIR   -> OUT_DIR/proximadb-c-example
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Werror -o "$out/proximadb-c-example" \
    "$here/proximadb_example.c" $(pkg-config --cflags --libs avro-c libcurl)
