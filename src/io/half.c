#include "io/half.h"

#include <string.h>

static float float_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float em_f16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) {
        if (mantissa == 0)
            return float_from_bits(sign | 0x7f800000u);
        /* NaN: payload kept and made quiet, as the F16C instruction and PyTorch do */
        return float_from_bits(sign | 0x7fc00000u | (mantissa << 13));
    }
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24 is exact in float32 */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    /* rebias the exponent from 15 to 127 */
    return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

float em_bf16_to_float(uint16_t h)
{
    /* bfloat16 is the upper half of a float32 */
    return float_from_bits((uint32_t)h << 16);
}

static uint16_t load_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

void em_f16_to_f32(const void *src, float *dst, int64_t n)
{
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = em_f16_to_float(load_le16(p + 2 * i));
}

void em_bf16_to_f32(const void *src, float *dst, int64_t n)
{
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = em_bf16_to_float(load_le16(p + 2 * i));
}
