import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { DatasetError } from './errors.js';
import { loadImagePair, parseIdx, readIdxFile } from './idx.js';

function idx(shape: number[], data: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

describe('IDX reader', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-idx-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('parses shape and data', () => {
    const t = parseIdx(idx([2, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), 'x');
    expect(t.shape).to.deep.equal([2, 2, 3]);
    expect(Array.from(t.data)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it('reads gzipped files', () => {
    const f = path.join(dir, 'a.gz');
    fs.writeFileSync(f, zlib.gzipSync(idx([3], [7, 8, 9])));
    expect(Array.from(readIdxFile(f).data)).to.deep.equal([7, 8, 9]);
  });

  it('names the file and the offset of a truncated file', () => {
    const f = path.join(dir, 'train-images-idx3-ubyte');
    fs.writeFileSync(f, idx([2, 2, 2], [1, 2, 3, 4, 5]));
    try {
      readIdxFile(f);
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(DatasetError);
      const e = err as DatasetError;
      expect(e.file).to.equal(f);
      expect(e.location?.offset).to.equal(21);
      expect(e.message).to.equal(
        `${f}: truncated at byte 21: shape [2, 2, 2] needs 8 data bytes after the 16-byte header, found 5`,
      );
    }
  });

  it('refuses a file that is not IDX, and a truncated gzip stream', () => {
    const f = path.join(dir, 'notidx');
    fs.writeFileSync(f, Buffer.from('hello world'));
    expect(() => readIdxFile(f)).to.throw(
      DatasetError,
      'not an IDX file (its first two bytes should be 00 00)',
    );
    // The file's bytes are data: never quoted in the message.
    expect(() => readIdxFile(f))
      .to.throw(DatasetError)
      .that.satisfies((e: Error) => !e.message.includes('68 65'));
    const g = path.join(dir, 'cut.gz');
    const gz = zlib.gzipSync(idx([100], new Array(100).fill(1)));
    fs.writeFileSync(g, gz.subarray(0, gz.length - 10));
    expect(() => readIdxFile(g)).to.throw(DatasetError, 'gzip stream is corrupt or truncated');
  });

  it('checks that labels match images', () => {
    fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte'), idx([2, 1, 1], [1, 2]));
    fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte'), idx([3], [0, 1, 2]));
    expect(() => loadImagePair(dir, 'train')).to.throw(DatasetError, '3 labels for 2 images');
  });
});
