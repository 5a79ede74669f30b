/* json-fields.c — the errors every part of the loader reports, and typed members of the json-glib tree that holds
 * tokenizer.json less its model tables. A member of the wrong type is an error, never read as a default: the
 * reference would refuse the file too. */
#include "tokenizer-internal.h"

gboolean
tok_fail (GError **error, gint code, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G3N_ERROR, code, "tokenizer.json: %s", msg);
  g_free (msg);
  return FALSE;
}

/* The member `name` of o, or NULL when it is absent or JSON null (the reference treats both alike). */
JsonNode *
tok_member (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

gboolean
tok_node_is (JsonNode *n, GType type)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

/* Optional/required string member; *out is NULL when absent and optional. */
gboolean
tok_get_string (JsonObject *o, const char *name, const char *where, gboolean required, const char **out, GError **error)
{
  JsonNode *n = tok_member (o, name);
  *out = NULL;
  if (!n)
    return required ? tok_fail (error, G3N_ERROR_FORMAT, "%s lacks the string \"%s\"", where, name) : TRUE;
  if (!tok_node_is (n, G_TYPE_STRING))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not a string", where, name);
  *out = json_node_get_string (n);
  return TRUE;
}

gboolean
tok_get_bool (JsonObject *o, const char *name, const char *where, gboolean dflt, gboolean *out, GError **error)
{
  JsonNode *n = tok_member (o, name);
  *out = dflt;
  if (!n)
    return TRUE;
  if (!tok_node_is (n, G_TYPE_BOOLEAN))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not a boolean", where, name);
  *out = json_node_get_boolean (n);
  return TRUE;
}

gboolean
tok_get_int (JsonObject *o, const char *name, const char *where, gint64 dflt, gint64 *out, GError **error)
{
  JsonNode *n = tok_member (o, name);
  *out = dflt;
  if (!n)
    return TRUE;
  if (!tok_node_is (n, G_TYPE_INT64))
    return tok_fail (error, G3N_ERROR_FORMAT, "%s: \"%s\" is not an integer", where, name);
  *out = json_node_get_int (n);
  return TRUE;
}
