/* Images to classify: PNG (through libpng) and the netpbm formats PGM and PPM (P2, P5,
 * P3, P6, 8 or 16 bits), decoded into 16-bit samples, and turned into a model's input:
 * grey or RGB, resized, scaled to [0, 1]. Bytes that are not a valid image give an
 * error naming the source and what is wrong, never a crash. */
#ifndef EMBER_IMAGE_H
#define EMBER_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Larger images are refused before anything is allocated for them. */
#define EM_IMAGE_MAX_SIDE 65535
#define EM_IMAGE_MAX_PIXELS (INT64_C(1) << 26)

typedef struct em_image {
    int64_t width, height;
    int channels;      /* 1 (grey) or 3 (RGB) */
    /* height·width·channels samples, rows top to bottom, channels interleaved; 0 is
     * black, 65535 full intensity (8-bit sources scaled by 257: exact). Transparent PNG
     * pixels are composited over white, as a viewer shows them on a white page. */
    uint16_t *samples;
} em_image;

/* Decodes PNG or PGM/PPM, recognised by content; `source` names the bytes in messages
 * (a file name). NULL with an error on anything else. */
em_image *em_image_decode(const void *data, size_t size, const char *source);
/* Reads and decodes a file. */
em_image *em_image_load(const char *path);
void em_image_free(em_image *img);

/* Writes a model input of channels·height·width floats (channels first) into out:
 * channels 1 takes the ITU-R BT.601 luma of a colour image (0.299 R + 0.587 G +
 * 0.114 B), channels 3 repeats a grey image in each channel. The image is stretched to
 * height x width, averaging the covered area of each output pixel where it shrinks and
 * interpolating bilinearly where it grows; values lie in [0, 1], inverted (1 - v) when
 * `invert` (for dark-on-light pictures shown to a model trained on light-on-dark
 * ones, such as Fashion-MNIST's). */
int em_image_to_input(const em_image *img, int channels, int64_t height, int64_t width, bool invert,
                      float *out);

#ifdef __cplusplus
}
#endif
#endif
