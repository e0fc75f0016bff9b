/* Image decoding and conversion to model inputs: PGM/PPM in all four forms with exact
 * sample values, PNG in grey, colour, palette, 16-bit and transparent forms (written
 * here with libpng), luma, resizing by area and bilinear interpolation, inversion, and
 * a clear error for every kind of broken file. */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "ember/image.h"
#include "testlib.h"

static em_image *decode_text(const char *text) { return em_image_decode(text, strlen(text), "test.pnm"); }

static void check_samples(const char *what, const em_image *img, int64_t w, int64_t h, int channels,
                          const uint16_t *want)
{
    CHECK_MSG(img != NULL, "%s: %s", what, ember_last_error());
    if (!img)
        return;
    CHECK_MSG(img->width == w && img->height == h && img->channels == channels, "%s: %lldx%lld x%d", what,
              (long long)img->width, (long long)img->height, img->channels);
    if (img->width != w || img->height != h || img->channels != channels)
        return;
    for (int64_t i = 0; i < w * h * channels; i++)
        CHECK_MSG(img->samples[i] == want[i], "%s: sample %lld is %u, expected %u", what, (long long)i,
                  img->samples[i], want[i]);
}

static void test_pnm(void)
{
    /* P2 with comments anywhere in the header and maxval 4: v·65535/4 rounded */
    em_image *img = decode_text("P2\n# a comment\n3 # width\n2\n4\n0 1 2\n3 4\n0\n");
    check_samples("P2", img, 3, 2, 1, (const uint16_t[]){0, 16384, 32768, 49151, 65535, 0});
    em_image_free(img);

    /* P5, 8 bits: exact multiples of 257 */
    static const unsigned char p5[] = "P5 2 2 255\n\x00\x01\xfe\xff";
    img = em_image_decode(p5, sizeof p5 - 1, "p5.pgm");
    check_samples("P5", img, 2, 2, 1, (const uint16_t[]){0, 257, 65278, 65535});
    em_image_free(img);

    /* P5, 16 bits big-endian */
    static const unsigned char p5_16[] = "P5\n2 1\n65535\n\x12\x34\xff\xff";
    img = em_image_decode(p5_16, sizeof p5_16 - 1, "p5_16.pgm");
    check_samples("P5 16-bit", img, 2, 1, 1, (const uint16_t[]){0x1234, 65535});
    em_image_free(img);

    /* P3 and P6 colour */
    img = decode_text("P3 2 1 255 255 0 0  0 0 255\n");
    check_samples("P3", img, 2, 1, 3, (const uint16_t[]){65535, 0, 0, 0, 0, 65535});
    em_image_free(img);
    static const unsigned char p6[] = "P6 1 1 255\r\x10\x20\x30";
    img = em_image_decode(p6, sizeof p6 - 1, "p6.ppm");
    check_samples("P6", img, 1, 1, 3, (const uint16_t[]){0x1010, 0x2020, 0x3030});
    em_image_free(img);
}

static void expect_error(const void *data, size_t size, const char *needle)
{
    em_clear_error();
    em_image *img = em_image_decode(data, size, "bad.img");
    CHECK_MSG(img == NULL, "decoded a broken image (expected \"%s\")", needle);
    CHECK_MSG(test_error_contains("bad.img: ") && test_error_contains(needle), "error \"%s\" lacks \"%s\"",
              ember_last_error(), needle);
    em_image_free(img);
}

static void expect_text_error(const char *text, const char *needle) { expect_error(text, strlen(text), needle); }

static void test_pnm_errors(void)
{
    expect_text_error("", "empty file");
    expect_text_error("hello world", "not a PNG, PGM or PPM image (it starts with bytes 68 65 6c 6c 6f 20 77 6f)");
    expect_text_error("P7\nWIDTH 2\n", "netpbm format P7 is not supported");
    expect_text_error("P1 2 2 0 1 1 0", "netpbm format P1 is not supported");
    expect_text_error("P2", "the file ends before the width");
    expect_text_error("P2x 2 2 255", "must be followed by whitespace");
    expect_text_error("P2 2", "the file ends before the height");
    expect_text_error("P2 2 -2 255", "expected the height as a number at byte 5, found '-'");
    expect_text_error("P2 2 2x 255", "followed by 'x' instead of whitespace");
    expect_text_error("P2 0 2 255 ", "must be at least 1");
    expect_text_error("P2 2 2 0 ", "must be at least 1");
    expect_text_error("P2 2 2 65536 ", "the maximum value at byte 7 exceeds 65535");
    expect_text_error("P2 99999999999999999999 2 255", "the width at byte 3 exceeds 65535");
    expect_text_error("P2 2 2 255 1 2 3", "truncated: 4 samples are announced");
    expect_text_error("P2 2 2 255 1 2 3         ", "the file ends after 3 of 4 samples");
    expect_text_error("P2 2 1 9 3 10", "sample 1 (row 0, column 1) is 10, above the maximum value 9");
    expect_text_error("P2 2 1 9 3 x ", "expected the sample as a number");
    expect_text_error("P3 1 2 255 1 2 3 4 5 999 ", "sample 5 (row 1, column 0) is 999");
    expect_text_error("P5 2 2 255", "the file ends after the header");
    expect_text_error("P5 2 2 255\nabc", "truncated: a 2x2 raster with maximum value 255 needs 4 bytes after the header "
                                         "(byte 11), the file has 3");
    expect_text_error("P6 2 2 256\n0123456789abcdef", "needs 24 bytes");
    /* a huge announced raster is refused from its size, before any allocation */
    expect_text_error("P5 65535 65535 255\n\x01", "truncated");
    expect_text_error("P2 65535 65535 255\n1 2", "truncated");
    static const unsigned char high16[] = "P5 1 1 1000\n\x03\xe9";
    expect_error(high16, sizeof high16 - 1, "is 1001, above the maximum value 1000");
}

/* ---- PNG ---------------------------------------------------------------------------- */

/* Writes a PNG with libpng's simplified writer; malloc'd bytes. */
static unsigned char *make_png(int width, int height, png_uint_32 format, const void *pixels, size_t *size)
{
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)width;
    png.height = (png_uint_32)height;
    png.format = format;
    png_alloc_size_t n = 0;
    CHECK(png_image_write_to_memory(&png, NULL, &n, 0, pixels, 0, NULL));
    unsigned char *buf = malloc(n);
    CHECK(buf && png_image_write_to_memory(&png, buf, &n, 0, pixels, 0, NULL));
    *size = n;
    return buf;
}

static void test_png(void)
{
    size_t size;
    static const unsigned char grey[6] = {0, 1, 128, 200, 254, 255};
    unsigned char *png = make_png(3, 2, PNG_FORMAT_GRAY, grey, &size);
    em_image *img = em_image_decode(png, size, "grey.png");
    check_samples("grey png", img, 3, 2, 1, (const uint16_t[]){0, 257, 128 * 257, 200 * 257, 254 * 257, 65535});
    em_image_free(img);
    free(png);

    static const unsigned char rgb[6] = {255, 0, 0, 10, 20, 30};
    png = make_png(2, 1, PNG_FORMAT_RGB, rgb, &size);
    img = em_image_decode(png, size, "rgb.png");
    check_samples("rgb png", img, 2, 1, 3, (const uint16_t[]){65535, 0, 0, 10 * 257, 20 * 257, 30 * 257});
    em_image_free(img);
    free(png);

    /* transparency over white: clear -> white, half -> between, opaque -> itself */
    static const unsigned char rgba[12] = {0, 0, 0, 0, 0, 0, 0, 255, 100, 0, 0, 51};
    png = make_png(3, 1, PNG_FORMAT_RGBA, rgba, &size);
    img = em_image_decode(png, size, "rgba.png");
    /* 100·51 + 255·204 = 57120 -> 57120·257/255 = 57568; 255·204 = 52020 -> 52428 */
    check_samples("rgba png", img, 3, 1, 3, (const uint16_t[]){65535, 65535, 65535, 0, 0, 0, 57568, 52428, 52428});
    em_image_free(img);
    free(png);

    /* 16-bit grey with alpha stays one channel */
    static const uint16_t ga16[4] = {65535, 65535, 0, 65535};
    png = make_png(2, 1, PNG_FORMAT_LINEAR_Y_ALPHA, ga16, &size);
    img = em_image_decode(png, size, "ga16.png");
    check_samples("16-bit grey+alpha png", img, 2, 1, 1, (const uint16_t[]){65535, 0});
    em_image_free(img);
    free(png);

    /* palette (colour map) image */
    static const unsigned char map[6] = {0, 0, 0, 255, 255, 255};
    static const unsigned char index[4] = {1, 0, 0, 1};
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = 2;
    pi.height = 2;
    pi.format = PNG_FORMAT_RGB_COLORMAP;
    pi.colormap_entries = 2;
    png_alloc_size_t n = 0;
    CHECK(png_image_write_to_memory(&pi, NULL, &n, 0, index, 0, map));
    png = malloc(n);
    CHECK(png && png_image_write_to_memory(&pi, png, &n, 0, index, 0, map));
    img = em_image_decode(png, n, "palette.png");
    check_samples("palette png", img, 2, 2, 3,
                  (const uint16_t[]){65535, 65535, 65535, 0, 0, 0, 0, 0, 0, 65535, 65535, 65535});
    em_image_free(img);

    /* broken PNGs: the reason comes from libpng */
    expect_error(png, 20, "bad.img: ");
    expect_error(png, n - 20, "the PNG image data cannot be decoded");
    png[40] ^= 0x55;
    expect_error(png, n, "bad.img: ");
    free(png);
    static const unsigned char not_png[] = "\x89PNG\r\n\x1a\n\0\0\0\0IEND";
    expect_error(not_png, sizeof not_png - 1, "not a readable PNG image");
}

static void test_load(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/missing.png", test_tmpdir());
    CHECK(em_image_load(path) == NULL);
    CHECK_ERROR_CONTAINS("cannot open image ");
    CHECK_ERROR_CONTAINS("missing.png: No such file or directory");
    snprintf(path, sizeof path, "%s/tiny.pgm", test_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("P2 1 1 255 51\n", f);
    fclose(f);
    em_image *img = em_image_load(path);
    check_samples("loaded", img, 1, 1, 1, (const uint16_t[]){51 * 257});
    em_image_free(img);
    CHECK(em_image_load(test_tmpdir()) == NULL); /* a directory */
    CHECK_ERROR_CONTAINS(test_tmpdir());
}

/* ---- conversion to inputs ------------------------------------------------------------ */

/* Samples are 16-bit: a maxval-100 value is within 1/131070 of v/100. */
static void check_input(const char *what, const char *pnm, int channels, int64_t h, int64_t w, bool invert,
                        const float *want)
{
    em_image *img = decode_text(pnm);
    CHECK_MSG(img != NULL, "%s: %s", what, ember_last_error());
    if (!img)
        return;
    float out[64];
    CHECK_MSG(em_image_to_input(img, channels, h, w, invert, out) == EM_OK, "%s: %s", what, ember_last_error());
    for (int64_t i = 0; i < channels * h * w; i++)
        CHECK_MSG(fabsf(out[i] - want[i]) <= 2e-5f, "%s: element %lld is %.7g, expected %.7g", what, (long long)i,
                  (double)out[i], (double)want[i]);
    em_image_free(img);
}

static void test_to_input(void)
{
    /* same size: the samples scaled to [0, 1] */
    check_input("identity", "P2 2 2 255 0 51 102 255", 1, 2, 2, false, (const float[]){0.0f, 0.2f, 0.4f, 1.0f});
    check_input("inverted", "P2 2 2 255 0 51 102 255", 1, 2, 2, true, (const float[]){1.0f, 0.8f, 0.6f, 0.0f});
    /* halving: means of 2x2 blocks */
    check_input("area 4x4 -> 2x2", "P2 4 4 100 0 100 20 20  0 100 20 20  50 50 0 0  50 50 0 40", 1, 2, 2, false,
                (const float[]){0.5f, 0.2f, 0.5f, 0.1f});
    /* 3 -> 2: output pixels cover [0, 1.5) and [1.5, 3) */
    check_input("area 3 -> 2", "P2 3 1 90 0 90 30", 1, 1, 2, false,
                (const float[]){(0.0f + 0.5f * 1.0f) / 1.5f, (0.5f * 1.0f + 1.0f / 3.0f) / 1.5f});
    /* 2 -> 4: pixel centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped) */
    check_input("bilinear 2 -> 4", "P2 2 1 4 0 4", 1, 1, 4, false, (const float[]){0.0f, 0.25f, 0.75f, 1.0f});
    /* growing one axis while shrinking the other */
    check_input("mixed", "P2 2 1 4 0 4", 1, 2, 1, false, (const float[]){0.5f, 0.5f});
    /* luma (BT.601) and grey to RGB */
    check_input("luma", "P3 3 1 255 255 0 0  0 255 0  0 0 255", 1, 1, 3, false,
                (const float[]){0.299f, 0.587f, 0.114f});
    check_input("grey luma is exact", "P3 1 1 255 77 77 77", 1, 1, 1, false, (const float[]){77.0f / 255.0f});
    check_input("grey to rgb", "P2 2 1 255 0 255", 3, 1, 2, false, (const float[]){0, 1, 0, 1, 0, 1});
    check_input("rgb planes", "P3 2 1 255 255 0 0  0 0 255", 3, 1, 2, false, (const float[]){1, 0, 0, 0, 0, 1});
    /* a single pixel fills any size */
    check_input("1x1 -> 3x2", "P2 1 1 255 51", 1, 3, 2, false, (const float[]){0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f});

    /* a large image down to 28x28: every output the mean of its 10x10 block */
    enum { SIDE = 280 };
    size_t cap = 32 + SIDE * SIDE;
    unsigned char *p5 = malloc(cap);
    int header = snprintf((char *)p5, cap, "P5 %d %d 255\n", SIDE, SIDE);
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            p5[header + y * SIDE + x] = (unsigned char)((x / 10 + y / 10) % 2 ? 200 : (x % 10) * 10);
    em_image *img = em_image_decode(p5, (size_t)header + SIDE * SIDE, "big.pgm");
    float out[28 * 28];
    CHECK(img && em_image_to_input(img, 1, 28, 28, false, out) == EM_OK);
    for (int i = 0; i < 28 * 28; i++) {
        float want = (i / 28 + i % 28) % 2 ? 200.0f / 255.0f : 45.0f / 255.0f;
        CHECK_MSG(fabsf(out[i] - want) < 1e-5f, "block %d: %g, expected %g", i, (double)out[i], (double)want);
    }
    em_image_free(img);
    free(p5);

    img = decode_text("P2 1 1 255 0");
    CHECK(em_image_to_input(img, 2, 28, 28, false, out) == EM_ERR);
    CHECK_ERROR_CONTAINS("1 (grey) or 3 (RGB) input channels, not 2");
    CHECK(em_image_to_input(img, 1, 0, 28, false, out) == EM_ERR);
    CHECK(em_image_to_input(NULL, 1, 28, 28, false, out) == EM_ERR);
    em_image_free(img);
}

int main(void)
{
    test_pnm();
    test_pnm_errors();
    test_png();
    test_load();
    test_to_input();
    return test_finish();
}
