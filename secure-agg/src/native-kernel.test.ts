import { expect } from 'chai';
import { createCipheriv } from 'node:crypto';
import { nativeKernel } from './native-kernel.js';

// The addon's own contract: OpenSSL's AES-128-CTR bits, and a TypeError (never a crash) for
// arguments of the wrong kind or size. Its equality with the JavaScript paths on random inputs is
// in masking.test.ts and encoding.test.ts. `npm test` runs setup first, which builds the addon
// here (this machine has a C compiler and Node's headers); where it cannot be built the suite is
// skipped and masking runs on node:crypto + WebAssembly.
(nativeKernel() ? describe : describe.skip)('native mask kernel', () => {
  const k = nativeKernel()!;

  it('adds exactly the AES-128-CTR keystream (zero IV) that node:crypto produces', () => {
    const key = new Uint8Array(16).map((_, i) => i * 7 + 1);
    for (const bytes of [4, 60, 256, 4100, 16384 * 3 + 12]) {
      const v = new Uint32Array(bytes / 4);
      k.addMasks(v, v, key, new Int8Array([1]), 32);
      const ks = createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
      expect(Buffer.from(v.buffer).equals(ks)).to.equal(true);
    }
  });

  it('refuses wrong arguments with a TypeError naming the problem', () => {
    const v = new Uint32Array(8);
    const key = new Uint8Array(16);
    expect(() => k.addMasks(v, new Uint32Array(4), key, new Int8Array([1]), 32)).to.throw(
      TypeError,
      'target and source differ in size',
    );
    expect(() => k.addMasks(v, v, new Uint8Array(15), new Int8Array([1]), 32)).to.throw(
      TypeError,
      'need 16 key bytes per sign',
    );
    expect(() => k.addMasks(v, v, key, new Int8Array([1]), 16)).to.throw(TypeError, 'bits must be 32 or 64');
    expect(() => k.addMasks(v, v, key, new Int8Array([1]), 64)).not.to.throw(); // 32 bytes = 4 words
    expect(() => k.addMasks(new Uint32Array(3), new Uint32Array(3), key, new Int8Array([1]), 64)).to.throw(
      TypeError,
      'differ in size',
    );
    expect(() => (k.addMasks as (...a: unknown[]) => void)(v, 'x', key, new Int8Array([1]), 32)).to.throw(
      TypeError,
      'must be typed arrays',
    );
    expect(() => k.addVectors(v, new Uint32Array(7), 1, 32)).to.throw(TypeError, 'the same size');
    expect(() => k.encode(new Float32Array(4), null, 1, new Uint32Array(3), 32, key)).to.throw(
      TypeError,
      'out must hold values.length k-bit words',
    );
    expect(() => k.encode(new Float32Array(4), new Float64Array(3), 1, v.subarray(0, 4), 32, key)).to.throw(
      TypeError,
      'noise must be null or a Float64Array as long as values',
    );
    expect(() =>
      (k.encode as (...a: unknown[]) => void)(new Int32Array(4), null, 1, v.subarray(0, 4), 32, key),
    ).to.throw(TypeError, 'Float32Array or a Float64Array');
  });
});
