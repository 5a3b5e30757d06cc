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
