#!/bin/sh
# gst-inspect-1.0 documents the plugin: its four elements, each with a long description, pad templates, and
# every property of ours with a blurb, a range (numbers) or the values (enums) and a default; and every such
# property is described in the man page gst-gemma3n(7), so the two cannot drift apart.
set -u
srcdir=${srcdir:-$(dirname "$0")/..}
MAN="$srcdir/man/gst-gemma3n.7"
passed=0 failed=0
ok () { echo "ok   $1"; passed=$((passed + 1)); }
bad () { echo "FAIL $1"; failed=$((failed + 1)); }

plugin=$(gst-inspect-1.0 gemma3n 2>&1)
for e in gemma3nmel gemma3naudioenc gemma3ndecoder gemma3ntranscriber; do
  if echo "$plugin" | grep -q "^  $e:"; then ok "plugin lists $e"; else bad "plugin does not list $e"; fi
done

# The properties an element adds (those after GstElement's/GstBin's own), as "name<TAB>its lines".
own_properties () {
  gst-inspect-1.0 "$1" | awk '
    /^Element Properties:/ { inprops = 1; next }
    inprops && /^[A-Z]/ { inprops = 0 }
    inprops && /^  [a-z][a-z0-9-]* *:/ { name = $1; sub(":", "", name); print name; next }
  ' | grep -v -x -e name -e parent -e async-handling -e message-forward
}

for e in gemma3nmel gemma3naudioenc gemma3ndecoder gemma3ntranscriber; do
  info=$(gst-inspect-1.0 "$e" 2>&1) || { bad "$e: gst-inspect failed: $info"; continue; }
  echo "$info" | grep -q "Klass" && echo "$info" | grep -q "SRC template" && echo "$info" | grep -q "SINK template" \
    && ok "$e: metadata and pad templates" || bad "$e: metadata or pad templates missing"
  props=$(own_properties "$e")
  [ -n "$props" ] || { bad "$e: no properties"; continue; }
  for p in $props; do
    block=$(echo "$info" | awk -v p="$p" '
      $0 ~ "^  " p " *:" { on = 1; print; next } on && /^  [a-z]/ { on = 0 } on { print }')
    blurb=$(echo "$block" | head -1 | sed 's/^ *[a-z0-9-]* *: *//')
    if [ ${#blurb} -lt 12 ]; then bad "$e::$p has no real blurb: '$blurb'"; continue; fi
    if echo "$block" | grep -q -E "Range:|Enum \"|Default:|Boolean|String"; then :; else
      bad "$e::$p shows neither range nor default"; continue; fi
    if echo "$block" | grep -q -E "(Integer|Unsigned|Double|Float|Integer64|Unsigned Integer64)\." \
       && ! echo "$block" | grep -q "Range:"; then bad "$e::$p: a number without range"; continue; fi
    if awk -v e="$e" -v p="$p" '$0 == ".SS " e { on = 1; next } /^\.S[SH] / { on = 0 } on && $0 == ".B " p { found = 1 }
         END { exit !found }' "$MAN"; then :; else
      bad "$e::$p is not described under $e in gst-gemma3n(7)"; continue; fi
  done
  ok "$e: $(echo $props | wc -w) properties documented in gst-inspect and the man page"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
