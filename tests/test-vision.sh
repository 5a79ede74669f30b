#!/bin/sh
# Image preprocessing and the MobileNetV5 tower against the mm-tiny goldens; bad images.
srcdir=${srcdir:-$(dirname "$0")/..}
builddir=${builddir:-.}
d=$srcdir/tests/data
exec "$builddir/tests/test-vision" "$d/mm-tiny" "$d/mm-tiny/golden.safetensors" "$d/mm-tiny/image.png" "$d/vision"
