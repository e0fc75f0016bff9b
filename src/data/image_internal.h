/* Internal: the image decoders behind em_image_decode. Each takes bytes already
 * recognised by their signature and returns an image or NULL with an error that starts
 * with `source`. */
#ifndef EMBER_DATA_IMAGE_INTERNAL_H
#define EMBER_DATA_IMAGE_INTERNAL_H

#include "ember/image.h"

em_image *em_image_decode_png(const unsigned char *data, size_t size, const char *source);
em_image *em_image_decode_pnm(const unsigned char *data, size_t size, const char *source);
/* A zeroed image of the given size with its sample buffer, or NULL with an error when
 * the size is beyond the limits or memory runs out. */
em_image *em_image_alloc(int64_t width, int64_t height, int channels, const char *source);

#endif
