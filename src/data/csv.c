/* Numeric CSV: comma-separated, one example a line, every cell a number, one of them
 * the class label. A first line with any non-numeric cell is a header; its names then
 * appear in messages. The file is read whole and split in place. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "ember/error.h"

/* A class index above this is a typo or a regression target, not a class: the model's
 * output layer would need that many units. */
#define CSV_MAX_LABEL 1000000

typedef struct csv_cells {
    char **cell;
    int64_t n, capacity;
} csv_cells;

static char *read_whole_file(const char *path, size_t *size_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        em_error("cannot open CSV file '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t capacity = 1 << 16, size = 0;
    char *buf = malloc(capacity + 1);
    while (buf) {
        size += fread(buf + size, 1, capacity - size, fp);
        if (size < capacity) break;
        char *bigger = realloc(buf, capacity * 2 + 1);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        capacity *= 2;
    }
    if (!buf) {
        fclose(fp);
        em_error("out of memory reading CSV file '%s'", path);
        return NULL;
    }
    if (ferror(fp)) {
        em_error("cannot read CSV file '%s': %s", path, strerror(errno));
        fclose(fp);
        free(buf);
        return NULL;
    }
    fclose(fp);
    buf[size] = '\0';
    *size_out = size;
    return buf;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = '\0';
    /* Spreadsheets sometimes quote numbers. */
    if (end - s >= 2 && s[0] == '"' && end[-1] == '"') {
        *--end = '\0';
        s++;
    }
    return s;
}

/* Splits one NUL-terminated line at commas, in place. */
static int split_line(char *line, csv_cells *out) {
    out->n = 0;
    for (char *p = line;;) {
        if (out->n == out->capacity) {
            int64_t grown = out->capacity ? 2 * out->capacity : 64;
            char **bigger = realloc(out->cell, (size_t)grown * sizeof *bigger);
            if (!bigger) return em_error("out of memory splitting a CSV line");
            out->cell = bigger;
            out->capacity = grown;
        }
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        out->cell[out->n++] = trim(p);
        if (!comma) break;
        p = comma + 1;
    }
    return EM_OK;
}

/* Parses a whole cell as a finite float. Plain short integers (pixel values) take a
 * fast path; they are exact in float, as strtof would give them. */
static bool parse_number(const char *s, float *out) {
    const char *p = s;
    bool negative = (*p == '-');
    if (*p == '-' || *p == '+') p++;
    if (*p >= '0' && *p <= '9') {
        int32_t v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 7) v = v * 10 + (*p++ - '0'), digits++;
        if (*p == '\0') {
            *out = negative ? -(float)v : (float)v;
            return true;
        }
    }
    if (*s == '\0') return false;
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

static const char *column_name(const csv_cells *header, int64_t col, char *buf, size_t size) {
    if (header && col < header->n && header->cell[col][0])
        snprintf(buf, size, "column %lld (\"%.40s\")", (long long)col + 1, header->cell[col]);
    else
        snprintf(buf, size, "column %lld", (long long)col + 1);
    return buf;
}

em_dataset *em_dataset_load_csv(const char *path, int label_column) {
    if (!path) {
        em_error("CSV dataset: no file given");
        return NULL;
    }
    size_t size = 0;
    char *text = read_whole_file(path, &size);
    if (!text) return NULL;

    em_dataset *ds = NULL;
    csv_cells cells = {0}, header = {0};
    bool has_header = false;
    int64_t ncols = 0, rows = 0, label_col = 0, nfeatures = 0, first_line = 0;
    char colbuf[80];

    /* An upper bound on the rows, for one allocation of the feature matrix. */
    int64_t max_rows = 1;
    for (size_t i = 0; i < size; i++) max_rows += (text[i] == '\n');

    char *p = text;
    if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
        p += 3; /* UTF-8 byte order mark */
    int64_t line_no = 0;
    em_dataset_storage *st = NULL;
    while (p < text + size) {
        line_no++;
        char *nl = memchr(p, '\n', (size_t)(text + size - p));
        char *next = nl ? nl + 1 : text + size;
        if (nl) *nl = '\0';
        char *line = p;
        size_t line_len = (size_t)((nl ? nl : text + size) - line);
        p = next;
        if (strlen(line) != line_len) {
            em_error("CSV file '%s', line %lld: contains a NUL byte (is it a text file?)", path,
                     (long long)line_no);
            goto fail;
        }
        bool blank = true;
        for (const char *c = line; *c; c++)
            if (!isspace((unsigned char)*c)) blank = false;
        if (blank) continue;

        if (split_line(line, &cells) != EM_OK) goto fail;

        if (ncols == 0) {
            /* The first non-blank line: a header when any cell is not a number. */
            first_line = line_no;
            ncols = cells.n;
            float ignored;
            for (int64_t c = 0; c < cells.n; c++)
                if (!parse_number(cells.cell[c], &ignored)) has_header = true;
            if (ncols < 2) {
                em_error("CSV file '%s', line %lld: found 1 column; need at least one feature "
                         "column and a label column (comma-separated)", path, (long long)line_no);
                goto fail;
            }
            label_col = label_column < 0 ? ncols + label_column : label_column;
            if (label_col < 0 || label_col >= ncols) {
                em_error("CSV file '%s': label column %d is out of range: the file has %lld "
                         "columns (0..%lld, or -1 for the last)", path, label_column,
                         (long long)ncols, (long long)ncols - 1);
                goto fail;
            }
            nfeatures = ncols - 1;
            /* Every data row holds ncols non-empty cells and ncols - 1 commas, so a wide
             * first line followed by many short or blank lines cannot reserve rows the
             * file has no room for (64 KB could otherwise ask for gigabytes). */
            int64_t room = (int64_t)(size / (size_t)(2 * ncols - 1)) + 1;
            if (room < max_rows) max_rows = room;
            ds = em_dataset_alloc();
            if (!ds) goto fail;
            st = em_dataset_storage_of(ds);
            st->features = malloc((size_t)max_rows * (size_t)nfeatures * sizeof(float));
            st->labels = malloc((size_t)max_rows * sizeof(int32_t));
            if (!st->features || !st->labels) {
                em_error("out of memory reading CSV file '%s' (%lld rows x %lld columns)", path,
                         (long long)max_rows, (long long)ncols);
                goto fail;
            }
            if (has_header) {
                /* Keep the names for messages; the line's memory stays alive. */
                header = cells;
                cells = (csv_cells){0};
                continue;
            }
        }

        if (cells.n != ncols) {
            em_error("CSV file '%s', line %lld: has %lld cells, expected %lld as on line %lld%s",
                     path, (long long)line_no, (long long)cells.n, (long long)ncols,
                     (long long)first_line, has_header ? " (the header)" : "");
            goto fail;
        }
        if (rows == max_rows) { /* cannot happen by the bound above; never write past it */
            em_error("CSV file '%s', line %lld: more rows than the file can hold", path,
                     (long long)line_no);
            goto fail;
        }
        float *row = st->features + rows * nfeatures;
        for (int64_t c = 0, f = 0; c < ncols; c++) {
            float v;
            if (!parse_number(cells.cell[c], &v)) {
                em_error("CSV file '%s', line %lld, %s: '%.40s' is not a number", path,
                         (long long)line_no,
                         column_name(has_header ? &header : NULL, c, colbuf, sizeof colbuf),
                         cells.cell[c]);
                goto fail;
            }
            if (c == label_col) {
                if (v < 0 || v != floorf(v) || v > CSV_MAX_LABEL) {
                    em_error("CSV file '%s', line %lld, %s: label '%.40s' is not a class index "
                             "(an integer from 0 to %d)", path, (long long)line_no,
                             column_name(has_header ? &header : NULL, c, colbuf, sizeof colbuf),
                             cells.cell[c], CSV_MAX_LABEL);
                    goto fail;
                }
                st->labels[rows] = (int32_t)v;
            } else {
                row[f++] = v;
            }
        }
        rows++;
    }

    if (ncols == 0) {
        em_error("CSV file '%s' is empty", path);
        goto fail;
    }
    if (rows == 0) {
        em_error("CSV file '%s' has a header (line %lld) but no data rows", path,
                 (long long)first_line);
        goto fail;
    }
    free(cells.cell);
    free(header.cell);
    free(text);
    cells.cell = header.cell = NULL;
    text = NULL;

    /* Give back the rows the bound over-counted (blank lines, the header). */
    if (rows < max_rows) {
        float *fit = realloc(st->features, (size_t)rows * (size_t)nfeatures * sizeof(float));
        if (fit) st->features = fit;
    }
    ds->count = rows;
    ds->item_ndim = 1;
    ds->item_shape[0] = nfeatures;
    ds->item_numel = nfeatures;
    snprintf(ds->source, sizeof ds->source, "%s", path);
    em_dataset_publish(ds);
    ds->num_classes = em_labels_num_classes(ds->labels, rows, path);
    return ds;

fail:
    free(cells.cell);
    free(header.cell);
    free(text);
    em_dataset_free(ds);
    return NULL;
}
