/* safetensors.c — reading (mmap + validation) and writing of safetensors files, and checkpoint folders.
 *
 * The format: 8 bytes little-endian header length N, N bytes of JSON mapping tensor names to
 * {dtype, shape, data_offsets}, then the data region. Every header entry is checked before any byte of
 * tensor data is used, so a truncated or hostile file is refused with a message instead of read out of
 * bounds. Tensors point into the read-only mapping (or, for g3n_safetensors_open_resident, into the file's
 * one copy in memory); their data is never copied.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real headers are a few hundred KiB (E4B: ~3000 tensors); anything far beyond is corrupt or hostile. */
#define MAX_HEADER_BYTES (100u * 1024u * 1024u)

static const struct {
  const char *name;
  gsize size;
} dtype_info[G3N_N_DTYPES] = {
  [G3N_DTYPE_F32] = { "F32", 4 },  [G3N_DTYPE_F16] = { "F16", 2 }, [G3N_DTYPE_BF16] = { "BF16", 2 },
  [G3N_DTYPE_F64] = { "F64", 8 },  [G3N_DTYPE_I64] = { "I64", 8 }, [G3N_DTYPE_I32] = { "I32", 4 },
  [G3N_DTYPE_I16] = { "I16", 2 },  [G3N_DTYPE_I8] = { "I8", 1 },   [G3N_DTYPE_U8] = { "U8", 1 },
  [G3N_DTYPE_BOOL] = { "BOOL", 1 },
};

gsize
g3n_dtype_size (G3nDType dtype)
{
  return dtype < G3N_N_DTYPES ? dtype_info[dtype].size : 0;
}

const char *
g3n_dtype_name (G3nDType dtype)
{
  return dtype < G3N_N_DTYPES ? dtype_info[dtype].name : "?";
}

static gboolean
dtype_from_name (const char *name, G3nDType *out)
{
  for (int i = 0; i < G3N_N_DTYPES; i++)
    if (g_strcmp0 (name, dtype_info[i].name) == 0) {
      *out = (G3nDType) i;
      return TRUE;
    }
  return FALSE;
}

int64_t
g3n_tensor_numel (const G3nTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

char *
g3n_shape_to_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", (gint64) shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

gboolean
g3n_tensor_expect (const G3nTensor *t, const char *name, const char *origin, int ndim, const int64_t *shape,
                   GError **error)
{
  if (!t) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_TENSOR, "%s: required tensor '%s' is missing", origin, name);
    return FALSE;
  }
  const char *where = t->path ? t->path : origin;
  if (t->dtype != G3N_DTYPE_F32 && t->dtype != G3N_DTYPE_BF16 && t->dtype != G3N_DTYPE_F16) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_TENSOR, "%s: tensor '%s' has dtype %s (expected BF16, F16 or F32)",
                 where, name, g3n_dtype_name (t->dtype));
    return FALSE;
  }
  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (!same) {
    g_autofree char *have = g3n_shape_to_string (t->ndim, t->shape);
    g_autofree char *want = g3n_shape_to_string (ndim, shape);
    g_set_error (error, G3N_ERROR, G3N_ERROR_TENSOR, "%s: tensor '%s' has shape %s, expected %s (from config)", where,
                 name, have, want);
    return FALSE;
  }
  return TRUE;
}

/* ------------------------------------------------------------------------------------------ reading */

struct _G3nSafetensors {
  char *path;
  GBytes *contents; /* the mapping, or the file read into memory */
  GStringChunk *names;
  GArray *tensors;     /* G3nTensor */
  GHashTable *by_name; /* name -> index + 1 */
  GHashTable *metadata; /* "__metadata__": key -> value, both in `names` */
};

static gboolean G_GNUC_PRINTF (3, 4)
fail (GError **error, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: %s", path, msg);
  g_free (msg);
  return FALSE;
}

static gboolean
read_int (JsonNode *node, gint64 *out)
{
  if (!node || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return TRUE;
}

/* Parses and checks one header entry; the data region is [data, data + data_size). */
static gboolean
parse_entry (G3nSafetensors *st, const char *name, JsonNode *node, const guint8 *data, guint64 data_size,
             guint64 data_start_in_file, GError **error)
{
  const char *p = st->path;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail (error, p, "header entry '%s' is not an object", name);
  JsonObject *o = json_node_get_object (node);
  JsonNode *dt = json_object_get_member (o, "dtype");
  JsonNode *sh = json_object_get_member (o, "shape");
  JsonNode *off = json_object_get_member (o, "data_offsets");

  G3nTensor t = { 0 };
  t.name = g_string_chunk_insert (st->names, name);
  t.path = st->path;
  if (!dt || !JSON_NODE_HOLDS_VALUE (dt) || json_node_get_value_type (dt) != G_TYPE_STRING)
    return fail (error, p, "tensor '%s': missing or non-string \"dtype\"", name);
  if (!dtype_from_name (json_node_get_string (dt), &t.dtype))
    return fail (error, p, "tensor '%s': unknown dtype '%s'", name, json_node_get_string (dt));
  if (!sh || !JSON_NODE_HOLDS_ARRAY (sh))
    return fail (error, p, "tensor '%s': missing or non-array \"shape\"", name);
  JsonArray *sa = json_node_get_array (sh);
  if (json_array_get_length (sa) > G3N_MAX_DIMS)
    return fail (error, p, "tensor '%s': %u dimensions (at most %d supported)", name, json_array_get_length (sa),
                 G3N_MAX_DIMS);
  t.ndim = (int) json_array_get_length (sa);
  guint64 numel = 1;
  for (int i = 0; i < t.ndim; i++) {
    gint64 d;
    if (!read_int (json_array_get_element (sa, i), &d) || d < 0)
      return fail (error, p, "tensor '%s': shape entry %d is not a non-negative integer", name, i);
    t.shape[i] = d;
    if (d != 0 && numel > G_MAXUINT64 / 8 / (guint64) d)
      return fail (error, p, "tensor '%s': shape overflows", name);
    numel *= (guint64) d;
  }
  gint64 begin, end;
  if (!off || !JSON_NODE_HOLDS_ARRAY (off) || json_array_get_length (json_node_get_array (off)) != 2
      || !read_int (json_array_get_element (json_node_get_array (off), 0), &begin)
      || !read_int (json_array_get_element (json_node_get_array (off), 1), &end))
    return fail (error, p, "tensor '%s': \"data_offsets\" must be two integers", name);
  if (begin < 0 || end < begin)
    return fail (error, p, "tensor '%s': data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] are invalid",
                 name, begin, end);
  if ((guint64) end > data_size)
    return fail (error, p,
                 "tensor '%s': data_offsets end %" G_GINT64_FORMAT " is past the end of the file's data (%" G_GUINT64_FORMAT
                 " bytes; truncated file?)",
                 name, end, data_size);
  guint64 expect = numel * g3n_dtype_size (t.dtype);
  if ((guint64) (end - begin) != expect) {
    g_autofree char *s = g3n_shape_to_string (t.ndim, t.shape);
    return fail (error, p, "tensor '%s': %" G_GINT64_FORMAT " bytes of data but shape %s of %s needs %" G_GUINT64_FORMAT,
                 name, end - begin, s, g3n_dtype_name (t.dtype), expect);
  }
  if ((data_start_in_file + (guint64) begin) % g3n_dtype_size (t.dtype) != 0)
    return fail (error, p, "tensor '%s': data is not aligned to its %s element size", name, g3n_dtype_name (t.dtype));
  t.data = data + begin;
  t.nbytes = (size_t) expect;
  g_array_append_val (st->tensors, t);
  return TRUE;
}

static int
compare_by_data (gconstpointer a, gconstpointer b)
{
  const G3nTensor *x = a, *y = b;
  const guint8 *px = x->data, *py = y->data;
  if (px != py)
    return px < py ? -1 : 1;
  return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Two tensors sharing bytes would let a write through one corrupt another; real files never do it. */
static gboolean
check_no_overlap (G3nSafetensors *st, GError **error)
{
  guint n = st->tensors->len;
  if (n < 2)
    return TRUE;
  G3nTensor *sorted = g_memdup2 (st->tensors->data, n * sizeof (G3nTensor));
  qsort (sorted, n, sizeof (G3nTensor), compare_by_data);
  gboolean ok = TRUE;
  for (guint i = 1; i < n && ok; i++) {
    const guint8 *prev_end = (const guint8 *) sorted[i - 1].data + sorted[i - 1].nbytes;
    if ((const guint8 *) sorted[i].data < prev_end)
      ok = fail (error, st->path, "tensors '%s' and '%s' overlap in the data region", sorted[i - 1].name,
                 sorted[i].name);
  }
  g_free (sorted);
  return ok;
}

/* The format defines "__metadata__" as a map of strings to strings; values of other types are not ours to
 * interpret, so they are left out (a lookup then finds nothing). */
static gboolean
parse_metadata (G3nSafetensors *st, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail (error, st->path, "\"__metadata__\" is not an object");
  JsonObject *o = json_node_get_object (node);
  g_autoptr (GList) keys = json_object_get_members (o);
  for (GList *l = keys; l; l = l->next) {
    JsonNode *v = json_object_get_member (o, l->data);
    if (JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING)
      g_hash_table_insert (st->metadata, g_string_chunk_insert (st->names, l->data),
                           g_string_chunk_insert (st->names, json_node_get_string (v)));
  }
  return TRUE;
}

static gboolean
parse_header (G3nSafetensors *st, GError **error)
{
  gsize size = 0;
  const guint8 *bytes = g_bytes_get_data (st->contents, &size);
  if (size < 8)
    return fail (error, st->path, "file is %" G_GUINT64_FORMAT " bytes, too short for a safetensors header", size);
  guint64 n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | bytes[i];
  if (n > MAX_HEADER_BYTES)
    return fail (error, st->path, "header length %" G_GUINT64_FORMAT " is absurd (limit %u)", n, MAX_HEADER_BYTES);
  if (n > size - 8)
    return fail (error, st->path, "header length %" G_GUINT64_FORMAT " is past the end of the %" G_GUINT64_FORMAT
                 "-byte file (truncated?)", n, size);

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_data (parser, (const char *) bytes + 8, (gssize) n, &jerr))
    return fail (error, st->path, "header is not valid JSON: %s", jerr->message);
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    return fail (error, st->path, "header is not a JSON object");

  JsonObject *obj = json_node_get_object (root);
  g_autoptr (GList) names = json_object_get_members (obj);
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    if (strcmp (name, "__metadata__") == 0) {
      if (!parse_metadata (st, json_object_get_member (obj, name), error))
        return FALSE;
      continue;
    }
    if (!parse_entry (st, name, json_object_get_member (obj, name), bytes + 8 + n, size - 8 - n, 8 + n, error))
      return FALSE;
  }
  for (guint i = 0; i < st->tensors->len; i++)
    g_hash_table_insert (st->by_name, (gpointer) g_array_index (st->tensors, G3nTensor, i).name,
                         GUINT_TO_POINTER (i + 1));
  return check_no_overlap (st, error);
}

void *
g3n_weights_alloc (gsize bytes)
{
  const gsize huge = 2u << 20, line = 64;
  gsize align = bytes < huge ? line : huge;     /* cache lines at least, as the tensors inside expect */
  bytes = (MAX (bytes, 1) + align - 1) & ~(align - 1); /* aligned_alloc wants a multiple of the alignment */
  void *p = aligned_alloc (align, bytes);
  if (!p)
    g_error ("out of memory for %" G_GSIZE_FORMAT " bytes of weights", bytes);
#ifdef MADV_HUGEPAGE
  if (align == huge)
    madvise (p, bytes, MADV_HUGEPAGE); /* advice only: without it the memory works the same */
#endif
  return p;
}

static GBytes *
map_file (const char *path, GError **error)
{
  g_autoptr (GError) merr = NULL;
  GMappedFile *map = g_mapped_file_new (path, FALSE, &merr);
  if (!map) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s", merr->message);
    return NULL;
  }
  GBytes *b = g_mapped_file_get_bytes (map);
  g_mapped_file_unref (map);
  return b;
}

static GBytes *
read_file (const char *path, GError **error)
{
  int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
  struct stat st;
  if (fd < 0 || fstat (fd, &st) != 0) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: %s", path, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return NULL;
  }
  gsize size = (gsize) st.st_size, done = 0;
  guint8 *buf = g3n_weights_alloc (size);
  while (done < size) {
    gssize got = read (fd, buf + done, MIN (size - done, (gsize) 1 << 30));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: %s after %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes", path,
                   got < 0 ? g_strerror (errno) : "file shrank", done, size);
      close (fd);
      g_free (buf);
      return NULL;
    }
    done += (gsize) got;
  }
  close (fd);
  return g_bytes_new_with_free_func (buf, size, g_free, buf);
}

static G3nSafetensors *
open_contents (const char *path, gboolean resident, GError **error)
{
  G3nSafetensors *st = g_new0 (G3nSafetensors, 1);
  st->path = g_strdup (path);
  st->names = g_string_chunk_new (4096);
  st->tensors = g_array_new (FALSE, FALSE, sizeof (G3nTensor));
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new (g_str_hash, g_str_equal);
  st->contents = resident ? read_file (path, error) : map_file (path, error);
  if (!st->contents || !parse_header (st, error)) {
    g3n_safetensors_free (st);
    return NULL;
  }
  return st;
}

G3nSafetensors *
g3n_safetensors_open (const char *path, GError **error)
{
  return open_contents (path, FALSE, error);
}

G3nSafetensors *
g3n_safetensors_open_resident (const char *path, GError **error)
{
  return open_contents (path, TRUE, error);
}

void
g3n_safetensors_free (G3nSafetensors *st)
{
  if (!st)
    return;
  if (st->contents)
    g_bytes_unref (st->contents);
  g_hash_table_destroy (st->by_name);
  g_hash_table_destroy (st->metadata);
  g_array_free (st->tensors, TRUE);
  g_string_chunk_free (st->names);
  g_free (st->path);
  g_free (st);
}

guint
g3n_safetensors_count (const G3nSafetensors *st)
{
  return st->tensors->len;
}

const G3nTensor *
g3n_safetensors_nth (const G3nSafetensors *st, guint i)
{
  return i < st->tensors->len ? &g_array_index (st->tensors, G3nTensor, i) : NULL;
}

const G3nTensor *
g3n_safetensors_find (const G3nSafetensors *st, const char *name)
{
  guint idx = GPOINTER_TO_UINT (g_hash_table_lookup (st->by_name, name));
  return idx ? &g_array_index (st->tensors, G3nTensor, idx - 1) : NULL;
}

const char *
g3n_safetensors_path (const G3nSafetensors *st)
{
  return st->path;
}

const char *
g3n_safetensors_metadata (const G3nSafetensors *st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

/* ------------------------------------------------------------------------------------------ writing */

static int
by_element_size_desc (gconstpointer a, gconstpointer b, gpointer tensors)
{
  const G3nTensor *t = tensors;
  gsize x = g3n_dtype_size (t[*(const guint *) a].dtype), y = g3n_dtype_size (t[*(const guint *) b].dtype);
  if (x != y)
    return x > y ? -1 : 1;
  return (int) *(const guint *) a - (int) *(const guint *) b;
}

/* ,"__metadata__":{"key":"value",…} with JSON escaping (values may be paths). */
static void
append_metadata (GString *h, const char *const *metadata)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  for (guint i = 0; metadata[i] && metadata[i + 1]; i += 2) {
    json_builder_set_member_name (b, metadata[i]);
    json_builder_add_string_value (b, metadata[i + 1]);
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, FALSE);
  g_string_append_printf (h, "%s\"__metadata__\":%s", h->len > 1 ? "," : "", text);
}

gboolean
g3n_safetensors_write (const char *path, const G3nTensor *in, guint n_tensors, GError **error)
{
  return g3n_safetensors_write_with_metadata (path, in, n_tensors, NULL, error);
}

gboolean
g3n_safetensors_write_with_metadata (const char *path, const G3nTensor *in, guint n_tensors,
                                     const char *const *metadata, GError **error)
{
  /* Wider element types first: every tensor then starts aligned to its element size, with no gaps (which
   * other readers reject). */
  g_autofree guint *order = g_new (guint, MAX (n_tensors, 1));
  for (guint i = 0; i < n_tensors; i++)
    order[i] = i;
  g_qsort_with_data (order, n_tensors, sizeof (guint), by_element_size_desc, (gpointer) in);
  g_autofree G3nTensor *tensors = g_new (G3nTensor, MAX (n_tensors, 1));
  for (guint i = 0; i < n_tensors; i++)
    tensors[i] = in[order[i]];
  GString *h = g_string_new ("{");
  guint64 offset = 0;
  for (guint i = 0; i < n_tensors; i++) {
    const G3nTensor *t = &tensors[i];
    g_autofree char *shape = g3n_shape_to_string (t->ndim, t->shape);
    guint64 nbytes = (guint64) g3n_tensor_numel (t) * g3n_dtype_size (t->dtype);
    g_string_append_printf (h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%" G_GUINT64_FORMAT
                            ",%" G_GUINT64_FORMAT "]}",
                            i ? "," : "", t->name, g3n_dtype_name (t->dtype), shape, offset, offset + nbytes);
    offset += nbytes;
  }
  if (metadata)
    append_metadata (h, metadata);
  g_string_append_c (h, '}');
  /* Pad the header with spaces so the data region starts on a cache line (other writers align to 8, which
   * this is too): a caller can then align its tensors for SIMD loads by their sizes. */
  while ((h->len + 8) % 64 != 0)
    g_string_append_c (h, ' ');

  FILE *f = fopen (path, "wb");
  if (!f) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: cannot create: %s", path, g_strerror (errno));
    g_string_free (h, TRUE);
    return FALSE;
  }
  guint8 len_le[8];
  for (int i = 0; i < 8; i++)
    len_le[i] = (guint8) (((guint64) h->len >> (8 * i)) & 0xff);
  gboolean ok = fwrite (len_le, 1, 8, f) == 8 && fwrite (h->str, 1, h->len, f) == h->len;
  for (guint i = 0; ok && i < n_tensors; i++) {
    size_t nbytes = (size_t) g3n_tensor_numel (&tensors[i]) * g3n_dtype_size (tensors[i].dtype);
    ok = nbytes == 0 || fwrite (tensors[i].data, 1, nbytes, f) == nbytes;
  }
  ok = (fclose (f) == 0) && ok;
  g_string_free (h, TRUE);
  if (!ok)
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: write failed: %s", path, g_strerror (errno));
  return ok;
}

/* ---------------------------------------------------------------------------------- checkpoint folder */

struct _G3nTensorStore {
  GPtrArray *files;    /* G3nSafetensors */
  GHashTable *by_name; /* name -> const G3nTensor* */
};

static gboolean
store_add_file (G3nTensorStore *store, const char *path, GError **error)
{
  G3nSafetensors *st = g3n_safetensors_open (path, error);
  if (!st)
    return FALSE;
  g_ptr_array_add (store->files, st);
  for (guint i = 0; i < g3n_safetensors_count (st); i++) {
    const G3nTensor *t = g3n_safetensors_nth (st, i);
    const G3nTensor *prev = g_hash_table_lookup (store->by_name, t->name);
    if (prev) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "tensor '%s' appears in both %s and %s", t->name, prev->path,
                   t->path);
      return FALSE;
    }
    g_hash_table_insert (store->by_name, (gpointer) t->name, (gpointer) t);
  }
  return TRUE;
}

/* The index maps every tensor name to a shard; each shard is opened once and must hold what it claims. */
static gboolean
store_add_index (G3nTensorStore *store, const char *dir, const char *index_path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) jerr = NULL;
  if (!json_parser_load_from_mapped_file (parser, index_path, &jerr)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: %s", index_path, jerr->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *map = NULL;
  if (root && JSON_NODE_HOLDS_OBJECT (root)) {
    JsonNode *wm = json_object_get_member (json_node_get_object (root), "weight_map");
    if (wm && JSON_NODE_HOLDS_OBJECT (wm))
      map = json_node_get_object (wm);
  }
  if (!map) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: no \"weight_map\" object", index_path);
    return FALSE;
  }
  g_autoptr (GHashTable) opened = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GList) names = json_object_get_members (map);
  for (GList *l = names; l; l = l->next) {
    JsonNode *fn = json_object_get_member (map, l->data);
    const char *file = JSON_NODE_HOLDS_VALUE (fn) ? json_node_get_string (fn) : NULL;
    if (!file || strchr (file, '/') || strcmp (file, "..") == 0) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: tensor '%s' maps to an invalid shard name", index_path,
                   (const char *) l->data);
      return FALSE;
    }
    if (!g_hash_table_contains (opened, file)) {
      g_autofree char *path = g_build_filename (dir, file, NULL);
      if (!store_add_file (store, path, error))
        return FALSE;
      g_hash_table_add (opened, (gpointer) file);
    }
    if (!g_hash_table_contains (store->by_name, l->data)) {
      g_set_error (error, G3N_ERROR, G3N_ERROR_FORMAT, "%s: lists tensor '%s' in %s, which does not contain it",
                   index_path, (const char *) l->data, file);
      return FALSE;
    }
  }
  return TRUE;
}

G3nTensorStore *
g3n_tensor_store_open (const char *path, GError **error)
{
  G3nTensorStore *store = g_new0 (G3nTensorStore, 1);
  store->files = g_ptr_array_new_with_free_func ((GDestroyNotify) g3n_safetensors_free);
  store->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean ok;
  if (g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    ok = store_add_file (store, path, error);
  } else if (!g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: no such file or folder", path);
    ok = FALSE;
  } else {
    g_autofree char *single = g_build_filename (path, "model.safetensors", NULL);
    g_autofree char *index = g_build_filename (path, "model.safetensors.index.json", NULL);
    if (g_file_test (index, G_FILE_TEST_EXISTS))
      ok = store_add_index (store, path, index, error);
    else if (g_file_test (single, G_FILE_TEST_EXISTS))
      ok = store_add_file (store, single, error);
    else {
      g_set_error (error, G3N_ERROR, G3N_ERROR_IO, "%s: neither model.safetensors nor model.safetensors.index.json",
                   path);
      ok = FALSE;
    }
  }
  if (!ok) {
    g3n_tensor_store_free (store);
    return NULL;
  }
  return store;
}

void
g3n_tensor_store_free (G3nTensorStore *store)
{
  if (!store)
    return;
  g_hash_table_destroy (store->by_name);
  g_ptr_array_free (store->files, TRUE);
  g_free (store);
}

const G3nTensor *
g3n_tensor_store_find (const G3nTensorStore *store, const char *name)
{
  return g_hash_table_lookup (store->by_name, name);
}

guint
g3n_tensor_store_count (const G3nTensorStore *store)
{
  return g_hash_table_size (store->by_name);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

char *
g3n_tensor_store_digest (const G3nTensorStore *store)
{
  g_autofree gpointer *names = g_hash_table_get_keys_as_array (store->by_name, NULL);
  guint n = g_hash_table_size (store->by_name);
  qsort (names, n, sizeof (gpointer), compare_names);
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (guint i = 0; i < n; i++) {
    const G3nTensor *t = g_hash_table_lookup (store->by_name, names[i]);
    g_autofree char *shape = g3n_shape_to_string (t->ndim, t->shape);
    g_autofree char *line = g_strdup_printf ("%s %s %s\n", t->name, g3n_dtype_name (t->dtype), shape);
    g_checksum_update (sum, (const guchar *) line, -1);
    /* a few bytes of the values tell a fine-tune from its base model, without reading the weights */
    g_checksum_update (sum, t->data, MIN (t->nbytes, 64));
  }
  return g_strdup (g_checksum_get_string (sum));
}
