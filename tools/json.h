/* json.h: a compact JSON reader and writer for the ratetrack command.
 *
 * Recursive descent over RFC 8259 text: objects, arrays, strings (every
 * escape, \u with surrogate pairs, to UTF-8), numbers, true, false, null.
 * Nesting is limited to JSON_MAX_DEPTH. Object members keep their order
 * (the library documents a fixed key order, and tables follow it).
 * Numbers keep their source text, so writing a value back is exact; a
 * number that is a non-negative integer up to UINT64_MAX is also available
 * as a uint64_t. No dependency beyond the C standard library. */
#ifndef RATETRACK_TOOLS_JSON_H_
#define RATETRACK_TOOLS_JSON_H_

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

typedef enum {
  JSON_NULL,
  JSON_BOOL,
  JSON_NUMBER,
  JSON_STRING,
  JSON_ARRAY,
  JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
  json_type type;
  int boolean;        /* JSON_BOOL: 0 or 1 */
  int is_uint;        /* JSON_NUMBER: 1 when a non-negative integer in uint64_t */
  uint64_t u;         /* JSON_NUMBER: the value, when is_uint */
  double d;           /* JSON_NUMBER: the value as a double */
  char *str;          /* JSON_STRING: the UTF-8 text; JSON_NUMBER: its source text */
  size_t len;         /* length of str (a string may contain NUL bytes) */
  size_t count;       /* JSON_ARRAY: items; JSON_OBJECT: members */
  json_value *items;  /* JSON_ARRAY: the items; JSON_OBJECT: the members' values */
  char **keys;        /* JSON_OBJECT: the members' keys (NUL-terminated) */
};

/* Parses `text` (NUL-terminated). Returns a tree to free with json_free, or
 * NULL with a message ("offset 12: expected ':'") in err (err_size bytes). */
json_value *json_parse(const char *text, char *err, size_t err_size);

/* Frees a tree from json_parse. NULL is ignored. */
void json_free(json_value *v);

/* The value of member `key` of an object, or NULL (absent, or v is not an
 * object). The first member of that name wins. */
json_value *json_get(const json_value *v, const char *key);

/* Removes member `key` of an object (every member of that name). */
void json_remove(json_value *v, const char *key);

/* Removes the i-th member of an object (nothing when out of range). */
void json_remove_at(json_value *v, size_t i);

/* Whether v is a number that fits uint64_t, storing it in *out. */
int json_uint(const json_value *v, uint64_t *out);

/* Makes every string and key of the tree safe to print on a terminal: each
 * control character (C0, DEL, C1) and each byte that is not part of valid
 * UTF-8 becomes the four characters \xHH, so no escape sequence or line
 * break in a model name reaches the operator's screen. Returns 0 when out of
 * memory (the tree is then partly converted, still valid to free). */
int json_make_printable(json_value *v);

/* A printable copy of the NUL-terminated `s`, as json_make_printable makes
 * it; free() it. NULL when out of memory. */
char *json_printable_copy(const char *s);

/* A growing text buffer. On out-of-memory `failed` is set and further
 * appends do nothing; data is always NUL-terminated when not failed. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} json_buf;

void json_buf_append(json_buf *b, const char *s, size_t n);
void json_buf_puts(json_buf *b, const char *s);
void json_buf_printf(json_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void json_buf_free(json_buf *b);

/* Appends `s` (n bytes) as a JSON string literal, quotes included. */
void json_write_string(json_buf *b, const char *s, size_t n);

/* Appends v as compact JSON text. */
void json_write(json_buf *b, const json_value *v);

#endif /* RATETRACK_TOOLS_JSON_H_ */
