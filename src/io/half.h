/* 16-bit floats to float32: IEEE half (F16) and bfloat16 (BF16). Both widen exactly;
 * bit for bit what PyTorch gives (F16 NaNs come out quiet with their payload). */
#ifndef EMBER_IO_HALF_H
#define EMBER_IO_HALF_H

#include <stdint.h>

float em_f16_to_float(uint16_t h);
float em_bf16_to_float(uint16_t h);

/* n values stored little-endian at src (any alignment) into dst. */
void em_f16_to_f32(const void *src, float *dst, int64_t n);
void em_bf16_to_f32(const void *src, float *dst, int64_t n);

#endif
