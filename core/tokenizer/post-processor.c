/* post-processor.c — TemplateProcessing's single-sequence template, the only post-processor Gemma uses: the ids
 * it puts before and after the text when encoding is asked to add special tokens (Gemma's <bos>). */
#include "tokenizer-internal.h"

/* The ids of special token `name` in TemplateProcessing's "special_tokens" map. */
static gboolean
template_special_ids (JsonObject *specials, const char *name, GArray *out, GError **error)
{
  JsonNode *n = specials ? tok_member (specials, name) : NULL;
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" is not in \"special_tokens\"",
                     name);
  JsonNode *ids = tok_member (json_node_get_object (n), "ids");
  if (!ids || !JSON_NODE_HOLDS_ARRAY (ids))
    return tok_fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" lacks \"ids\"", name);
  JsonArray *a = json_node_get_array (ids);
  for (guint i = 0; i < json_array_get_length (a); i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!tok_node_is (e, G_TYPE_INT64) || json_node_get_int (e) < 0 || json_node_get_int (e) >= MAX_ID)
      return tok_fail (error, G3N_ERROR_FORMAT, "post_processor: special token \"%s\" has a bad id", name);
    gint32 id = (gint32) json_node_get_int (e);
    g_array_append_val (out, id);
  }
  return TRUE;
}

/* One template item, {"SpecialToken": {"id": name, ...}} or {"Sequence": {"id": "A", ...}} (the JSON form; the
 * reference's "$A"-style strings exist only in its builder API). Sets *is_sequence for the sequence item. */
static gboolean
template_item (JsonNode *n, JsonObject *specials, GArray *out, gboolean *is_sequence, GError **error)
{
  JsonObject *o = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  JsonNode *special = o ? tok_member (o, "SpecialToken") : NULL, *sequence = o ? tok_member (o, "Sequence") : NULL;
  JsonNode *inner = special ? special : sequence;
  const char *name;

  *is_sequence = sequence != NULL;
  if (!inner || !JSON_NODE_HOLDS_OBJECT (inner))
    return tok_fail (error, G3N_ERROR_FORMAT, "post_processor: bad item in the single template");
  if (!tok_get_string (json_node_get_object (inner), "id", "post_processor.single", TRUE, &name, error))
    return FALSE;
  if (special)
    return template_special_ids (specials, name, out, error);
  if (strcmp (name, "A") != 0)
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "post_processor: the single template uses sequence \"%s\"", name);
  return TRUE;
}

gboolean
tok_load_post_processor (G3nTokenizer *tok, JsonObject *root, GError **error)
{
  JsonNode *n = tok_member (root, "post_processor");
  const char *type;
  gboolean seen_sequence = FALSE;

  tok->post_prefix = g_array_new (FALSE, FALSE, sizeof (gint32));
  tok->post_suffix = g_array_new (FALSE, FALSE, sizeof (gint32));
  if (!n)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return tok_fail (error, G3N_ERROR_FORMAT, "post_processor is not an object");
  JsonObject *o = json_node_get_object (n);
  if (!tok_get_string (o, "type", "post_processor", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "TemplateProcessing") != 0)
    return tok_fail (error, G3N_ERROR_UNSUPPORTED, "post_processor: unsupported type \"%s\"", type);

  JsonNode *single = tok_member (o, "single"), *sp = tok_member (o, "special_tokens");
  JsonObject *specials = sp && JSON_NODE_HOLDS_OBJECT (sp) ? json_node_get_object (sp) : NULL;
  if (!single || !JSON_NODE_HOLDS_ARRAY (single))
    return tok_fail (error, G3N_ERROR_FORMAT, "post_processor lacks the array \"single\"");
  JsonArray *items = json_node_get_array (single);

  gboolean ok = TRUE;
  for (guint i = 0; ok && i < json_array_get_length (items); i++) {
    gboolean is_sequence;
    ok = template_item (json_array_get_element (items, i), specials, seen_sequence ? tok->post_suffix
                                                                                   : tok->post_prefix,
                        &is_sequence, error);
    seen_sequence |= is_sequence;
  }
  if (ok && !seen_sequence)
    ok = tok_fail (error, G3N_ERROR_FORMAT, "post_processor: the single template has no $A");
  tok->has_post_processor = ok;
  return ok;
}
