// Native mask kernel for secure-agg: target = source + Σ sign_i · AES-128-CTR(key_i) over Z_2^k,
// k = 32 or 64, the keystream read as little-endian k-bit words. The same bits as masking.ts's
// node:crypto path (OpenSSL's CTR mode: a 128-bit big-endian counter starting at an all-zero IV),
// computed without a keystream buffer in memory: counter blocks are encrypted in registers and
// added straight into the target, one L1-sized chunk at a time, for every mask before moving on.
//
// Two code paths, chosen at run time from CPUID: VAES + AVX-512 (4 AES blocks per instruction,
// 16 in flight) and plain AES-NI + SSE2 (1 block per instruction, 8 in flight). A CPU with
// neither makes `available()` return false and the JavaScript path is used.
//
// The AES-128 key schedule and the CTR construction follow FIPS 197 and NIST SP 800-38A; the
// AES-NI usage follows Intel's white paper "Advanced Encryption Standard (AES) New Instructions
// Set" (Gueron, 2010).
#include <node_api.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define CHUNK_BYTES 16384 /* 16 KiB of target stays in L1 while every mask is added */

typedef struct {
  __m128i rk[11];
} aes128_key;

__attribute__((target("aes,sse2"))) static __m128i expand_step(__m128i key, __m128i gen) {
  gen = _mm_shuffle_epi32(gen, 0xff);
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  return _mm_xor_si128(key, gen);
}

#define EXPAND(i, rcon) k->rk[i] = expand_step(k->rk[i - 1], _mm_aeskeygenassist_si128(k->rk[i - 1], rcon))

__attribute__((target("aes,sse2"))) static void aes128_expand(aes128_key *k, const uint8_t *key) {
  k->rk[0] = _mm_loadu_si128((const __m128i *)key);
  EXPAND(1, 0x01);
  EXPAND(2, 0x02);
  EXPAND(3, 0x04);
  EXPAND(4, 0x08);
  EXPAND(5, 0x10);
  EXPAND(6, 0x20);
  EXPAND(7, 0x40);
  EXPAND(8, 0x80);
  EXPAND(9, 0x1b);
  EXPAND(10, 0x36);
}

/* One 16-byte keystream block for counter value `ctr` (big-endian, upper 96 bits zero). */
__attribute__((target("aes,sse2,ssse3"))) static __m128i ks_block(const aes128_key *k, uint32_t ctr) {
  __m128i b = _mm_set_epi32((int)__builtin_bswap32(ctr), 0, 0, 0);
  b = _mm_xor_si128(b, k->rk[0]);
  for (int r = 1; r < 10; r++) b = _mm_aesenc_si128(b, k->rk[r]);
  return _mm_aesenclast_si128(b, k->rk[10]);
}

/* Adds (sign > 0) or subtracts keystream bytes [byte_off, byte_off + len) into dst (len % 16 may
 * be nonzero only at the very end of the vector); the scalar tail of both paths. */
__attribute__((target("aes,sse2,ssse3"))) static void add_tail(uint8_t *dst, const aes128_key *k, uint64_t byte_off,
                                                                size_t len, int sign, int bits) {
  uint8_t ks[16];
  size_t done = 0;
  while (done < len) {
    uint64_t blk = (byte_off + done) / 16;
    _mm_storeu_si128((__m128i *)ks, ks_block(k, (uint32_t)blk));
    size_t n = len - done < 16 ? len - done : 16;
    if (bits == 32) {
      for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t a, m;
        memcpy(&a, dst + done + i, 4);
        memcpy(&m, ks + i, 4);
        a = sign > 0 ? a + m : a - m;
        memcpy(dst + done + i, &a, 4);
      }
    } else {
      for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t a, m;
        memcpy(&a, dst + done + i, 8);
        memcpy(&m, ks + i, 8);
        a = sign > 0 ? a + m : a - m;
        memcpy(dst + done + i, &a, 8);
      }
    }
    done += n;
  }
}

/* ---- VAES + AVX-512: 16 blocks (256 bytes) per iteration ---- */
#define VAES_TARGET "aes,vaes,avx512f,avx512bw"

__attribute__((target(VAES_TARGET))) static void add_chunk_vaes(uint8_t *dst, const aes128_key *k, uint64_t byte_off,
                                                                 size_t len, int sign, int bits) {
  __m512i rk[11];
  for (int r = 0; r < 11; r++) rk[r] = _mm512_broadcast_i32x4(k->rk[r]);
  /* byte-swap the last dword of each 128-bit lane: the counter is big-endian */
  const __m512i bswap = _mm512_broadcast_i32x4(_mm_set_epi8(12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
  const __m512i lane = _mm512_set_epi32(3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0);
  const __m512i four = _mm512_set_epi32(4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0);
  size_t i = 0;
  uint32_t blk = (uint32_t)(byte_off / 16);
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(0), lane);
  c0 = _mm512_add_epi32(c0, _mm512_maskz_set1_epi32(0x8888, (int)blk));
  for (; i + 256 <= len; i += 256) {
    __m512i c1 = _mm512_add_epi32(c0, four);
    __m512i c2 = _mm512_add_epi32(c1, four);
    __m512i c3 = _mm512_add_epi32(c2, four);
    __m512i b0 = _mm512_xor_si512(_mm512_shuffle_epi8(c0, bswap), rk[0]);
    __m512i b1 = _mm512_xor_si512(_mm512_shuffle_epi8(c1, bswap), rk[0]);
    __m512i b2 = _mm512_xor_si512(_mm512_shuffle_epi8(c2, bswap), rk[0]);
    __m512i b3 = _mm512_xor_si512(_mm512_shuffle_epi8(c3, bswap), rk[0]);
    for (int r = 1; r < 10; r++) {
      b0 = _mm512_aesenc_epi128(b0, rk[r]);
      b1 = _mm512_aesenc_epi128(b1, rk[r]);
      b2 = _mm512_aesenc_epi128(b2, rk[r]);
      b3 = _mm512_aesenc_epi128(b3, rk[r]);
    }
    b0 = _mm512_aesenclast_epi128(b0, rk[10]);
    b1 = _mm512_aesenclast_epi128(b1, rk[10]);
    b2 = _mm512_aesenclast_epi128(b2, rk[10]);
    b3 = _mm512_aesenclast_epi128(b3, rk[10]);
    __m512i *p = (__m512i *)(dst + i);
    __m512i t0 = _mm512_loadu_si512(p), t1 = _mm512_loadu_si512(p + 1), t2 = _mm512_loadu_si512(p + 2),
            t3 = _mm512_loadu_si512(p + 3);
    if (bits == 32) {
      if (sign > 0) {
        t0 = _mm512_add_epi32(t0, b0); t1 = _mm512_add_epi32(t1, b1);
        t2 = _mm512_add_epi32(t2, b2); t3 = _mm512_add_epi32(t3, b3);
      } else {
        t0 = _mm512_sub_epi32(t0, b0); t1 = _mm512_sub_epi32(t1, b1);
        t2 = _mm512_sub_epi32(t2, b2); t3 = _mm512_sub_epi32(t3, b3);
      }
    } else {
      if (sign > 0) {
        t0 = _mm512_add_epi64(t0, b0); t1 = _mm512_add_epi64(t1, b1);
        t2 = _mm512_add_epi64(t2, b2); t3 = _mm512_add_epi64(t3, b3);
      } else {
        t0 = _mm512_sub_epi64(t0, b0); t1 = _mm512_sub_epi64(t1, b1);
        t2 = _mm512_sub_epi64(t2, b2); t3 = _mm512_sub_epi64(t3, b3);
      }
    }
    _mm512_storeu_si512(p, t0); _mm512_storeu_si512(p + 1, t1);
    _mm512_storeu_si512(p + 2, t2); _mm512_storeu_si512(p + 3, t3);
    c0 = _mm512_add_epi32(c3, four);
  }
  if (i < len) add_tail(dst + i, k, byte_off + i, len - i, sign, bits);
}

/* ---- AES-NI + SSE2: 8 blocks (128 bytes) per iteration ---- */
__attribute__((target("aes,sse2,ssse3"))) static void add_chunk_aesni(uint8_t *dst, const aes128_key *k,
                                                                       uint64_t byte_off, size_t len, int sign,
                                                                       int bits) {
  size_t i = 0;
  uint32_t blk = (uint32_t)(byte_off / 16);
  for (; i + 128 <= len; i += 128, blk += 8) {
    __m128i b[8];
    for (int j = 0; j < 8; j++)
      b[j] = _mm_xor_si128(_mm_set_epi32((int)__builtin_bswap32(blk + (uint32_t)j), 0, 0, 0), k->rk[0]);
    for (int r = 1; r < 10; r++)
      for (int j = 0; j < 8; j++) b[j] = _mm_aesenc_si128(b[j], k->rk[r]);
    for (int j = 0; j < 8; j++) {
      b[j] = _mm_aesenclast_si128(b[j], k->rk[10]);
      __m128i *p = (__m128i *)(dst + i) + j;
      __m128i t = _mm_loadu_si128(p);
      if (bits == 32) t = sign > 0 ? _mm_add_epi32(t, b[j]) : _mm_sub_epi32(t, b[j]);
      else t = sign > 0 ? _mm_add_epi64(t, b[j]) : _mm_sub_epi64(t, b[j]);
      _mm_storeu_si128(p, t);
    }
  }
  if (i < len) add_tail(dst + i, k, byte_off + i, len - i, sign, bits);
}

static int path_cached = -1; /* 0: none, 1: AES-NI, 2: VAES */
static int cpu_path(void) {
  if (path_cached < 0) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("aes"))
      path_cached = 2;
    else if (__builtin_cpu_supports("aes") && __builtin_cpu_supports("ssse3"))
      path_cached = 1;
    else
      path_cached = 0;
  }
  return path_cached;
}

#define MAX_MASKS 4096

/* ---- Node-API surface ---- */

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_TENSORGUARD_MASK_KERNEL", msg);
  return NULL;
}

static int typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *bytes) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  void *base;
  if (napi_get_typedarray_info(env, v, &type, &length, &base, &ab, &offset) != napi_ok) return 0;
  size_t width = 1;
  switch (type) {
    case napi_uint32_array: case napi_int32_array: case napi_float32_array: width = 4; break;
    case napi_bigint64_array: case napi_biguint64_array: case napi_float64_array: width = 8; break;
    case napi_uint16_array: case napi_int16_array: width = 2; break;
    default: width = 1;
  }
  *data = (uint8_t *)base;
  *bytes = length * width;
  return 1;
}

/* addMasks(target, source, keys: Uint8Array(16·m), signs: Int8Array(m), bits: 32 | 64): void */
static napi_value add_masks(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 5) return throw_type(env, "addMasks(target, source, keys, signs, bits) takes 5 arguments");
  uint8_t *dst, *src, *keys, *signs;
  size_t dst_n, src_n, keys_n, signs_n;
  int32_t bits;
  if (!typed_bytes(env, argv[0], &dst, &dst_n) || !typed_bytes(env, argv[1], &src, &src_n) ||
      !typed_bytes(env, argv[2], &keys, &keys_n) || !typed_bytes(env, argv[3], &signs, &signs_n) ||
      napi_get_value_int32(env, argv[4], &bits) != napi_ok)
    return throw_type(env, "addMasks: target, source, keys and signs must be typed arrays, bits a number");
  if (bits != 32 && bits != 64) return throw_type(env, "addMasks: bits must be 32 or 64");
  if (dst_n != src_n || dst_n % (bits / 8) != 0) return throw_type(env, "addMasks: target and source differ in size");
  if (keys_n != 16 * signs_n || signs_n > MAX_MASKS) return throw_type(env, "addMasks: need 16 key bytes per sign");
  if (dst_n / 16 >= (1ull << 32)) return throw_type(env, "addMasks: vector longer than 2^32 AES blocks");
  int path = cpu_path();
  if (path == 0) return throw_type(env, "addMasks: this CPU has no AES instructions");
  static _Thread_local aes128_key ks[MAX_MASKS]; /* per thread: worker_threads may share the addon */
  for (size_t m = 0; m < signs_n; m++) aes128_expand(&ks[m], keys + 16 * m);
  for (size_t off = 0; off < dst_n; off += CHUNK_BYTES) {
    size_t len = dst_n - off < CHUNK_BYTES ? dst_n - off : CHUNK_BYTES;
    if (src != dst) memmove(dst + off, src + off, len);
    for (size_t m = 0; m < signs_n; m++) {
      int sign = (int8_t)signs[m] < 0 ? -1 : 1;
      if (path == 2) add_chunk_vaes(dst + off, &ks[m], off, len, sign, bits);
      else add_chunk_aesni(dst + off, &ks[m], off, len, sign, bits);
    }
  }
  return NULL;
}

/* ---- Encoding: randomized rounding into Z_2^k with coins from AES-128-CTR ----
 * out[i] = floor(v) + (coin_i < frac(v)·2^32) + noise[i] (mod 2^k), v = values[i]·scale, where coin_i
 * is the i-th little-endian 32-bit word of AES-128-CTR(key) and key is fresh from the caller's
 * CSPRNG (node:crypto): the arithmetic of encoding.ts's loop, double precision throughout, so the
 * two give the same words for the same coins. The caller has checked the vector's norm, which
 * bounds |v| far below 2^53, so the conversions below are exact. */
#define ENCODE_BLOCK 4096 /* coordinates per keystream refill: 16 KiB of coins */

/* One loop per input type and ring width, each simple enough for the compiler to vectorize
 * (floor, the compare and the conversions become packed instructions in the AVX-512 and AVX2
 * clones). The value lies in (-2^52, 2^52) here, so the int64 conversion is exact. */
// No trapping math: the loops never read FP exception flags, and without it GCC will not vectorize
// a conditional on a float compare. Results are unchanged (IEEE rounding is kept).
#pragma GCC optimize("no-trapping-math")
#define ENCODE_LOOP(NAME, IN_T, OUT_T)                                                                   \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void NAME(         \
      const IN_T *restrict x, const double *restrict noise, double scale, const uint32_t *restrict coins, \
      size_t n, OUT_T *restrict out) {                                                                    \
    if (noise) {                                                                                          \
      for (size_t i = 0; i < n; i++) {                                                                    \
        double v = (double)x[i] * scale;                                                                  \
        double f = __builtin_floor(v);                                                                    \
        double q = f + ((double)coins[i] < (v - f) * 4294967296.0 ? 1.0 : 0.0) + noise[i];               \
        out[i] = (OUT_T)(int64_t)q;                                                                       \
      }                                                                                                   \
    } else {                                                                                              \
      for (size_t i = 0; i < n; i++) {                                                                    \
        double v = (double)x[i] * scale;                                                                  \
        double f = __builtin_floor(v);                                                                    \
        double q = f + ((double)coins[i] < (v - f) * 4294967296.0 ? 1.0 : 0.0);                          \
        out[i] = (OUT_T)(int64_t)q;                                                                       \
      }                                                                                                   \
    }                                                                                                     \
  }
ENCODE_LOOP(encode_f32_k32, float, uint32_t)
ENCODE_LOOP(encode_f64_k32, double, uint32_t)
ENCODE_LOOP(encode_f32_k64, float, uint64_t)
ENCODE_LOOP(encode_f64_k64, double, uint64_t)

/* encode(values: Float32Array | Float64Array, noise: Float64Array | null, scale, out, bits, key) */
static napi_value encode(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 6) return throw_type(env, "encode(values, noise, scale, out, bits, key) takes 6 arguments");
  napi_typedarray_type vt, nt = napi_float64_array;
  size_t d, nd = 0, off;
  void *values, *noise = NULL;
  napi_value ab;
  bool is;
  if (napi_is_typedarray(env, argv[0], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[0], &vt, &d, &values, &ab, &off) != napi_ok ||
      (vt != napi_float32_array && vt != napi_float64_array))
    return throw_type(env, "encode: values must be a Float32Array or a Float64Array");
  napi_valuetype noise_type;
  napi_typeof(env, argv[1], &noise_type);
  if (noise_type != napi_null && noise_type != napi_undefined) {
    if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
        napi_get_typedarray_info(env, argv[1], &nt, &nd, &noise, &ab, &off) != napi_ok || nt != napi_float64_array ||
        nd != d)
      return throw_type(env, "encode: noise must be null or a Float64Array as long as values");
  }
  double scale;
  int32_t bits;
  uint8_t *out, *key;
  size_t out_n, key_n;
  if (napi_get_value_double(env, argv[2], &scale) != napi_ok || napi_get_value_int32(env, argv[4], &bits) != napi_ok ||
      !typed_bytes(env, argv[3], &out, &out_n) || !typed_bytes(env, argv[5], &key, &key_n))
    return throw_type(env, "encode: scale and bits must be numbers, out and key typed arrays");
  if ((bits != 32 && bits != 64) || out_n != d * (size_t)(bits / 8) || key_n != 16)
    return throw_type(env, "encode: out must hold values.length k-bit words and key 16 bytes");
  if (d * 4 / 16 >= (1ull << 32)) return throw_type(env, "encode: vector longer than 2^32 AES blocks");
  int path = cpu_path();
  if (path == 0) return throw_type(env, "encode: this CPU has no AES instructions");
  aes128_key k;
  aes128_expand(&k, key);
  static _Thread_local uint32_t coins[ENCODE_BLOCK];
  for (size_t base = 0; base < d; base += ENCODE_BLOCK) {
    size_t n = d - base < ENCODE_BLOCK ? d - base : ENCODE_BLOCK;
    memset(coins, 0, n * 4);
    if (path == 2) add_chunk_vaes((uint8_t *)coins, &k, base * 4, n * 4, 1, 32);
    else add_chunk_aesni((uint8_t *)coins, &k, base * 4, n * 4, 1, 32);
    const double *nz = noise ? (const double *)noise + base : NULL;
    if (vt == napi_float32_array && bits == 32)
      encode_f32_k32((const float *)values + base, nz, scale, coins, n, (uint32_t *)out + base);
    else if (vt == napi_float32_array)
      encode_f32_k64((const float *)values + base, nz, scale, coins, n, (uint64_t *)out + base);
    else if (bits == 32)
      encode_f64_k32((const double *)values + base, nz, scale, coins, n, (uint32_t *)out + base);
    else
      encode_f64_k64((const double *)values + base, nz, scale, coins, n, (uint64_t *)out + base);
  }
  return NULL;
}

/* sumSquares(values: Float32Array | Float64Array): Σ x² in double precision (eight running sums,
 * so the order differs from a plain loop's in the last bits). */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static double sum_squares_f32(const float *x, size_t n) {
  double acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
  for (; i < n; i++) acc[0] += (double)x[i] * (double)x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static double sum_squares_f64(const double *x, size_t n) {
  double acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += x[i + j] * x[i + j];
  for (; i < n; i++) acc[0] += x[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static napi_value sum_squares(napi_env env, napi_callback_info info) {
  size_t argc = 1, d, off;
  napi_value argv[1], ab, result;
  napi_typedarray_type vt;
  void *values;
  bool is;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_is_typedarray(env, argv[0], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[0], &vt, &d, &values, &ab, &off) != napi_ok ||
      (vt != napi_float32_array && vt != napi_float64_array))
    return throw_type(env, "sumSquares: values must be a Float32Array or a Float64Array");
  double s = vt == napi_float32_array ? sum_squares_f32((const float *)values, d) : sum_squares_f64((const double *)values, d);
  napi_create_double(env, s, &result);
  return result;
}

/* addVectors(target, other, sign: 1 | -1, bits: 32 | 64): target ±= other in Z_2^k. A plain loop
 * (the compiler vectorizes it); memory-bound either way. */
static napi_value add_vectors(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *dst, *src;
  size_t dst_n, src_n;
  int32_t sign, bits;
  if (argc != 4 || !typed_bytes(env, argv[0], &dst, &dst_n) || !typed_bytes(env, argv[1], &src, &src_n) ||
      napi_get_value_int32(env, argv[2], &sign) != napi_ok || napi_get_value_int32(env, argv[3], &bits) != napi_ok)
    return throw_type(env, "addVectors(target, other, sign, bits): two typed arrays and two numbers");
  if ((bits != 32 && bits != 64) || dst_n != src_n || dst_n % (bits / 8) != 0)
    return throw_type(env, "addVectors: bits must be 32 or 64 and both vectors the same size");
  if (bits == 32) {
    uint32_t *t = (uint32_t *)dst;
    const uint32_t *o = (const uint32_t *)src;
    size_t n = dst_n / 4;
    if (sign < 0)
      for (size_t i = 0; i < n; i++) t[i] -= o[i];
    else
      for (size_t i = 0; i < n; i++) t[i] += o[i];
  } else {
    uint64_t *t = (uint64_t *)dst;
    const uint64_t *o = (const uint64_t *)src;
    size_t n = dst_n / 8;
    if (sign < 0)
      for (size_t i = 0; i < n; i++) t[i] -= o[i];
    else
      for (size_t i = 0; i < n; i++) t[i] += o[i];
  }
  return NULL;
}

/* path(): "vaes" | "aesni" | "none" */
static napi_value get_path(napi_env env, napi_callback_info info) {
  (void)info;
  int p = cpu_path();
  napi_value s;
  const char *name = p == 2 ? "vaes" : p == 1 ? "aesni" : "none";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &s);
  return s;
}

/* forcePath("aesni" | "auto"): for tests, so both paths are checked on a VAES machine. */
static napi_value force_path(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char buf[16] = {0};
  size_t n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &n) != napi_ok)
    return throw_type(env, "forcePath(name) takes one string");
  path_cached = -1;
  int best = cpu_path();
  if (strcmp(buf, "aesni") == 0 && best >= 1) path_cached = 1;
  else if (strcmp(buf, "auto") != 0) return throw_type(env, "forcePath: 'aesni' or 'auto'");
  return get_path(env, info);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"addMasks", NULL, add_masks, NULL, NULL, NULL, napi_default, NULL},
      {"encode", NULL, encode, NULL, NULL, NULL, napi_default, NULL},
      {"sumSquares", NULL, sum_squares, NULL, NULL, NULL, napi_default, NULL},
      {"addVectors", NULL, add_vectors, NULL, NULL, NULL, napi_default, NULL},
      {"path", NULL, get_path, NULL, NULL, NULL, napi_default, NULL},
      {"forcePath", NULL, force_path, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
