#!/bin/sh
# Chat format renderings always; token ids too when the real tokenizer can be had (see test-tokenizer-real.sh).
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
cache=${G3N_TOKENIZER_CACHE:-$HOME/.cache/gst-gemma3n}
if tok=$(sh "$srcdir/tests/fetch-tokenizer.sh" "$cache"); then
  exec "$builddir/tests/test-chat" "$tok"
fi
echo "# real Gemma tokenizer unavailable: checking renderings only"
exec "$builddir/tests/test-chat"
