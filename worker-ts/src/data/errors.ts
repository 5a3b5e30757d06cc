/** A dataset file that cannot be read as what it claims to be. Names the file and where. */
export class DatasetError extends Error {
  override name = 'DatasetError';
  constructor(
    message: string,
    readonly file: string,
    /** Byte offset (binary formats) or 1-based line number (text formats) of the problem. */
    readonly location?: { offset?: number; line?: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The file could not be opened or read: names it and the OS error code (never its contents). */
export function unreadable(file: string, err: unknown): DatasetError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new DatasetError(`${file}: cannot read (${code})`, file, {}, { cause: err });
}
