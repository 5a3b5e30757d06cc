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
#include <node_api.h>
#include <tensorflow/c/kernels.h>
#include <tensorflow/c/ops.h>
#include <tensorflow/c/tf_status.h>
#include <tensorflow/c/tf_tensor.h>

#include <algorithm>
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
  TF_Status* s = TF_NewStatus();
  TF_Tensor* xt = nullptr;
  TF_Tensor* dyt = nullptr;
  TF_Tensor* outs[3] = {nullptr, nullptr, nullptr};
  do {
    TF_GetInput(ctx, 0, &xt, s);
    if (TF_GetCode(s) != TF_OK) break;
    TF_GetInput(ctx, 1, &dyt, s);
    if (TF_GetCode(s) != TF_OK) break;
    if (TF_NumDims(xt) != 4 || TF_NumDims(dyt) != 4 || TF_Dim(xt, 0) != TF_Dim(dyt, 0)) {
      TF_SetStatus(s, TF_INVALID_ARGUMENT, "TgConvPerExample: x and dy must be [B, H, W, C] with the same B");
      break;
    }
    const int B = static_cast<int>(TF_Dim(xt, 0)), H = static_cast<int>(TF_Dim(xt, 1)),
              W = static_cast<int>(TF_Dim(xt, 2)), Cin = static_cast<int>(TF_Dim(xt, 3));
    const int Ho = static_cast<int>(TF_Dim(dyt, 1)), Wo = static_cast<int>(TF_Dim(dyt, 2)),
              Cout = static_cast<int>(TF_Dim(dyt, 3));
    const int K = a.kh * a.kw * Cin;
    const int64_t gdims[3] = {a.emit_grads ? B : 0, K, Cout};
    const int64_t ndims[1] = {B};
    const int64_t bdims[2] = {B, Cout};
    const size_t gbytes = a.emit_grads ? sizeof(float) * B * static_cast<size_t>(K) * Cout : 0;
    outs[0] = TF_AllocateOutput(ctx, 0, TF_FLOAT, gdims, 3, gbytes, s);
    if (TF_GetCode(s) != TF_OK) break;
    outs[1] = TF_AllocateOutput(ctx, 1, TF_FLOAT, ndims, 1, sizeof(float) * B, s);
    if (TF_GetCode(s) != TF_OK) break;
    outs[2] = TF_AllocateOutput(ctx, 2, TF_FLOAT, bdims, 2, sizeof(float) * B * Cout, s);
    if (TF_GetCode(s) != TF_OK) break;
    const float* x = static_cast<const float*>(TF_TensorData(xt));
    const float* dy = static_cast<const float*>(TF_TensorData(dyt));
    float* grads = a.emit_grads ? static_cast<float*>(TF_TensorData(outs[0])) : nullptr;
    float* norms = static_cast<float*>(TF_TensorData(outs[1]));
    float* biases = static_cast<float*>(TF_TensorData(outs[2]));
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
    auto work = [&](int b0, int b1) {
      std::vector<float> xpad(static_cast<size_t>(Hp) * Wp * Cin, 0.0f);
      for (int b = b0; b < b1; ++b) {
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
        float* bias = biases + static_cast<int64_t>(b) * Cout;
        std::memset(bias, 0, sizeof(float) * Cout);
        for (int pos = 0; pos < P; ++pos)
          for (int o = 0; o < Cout; ++o) bias[o] += db[pos * Cout + o];
      }
    };
    const int T = std::min(ThreadCount(), B);
    std::vector<std::thread> pool;
    for (int t = 1; t < T; ++t) pool.emplace_back(work, static_cast<int>(int64_t(B) * t / T), static_cast<int>(int64_t(B) * (t + 1) / T));
    work(0, static_cast<int>(int64_t(B) / T));
    for (auto& th : pool) th.join();
  } while (false);
  if (TF_GetCode(s) != TF_OK) TF_OpKernelContext_Failure(ctx, s);
  for (TF_Tensor* t : outs)
    if (t) TF_DeleteTensor(t);
  if (xt) TF_DeleteTensor(xt);
  if (dyt) TF_DeleteTensor(dyt);
  TF_DeleteStatus(s);
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
  TF_Status* s = TF_NewStatus();
  TF_Tensor* gt = nullptr;
  TF_Tensor* wt = nullptr;
  TF_Tensor* out = nullptr;
  do {
    TF_GetInput(ctx, 0, &gt, s);
    if (TF_GetCode(s) != TF_OK) break;
    TF_GetInput(ctx, 1, &wt, s);
    if (TF_GetCode(s) != TF_OK) break;
    if (TF_NumDims(gt) != 2 || TF_NumDims(wt) != 1 || TF_Dim(gt, 0) != TF_Dim(wt, 0)) {
      TF_SetStatus(s, TF_INVALID_ARGUMENT, "TgWeightedRowSum: g must be [B, N] and w [B]");
      break;
    }
    const int B = static_cast<int>(TF_Dim(gt, 0));
    const int64_t N = TF_Dim(gt, 1);
    const int64_t dims[1] = {N};
    out = TF_AllocateOutput(ctx, 0, TF_FLOAT, dims, 1, sizeof(float) * N, s);
    if (TF_GetCode(s) != TF_OK) break;
    const float* g = static_cast<const float*>(TF_TensorData(gt));
    const float* w = static_cast<const float*>(TF_TensorData(wt));
    float* o = static_cast<float*>(TF_TensorData(out));
    // Threads only where there is enough to share (a thread start costs tens of microseconds).
    const int T = static_cast<int>(std::min<int64_t>(ThreadCount(), std::max<int64_t>(1, B * N / (1 << 18))));
    std::vector<std::thread> pool;
    auto range = [&](int t) { return N * t / T; };
    for (int t = 1; t < T; ++t) pool.emplace_back(WeightedRows, g, w, B, N, range(t), range(t + 1), o);
    WeightedRows(g, w, B, N, 0, range(1), o);
    for (auto& th : pool) th.join();
  } while (false);
  if (TF_GetCode(s) != TF_OK) TF_OpKernelContext_Failure(ctx, s);
  if (out) TF_DeleteTensor(out);
  if (gt) TF_DeleteTensor(gt);
  if (wt) TF_DeleteTensor(wt);
  TF_DeleteStatus(s);
}

void UnknownShapes(TF_ShapeInferenceContext* ctx, TF_Status* status) {
  (void)ctx;
  TF_SetStatus(status, TF_OK, "");
}

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
  TF_OpDefinitionBuilder* op = TF_NewOpDefinitionBuilder("TgConvPerExample");
  TF_OpDefinitionBuilderAddInput(op, "x: float");
  TF_OpDefinitionBuilderAddInput(op, "dy: float");
  TF_OpDefinitionBuilderAddOutput(op, "grads: float");
  TF_OpDefinitionBuilderAddOutput(op, "sq_norms: float");
  TF_OpDefinitionBuilderAddOutput(op, "bias_sums: float");
  for (const char* attr : {"kh: int", "kw: int", "sh: int", "sw: int", "pad_top: int", "pad_left: int", "emit_grads: bool"})
    TF_OpDefinitionBuilderAddAttr(op, attr);
  TF_OpDefinitionBuilderSetShapeInferenceFunction(op, &UnknownShapes);
  TF_RegisterOpDefinition(op, s);
  if (TF_GetCode(s) == TF_OK) {
    TF_KernelBuilder* k = TF_NewKernelBuilder("TgConvPerExample", "CPU", &CreateConv, &ComputeConv, &DeleteConv);
    TF_RegisterKernelBuilder("TgConvPerExampleCpu", k, s);
  }
  if (TF_GetCode(s) == TF_OK) {
    TF_OpDefinitionBuilder* sum = TF_NewOpDefinitionBuilder("TgWeightedRowSum");
    TF_OpDefinitionBuilderAddInput(sum, "g: float");
    TF_OpDefinitionBuilderAddInput(sum, "w: float");
    TF_OpDefinitionBuilderAddOutput(sum, "sum: float");
    TF_OpDefinitionBuilderSetShapeInferenceFunction(sum, &UnknownShapes);
    TF_RegisterOpDefinition(sum, s);
  }
  if (TF_GetCode(s) == TF_OK) {
    TF_KernelBuilder* k = TF_NewKernelBuilder("TgWeightedRowSum", "CPU", nullptr, &ComputeWeightedRowSum, nullptr);
    TF_RegisterKernelBuilder("TgWeightedRowSumCpu", k, s);
  }
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
  const char* names[] = {"TgConvPerExample", "TgWeightedRowSum"};
  napi_create_array_with_length(env, 2, &ops);
  for (uint32_t i = 0; i < 2; ++i) {
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, ops, i, name);
  }
  napi_set_named_property(env, exports, "ops", ops);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
