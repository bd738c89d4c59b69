/* MRC1: one item of a mummi-spec campaign, as docs/record-format.md describes it. */
#ifndef MRC1_H
#define MRC1_H

#include <stddef.h>
#include <stdint.h>

/* Bytes an item takes: 8 (magic, header length), the JSON header, 4 per value. */
#define MRC1_SIZE(header_len, n) (8 + (size_t)(header_len) + 4 * (size_t)(n))

/* Encode n values into buf (cap bytes). tag and sim: NULL for none, else text needing no JSON
   escapes (no '"', '\\' nor control characters); meta: a JSON object's text, NULL for {}.
   Returns the item's length, or -1: buf too small, tag/sim need escaping, a value not finite. */
long mrc1_encode(unsigned char *buf, size_t cap, const float *values, uint32_t n,
                 const char *tag, const char *sim, const char *meta);

/* Write an item as dir/key atomically: a temporary ".mrc1.<pid>" in dir (the filesystem
   store never lists names starting with '.'), then rename(2). 0, or -1 and errno. */
int mrc1_write_file(const char *dir, const char *key, const unsigned char *buf, size_t len);

typedef struct {
    const char *header;   /* the JSON header (not NUL-terminated), inside the decoded data */
    uint32_t header_len;
    uint32_t n;           /* number of values */
    float *values;        /* n values, malloc'd: free() them */
} mrc1_item;

/* Check and decode an item (dim 0: any length): NULL, or why it is rejected. Checks the
   framing, n and the values; parse item->header with a JSON library for tag, sim, meta. */
const char *mrc1_decode(const unsigned char *data, size_t len, uint32_t dim, mrc1_item *out);

#endif
