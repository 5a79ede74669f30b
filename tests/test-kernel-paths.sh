#!/bin/sh
# Parity on every kernel path: the decoder tests again with each instruction set forced (G3N_KERNEL), so
# CI covers the AVX2 and portable code even on an AVX-512 machine, and with 1 and 2 threads; test-quant
# likewise covers the integer kernels (AVX-512 VNNI, AVX2, portable), and test-bf16-activations the opt-in
# BF16-activation prefill (vdpbf16ps on AVX512_BF16, rounded activations elsewhere).
set -u
builddir=${builddir:-.}
status=0
for isa in portable avx2 avx512; do
  for threads in 1 2; do
    echo "# G3N_KERNEL=$isa G3N_THREADS=$threads"
    if G3N_KERNEL=$isa G3N_THREADS=$threads "$builddir/tests/test-kernels" >"$builddir/tests/kernel-$isa-$threads.out" \
       && G3N_KERNEL=$isa G3N_THREADS=$threads "$builddir/tests/test-text-decoder" >>"$builddir/tests/kernel-$isa-$threads.out" \
       && G3N_KERNEL=$isa G3N_THREADS=$threads "$builddir/tests/test-quant" >>"$builddir/tests/kernel-$isa-$threads.out" \
       && G3N_KERNEL=$isa G3N_THREADS=$threads "$builddir/tests/test-bf16-activations" >>"$builddir/tests/kernel-$isa-$threads.out"; then
      echo "ok   $isa x$threads: $(tail -n 1 "$builddir/tests/kernel-$isa-$threads.out")"
    else
      echo "FAIL $isa x$threads:"; grep FAIL "$builddir/tests/kernel-$isa-$threads.out"; status=1
    fi
  done
done
exit $status
