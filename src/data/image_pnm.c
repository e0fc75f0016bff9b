/* Netpbm grey and colour maps: P2 (PGM as text), P5 (PGM binary), P3 (PPM as text),
 * P6 (PPM binary). A header of magic, width, height and maxval separated by whitespace
 * and '#' comments; binary rasters follow one whitespace byte after maxval, with one
 * byte per sample when maxval < 256 and two (big-endian) otherwise. Every number and
 * length is checked against the bytes actually there; messages give byte offsets. */
#include <stdlib.h>
#include <string.h>

#include "data/image_internal.h"
#include "ember/error.h"

#define MAX_MAXVAL 65535

typedef struct pnm_reader {
    const unsigned char *data;
    size_t size, pos;
    const char *source;
} pnm_reader;

static bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Skips whitespace and comments (a '#' to the end of its line). */
static void skip_blanks(pnm_reader *r)
{
    while (r->pos < r->size) {
        if (is_space(r->data[r->pos])) {
            r->pos++;
        } else if (r->data[r->pos] == '#') {
            while (r->pos < r->size && r->data[r->pos] != '\n' && r->data[r->pos] != '\r')
                r->pos++;
        } else {
            return;
        }
    }
}

/* Reads an unsigned decimal number of at most `max`; EM_ERR naming `what`. */
static int read_number(pnm_reader *r, const char *what, uint32_t max, uint32_t *out)
{
    skip_blanks(r);
    size_t start = r->pos;
    if (r->pos >= r->size)
        return em_error("%s: the file ends before the %s", r->source, what);
    if (!is_digit(r->data[r->pos]))
        return em_error("%s: expected the %s as a number at byte %zu, found '%c'", r->source, what, start,
                        r->data[r->pos] >= 32 && r->data[r->pos] < 127 ? r->data[r->pos] : '?');
    uint64_t v = 0;
    while (r->pos < r->size && is_digit(r->data[r->pos])) {
        v = v * 10 + (uint64_t)(r->data[r->pos++] - '0');
        if (v > max)
            return em_error("%s: the %s at byte %zu exceeds %u", r->source, what, start, max);
    }
    if (r->pos < r->size && !is_space(r->data[r->pos]) && r->data[r->pos] != '#')
        return em_error("%s: the %s at byte %zu is followed by '%c' instead of whitespace", r->source, what, start,
                        r->data[r->pos] >= 32 && r->data[r->pos] < 127 ? r->data[r->pos] : '?');
    *out = (uint32_t)v;
    return EM_OK;
}

em_image *em_image_decode_pnm(const unsigned char *data, size_t size, const char *source)
{
    if (size < 2 || data[0] != 'P' || !is_digit(data[1])) {
        em_error("%s: not a PGM or PPM image (no P2, P3, P5 or P6 magic)", source);
        return NULL;
    }
    char kind = (char)data[1];
    if (kind != '2' && kind != '3' && kind != '5' && kind != '6') {
        em_error("%s: netpbm format P%c is not supported; ember reads P2 and P5 (PGM), P3 and P6 (PPM)", source,
                 kind);
        return NULL;
    }
    const bool text = kind == '2' || kind == '3';
    const int channels = kind == '3' || kind == '6' ? 3 : 1;
    pnm_reader r = {data, size, 2, source};
    if (size > 2 && !is_space(data[2]) && data[2] != '#') {
        em_error("%s: the magic P%c must be followed by whitespace", source, kind);
        return NULL;
    }
    uint32_t width, height, maxval;
    if (read_number(&r, "width", EM_IMAGE_MAX_SIDE, &width) != EM_OK ||
        read_number(&r, "height", EM_IMAGE_MAX_SIDE, &height) != EM_OK ||
        read_number(&r, "maximum value", MAX_MAXVAL, &maxval) != EM_OK)
        return NULL;
    if (width == 0 || height == 0 || maxval == 0) {
        em_error("%s: width %u, height %u and maximum value %u must be at least 1", source, width, height, maxval);
        return NULL;
    }
    const uint64_t samples = (uint64_t)width * height * (uint64_t)channels;
    if (!text) {
        /* exactly one whitespace byte between maxval and the raster */
        if (r.pos >= size) {
            em_error("%s: the file ends after the header; a %ux%u raster should follow", source, width, height);
            return NULL;
        }
        r.pos++;
        uint64_t bytes = samples * (maxval < 256 ? 1 : 2);
        if (bytes > size - r.pos) {
            em_error("%s: truncated: a %ux%u raster with maximum value %u needs %llu bytes after the header "
                     "(byte %zu), the file has %zu",
                     source, width, height, maxval, (unsigned long long)bytes, r.pos, size - r.pos);
            return NULL;
        }
    } else if (2 * samples > size - r.pos) {
        /* each text sample takes a separator and a digit at least: refuse before allocating */
        em_error("%s: truncated: %llu samples are announced but only %zu bytes follow the header", source,
                 (unsigned long long)samples, size - r.pos);
        return NULL;
    }
    em_image *img = em_image_alloc(width, height, channels, source);
    if (!img)
        return NULL;
    for (uint64_t i = 0; i < samples; i++) {
        uint32_t v;
        if (text) {
            skip_blanks(&r);
            if (r.pos >= size) {
                em_error("%s: the file ends after %llu of %llu samples", source, (unsigned long long)i,
                         (unsigned long long)samples);
                em_image_free(img);
                return NULL;
            }
            if (read_number(&r, "sample", MAX_MAXVAL, &v) != EM_OK) {
                em_image_free(img);
                return NULL;
            }
        } else if (maxval < 256) {
            v = data[r.pos++];
        } else {
            v = (uint32_t)data[r.pos] << 8 | data[r.pos + 1];
            r.pos += 2;
        }
        if (v > maxval) {
            em_error("%s: sample %llu (row %llu, column %llu) is %u, above the maximum value %u", source,
                     (unsigned long long)i, (unsigned long long)(i / channels / width),
                     (unsigned long long)(i / channels % width), v, maxval);
            em_image_free(img);
            return NULL;
        }
        img->samples[i] = (uint16_t)(((uint64_t)v * 65535u + maxval / 2) / maxval);
    }
    return img;
}
