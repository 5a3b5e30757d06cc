/** A checkpoint that cannot be used: corrupt, truncated, from another base model or schema. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    /** The file or directory at fault. */
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
