/* MRC1 items: encode, write atomically, decode and check (docs/record-format.md). */
#define _POSIX_C_SOURCE 200809L  /* getpid */
#include "mrc1.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> 8 * i; }
static uint32_t get32(const unsigned char *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static int blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int plain(const char *s) { /* a JSON string needing no escapes, a name's length */
    if (s && strlen(s) > 255) return 0;
    for (; s && *s; s++) if (*s == '"' || *s == '\\' || (unsigned char)*s < 32) return 0;
    return 1;
}

long mrc1_encode(unsigned char *buf, size_t cap, const float *values, uint32_t n,
                 const char *tag, const char *sim, const char *meta) {
    char t[300], s[300];
    if (!plain(tag) || !plain(sim) || cap < 8) return -1;
    for (uint32_t i = 0; i < n; i++) if (!isfinite(values[i])) return -1;
    snprintf(t, sizeof t, tag ? "\"%s\"" : "null", tag);
    snprintf(s, sizeof s, sim ? "\"%s\"" : "null", sim);
    int h = snprintf((char *)buf + 8, cap - 8, "{\"meta\":%s,\"n\":%u,\"sim\":%s,\"tag\":%s}",
                     meta ? meta : "{}", n, s, t);
    if (h < 0 || MRC1_SIZE(h, n) > cap) return -1;
    memcpy(buf, "MRC1", 4);
    put32(buf + 4, (uint32_t)h);
    for (uint32_t i = 0, v; i < n; i++) memcpy(&v, &values[i], 4), put32(buf + 8 + h + 4 * i, v);
    return (long)MRC1_SIZE(h, n);
}

int mrc1_write_file(const char *dir, const char *key, const unsigned char *buf, size_t len) {
    char tmp[4096], dst[4096];
    if (!*key || *key == '.' || strchr(key, '/') || strstr(key, "..")) return errno = EINVAL, -1;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.mrc1.%ld", dir, (long)getpid()) >= sizeof tmp ||
        (size_t)snprintf(dst, sizeof dst, "%s/%s", dir, key) >= sizeof dst)
        return errno = ENAMETOOLONG, -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, len, f) == len, e;
    if (fclose(f) == 0 && ok && rename(tmp, dst) == 0) return 0;
    e = errno, remove(tmp), errno = e;
    return -1;
}

/* The header's "n" (of the outermost object, not of meta), or -1. */
static long header_n(const char *p, const char *e) {
    for (int depth = 0, str = 0; p < e; p++) {
        if (str) { if (*p == '\\') p++; else if (*p == '"') str = 0; continue; }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        else if (*p == '"' && (str = 1) && depth == 1 && e - p > 3 && !memcmp(p, "\"n\"", 3)) {
            const char *q = p + 3;
            while (q < e && blank(*q)) q++;
            if (q == e || *q++ != ':') continue;  /* a string value "n", not the key */
            while (q < e && blank(*q)) q++;
            long n = 0;
            for (p = q; q < e && *q >= '0' && *q <= '9' && q - p < 10; q++) n = 10 * n + *q - '0';
            return q > p && q < e && (*q == ',' || *q == '}' || blank(*q)) ? n : -1;
        }
    }
    return -1;
}

const char *mrc1_decode(const unsigned char *data, size_t len, uint32_t dim, mrc1_item *out) {
    if (len < 8) return "too short to be a record";
    if (memcmp(data, "MRC1", 4)) return "not a record (it does not start with MRC1)";
    out->header = (const char *)data + 8, out->header_len = get32(data + 4), out->values = NULL;
    if (out->header_len > len - 8) return "unreadable record header (longer than the item)";
    long n = header_n(out->header, out->header + out->header_len);
    if (n < 0 || n > UINT32_MAX) return "unreadable record header (no whole number n)";
    if (len - 8 - out->header_len != 4 * (size_t)n)
        return "record says n values but holds more or fewer bytes";
    if (dim && (uint32_t)n != dim) return "has n values, the stream declares another dim";
    if (!(out->values = malloc(4 * (size_t)n + 1))) return "out of memory";
    out->n = (uint32_t)n;
    for (uint32_t i = 0, v; i < out->n; i++) {
        v = get32(data + 8 + out->header_len + 4 * i);
        memcpy(&out->values[i], &v, 4);
        if (!isfinite(out->values[i])) {
            free(out->values), out->values = NULL;
            return "values contain NaN or infinity";
        }
    }
    return NULL;
}
