#!/bin/sh
# Audio features and the USM audio tower against the mel and mm-tiny goldens, streaming == whole, bad input.
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
d=$srcdir/tests/data
exec "$builddir/tests/test-audio" "$d/mel/golden.safetensors" "$d/mm-tiny" "$d/mm-tiny/golden.safetensors"
