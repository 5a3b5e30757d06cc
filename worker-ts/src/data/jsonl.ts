// JSONL text-classification datasets: one JSON object per line with a string field (default
// `text`) and an integer class field (default `label`). Blank lines are skipped; anything else
// that is not such an object is an error naming the file and line.
import type { Dataset } from './dataset.js';
import { readText } from './csv.js';
import { DatasetError } from './errors.js';
import { tokenize, type TokenizerOptions } from './tokenizer.js';

export interface JsonlOptions extends TokenizerOptions {
  textField?: string;
  labelField?: string;
  numClasses?: number;
}

export function parseJsonl(text: string, file: string, opts: JsonlOptions): Dataset {
  const textField = opts.textField ?? 'text';
  const labelField = opts.labelField ?? 'label';
  const lines = text.split('\n');
  const ids: Int32Array[] = [];
  const labels: number[] = [];
  let maxLabel = -1;
  const endsWithNewline = text.endsWith('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim();
    if (line === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      const truncated = i === lines.length - 1 && !endsWithNewline;
      throw new DatasetError(
        `${file}:${lineNo}: not valid JSON${truncated ? ' (the last line is cut short: is the file truncated?)' : ''}${jsonPosition(err)}`,
        file,
        { line: lineNo },
      );
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      throw new DatasetError(`${file}:${lineNo}: expected a JSON object`, file, { line: lineNo });
    }
    const rec = obj as Record<string, unknown>;
    const t = rec[textField];
    const l = rec[labelField];
    if (typeof t !== 'string') {
      throw new DatasetError(`${file}:${lineNo}: field '${textField}' must be a string`, file, {
        line: lineNo,
      });
    }
    if (
      typeof l !== 'number' ||
      !Number.isInteger(l) ||
      l < 0 ||
      (opts.numClasses !== undefined && l >= opts.numClasses)
    ) {
      throw new DatasetError(
        `${file}:${lineNo}: field '${labelField}' must be a class index in [0, ${opts.numClasses ?? 'n'}), got a ${l === null ? 'null' : typeof l} (the value is not shown)`,
        file,
        { line: lineNo },
      );
    }
    ids.push(tokenize(t, opts));
    labels.push(l);
    maxLabel = Math.max(maxLabel, l);
  }
  const features = new Int32Array(ids.length * opts.seqLen);
  ids.forEach((row, r) => features.set(row, r * opts.seqLen));
  return {
    size: ids.length,
    featureShape: [opts.seqLen],
    dtype: 'int32',
    features,
    labels: Int32Array.from(labels),
    numClasses: opts.numClasses ?? maxLabel + 1,
    source: file,
  };
}

export function readJsonlFile(file: string, opts: JsonlOptions): Dataset {
  return parseJsonl(readText(file), file, opts);
}

/**
 * The column of a JSON syntax error, without the excerpt of the text that V8 puts in its message
 * (that excerpt is a record's value, which error messages must never show).
 */
function jsonPosition(err: unknown): string {
  const m = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  return m ? ` at column ${Number(m[1]) + 1}` : '';
}
