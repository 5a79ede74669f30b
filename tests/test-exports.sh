#!/bin/sh
# libgemma3n exports exactly the functions gemma3n.h declares: `nm -D --defined-only` of the built shared
# library must list every g3n_* function the header declares (none missing), as a function (T), and nothing
# else — no other g3n_* symbol, no data, no symbol of any other name.
#
# What "declared" means is found twice: from the compiler's view of the header (the preprocessed text of
# gemma3n.h alone, comments gone), and from core/gen-exports.sh, which makes the export list the library is
# linked with; the two must agree, so a declaration the script fails to see is caught too.
builddir=${builddir:-.}
srcdir=${srcdir:-$(dirname "$0")/..}
header="$srcdir/core/include/gemma3n.h"
la="$builddir/core/libgemma3n.la"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }

command -v nm >/dev/null 2>&1 || { echo "SKIP: no nm"; exit 77; }
[ -r "$la" ] || fail "$la not built"
# The shared object libtool built, by the name the .la records (dlname), under .libs
dlname=$(sed -n "s/^dlname='\(.*\)'$/\1/p" "$la")
so="$builddir/core/.libs/$dlname"
[ -n "$dlname" ] && [ -r "$so" ] || fail "no shared library: dlname '$dlname' in $la, $so unreadable"

# 1. What the header declares, as the compiler reads it: the lines of the preprocessed text that come from
#    gemma3n.h itself (by the line markers), every g3n_ identifier followed by "(".
#    make check passes CC and the public CPPFLAGS; run by hand, pkg-config gives glib's.
[ -n "$G3N_PUBLIC_CPPFLAGS" ] || G3N_PUBLIC_CPPFLAGS=$(pkg-config --cflags glib-2.0 gio-2.0 2>/dev/null)
echo '#include "gemma3n.h"' >"$tmp/probe.c"
${CC:-cc} -E -I"$srcdir/core/include" $G3N_PUBLIC_CPPFLAGS "$tmp/probe.c" >"$tmp/pre.i" \
  || fail "cannot preprocess gemma3n.h (CC=${CC:-cc})"
awk '/^# [0-9]+ "/ { f = $3; gsub(/"/, "", f); own = (f ~ /(^|\/)gemma3n\.h$/); next } own' "$tmp/pre.i" \
  | tr '\n' ' ' | grep -o 'g3n_[A-Za-z0-9_]*[ 	]*(' | sed 's/[ 	]*($//' | LC_ALL=C sort -u >"$tmp/declared"
# 2. The export list the library was linked with, made by the same script the build runs
sh "$srcdir/core/gen-exports.sh" "$header" >"$tmp/listed" || fail "core/gen-exports.sh failed"
n_declared=$(wc -l <"$tmp/declared")
[ "$n_declared" -gt 0 ] || fail "found no declarations in $header"
if ! cmp -s "$tmp/declared" "$tmp/listed"; then
  echo "FAIL: core/gen-exports.sh and the compiler disagree on what $header declares:"
  diff "$tmp/declared" "$tmp/listed" | sed -n 's/^</  compiler only:/p; s/^>/  script only:/p'
  exit 1
fi

# 3. What the library exports: defined dynamic symbols (name and type)
nm -D --defined-only "$so" >"$tmp/nm" || fail "nm -D $so failed"
awk 'NF >= 2 { print $NF, $(NF-1) }' "$tmp/nm" | sed 's/@.*//' | LC_ALL=C sort -u >"$tmp/exported"
# g3n_* functions (text symbols; nothing else is a function's definition)
awk '$2 == "T" && $1 ~ /^g3n_/ { print $1 }' "$tmp/exported" >"$tmp/functions"
# anything else: g3n_* symbols that are not functions, and every symbol of another name
awk '!($2 == "T" && $1 ~ /^g3n_/) { print $1 " (" $2 ")" }' "$tmp/exported" >"$tmp/others"
# The only other names a linker may define in a shared object's dynamic table (older binutils put the
# section-boundary symbols and the init/fini entry points there); none is code of ours.
allowed='_init _fini _edata _end __bss_start'
: >"$tmp/unexpected"
while read -r name type; do
  case " $allowed " in *" $name "*) ;; *) echo "$name $type" >>"$tmp/unexpected" ;; esac
done <"$tmp/others"

LC_ALL=C comm -23 "$tmp/declared" "$tmp/functions" >"$tmp/missing"
LC_ALL=C comm -13 "$tmp/declared" "$tmp/functions" >"$tmp/extra"
n_functions=$(wc -l <"$tmp/functions")
n_others=$(wc -l <"$tmp/others")
echo "$so: $n_functions g3n_* functions exported, $n_declared declared in gemma3n.h;" \
  "$n_others other defined symbols ($(wc -l <"$tmp/unexpected") not allowed)"
status=0
if [ -s "$tmp/missing" ]; then
  echo "FAIL: $(wc -l <"$tmp/missing") declared but not exported:"; sed 's/^/  /' "$tmp/missing"; status=1
fi
if [ -s "$tmp/extra" ]; then
  echo "FAIL: $(wc -l <"$tmp/extra") exported but not declared in gemma3n.h:"; sed 's/^/  /' "$tmp/extra"; status=1
fi
if [ -s "$tmp/unexpected" ]; then
  echo "FAIL: $(wc -l <"$tmp/unexpected") other symbols exported (allowed: $allowed):"
  sed 's/^/  /' "$tmp/unexpected"; status=1
fi
# 4. The public programs include nothing of the library but gemma3n.h: the build gives them only core/include,
#    but the top folder is on their path too (for config.h), so a "core/model.h" would still be found.
private=$(grep -n '^[ 	]*#[ 	]*include[ 	]*"' "$srcdir"/cli/*.c "$srcdir"/cli/*.h "$srcdir"/tools/*.c \
  | grep -v '"\(gemma3n\.h\|config\.h\|cli\.h\)"' || true)
if [ -n "$private" ]; then
  echo "FAIL: cli/ or tools/ include a private header:"; printf '%s\n' "$private" | sed 's/^/  /'; status=1
else
  echo "ok: cli/ and tools/ include only gemma3n.h (and config.h, cli.h)"
fi
[ $status -eq 0 ] && echo "ok: libgemma3n exports exactly the $n_declared functions of gemma3n.h"
exit $status
