#!/bin/sh
# gen-exports.sh HEADER — the names of the g3n_* functions HEADER declares, sorted, one a line: the export
# list (libtool -export-symbols) of libgemma3n, so that the library exports exactly its public header.
#
# Comments and preprocessor lines (with their continuations) are dropped first, so neither a function named in
# a comment nor a macro such as G3N_ERROR counts; what is left holds only declarations, where an identifier
# followed by "(" is a function's name (parameter and return types are G3n*/glib types, never g3n_*).
set -e
[ $# -eq 1 ] && [ -r "$1" ] || { echo "usage: $0 HEADER" >&2; exit 2; }
awk '
  BEGIN { in_comment = 0; in_macro = 0 }
  {
    line = $0
    if (in_macro) { in_macro = (line ~ /\\$/); next }
    out = ""
    while (line != "") {
      if (in_comment) {
        i = index(line, "*/")
        if (i == 0) { line = ""; break }
        line = substr(line, i + 2); in_comment = 0
      } else {
        i = index(line, "/*"); j = index(line, "//")
        if (j > 0 && (i == 0 || j < i)) { out = out substr(line, 1, j - 1); line = ""; break }
        if (i == 0) { out = out line; line = ""; break }
        out = out substr(line, 1, i - 1) " "; line = substr(line, i + 2); in_comment = 1
      }
    }
    if (out ~ /^[ \t]*#/) { in_macro = (out ~ /\\$/); next }
    print out
  }
' "$1" | tr '\n' ' ' | grep -o 'g3n_[A-Za-z0-9_]*[ 	]*(' | sed 's/[ 	]*($//' | LC_ALL=C sort -u
