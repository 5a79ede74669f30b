/* utf8.c — UTF-8 and character classes as the reference sees them (Rust's str::from_utf8 and the regex crate's
 * Unicode classes), where GLib's differ: a NUL byte is valid text, and \w follows Unicode's word characters.
 * The helpers called per character (tok_utf8_sequence, tok_utf8_char_len, tok_is_white_space) are inline in
 * tokenizer-internal.h. */
#include "tokenizer-internal.h"

/* Classify a buffer (NUL bytes are valid, unlike g_utf8_validate); *bad_at receives the first bad offset. */
Utf8Status
tok_utf8_check (const char *s, gsize n, gsize *bad_at)
{
  const guint8 *u = (const guint8 *) s;
  gsize i = 0;

  while (i < n) {
    gboolean truncated;
    gsize k = tok_utf8_sequence (u + i, n - i, &truncated);
    if (k == 0) {
      if (bad_at)
        *bad_at = i;
      return truncated ? UTF8_TRUNCATED : UTF8_INVALID;
    }
    i += k;
  }
  return UTF8_VALID;
}

/* Regex \w in Unicode mode: letters, marks, decimal and letter numbers, connector punctuation, joiners. */
gboolean
tok_is_word_char (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);
  return g_unichar_isalnum (c) || g_unichar_ismark (c) || t == G_UNICODE_LETTER_NUMBER
         || t == G_UNICODE_CONNECT_PUNCTUATION || c == 0x200C || c == 0x200D;
}

/* The byte a "<0xNN>" piece stands for, or -1. Mirrors the reference's ByteFallback test: six bytes, "<0x" and ">",
 * the middle two parsed as a base-16 u8 — a parse that also accepts a leading '+', as in "<0x+A>". */
int
tok_piece_byte (const char *p, gsize len)
{
  if (len != 6 || memcmp (p, "<0x", 3) != 0 || p[5] != '>')
    return -1;
  int hi = g_ascii_xdigit_value (p[3]), lo = g_ascii_xdigit_value (p[4]);
  if (p[3] == '+' && lo >= 0)
    return lo;
  return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
}
