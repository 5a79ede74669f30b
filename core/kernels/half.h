/* half.h — scalar conversions between fp32 and the 16-bit float formats (F16, BF16), in one place.
 *
 * Inline: the portable kernels and the scalar tails of the SIMD ones call them per element. Narrowing
 * rounds to nearest even, as F16C / AVX-512 vcvtps2ph and vcvtneps2bf16 do, so the vector conversions of
 * half.c give the same bits; NaN stays NaN (quiet). Widening is exact. Whole rows: g3n_to_f32,
 * g3n_from_f32 and g3n_half_to_f32 (kernels.h, half.c).
 */
#ifndef G3N_HALF_H
#define G3N_HALF_H

#include <glib.h>
#include <math.h>
#include <string.h>

static inline float
g3n_bits_to_f32 (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static inline guint32
g3n_f32_to_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return u;
}

/* BF16 is the top half of an fp32. */
static inline float
g3n_bf16_to_f32 (guint16 h)
{
  return g3n_bits_to_f32 ((guint32) h << 16);
}

static inline guint16
g3n_f32_to_bf16 (float f)
{
  guint32 u = g3n_f32_to_bits (f);
  if ((u & 0x7fffffff) > 0x7f800000) /* NaN: keep it a (quiet) NaN rather than round it to inf */
    return (guint16) ((u >> 16) | 0x40);
  return (guint16) ((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static inline float
g3n_f16_to_f32 (guint16 h)
{
  /* Exponent and mantissa shifted into place and rebiased by a multiply: handles subnormals too. */
  guint32 o = (guint32) (h & 0x7fff) << 13;
  float f;
  if ((h & 0x7c00) == 0x7c00) {
    o |= 0x7f800000;
    memcpy (&f, &o, 4);
  } else {
    memcpy (&f, &o, 4);
    f *= 0x1p112f;
  }
  return (h & 0x8000) ? -f : f;
}

static inline guint16
g3n_f32_to_f16 (float f)
{
  guint32 u = g3n_f32_to_bits (f);
  guint16 sign = (guint16) ((u >> 16) & 0x8000);
  u &= 0x7fffffff;
  if (u >= 0x7f800000) /* inf, nan */
    return sign | 0x7c00 | (u > 0x7f800000 ? 0x200 : 0);
  if (u >= 0x477ff000) /* rounds past the largest half (65504) */
    return sign | 0x7c00;
  if (u < 0x38800000) /* below 2^-14: a half subnormal, in units of 2^-24 (the scaling is exact) */
    return sign | (guint16) lrintf (g3n_bits_to_f32 (u) * 16777216.0f);
  guint32 r = u + 0xfff + ((u >> 13) & 1); /* round to nearest even at the 13 dropped bits */
  return sign | (guint16) ((r - (112u << 23)) >> 13);
}

#endif
