/* component.c — the normalizer, pre_tokenizer and decoder members parsed into Component trees.
 *
 * One table says which types each role supports. A type not in it is refused when the file is loaded rather than
 * skipped, so that a tokenizer that loads encodes and decodes the way the reference does. */
#include "tokenizer-internal.h"

void
tok_component_free (Component *c)
{
  if (!c)
    return;
  tok_pattern_clear (&c->pattern);
  g_free (c->content);
  if (c->children)
    g_ptr_array_free (c->children, TRUE);
  g_free (c);
}

typedef struct {
  const char *type;
  Role role;
  ComponentKind kind;
} ComponentType;

static const ComponentType component_types[] = {
  { "Sequence", ROLE_NORMALIZER, C_SEQUENCE },
  { "Replace", ROLE_NORMALIZER, C_REPLACE },
  { "Prepend", ROLE_NORMALIZER, C_PREPEND },
  { "Strip", ROLE_NORMALIZER, C_STRIP },
  { "NFC", ROLE_NORMALIZER, C_NFC },
  { "NFD", ROLE_NORMALIZER, C_NFD },
  { "NFKC", ROLE_NORMALIZER, C_NFKC },
  { "NFKD", ROLE_NORMALIZER, C_NFKD },
  { "Lowercase", ROLE_NORMALIZER, C_LOWERCASE },
  { "Sequence", ROLE_PRE_TOKENIZER, C_SEQUENCE },
  { "Split", ROLE_PRE_TOKENIZER, C_SPLIT },
  { "Sequence", ROLE_DECODER, C_SEQUENCE },
  { "Replace", ROLE_DECODER, C_REPLACE },
  { "ByteFallback", ROLE_DECODER, C_BYTE_FALLBACK },
  { "Fuse", ROLE_DECODER, C_FUSE },
  { "Strip", ROLE_DECODER, C_STRIP },
};

static const char *const role_names[] = { "normalizer", "pre_tokenizer", "decoder" };
static const char *const sequence_members[] = { "normalizers", "pretokenizers", "decoders" };

static gboolean
parse_sequence (Component *c, JsonObject *o, Role role, const char *where, GError **error)
{
  const char *name = sequence_members[role];
  JsonNode *n = tok_member (o, name);

  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s lacks the array \"%s\"", where, name);
  JsonArray *a = json_node_get_array (n);
  c->children = g_ptr_array_new_with_free_func ((GDestroyNotify) tok_component_free);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    char *child_where = g_strdup_printf ("%s.%s[%u]", where, name, i);
    Component *child = NULL;
    gboolean ok = tok_component_parse (json_array_get_element (a, i), role, child_where, &child, error);
    g_free (child_where);
    if (!ok)
      return FALSE;
    if (child)
      g_ptr_array_add (c->children, child);
  }
  return TRUE;
}

static gboolean
parse_split (Component *c, JsonObject *o, const char *where, GError **error)
{
  static const char *const behaviors[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                           "Contiguous" };
  const char *b;

  if (!tok_pattern_parse (&c->pattern, o, where, error) || !tok_get_string (o, "behavior", where, TRUE, &b, error)
      || !tok_get_bool (o, "invert", where, FALSE, &c->invert, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (behaviors); i++)
    if (strcmp (b, behaviors[i]) == 0) {
      c->behavior = (SplitBehavior) i;
      return TRUE;
    }
  return tok_fail (error, G3N_ERROR_UNSUPPORTED, "%s: unknown split behavior \"%s\"", where, b);
}

static gboolean
parse_strip_decoder (Component *c, JsonObject *o, const char *where, GError **error)
{
  const char *content;

  if (!tok_get_string (o, "content", where, TRUE, &content, error)
      || !tok_get_int (o, "start", where, 0, &c->start, error) || !tok_get_int (o, "stop", where, 0, &c->stop, error))
    return FALSE;
  if (g_utf8_strlen (content, -1) != 1)
    return tok_fail (error, G3N_ERROR_FORMAT, "%s: \"content\" must be one character", where);
  c->strip_char = g_utf8_get_char (content);
  return TRUE;
}

/* Read the fields a component of this kind needs. */
static gboolean
parse_fields (Component *c, JsonObject *o, Role role, const char *where, GError **error)
{
  const char *s;

  switch (c->kind) {
  case C_SEQUENCE:
    return parse_sequence (c, o, role, where, error);
  case C_REPLACE:
    if (!tok_pattern_parse (&c->pattern, o, where, error) || !tok_get_string (o, "content", where, TRUE, &s, error))
      return FALSE;
    c->content = g_strdup (s);
    return TRUE;
  case C_PREPEND:
    if (!tok_get_string (o, "prepend", where, TRUE, &s, error))
      return FALSE;
    c->content = g_strdup (s);
    return TRUE;
  case C_STRIP:
    if (role == ROLE_DECODER)
      return parse_strip_decoder (c, o, where, error);
    return tok_get_bool (o, "strip_left", where, TRUE, &c->left, error)
           && tok_get_bool (o, "strip_right", where, TRUE, &c->right, error);
  case C_SPLIT:
    return parse_split (c, o, where, error);
  default:
    return TRUE; /* no parameters */
  }
}

/* Parse one component; a JSON null (or missing node) gives *out = NULL and success. */
gboolean
tok_component_parse (JsonNode *node, Role role, const char *where, Component **out, GError **error)
{
  const char *type;

  *out = NULL;
  if (!node || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s is not an object", where);
  JsonObject *o = json_node_get_object (node);
  if (!tok_get_string (o, "type", where, TRUE, &type, error))
    return FALSE;

  const ComponentType *ct = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (component_types); i++)
    if (component_types[i].role == role && strcmp (component_types[i].type, type) == 0)
      ct = &component_types[i];
  if (!ct)
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "%s: unsupported %s type \"%s\"", where, role_names[role], type);

  Component *c = g_new0 (Component, 1);
  c->kind = ct->kind;
  if (!parse_fields (c, o, role, where, error)) {
    tok_component_free (c);
    return FALSE;
  }
  *out = c;
  return TRUE;
}

gboolean
tok_component_uses (const Component *c, ComponentKind kind)
{
  if (!c)
    return FALSE;
  if (c->kind == kind)
    return TRUE;
  for (guint i = 0; c->children && i < c->children->len; i++)
    if (tok_component_uses (g_ptr_array_index (c->children, i), kind))
      return TRUE;
  return FALSE;
}
