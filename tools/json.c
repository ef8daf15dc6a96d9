/* json.c: see json.h. */
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *start, *p;
  char *err;
  size_t err_size;
  int depth;
} parser;

static int fail(parser *ps, const char *what) {
  if (ps->err != NULL && ps->err_size > 0 && ps->err[0] == '\0') {
    snprintf(ps->err, ps->err_size, "offset %zu: %s", (size_t)(ps->p - ps->start), what);
  }
  return 0;
}

static void skip_ws(parser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static void free_contents(json_value *v) {
  size_t i;
  if (v == NULL) return;
  free(v->str);
  for (i = 0; i < v->count; i++) {
    free_contents(&v->items[i]);
    if (v->keys != NULL) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof *v);
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parses a string literal at ps->p (the opening quote). The decoded text
 * is never longer than the literal, which sizes the allocation. */
static int parse_string(parser *ps, char **out, size_t *out_len) {
  const char *s = ps->p + 1, *e = s;
  char *buf, *o;
  while (*e != '"') {
    if (*e == '\0') return fail(ps, "unterminated string");
    if (*e == '\\' && e[1] != '\0') e++;
    e++;
  }
  buf = malloc((size_t)(e - s) + 1);
  if (buf == NULL) return fail(ps, "out of memory");
  o = buf;
  while (s < e) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20) {
      ps->p = s;
      free(buf);
      return fail(ps, "control character in string");
    }
    if (c != '\\') { *o++ = (char)c; s++; continue; }
    s++;
    switch (*s) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (!hex4(s + 1, &cp)) goto bad_escape;
        s += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  /* a high surrogate needs its low half */
          if (s[1] != '\\' || s[2] != 'u' || !hex4(s + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            goto bad_escape;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          s += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          goto bad_escape;
        }
        o += put_utf8(o, cp);
        break;
      }
      default:
      bad_escape:
        ps->p = s;
        free(buf);
        return fail(ps, "bad escape in string");
    }
    s++;
  }
  *o = '\0';
  *out = buf;
  *out_len = (size_t)(o - buf);
  ps->p = e + 1;
  return 1;
}

static int parse_number(parser *ps, json_value *v) {
  const char *s = ps->p, *q = s;
  int integer = 1;
  if (*q == '-') { integer = 0; q++; }
  if (*q == '0') q++;
  else if (*q >= '1' && *q <= '9') while (*q >= '0' && *q <= '9') q++;
  else return fail(ps, "bad number");
  if (*q == '.') {
    integer = 0;
    q++;
    if (!(*q >= '0' && *q <= '9')) { ps->p = q; return fail(ps, "bad number"); }
    while (*q >= '0' && *q <= '9') q++;
  }
  if (*q == 'e' || *q == 'E') {
    integer = 0;
    q++;
    if (*q == '+' || *q == '-') q++;
    if (!(*q >= '0' && *q <= '9')) { ps->p = q; return fail(ps, "bad number"); }
    while (*q >= '0' && *q <= '9') q++;
  }
  v->type = JSON_NUMBER;
  v->len = (size_t)(q - s);
  v->str = malloc(v->len + 1);
  if (v->str == NULL) return fail(ps, "out of memory");
  memcpy(v->str, s, v->len);
  v->str[v->len] = '\0';
  v->d = strtod(v->str, NULL);
  if (integer) {
    char *end;
    unsigned long long u;
    errno = 0;
    u = strtoull(v->str, &end, 10);
    if (errno == 0 && *end == '\0') { v->is_uint = 1; v->u = (uint64_t)u; }
  }
  ps->p = q;
  return 1;
}

static int parse_value(parser *ps, json_value *v);

/* Appends a zeroed slot to an array's or object's items (and keys). */
static json_value *grow(parser *ps, json_value *v, size_t *cap, int with_keys) {
  if (v->count == *cap) {
    size_t n = *cap ? *cap * 2 : 8;
    json_value *items = realloc(v->items, n * sizeof *items);
    if (items == NULL) { fail(ps, "out of memory"); return NULL; }
    v->items = items;
    if (with_keys) {
      char **keys = realloc(v->keys, n * sizeof *keys);
      if (keys == NULL) { fail(ps, "out of memory"); return NULL; }
      v->keys = keys;
    }
    *cap = n;
  }
  memset(&v->items[v->count], 0, sizeof v->items[0]);
  if (with_keys) v->keys[v->count] = NULL;
  return &v->items[v->count++];
}

static int parse_container(parser *ps, json_value *v, int object) {
  size_t cap = 0;
  char close = object ? '}' : ']';
  if (++ps->depth > JSON_MAX_DEPTH) return fail(ps, "nested too deeply");
  v->type = object ? JSON_OBJECT : JSON_ARRAY;
  ps->p++;
  skip_ws(ps);
  if (*ps->p == close) { ps->p++; ps->depth--; return 1; }
  for (;;) {
    json_value *item = grow(ps, v, &cap, object);
    if (item == NULL) return 0;
    if (object) {
      size_t klen;
      skip_ws(ps);
      if (*ps->p != '"') return fail(ps, "expected a string key");
      if (!parse_string(ps, &v->keys[v->count - 1], &klen)) return 0;
      skip_ws(ps);
      if (*ps->p != ':') return fail(ps, "expected ':'");
      ps->p++;
    }
    if (!parse_value(ps, item)) return 0;
    skip_ws(ps);
    if (*ps->p == ',') { ps->p++; continue; }
    if (*ps->p == close) { ps->p++; break; }
    return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
  ps->depth--;
  return 1;
}

static int literal(parser *ps, const char *word) {
  size_t n = strlen(word);
  if (strncmp(ps->p, word, n) != 0) return fail(ps, "unexpected character");
  ps->p += n;
  return 1;
}

static int parse_value(parser *ps, json_value *v) {
  skip_ws(ps);
  switch (*ps->p) {
    case '{': return parse_container(ps, v, 1);
    case '[': return parse_container(ps, v, 0);
    case '"': v->type = JSON_STRING; return parse_string(ps, &v->str, &v->len);
    case 't': v->type = JSON_BOOL; v->boolean = 1; return literal(ps, "true");
    case 'f': v->type = JSON_BOOL; v->boolean = 0; return literal(ps, "false");
    case 'n': v->type = JSON_NULL; return literal(ps, "null");
    case '\0': return fail(ps, "unexpected end of text");
    default:
      if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, v);
      return fail(ps, "unexpected character");
  }
}

json_value *json_parse(const char *text, char *err, size_t err_size) {
  parser ps;
  json_value *v;
  if (err != NULL && err_size > 0) err[0] = '\0';
  ps.start = ps.p = text;
  ps.err = err;
  ps.err_size = err_size;
  ps.depth = 0;
  v = calloc(1, sizeof *v);
  if (v == NULL) { fail(&ps, "out of memory"); return NULL; }
  if (parse_value(&ps, v)) {
    skip_ws(&ps);
    if (*ps.p == '\0') return v;
    fail(&ps, "text after the value");
  }
  json_free(v);
  return NULL;
}

void json_free(json_value *v) {
  if (v == NULL) return;
  free_contents(v);
  free(v);
}

/* The length of the printable UTF-8 character at s[i] (1 to 4), or 0 for a
 * control character or a byte that starts no valid sequence. */
static size_t printable_char(const unsigned char *s, size_t n, size_t i) {
  unsigned char c = s[i];
  size_t left = n - i, k, len;
  if (c < 0x80) return c < 0x20 || c == 0x7f ? 0 : 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) len = 3;
  else if (c >= 0xf0 && c <= 0xf4) len = 4;
  else return 0;
  if (left < len) return 0;
  for (k = 1; k < len; k++) {
    if ((s[i + k] & 0xc0) != 0x80) return 0;
  }
  if (c == 0xc2 && s[i + 1] < 0xa0) return 0;  /* C1 control */
  if (c == 0xe0 && s[i + 1] < 0xa0) return 0;  /* overlong */
  if (c == 0xed && s[i + 1] >= 0xa0) return 0; /* surrogate */
  if (c == 0xf0 && s[i + 1] < 0x90) return 0;  /* overlong */
  if (c == 0xf4 && s[i + 1] >= 0x90) return 0; /* above U+10FFFF */
  return len;
}

/* A printable copy of s (n bytes), or NULL when out of memory. */
static char *printable_copy(const char *s, size_t n, size_t *out_len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  char *out = malloc(4 * n + 1), *o = out;
  size_t i = 0;
  if (out == NULL) return NULL;
  while (i < n) {
    size_t len = printable_char(u, n, i);
    if (len > 0) {
      memcpy(o, s + i, len);
      o += len;
      i += len;
    } else {
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[u[i] >> 4];
      *o++ = hex[u[i] & 15];
      i++;
    }
  }
  *o = '\0';
  if (out_len != NULL) *out_len = (size_t)(o - out);
  return out;
}

static int needs_printable(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t len = printable_char((const unsigned char *)s, n, i);
    if (len == 0) return 1;
    i += len;
  }
  return 0;
}

char *json_printable_copy(const char *s) { return printable_copy(s, strlen(s), NULL); }

int json_make_printable(json_value *v) {
  size_t i;
  if (v == NULL) return 1;
  if (v->type == JSON_STRING && needs_printable(v->str, v->len)) {
    size_t len;
    char *copy = printable_copy(v->str, v->len, &len);
    if (copy == NULL) return 0;
    free(v->str);
    v->str = copy;
    v->len = len;
  }
  if (v->type == JSON_OBJECT) {
    for (i = 0; i < v->count; i++) {
      if (needs_printable(v->keys[i], strlen(v->keys[i]))) {
        char *copy = printable_copy(v->keys[i], strlen(v->keys[i]), NULL);
        if (copy == NULL) return 0;
        free(v->keys[i]);
        v->keys[i] = copy;
      }
    }
  }
  if (v->type == JSON_OBJECT || v->type == JSON_ARRAY) {
    for (i = 0; i < v->count; i++) {
      if (!json_make_printable(&v->items[i])) return 0;
    }
  }
  return 1;
}

json_value *json_get(const json_value *v, const char *key) {
  size_t i;
  if (v == NULL || v->type != JSON_OBJECT) return NULL;
  for (i = 0; i < v->count; i++) {
    if (strcmp(v->keys[i], key) == 0) return &v->items[i];
  }
  return NULL;
}

void json_remove_at(json_value *v, size_t i) {
  if (v == NULL || v->type != JSON_OBJECT || i >= v->count) return;
  free_contents(&v->items[i]);
  free(v->keys[i]);
  memmove(&v->items[i], &v->items[i + 1], (v->count - i - 1) * sizeof v->items[0]);
  memmove(&v->keys[i], &v->keys[i + 1], (v->count - i - 1) * sizeof v->keys[0]);
  v->count--;
}

void json_remove(json_value *v, const char *key) {
  size_t i = 0;
  if (v == NULL || v->type != JSON_OBJECT) return;
  while (i < v->count) {
    if (strcmp(v->keys[i], key) == 0) json_remove_at(v, i);
    else i++;
  }
}

int json_uint(const json_value *v, uint64_t *out) {
  if (v == NULL || v->type != JSON_NUMBER || !v->is_uint) return 0;
  *out = v->u;
  return 1;
}

/* ------------------------------------------------------------------ writing */

void json_buf_append(json_buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *data;
    while (cap < b->len + n + 1) cap *= 2;
    data = realloc(b->data, cap);
    if (data == NULL) { b->failed = 1; return; }
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void json_buf_puts(json_buf *b, const char *s) { json_buf_append(b, s, strlen(s)); }

void json_buf_printf(json_buf *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) { b->failed = 1; return; }
  if ((size_t)n < sizeof small) { json_buf_append(b, small, (size_t)n); return; }
  {
    char *big = malloc((size_t)n + 1);
    if (big == NULL) { b->failed = 1; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    json_buf_append(b, big, (size_t)n);
    free(big);
  }
}

void json_buf_free(json_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}

void json_write_string(json_buf *b, const char *s, size_t n) {
  size_t i;
  json_buf_append(b, "\"", 1);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') json_buf_append(b, "\\\"", 2);
    else if (c == '\\') json_buf_append(b, "\\\\", 2);
    else if (c == '\n') json_buf_append(b, "\\n", 2);
    else if (c == '\r') json_buf_append(b, "\\r", 2);
    else if (c == '\t') json_buf_append(b, "\\t", 2);
    else if (c < 0x20) json_buf_printf(b, "\\u%04x", c);
    else json_buf_append(b, (const char *)&s[i], 1);
  }
  json_buf_append(b, "\"", 1);
}

void json_write(json_buf *b, const json_value *v) {
  size_t i;
  switch (v->type) {
    case JSON_NULL: json_buf_puts(b, "null"); break;
    case JSON_BOOL: json_buf_puts(b, v->boolean ? "true" : "false"); break;
    case JSON_NUMBER: json_buf_append(b, v->str, v->len); break;
    case JSON_STRING: json_write_string(b, v->str, v->len); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
      json_buf_append(b, v->type == JSON_OBJECT ? "{" : "[", 1);
      for (i = 0; i < v->count; i++) {
        if (i > 0) json_buf_append(b, ",", 1);
        if (v->type == JSON_OBJECT) {
          json_write_string(b, v->keys[i], strlen(v->keys[i]));
          json_buf_append(b, ":", 1);
        }
        json_write(b, &v->items[i]);
      }
      json_buf_append(b, v->type == JSON_OBJECT ? "}" : "]", 1);
      break;
  }
}
