/* normalizer.c — a normalizer tree run over text: Sequence, Replace, Prepend, Strip, the Unicode normal forms and
 * Lowercase, each as the reference applies it. */
#include "tokenizer-internal.h"

/* Rust's trim_start/trim_end: White_Space on either side. */
static void
strip_white_space (GString *s, gboolean left, gboolean right)
{
  gsize a = 0, b = s->len;

  while (left && a < b && tok_is_white_space (g_utf8_get_char (s->str + a)))
    a += tok_utf8_char_len (s->str + a);
  while (right && b > a) {
    const char *prev = g_utf8_find_prev_char (s->str + a, s->str + b);
    if (!prev || !tok_is_white_space (g_utf8_get_char (prev)))
      break;
    b = prev - s->str;
  }
  g_string_truncate (s, b);
  g_string_erase (s, 0, a);
}

static void
replace_contents (GString *s, char *text, gsize len)
{
  g_string_truncate (s, 0);
  g_string_append_len (s, text, len);
  g_free (text);
}

void
tok_normalize (const Component *c, GString *s)
{
  static const GNormalizeMode modes[] = { G_NORMALIZE_NFC, G_NORMALIZE_NFD, G_NORMALIZE_NFKC, G_NORMALIZE_NFKD };
  GString *out;

  switch (c->kind) {
  case C_SEQUENCE:
    for (guint i = 0; i < c->children->len; i++)
      tok_normalize (g_ptr_array_index (c->children, i), s);
    break;
  case C_REPLACE:
    out = g_string_sized_new (s->len + 16);
    tok_pattern_replace (&c->pattern, c->content, s->str, s->len, out);
    replace_contents (s, out->str, out->len);
    g_string_free (out, FALSE);
    break;
  case C_PREPEND:
    if (s->len > 0) /* the reference leaves empty strings alone */
      g_string_prepend (s, c->content);
    break;
  case C_STRIP:
    strip_white_space (s, c->left, c->right);
    break;
  case C_NFC: case C_NFD: case C_NFKC: case C_NFKD: {
    char *n = g_utf8_normalize (s->str, s->len, modes[c->kind - C_NFC]);
    if (n) /* the text was validated, so this only guards against the impossible */
      replace_contents (s, n, strlen (n));
    break;
  }
  case C_LOWERCASE: {
    char *n = g_utf8_strdown (s->str, s->len);
    replace_contents (s, n, strlen (n));
    break;
  }
  default:
    g_assert_not_reached ();
  }
}
