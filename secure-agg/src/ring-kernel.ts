// A WebAssembly SIMD kernel for ring addition: dst[i] ±= src[i] over 32-bit lanes (i32x4) or
// 64-bit lanes (i64x2), wrapping mod 2^k like the ring. The module is assembled below from
// readable instructions, byte by byte, when this file loads (about 600 bytes; no toolchain and no
// binary blob). WebAssembly can only touch its own memory, so callers copy a chunk of the target
// and of the keystream in, run the kernel, and copy the target back (see masking.ts); three L2-hot
// copies still cost less than V8's scalar loop, which has no SIMD and, for k = 64, no 64-bit
// integers short of BigInt.
//
// Layout of the module's one memory (KERNEL_PAGES pages of 64 KiB): [0, KERNEL_CHUNK_BYTES) holds
// dst, [KERNEL_CHUNK_BYTES, 2·KERNEL_CHUNK_BYTES) holds src. Each function takes (dst, src, bytes)
// with bytes a multiple of KERNEL_STEP_BYTES; callers round up and ignore the padding lanes.

/** Bytes each side of a call may span (the target chunk, and the keystream chunk). */
export const KERNEL_CHUNK_BYTES = 32 * 1024;
/** One loop iteration: four 16-byte vectors, so `bytes` must be a multiple of this. */
export const KERNEL_STEP_BYTES = 64;
const KERNEL_PAGES = Math.ceil((2 * KERNEL_CHUNK_BYTES) / 65536);

// lib.es2023 carries no WebAssembly types (they live in lib.dom); this is the part used here.
declare const WebAssembly: {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

/** The kernel's exports. Offsets and lengths are in bytes. */
export interface RingKernel {
  /** The module's memory (it never grows, so views of `buffer` stay valid). */
  readonly memory: { readonly buffer: ArrayBuffer };
  readonly add32: (dst: number, src: number, bytes: number) => void;
  readonly sub32: (dst: number, src: number, bytes: number) => void;
  readonly add64: (dst: number, src: number, bytes: number) => void;
  readonly sub64: (dst: number, src: number, bytes: number) => void;
}

// --- encoding helpers (WebAssembly core spec 1.0 + fixed-width SIMD) ---

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128, for i32.const immediates (64 is 0xc0 0x00: 0x40 alone would read as −64). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
}

const I32 = 0x7f;
const op = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br_if: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32LtU: 0x49,
  i32Add: 0x6a,
  voidType: 0x40,
};
// SIMD instructions are 0xFD followed by a LEB128 sub-opcode.
const simd = (sub: number) => [0xfd, ...uleb(sub)];
const V128_LOAD = 0x00;
const V128_STORE = 0x0b;
const LANE_OPS = { add32: 0xae, sub32: 0xb1, add64: 0xce, sub64: 0xd1 } as const; // i32x4/i64x2 add/sub
// memarg: alignment hint log2 (4 = 16 bytes is only a hint; unaligned access is still correct).
const memarg = (offset: number) => [4, ...uleb(offset)];

/** Body of `f(dst, src, bytes)`: for (end = dst + bytes; dst < end; dst += 64, src += 64) 4 × (dst ⊕= src). */
function kernelBody(laneOp: number): number[] {
  const [DST, SRC, BYTES, END] = [0, 1, 2, 3];
  // prettier-ignore
  const lane = (offset: number) => [
    op.localGet, DST,                                           // address for the store
    op.localGet, DST, ...simd(V128_LOAD), ...memarg(offset),    // dst vector
    op.localGet, SRC, ...simd(V128_LOAD), ...memarg(offset),    // src vector
    ...simd(laneOp),                                            // lane-wise add or sub, wrapping
    ...simd(V128_STORE), ...memarg(offset),
  ];
  // prettier-ignore
  const bump = (local: number) => [
    op.localGet, local, op.i32Const, ...sleb(KERNEL_STEP_BYTES), op.i32Add, op.localSet, local,
  ];
  // prettier-ignore
  const code = [
    op.localGet, DST, op.localGet, BYTES, op.i32Add, op.localSet, END,   // end = dst + bytes
    op.block, op.voidType,
      op.localGet, DST, op.localGet, END, op.i32GeU, op.br_if, 0,        // nothing to do
      op.loop, op.voidType,
        ...lane(0), ...lane(16), ...lane(32), ...lane(48),
        ...bump(DST), ...bump(SRC),
        op.localGet, DST, op.localGet, END, op.i32LtU, op.br_if, 0,      // again while dst < end
      op.end,
    op.end,
    op.end,
  ];
  const locals = vec([[1, I32]]); // one extra i32 local: END
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** The module's bytes: one type (i32, i32, i32) → (), four functions, one exported memory. */
export function ringKernelBytes(): Uint8Array {
  const names = Object.keys(LANE_OPS) as (keyof typeof LANE_OPS)[];
  // prettier-ignore
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,                           // "\0asm", version 1
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32]]), ...vec([])]])),  // type 0: (i32 i32 i32) → ()
    ...section(3, vec(names.map(() => [0]))),                                 // every function has type 0
    ...section(5, vec([[0x00, ...uleb(KERNEL_PAGES)]])),                      // memory: min pages, no max
    ...section(7, vec([                                                       // exports
      [...name('memory'), 0x02, 0],
      ...names.map((n, i) => [...name(n), 0x00, i]),
    ])),
    ...section(10, vec(names.map((n) => kernelBody(LANE_OPS[n])))),           // code
  ];
  return Uint8Array.from(bytes);
}

let kernel: RingKernel | null | undefined;

/**
 * The instantiated kernel, or null where this runtime has no WebAssembly SIMD (callers then use
 * the scalar JavaScript loop). Instantiated once, synchronously (the module is tiny).
 */
export function ringKernel(): RingKernel | null {
  if (kernel !== undefined) return kernel;
  const bytes = ringKernelBytes();
  if (typeof WebAssembly === 'undefined' || !WebAssembly.validate(bytes)) {
    kernel = null;
    return kernel;
  }
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  kernel = exports as unknown as RingKernel;
  return kernel;
}
