// TensorFlow CPU kernels for per-sample clipping, registered through TensorFlow's C kernel API
// into the libtensorflow that tfjs-node has loaded, so tfjs-node runs them by name like any
// TensorFlow op (backend.executeMultipleOutputs). A Node-API addon only to be loadable with
// require(); it exports the op names it registered.
//
// Ops:
// TgConvPerExample(x [B, H, W, Cin], dy [B, Ho, Wo, Cout]; kh, kw, sh, sw, pad_top, pad_left,
// emit_grads) -> grads [B, kh·kw·Cin, Cout] (or [0] when !emit_grads), sq_norms [B], bias_sums
// [B, Cout]: example b's kernel gradient gᵦ[i, j, c, o] = Σ_{oh, ow} x[b, oh·sh + i − pad_top,
// ow·sw + j − pad_left, c] · dy[b, oh, ow, o] (zero outside the input), its squared Frobenius
// norm, and Σ_{oh, ow} dy[b, oh, ow, :] (the bias gradient). Each example's gradient is formed
// block by block in registers straight from x and dy: no im2col patches, no transposes, and no
// [B, ...] gradient tensor unless asked for. The batch is split over TF_NUM_INTRAOP_THREADS
// threads (default: the hardware's).
// TgWeightedRowSum(g [B, N], w [B]) -> [N]: Σ_b w[b]·g[b, :] (below).
// TgGelu(x) -> y, TgGeluGrad(x, dy) -> dx: the tanh-approximation GELU and its gradient, one pass.
// TgLayerNorm(x [..., D]; epsilon) -> x̂, rstd [..., 1]; TgLayerNormGrad(dx̂, x̂, rstd) -> dx.
#include <node_api.h>
#include <tensorflow/c/kernels.h>
#include <tensorflow/c/ops.h>
#include <tensorflow/c/tf_status.h>
#include <tensorflow/c/tf_tensor.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct ConvAttrs {
  int32_t kh, kw, sh, sw, pad_top, pad_left;
  bool emit_grads;
};

int ThreadCount() {
  const char* env = std::getenv("TF_NUM_INTRAOP_THREADS");
  int n = env ? std::atoi(env) : 0;
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, n);
}

// Runs f(i0, i1) over [0, n) on up to ThreadCount() threads, one only for small n.
template <typename F>
void ParallelFor(int64_t n, int64_t grain, F f) {
  const int T = static_cast<int>(std::min<int64_t>(ThreadCount(), std::max<int64_t>(1, n / grain)));
  std::vector<std::thread> pool;
  for (int t = 1; t < T; ++t) pool.emplace_back(f, n * t / T, n * (t + 1) / T);
  f(0, n / T);
  for (auto& th : pool) th.join();
}

// A kernel call's inputs and outputs: each TF_Tensor handle is released, and a failure reported to
// TensorFlow, when the call returns.
struct Io {
  TF_OpKernelContext* ctx;
  TF_Status* s;
  std::vector<TF_Tensor*> held;
  ~Io() {
    for (TF_Tensor* t : held) TF_DeleteTensor(t);
    if (TF_GetCode(s) != TF_OK) TF_OpKernelContext_Failure(ctx, s);
    TF_DeleteStatus(s);
  }
  explicit Io(TF_OpKernelContext* c) : ctx(c), s(TF_NewStatus()) {}
  TF_Tensor* In(int i) {
    TF_Tensor* t = nullptr;
    TF_GetInput(ctx, i, &t, s);
    if (TF_GetCode(s) != TF_OK) return nullptr;
    held.push_back(t);
    return t;
  }
  TF_Tensor* Out(int i, const std::vector<int64_t>& dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    TF_Tensor* t = TF_AllocateOutput(ctx, i, TF_FLOAT, dims.data(), static_cast<int>(dims.size()), sizeof(float) * n, s);
    if (TF_GetCode(s) != TF_OK) return nullptr;
    held.push_back(t);
    return t;
  }
  bool Fail(const char* msg) {
    TF_SetStatus(s, TF_INVALID_ARGUMENT, msg);
    return false;
  }
};

std::vector<int64_t> DimsOf(TF_Tensor* t) {
  std::vector<int64_t> d(TF_NumDims(t));
  for (size_t i = 0; i < d.size(); ++i) d[i] = TF_Dim(t, static_cast<int>(i));
  return d;
}

const float* F(TF_Tensor* t) { return static_cast<const float*>(TF_TensorData(t)); }
float* Fm(TF_Tensor* t) { return static_cast<float*>(TF_TensorData(t)); }

void* CreateConv(TF_OpKernelConstruction* ctx) {
  auto* a = new ConvAttrs();
  TF_Status* s = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrInt32(ctx, "kh", &a->kh, s);
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrInt32(ctx, "kw", &a->kw, s);
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrInt32(ctx, "sh", &a->sh, s);
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrInt32(ctx, "sw", &a->sw, s);
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrInt32(ctx, "pad_top", &a->pad_top, s);
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrInt32(ctx, "pad_left", &a->pad_left, s);
  TF_Bool emit = 0;
  if (TF_GetCode(s) == TF_OK) TF_OpKernelConstruction_GetAttrBool(ctx, "emit_grads", &emit, s);
  a->emit_grads = emit != 0;
  if (TF_GetCode(s) != TF_OK) TF_OpKernelConstruction_Failure(ctx, s);
  TF_DeleteStatus(s);
  return a;
}

void DeleteConv(void* p) { delete static_cast<ConvAttrs*>(p); }

// The inner loops are compiled for AVX2 + FMA (x86-64-v3) whatever the build flags, so a build
// made on one machine (an image) runs on another; the ops register only where the CPU has both.
#define TG_SIMD __attribute__((target("avx2,fma")))

typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4)));  // unaligned loads and stores

TG_SIMD inline v8f Load(const float* p) { return *reinterpret_cast<const v8fu*>(p); }
TG_SIMD inline void Store(float* p, v8f v) { *reinterpret_cast<v8fu*>(p) = v; }

// Rows k0 .. k0 + KB of one example's gradient, all Cout = 8·CB columns, held in registers over
// every output position: acc[k][:] = Σ_pos xpad[base[pos] + off[k]] · dy[pos][:]. Returns the
// rows' squared norm; stores them to out (row stride Cout) when out is not null.
template <int CB, int KB>
TG_SIMD double Rows(const float* __restrict xpad, const int* __restrict base, const int* __restrict off,
            const float* __restrict dy, int P, int k0, float* __restrict out) {
  constexpr int Cout = 8 * CB;
  v8f acc[KB][CB] = {};
  int o[KB];
  for (int kk = 0; kk < KB; ++kk) o[kk] = off[k0 + kk];
  for (int pos = 0; pos < P; ++pos) {
    const float* __restrict xb = xpad + base[pos];
    v8f g[CB];
    for (int cb = 0; cb < CB; ++cb) g[cb] = Load(dy + pos * Cout + 8 * cb);
    for (int kk = 0; kk < KB; ++kk) {
      const float xv = xb[o[kk]];
      for (int cb = 0; cb < CB; ++cb) acc[kk][cb] += xv * g[cb];
    }
  }
  v8f sq = {};
  for (int kk = 0; kk < KB; ++kk)
    for (int cb = 0; cb < CB; ++cb) {
      sq += acc[kk][cb] * acc[kk][cb];
      if (out) Store(out + static_cast<int64_t>(k0 + kk) * Cout + 8 * cb, acc[kk][cb]);
    }
  double total = 0;
  for (int l = 0; l < 8; ++l) total += sq[l];
  return total;
}

template <int CB>
TG_SIMD double AllRows(const float* xpad, const int* base, const int* off, const float* dy, int P, int K, float* out) {
  constexpr int KB = CB >= 12 ? 1 : 12 / CB;
  double total = 0;
  int k = 0;
  for (; k + KB <= K; k += KB) total += Rows<CB, KB>(xpad, base, off, dy, P, k, out);
  for (; k < K; ++k) total += Rows<CB, 1>(xpad, base, off, dy, P, k, out);
  return total;
}

// Any Cout: the same sums, one row and one column at a time.
TG_SIMD double AllRowsScalar(const float* xpad, const int* base, const int* off, const float* dy, int P, int K, int Cout,
                     float* out) {
  double total = 0;
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < Cout; ++c) {
      float a = 0;
      for (int pos = 0; pos < P; ++pos) a += xpad[base[pos] + off[k]] * dy[pos * Cout + c];
      total += static_cast<double>(a) * a;
      if (out) out[static_cast<int64_t>(k) * Cout + c] = a;
    }
  return total;
}

void ComputeConv(void* p, TF_OpKernelContext* ctx) {
  const ConvAttrs& a = *static_cast<ConvAttrs*>(p);
  Io io(ctx);
  TF_Tensor* xt = io.In(0);
  TF_Tensor* dyt = xt ? io.In(1) : nullptr;
  if (!dyt) return;
  if (TF_NumDims(xt) != 4 || TF_NumDims(dyt) != 4 || TF_Dim(xt, 0) != TF_Dim(dyt, 0)) {
    io.Fail("TgConvPerExample: x and dy must be [B, H, W, C] with the same B");
    return;
  }
  const int B = static_cast<int>(TF_Dim(xt, 0)), H = static_cast<int>(TF_Dim(xt, 1)),
            W = static_cast<int>(TF_Dim(xt, 2)), Cin = static_cast<int>(TF_Dim(xt, 3));
  const int Ho = static_cast<int>(TF_Dim(dyt, 1)), Wo = static_cast<int>(TF_Dim(dyt, 2)),
            Cout = static_cast<int>(TF_Dim(dyt, 3));
  const int K = a.kh * a.kw * Cin;
  TF_Tensor* gt = io.Out(0, {a.emit_grads ? B : 0, K, Cout});
  TF_Tensor* nt = gt ? io.Out(1, {B}) : nullptr;
  TF_Tensor* bt = nt ? io.Out(2, {B, Cout}) : nullptr;
  if (!bt) return;
  const float* x = F(xt);
  const float* dy = F(dyt);
  float* grads = a.emit_grads ? Fm(gt) : nullptr;
  float* norms = Fm(nt);
  float* biases = Fm(bt);
  const int64_t xs = static_cast<int64_t>(H) * W * Cin, ds = static_cast<int64_t>(Ho) * Wo * Cout;
  const int64_t gs = static_cast<int64_t>(K) * Cout;
  // Each example is copied into a zero-padded [Hp, Wp, Cin] buffer, so that input element
  // (oh·sh + i, ow·sw + j, c) is at base[oh, ow] + off[i, j, c] with no bounds checks.
  const int Hp = std::max(H + a.pad_top, (Ho - 1) * a.sh + a.kh), Wp = std::max(W + a.pad_left, (Wo - 1) * a.sw + a.kw);
  const int P = Ho * Wo;
  std::vector<int> base(P), off(K);
  for (int oh = 0; oh < Ho; ++oh)
    for (int ow = 0; ow < Wo; ++ow) base[oh * Wo + ow] = ((oh * a.sh) * Wp + ow * a.sw) * Cin;
  for (int i = 0; i < a.kh; ++i)
    for (int j = 0; j < a.kw; ++j)
      for (int c = 0; c < Cin; ++c) off[(i * a.kw + j) * Cin + c] = (i * Wp + j) * Cin + c;
  ParallelFor(B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> xpad(static_cast<size_t>(Hp) * Wp * Cin, 0.0f);
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = x + b * xs;
      for (int h = 0; h < H; ++h)
        std::memcpy(&xpad[(static_cast<size_t>(h + a.pad_top) * Wp + a.pad_left) * Cin], xb + static_cast<int64_t>(h) * W * Cin,
                    sizeof(float) * W * Cin);
      const float* db = dy + b * ds;
      float* out = a.emit_grads ? grads + b * gs : nullptr;
      double sq;
      switch (Cout % 8 == 0 ? Cout / 8 : 0) {
        case 1: sq = AllRows<1>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        case 2: sq = AllRows<2>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        case 3: sq = AllRows<3>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        case 4: sq = AllRows<4>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        case 6: sq = AllRows<6>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        case 8: sq = AllRows<8>(xpad.data(), base.data(), off.data(), db, P, K, out); break;
        default: sq = AllRowsScalar(xpad.data(), base.data(), off.data(), db, P, K, Cout, out);
      }
      norms[b] = static_cast<float>(sq);
      float* bias = biases + b * Cout;
      std::memset(bias, 0, sizeof(float) * Cout);
      for (int pos = 0; pos < P; ++pos)
        for (int o = 0; o < Cout; ++o) bias[o] += db[pos * Cout + o];
    }
  });
}

// TgWeightedRowSum(g [B, N], w [B]) -> [N]: Σ_b w[b]·g[b, :], the book-keeping clipped sum of
// per-example gradients. Memory-bound; split over column ranges, one pass over g.
TG_SIMD void WeightedRows(const float* __restrict g, const float* __restrict w, int B, int64_t N, int64_t n0, int64_t n1,
                          float* __restrict out) {
  constexpr int64_t kChunk = 1024;  // columns per block: 4 KB of sums stay in L1
  for (int64_t c0 = n0; c0 < n1; c0 += kChunk) {
    const int64_t c1 = std::min(n1, c0 + kChunk);
    for (int64_t n = c0; n < c1; ++n) out[n] = 0;
    for (int b = 0; b < B; ++b) {
      const float wb = w[b];
      const float* __restrict row = g + b * N;
      for (int64_t n = c0; n < c1; ++n) out[n] += wb * row[n];
    }
  }
}

void ComputeWeightedRowSum(void*, TF_OpKernelContext* ctx) {
  Io io(ctx);
  TF_Tensor* gt = io.In(0);
  TF_Tensor* wt = gt ? io.In(1) : nullptr;
  if (!wt) return;
  if (TF_NumDims(gt) != 2 || TF_NumDims(wt) != 1 || TF_Dim(gt, 0) != TF_Dim(wt, 0)) {
    io.Fail("TgWeightedRowSum: g must be [B, N] and w [B]");
    return;
  }
  const int B = static_cast<int>(TF_Dim(gt, 0));
  const int64_t N = TF_Dim(gt, 1);
  TF_Tensor* out = io.Out(0, {N});
  if (!out) return;
  const float* g = F(gt);
  const float* w = F(wt);
  float* o = Fm(out);
  // Threads only where there is enough to share (a thread start costs tens of microseconds).
  ParallelFor(N, std::max<int64_t>(1, (int64_t{1} << 18) / std::max(1, B)),
              [&](int64_t n0, int64_t n1) { WeightedRows(g, w, B, N, n0, n1, o); });
}

// ---- GELU and layer norm: elementwise and row kernels for the transformer's widest tensors ----


// e^x for 8 floats: x = n·ln2 + r with |r| ≤ ln2/2, e^r by the degree-6 polynomial of Cephes'
// expf (Moshier; ~1 ulp), 2^n put into the exponent. x is clamped to [−87.3, 88.7] first, so
// the result is finite and never denormal (σ below saturates to 0 or 1 there anyway).
TG_SIMD inline __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
  const __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(er, _mm256_castsi256_ps(pow2));
}

// GELU, tanh approximation, as layers.ts writes it: y = x·σ(2u), u = √(2/π)·x·(1 + 0.044715·x²),
// and dy/dx = σ + x·σ·(1 − σ)·2√(2/π)·(1 + 3·0.044715·x²).
constexpr float kGeluC2 = 2.0f * 0.7978845608028654f;  // 2√(2/π)
constexpr float kGeluK = 0.044715f;

TG_SIMD inline __m256 GeluSigma(__m256 x, __m256 x2) {
  // σ(2u) = 1 / (1 + e^(−2u)), 2u = x·(2√(2/π) + 2√(2/π)·K·x²)
  const __m256 t = _mm256_mul_ps(x, _mm256_fmadd_ps(x2, _mm256_set1_ps(kGeluC2 * kGeluK), _mm256_set1_ps(kGeluC2)));
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, Exp8(_mm256_sub_ps(_mm256_setzero_ps(), t))));
}

TG_SIMD void GeluRange(const float* __restrict x, float* __restrict y, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, GeluSigma(v, _mm256_mul_ps(v, v))));
  }
  for (; i < i1; ++i) {
    const float v = x[i];
    const float s = 1.0f / (1.0f + std::exp(-v * (kGeluC2 + kGeluC2 * kGeluK * v * v)));
    y[i] = v * s;
  }
}

TG_SIMD void GeluGradRange(const float* __restrict x, const float* __restrict dy, float* __restrict dx, int64_t i0,
                           int64_t i1) {
  int64_t i = i0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= i1; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 v2 = _mm256_mul_ps(v, v);
    const __m256 s = GeluSigma(v, v2);
    const __m256 q = _mm256_fmadd_ps(v2, _mm256_set1_ps(3.0f * kGeluC2 * kGeluK), _mm256_set1_ps(kGeluC2));
    // s + x·s·(1 − s)·q
    const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_sub_ps(one, s)), q, s);
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), d));
  }
  for (; i < i1; ++i) {
    const float v = x[i], v2 = v * v;
    const float s = 1.0f / (1.0f + std::exp(-v * (kGeluC2 + kGeluC2 * kGeluK * v2)));
    dx[i] = dy[i] * (s + v * s * (1.0f - s) * (kGeluC2 + 3.0f * kGeluC2 * kGeluK * v2));
  }
}

// Layer normalization over the last axis of [N, D]: x̂ = (x − mean)·rstd, rstd = (var + ε)^−½
// with var the mean of (x − mean)² (two passes over the row), and its gradient
// dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂∘x̂). Row sums in 8 float lanes (D a multiple of 8) or
// one, as TensorFlow's float Mean.
TG_SIMD inline float Sum8(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

TG_SIMD void LayerNormRows(const float* __restrict x, float* __restrict xhat, float* __restrict rstd, int64_t D,
                           float eps, int64_t r0, int64_t r1) {
  const bool vec = D % 8 == 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float* __restrict xr = x + r * D;
    float* __restrict yr = xhat + r * D;
    float sum = 0;
    if (vec) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t d = 0; d < D; d += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr + d));
      sum = Sum8(acc);
    } else {
      for (int64_t d = 0; d < D; ++d) sum += xr[d];
    }
    const float mean = sum / static_cast<float>(D);
    float sq = 0;
    if (vec) {
      const __m256 m = _mm256_set1_ps(mean);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t d = 0; d < D; d += 8) {
        const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(xr + d), m);
        acc = _mm256_fmadd_ps(c, c, acc);
      }
      sq = Sum8(acc);
    } else {
      for (int64_t d = 0; d < D; ++d) sq += (xr[d] - mean) * (xr[d] - mean);
    }
    const float rs = 1.0f / std::sqrt(sq / static_cast<float>(D) + eps);
    rstd[r] = rs;
    for (int64_t d = 0; d < D; ++d) yr[d] = (xr[d] - mean) * rs;
  }
}

TG_SIMD void LayerNormGradRows(const float* __restrict dxhat, const float* __restrict xhat, const float* __restrict rstd,
                               float* __restrict dx, int64_t D, int64_t r0, int64_t r1) {
  const bool vec = D % 8 == 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float* __restrict g = dxhat + r * D;
    const float* __restrict h = xhat + r * D;
    float s1 = 0, s2 = 0;
    if (vec) {
      __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
      for (int64_t d = 0; d < D; d += 8) {
        const __m256 gv = _mm256_loadu_ps(g + d);
        a1 = _mm256_add_ps(a1, gv);
        a2 = _mm256_fmadd_ps(gv, _mm256_loadu_ps(h + d), a2);
      }
      s1 = Sum8(a1);
      s2 = Sum8(a2);
    } else {
      for (int64_t d = 0; d < D; ++d) {
        s1 += g[d];
        s2 += g[d] * h[d];
      }
    }
    const float m1 = s1 / static_cast<float>(D), m2 = s2 / static_cast<float>(D), rs = rstd[r];
    float* __restrict o = dx + r * D;
    for (int64_t d = 0; d < D; ++d) o[d] = rs * (g[d] - m1 - h[d] * m2);
  }
}


void ComputeGelu(void*, TF_OpKernelContext* ctx) {
  Io io(ctx);
  TF_Tensor* x = io.In(0);
  if (!x) return;
  TF_Tensor* y = io.Out(0, DimsOf(x));
  if (!y) return;
  const float* xp = F(x);
  float* yp = Fm(y);
  ParallelFor(TF_TensorElementCount(x), 1 << 16, [&](int64_t a, int64_t b) { GeluRange(xp, yp, a, b); });
}

void ComputeGeluGrad(void*, TF_OpKernelContext* ctx) {
  Io io(ctx);
  TF_Tensor* x = io.In(0);
  TF_Tensor* dy = x ? io.In(1) : nullptr;
  if (!dy) return;
  if (TF_TensorElementCount(x) != TF_TensorElementCount(dy)) {
    io.Fail("TgGeluGrad: x and dy must have the same shape");
    return;
  }
  TF_Tensor* dx = io.Out(0, DimsOf(x));
  if (!dx) return;
  const float *xp = F(x), *dyp = F(dy);
  float* dxp = Fm(dx);
  ParallelFor(TF_TensorElementCount(x), 1 << 16, [&](int64_t a, int64_t b) { GeluGradRange(xp, dyp, dxp, a, b); });
}

struct LnAttrs {
  float eps;
};

void* CreateLayerNorm(TF_OpKernelConstruction* ctx) {
  auto* a = new LnAttrs();
  TF_Status* s = TF_NewStatus();
  TF_OpKernelConstruction_GetAttrFloat(ctx, "epsilon", &a->eps, s);
  if (TF_GetCode(s) != TF_OK) TF_OpKernelConstruction_Failure(ctx, s);
  TF_DeleteStatus(s);
  return a;
}

void DeleteLayerNorm(void* p) { delete static_cast<LnAttrs*>(p); }

void ComputeLayerNorm(void* p, TF_OpKernelContext* ctx) {
  const float eps = static_cast<LnAttrs*>(p)->eps;
  Io io(ctx);
  TF_Tensor* x = io.In(0);
  if (!x) return;
  std::vector<int64_t> dims = DimsOf(x);
  if (dims.empty() || dims.back() == 0) {
    io.Fail("TgLayerNorm: x needs a non-empty last axis");
    return;
  }
  const int64_t D = dims.back(), N = TF_TensorElementCount(x) / D;
  std::vector<int64_t> rdims = dims;
  rdims.back() = 1;
  TF_Tensor* xhat = io.Out(0, dims);
  TF_Tensor* rstd = xhat ? io.Out(1, rdims) : nullptr;
  if (!rstd) return;
  const float* xp = F(x);
  float *hp = Fm(xhat), *rp = Fm(rstd);
  ParallelFor(N, std::max<int64_t>(1, (1 << 16) / D), [&](int64_t a, int64_t b) { LayerNormRows(xp, hp, rp, D, eps, a, b); });
}

void ComputeLayerNormGrad(void*, TF_OpKernelContext* ctx) {
  Io io(ctx);
  TF_Tensor* g = io.In(0);
  TF_Tensor* h = g ? io.In(1) : nullptr;
  TF_Tensor* r = h ? io.In(2) : nullptr;
  if (!r) return;
  std::vector<int64_t> dims = DimsOf(h);
  const int64_t D = dims.empty() ? 0 : dims.back();
  const int64_t N = D ? TF_TensorElementCount(h) / D : 0;
  if (D == 0 || TF_TensorElementCount(g) != N * D || TF_TensorElementCount(r) != N) {
    io.Fail("TgLayerNormGrad: dxhat and xhat must be [..., D] and rstd [..., 1]");
    return;
  }
  TF_Tensor* dx = io.Out(0, dims);
  if (!dx) return;
  const float *gp = F(g), *hp = F(h), *rp = F(r);
  float* dxp = Fm(dx);
  ParallelFor(N, std::max<int64_t>(1, (1 << 16) / D), [&](int64_t a, int64_t b) { LayerNormGradRows(gp, hp, rp, dxp, D, a, b); });
}

void UnknownShapes(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  (void)ctx;
  TF_SetStatus(status, TF_OK, "");
}

// Registers one op (inputs, outputs and attrs as TensorFlow op specs) and its CPU kernel.
void Register(TF_Status* s, const char* name, std::initializer_list<const char*> inputs,
              std::initializer_list<const char*> outputs, std::initializer_list<const char*> attrs,
              void* (*create)(TF_OpKernelConstruction*), void (*compute)(void*, TF_OpKernelContext*),
              void (*destroy)(void*)) {
  if (TF_GetCode(s) != TF_OK) return;
  TF_OpDefinitionBuilder* op = TF_NewOpDefinitionBuilder(name);
  for (const char* i : inputs) TF_OpDefinitionBuilderAddInput(op, i);
  for (const char* o : outputs) TF_OpDefinitionBuilderAddOutput(op, o);
  for (const char* a : attrs) TF_OpDefinitionBuilderAddAttr(op, a);
  TF_OpDefinitionBuilderSetShapeInferenceFunction(op, &UnknownShapes);
  TF_RegisterOpDefinition(op, s);
  if (TF_GetCode(s) != TF_OK) return;
  TF_KernelBuilder* k = TF_NewKernelBuilder(name, "CPU", create, compute, destroy);
  TF_RegisterKernelBuilder((std::string(name) + "Cpu").c_str(), k, s);
}

const char* const kOps[] = {"TgConvPerExample", "TgWeightedRowSum", "TgGelu", "TgGeluGrad", "TgLayerNorm",
                            "TgLayerNormGrad"};

const char* RegisterOps() {
  static std::string error;
  static bool done = false;
  if (done) return error.empty() ? nullptr : error.c_str();
  done = true;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    error = "dp's TensorFlow kernels need a CPU with AVX2 and FMA";
    return error.c_str();
  }
  TF_Status* s = TF_NewStatus();
  Register(s, "TgConvPerExample", {"x: float", "dy: float"}, {"grads: float", "sq_norms: float", "bias_sums: float"},
           {"kh: int", "kw: int", "sh: int", "sw: int", "pad_top: int", "pad_left: int", "emit_grads: bool"},
           &CreateConv, &ComputeConv, &DeleteConv);
  Register(s, "TgWeightedRowSum", {"g: float", "w: float"}, {"sum: float"}, {}, nullptr, &ComputeWeightedRowSum,
           nullptr);
  Register(s, "TgGelu", {"x: float"}, {"y: float"}, {}, nullptr, &ComputeGelu, nullptr);
  Register(s, "TgGeluGrad", {"x: float", "dy: float"}, {"dx: float"}, {}, nullptr, &ComputeGeluGrad, nullptr);
  Register(s, "TgLayerNorm", {"x: float"}, {"xhat: float", "rstd: float"}, {"epsilon: float"}, &CreateLayerNorm,
           &ComputeLayerNorm, &DeleteLayerNorm);
  Register(s, "TgLayerNormGrad", {"dxhat: float", "xhat: float", "rstd: float"}, {"dx: float"}, {}, nullptr,
           &ComputeLayerNormGrad, nullptr);
  if (TF_GetCode(s) != TF_OK) error = TF_Message(s);
  TF_DeleteStatus(s);
  return error.empty() ? nullptr : error.c_str();
}

napi_value Init(napi_env env, napi_value exports) {
  if (const char* err = RegisterOps()) {
    napi_throw_error(env, nullptr, err);
    return nullptr;
  }
  napi_value ops, name;
  const uint32_t n = sizeof(kOps) / sizeof(kOps[0]);
  napi_create_array_with_length(env, n, &ops);
  for (uint32_t i = 0; i < n; ++i) {
    napi_create_string_utf8(env, kOps[i], NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, ops, i, name);
  }
  napi_set_named_property(env, exports, "ops", ops);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
