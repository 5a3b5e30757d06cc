// CSV datasets: a header line naming the columns, then one record per line. One column holds the
// integer class label (default name `label`); every other column is a numeric feature. No quoting:
// numeric CSV has no need for it, and a quoted field is reported rather than misread.
import fs from 'node:fs';
import type { Dataset } from './dataset.js';
import { DatasetError, unreadable } from './errors.js';

export interface CsvOptions {
  /** Name of the label column (default 'label'). */
  labelColumn?: string;
  /** Number of classes; default max label + 1. A label outside [0, numClasses) is an error. */
  numClasses?: number;
}

/** Parses CSV text. Throws DatasetError naming `file` and the 1-based line of the first problem. */
export function parseCsv(text: string, file: string, opts: CsvOptions = {}): Dataset {
  const labelColumn = opts.labelColumn ?? 'label';
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const header = (lines[0] ?? '').replace(/\r$/, '');
  if (header.trim() === '')
    throw new DatasetError(`${file}:1: empty file, expected a header line`, file, { line: 1 });
  const columns = header.split(',').map((c) => c.trim());
  const labelIdx = columns.indexOf(labelColumn);
  if (labelIdx < 0) {
    throw new DatasetError(
      `${file}:1: no column named '${labelColumn}' in the header (${columns.length} columns); set dataset.labelColumn to a column of the header`,
      file,
      { line: 1 },
    );
  }
  const nFeat = columns.length - 1;
  const n = lines.length - 1;
  const features = new Float32Array(n * nFeat);
  const labels = new Int32Array(n);
  let maxLabel = -1;
  for (let r = 0; r < n; r++) {
    const lineNo = r + 2;
    const line = lines[r + 1]!.replace(/\r$/, '');
    const cells = line.split(',');
    if (cells.length !== columns.length) {
      throw new DatasetError(
        `${file}:${lineNo}: ${cells.length} fields, the header has ${columns.length} (is the file truncated?)`,
        file,
        { line: lineNo },
      );
    }
    let f = 0;
    for (let c = 0; c < cells.length; c++) {
      const cell = cells[c]!.trim();
      const v = cell === '' ? NaN : Number(cell);
      if (!Number.isFinite(v)) {
        throw new DatasetError(
          `${file}:${lineNo}: column ${c + 1} is not a finite number (the value is not shown: data files may hold private records)`,
          file,
          { line: lineNo },
        );
      }
      if (c === labelIdx) {
        if (!Number.isInteger(v) || v < 0 || (opts.numClasses !== undefined && v >= opts.numClasses)) {
          throw new DatasetError(
            `${file}:${lineNo}: the label is not a class index in [0, ${opts.numClasses ?? 'n'}) (the value is not shown)`,
            file,
            { line: lineNo },
          );
        }
        labels[r] = v;
        maxLabel = Math.max(maxLabel, v);
      } else {
        features[r * nFeat + f++] = v;
      }
    }
  }
  return {
    size: n,
    featureShape: [nFeat],
    dtype: 'float32',
    features,
    labels,
    numClasses: opts.numClasses ?? maxLabel + 1,
    source: file,
  };
}

export function readCsvFile(file: string, opts: CsvOptions = {}): Dataset {
  return parseCsv(readText(file), file, opts);
}

export function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
}

/** The column names of a CSV file's header line, reading nothing after it (up to 1 MiB). */
export function readCsvHeader(file: string): string[] {
  let text = '';
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (let pos = 0; pos < 1 << 20;) {
        const n = fs.readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        const chunk = buf.subarray(0, n).toString('utf8');
        const nl = chunk.indexOf('\n');
        text += nl >= 0 ? chunk.slice(0, nl) : chunk;
        if (nl >= 0) break;
        pos += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw unreadable(file, err);
  }
  const header = text.replace(/\r$/, '');
  if (header.trim() === '')
    throw new DatasetError(`${file}:1: empty file, expected a header line`, file, { line: 1 });
  return header.split(',').map((c) => c.trim());
}
