/* mrc1tool: write one item into a filesystem store's namespace directory, or read one.
     cc -O2 -o mrc1tool mrc1tool.c mrc1.c
     mrc1tool write DIR KEY TAG SIM META V1 ... VN   (TAG, SIM: - for none; META: - for {})
     mrc1tool read FILE [DIM]     prints n, the JSON header, then each value, a line each
   Exit 0, or 2 with the reason on stderr. */
#include "mrc1.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *opt(const char *s) { return strcmp(s, "-") ? s : NULL; }

static int fail(const char *what, const char *why) {
    fprintf(stderr, "mrc1tool: %s: %s\n", what, why);
    return 2;
}

static int write_item(char **argv, uint32_t n) {
    float *v = malloc(4 * (size_t)n + 1);
    size_t cap = MRC1_SIZE(strlen(argv[6]) + 600, n);  /* meta, and 600 for the rest */
    unsigned char *buf = malloc(cap);
    int code = 0;
    long len = 0;
    for (uint32_t i = 0; i < n && !code; i++) {
        char *end;
        v[i] = strtof(argv[7 + i], &end);
        if (end == argv[7 + i] || *end) code = fail(argv[7 + i], "not a number");
    }
    if (!code && (len = mrc1_encode(buf, cap, v, n, opt(argv[4]), opt(argv[5]), opt(argv[6]))) < 0)
        code = fail(argv[3], "a value is not finite, or tag or sim needs JSON escapes");
    if (!code && mrc1_write_file(argv[2], argv[3], buf, (size_t)len))
        code = fail(argv[3], strerror(errno));
    free(v), free(buf);
    return code;
}

static int read_item(const char *path, uint32_t dim) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    unsigned char *data = malloc((size_t)size + 1);
    rewind(f);
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    mrc1_item item;
    const char *why = mrc1_decode(data, got, dim, &item);
    if (!why) {
        printf("%u\n%.*s\n", item.n, (int)item.header_len, item.header);
        for (uint32_t i = 0; i < item.n; i++) printf("%.9g\n", item.values[i]);  /* exact */
        free(item.values);
    }
    free(data);
    return why ? fail(path, why) : 0;
}

int main(int argc, char **argv) {
    if (argc >= 7 && !strcmp(argv[1], "write")) return write_item(argv, (uint32_t)(argc - 7));
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "read"))
        return read_item(argv[2], argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0);
    return fail("usage", "mrc1tool write DIR KEY TAG SIM META V... | mrc1tool read FILE [DIM]");
}
