#!/bin/sh
# test-gst-registry.sh — runs tests/test-gst-registry on the tiny multimodal checkpoint.
exec "${builddir:-.}/tests/test-gst-registry" "${srcdir:-$(dirname "$0")/..}/tests/data/mm-tiny"
