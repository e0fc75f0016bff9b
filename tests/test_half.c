/* F16 and BF16 widening, checked over all 65536 bit patterns against a reference that
 * decodes sign, exponent and mantissa with ldexp. */
#include <string.h>

#include "io/half.h"
#include "testlib.h"

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* mantissa_bits and bias describe the format; the value is exact in float32. */
static float decode_reference(uint32_t h, int mantissa_bits, int bias, int *is_nan)
{
    int exponent_max = (1 << (15 - mantissa_bits)) - 1;
    uint32_t mantissa = h & ((1u << mantissa_bits) - 1);
    int exponent = (int)((h >> mantissa_bits) & (uint32_t)exponent_max);
    double sign = (h & 0x8000u) ? -1.0 : 1.0;
    *is_nan = exponent == exponent_max && mantissa != 0;
    if (exponent == exponent_max)
        return (float)(sign * INFINITY);
    if (exponent == 0)
        return (float)(sign * ldexp((double)mantissa, 1 - bias - mantissa_bits));
    return (float)(sign * ldexp((double)(mantissa | (1u << mantissa_bits)),
                                exponent - bias - mantissa_bits));
}

static void test_f16_all_patterns(void)
{
    int wrong = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int is_nan;
        float want = decode_reference(h, 10, 15, &is_nan);
        float got = em_f16_to_float((uint16_t)h);
        uint32_t want_bits = is_nan ? ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13)
                                    : bits_of(want);
        if (bits_of(got) != want_bits && wrong++ < 5)
            fprintf(stderr, "f16 0x%04x: got 0x%08x, want 0x%08x\n", h, bits_of(got), want_bits);
    }
    CHECK(wrong == 0);
    CHECK(em_f16_to_float(0x3c00) == 1.0f);
    CHECK(em_f16_to_float(0xc000) == -2.0f);
    CHECK(em_f16_to_float(0x7bff) == 65504.0f);
    CHECK(em_f16_to_float(0x0001) == 0x1p-24f);
}

static void test_bf16_all_patterns(void)
{
    int wrong = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int is_nan;
        float want = decode_reference(h, 7, 127, &is_nan);
        float got = em_bf16_to_float((uint16_t)h);
        uint32_t want_bits = is_nan ? h << 16 : bits_of(want);
        if (bits_of(got) != want_bits && wrong++ < 5)
            fprintf(stderr, "bf16 0x%04x: got 0x%08x, want 0x%08x\n", h, bits_of(got), want_bits);
    }
    CHECK(wrong == 0);
    CHECK(em_bf16_to_float(0x3f80) == 1.0f);
    CHECK(em_bf16_to_float(0xc0a0) == -5.0f);
}

/* The bulk converters read little-endian pairs at any alignment. */
static void test_bulk_unaligned(void)
{
    unsigned char bytes[1 + 3 * 2] = {0xee, 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c};
    float out[3];
    em_f16_to_f32(bytes + 1, out, 3);
    CHECK(out[0] == 1.0f);
    CHECK(out[1] == -2.0f);
    CHECK(isinf(out[2]) && out[2] > 0);
    unsigned char bf[1 + 2 * 2] = {0xee, 0x80, 0x3f, 0xa0, 0xc0};
    em_bf16_to_f32(bf + 1, out, 2);
    CHECK(out[0] == 1.0f);
    CHECK(out[1] == -5.0f);
}

int main(void)
{
    test_f16_all_patterns();
    test_bf16_all_patterns();
    test_bulk_unaligned();
    return test_finish();
}
