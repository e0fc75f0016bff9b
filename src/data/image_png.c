/* PNG through libpng's simplified reader, which handles every colour type, bit depth,
 * palette and interlacing, and reports what is wrong in words ("IDAT: CRC error", "Not
 * enough image data"). Pixels arrive as 8-bit non-premultiplied RGBA; transparency is
 * composited over white here. */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_internal.h"
#include "ember/error.h"

em_image *em_image_decode_png(const unsigned char *data, size_t size, const char *source)
{
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&png, data, size)) {
        em_error("%s: not a readable PNG image: %s", source, png.message);
        png_image_free(&png);
        return NULL;
    }
    bool colour = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
    em_image *img = em_image_alloc(png.width, png.height, colour ? 3 : 1, source);
    if (!img) {
        png_image_free(&png);
        return NULL;
    }
    png.format = PNG_FORMAT_RGBA;
    unsigned char *rgba = malloc(PNG_IMAGE_SIZE(png));
    if (!rgba) {
        em_error("%s: out of memory for a %ux%u PNG image", source, png.width, png.height);
        png_image_free(&png);
        em_image_free(img);
        return NULL;
    }
    if (!png_image_finish_read(&png, NULL, rgba, 0, NULL)) {
        em_error("%s: the PNG image data cannot be decoded: %s", source, png.message);
        png_image_free(&png);
        free(rgba);
        em_image_free(img);
        return NULL;
    }
    const int64_t pixels = img->width * img->height;
    for (int64_t i = 0; i < pixels; i++) {
        const unsigned char *p = rgba + 4 * i;
        uint32_t alpha = p[3];
        for (int c = 0; c < img->channels; c++) {
            /* c·a + 255·(255 - a) lies in [0, 65025]; 257/255 takes it to [0, 65535]
             * (exactly 257·c when opaque). */
            uint32_t over_white = p[c] * alpha + 255u * (255u - alpha);
            img->samples[i * img->channels + c] = (uint16_t)((over_white * 257u + 127u) / 255u);
        }
    }
    free(rgba);
    png_image_free(&png);
    return img;
}
