/* Images as model inputs: recognising the format, reading files, and resampling to the
 * model's size. Resampling is separable: each axis gets a table of source taps and
 * weights per output position (the area each output pixel covers when shrinking, the
 * two nearest source pixels when growing), rows are resampled first, then columns. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_internal.h"
#include "ember/error.h"

/* Image files are small; a limit keeps a wrong path (a disk image...) from being read. */
#define MAX_FILE_BYTES (INT64_C(1) << 30)

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

em_image *em_image_alloc(int64_t width, int64_t height, int channels, const char *source)
{
    if (width < 1 || height < 1 || width > EM_IMAGE_MAX_SIDE || height > EM_IMAGE_MAX_SIDE ||
        width * height > EM_IMAGE_MAX_PIXELS) {
        em_error("%s: a %lldx%lld image is beyond ember's limits (sides up to %d, %lld pixels in all)", source,
                 (long long)width, (long long)height, EM_IMAGE_MAX_SIDE, (long long)EM_IMAGE_MAX_PIXELS);
        return NULL;
    }
    em_image *img = calloc(1, sizeof *img);
    uint16_t *samples = malloc((size_t)(width * height * channels) * sizeof *samples);
    if (!img || !samples) {
        free(img);
        free(samples);
        em_error("%s: out of memory for a %lldx%lld image", source, (long long)width, (long long)height);
        return NULL;
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->samples = samples;
    return img;
}

void em_image_free(em_image *img)
{
    if (!img)
        return;
    free(img->samples);
    free(img);
}

em_image *em_image_decode(const void *data, size_t size, const char *source)
{
    if (!source)
        source = "<image>";
    if (!data && size) {
        em_error("%s: no data", source);
        return NULL;
    }
    const unsigned char *bytes = data;
    if (size == 0) {
        em_error("%s: empty file, not an image", source);
        return NULL;
    }
    if (size >= sizeof png_signature && memcmp(bytes, png_signature, sizeof png_signature) == 0)
        return em_image_decode_png(bytes, size, source);
    if (size >= 2 && bytes[0] == 'P' && bytes[1] >= '0' && bytes[1] <= '9')
        return em_image_decode_pnm(bytes, size, source);
    char start[64] = "";
    for (size_t i = 0; i < size && i < 8; i++)
        snprintf(start + strlen(start), sizeof start - strlen(start), "%s%02x", i ? " " : "", bytes[i]);
    em_error("%s: not a PNG, PGM or PPM image (it starts with bytes %s)", source, start);
    return NULL;
}

em_image *em_image_load(const char *path)
{
    if (!path) {
        em_error("em_image_load: no path");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        em_error("cannot open image %s: %s", path, strerror(errno));
        return NULL;
    }
    em_image *img = NULL;
    unsigned char *data = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        em_error("%s: cannot read the image: %s", path, size < 0 ? strerror(errno) : "seek failed");
    else if (size > MAX_FILE_BYTES)
        em_error("%s: %ld bytes; larger than any image ember reads", path, size);
    else if (!(data = malloc(size ? (size_t)size : 1)))
        em_error("%s: out of memory", path);
    else if (fread(data, 1, (size_t)size, f) != (size_t)size)
        em_error("%s: cannot read the image: %s", path, ferror(f) ? strerror(errno) : "shorter than its size");
    else
        img = em_image_decode(data, (size_t)size, path);
    free(data);
    fclose(f);
    return img;
}

/* ---- resampling ------------------------------------------------------------------- */

typedef struct axis_taps {
    int max_taps;
    int64_t *first;  /* per output position: first source index */
    int *count;      /* number of taps */
    float *weight;   /* max_taps per output position */
} axis_taps;

static void axis_taps_free(axis_taps *t)
{
    free(t->first);
    free(t->count);
    free(t->weight);
}

static int axis_taps_build(axis_taps *t, int64_t src, int64_t dst)
{
    double scale = (double)src / (double)dst; /* source pixels per output pixel */
    t->max_taps = src > dst ? (int)ceil(scale) + 1 : 2;
    t->first = malloc((size_t)dst * sizeof *t->first);
    t->count = malloc((size_t)dst * sizeof *t->count);
    t->weight = calloc((size_t)dst * (size_t)t->max_taps, sizeof *t->weight);
    if (!t->first || !t->count || !t->weight) {
        axis_taps_free(t);
        return em_error("resizing an image: out of memory");
    }
    for (int64_t o = 0; o < dst; o++) {
        float *w = t->weight + o * t->max_taps;
        if (src > dst) {
            /* the output pixel covers [lo, hi) of the source axis */
            double lo = (double)o * scale, hi = (double)(o + 1) * scale;
            int64_t i0 = (int64_t)floor(lo), i1 = (int64_t)ceil(hi) - 1;
            if (i1 > src - 1)
                i1 = src - 1;
            if (i1 - i0 + 1 > t->max_taps)
                i1 = i0 + t->max_taps - 1;
            t->first[o] = i0;
            t->count[o] = (int)(i1 - i0 + 1);
            for (int64_t i = i0; i <= i1; i++)
                w[i - i0] = (float)((fmin(hi, (double)(i + 1)) - fmax(lo, (double)i)) / scale);
        } else {
            /* pixel centres: output o sits at source coordinate (o + 1/2)·scale - 1/2 */
            double pos = ((double)o + 0.5) * scale - 0.5;
            if (pos < 0.0)
                pos = 0.0;
            int64_t i0 = (int64_t)floor(pos);
            double frac = pos - (double)i0;
            t->first[o] = i0;
            if (i0 >= src - 1 || frac == 0.0) {
                t->first[o] = i0 < src - 1 ? i0 : src - 1;
                t->count[o] = 1;
                w[0] = 1.0f;
            } else {
                t->count[o] = 2;
                w[0] = (float)(1.0 - frac);
                w[1] = (float)frac;
            }
        }
    }
    return EM_OK;
}

/* One source row as `channels` planes of floats in [0, 1]. */
static void row_values(const em_image *img, int64_t y, int channels, float *planes)
{
    const uint16_t *s = img->samples + y * img->width * img->channels;
    const float unit = 1.0f / 65535.0f;
    for (int64_t x = 0; x < img->width; x++) {
        const uint16_t *p = s + x * img->channels;
        if (img->channels == channels) {
            for (int c = 0; c < channels; c++)
                planes[c * img->width + x] = (float)p[c] * unit;
        } else if (channels == 1) {
            /* in integers, so that grey pixels keep their exact value */
            uint32_t luma_milli = 299u * p[0] + 587u * p[1] + 114u * p[2];
            planes[x] = (float)luma_milli * (unit / 1000.0f);
        } else {
            for (int c = 0; c < channels; c++)
                planes[c * img->width + x] = (float)p[0] * unit;
        }
    }
}

int em_image_to_input(const em_image *img, int channels, int64_t height, int64_t width, bool invert, float *out)
{
    if (!img || !img->samples || img->width < 1 || img->height < 1 || (img->channels != 1 && img->channels != 3))
        return em_error("em_image_to_input: no image");
    if (channels != 1 && channels != 3)
        return em_error("an image gives 1 (grey) or 3 (RGB) input channels, not %d", channels);
    if (height < 1 || width < 1 || height > EM_IMAGE_MAX_SIDE || width > EM_IMAGE_MAX_SIDE)
        return em_error("an image cannot be resized to %lldx%lld", (long long)height, (long long)width);
    if (!out)
        return em_error("em_image_to_input: no output buffer");
    axis_taps tx = {0}, ty = {0};
    if (axis_taps_build(&tx, img->width, width) != EM_OK)
        return EM_ERR;
    if (axis_taps_build(&ty, img->height, height) != EM_OK) {
        axis_taps_free(&tx);
        return EM_ERR;
    }
    /* rows resampled to the output width: [channels][source rows][width] */
    float *planes = malloc((size_t)(channels * img->width) * sizeof *planes);
    float *rows = malloc((size_t)(channels * img->height * width) * sizeof *rows);
    int status = EM_OK;
    if (!planes || !rows) {
        status = em_error("resizing a %lldx%lld image: out of memory", (long long)img->width, (long long)img->height);
        goto done;
    }
    for (int64_t y = 0; y < img->height; y++) {
        row_values(img, y, channels, planes);
        for (int c = 0; c < channels; c++) {
            const float *src = planes + c * img->width;
            float *dst = rows + (c * img->height + y) * width;
            for (int64_t o = 0; o < width; o++) {
                const float *w = tx.weight + o * tx.max_taps;
                float acc = 0.0f;
                for (int k = 0; k < tx.count[o]; k++)
                    acc += w[k] * src[tx.first[o] + k];
                dst[o] = acc;
            }
        }
    }
    for (int c = 0; c < channels; c++) {
        for (int64_t o = 0; o < height; o++) {
            const float *w = ty.weight + o * ty.max_taps;
            float *dst = out + (c * height + o) * width;
            for (int64_t x = 0; x < width; x++) {
                float acc = 0.0f;
                for (int k = 0; k < ty.count[o]; k++)
                    acc += w[k] * rows[(c * img->height + ty.first[o] + k) * width + x];
                acc = acc < 0.0f ? 0.0f : acc > 1.0f ? 1.0f : acc;
                dst[x] = invert ? 1.0f - acc : acc;
            }
        }
    }
done:
    free(planes);
    free(rows);
    axis_taps_free(&tx);
    axis_taps_free(&ty);
    return status;
}
