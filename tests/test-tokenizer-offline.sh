#!/bin/sh
# Tokenizer checks that need no download (bad and hostile tokenizer.json inputs, strict table reading, synthetic
# tokenizers, the fixtures' tokenizer.json files, streaming decode): they always run, and any failure fails.
builddir=${builddir:-.}
exec "$builddir/tests/test-tokenizer" --offline
