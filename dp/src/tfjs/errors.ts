// Errors thrown by the per-sample clipping engine. One base class so callers can tell engine
// refusals from TensorFlow failures; each subclass carries the field that identifies the culprit.

export class ClippingEngineError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClippingEngineError';
  }
}

/**
 * A layer owns trainable parameters but the engine has no per-sample gradient rule for its kind.
 * Thrown before any computation, so no partial step is taken.
 */
export class UnsupportedLayerError extends ClippingEngineError {
  constructor(
    readonly layerName: string,
    readonly layerKind: string,
    supported: readonly string[],
  ) {
    super(
      `layer "${layerName}" (kind "${layerKind}") has trainable parameters but no per-sample gradient rule; ` +
        `supported kinds: ${supported.join(', ')}. Freeze its parameters (trainable: false), or build it from ` +
        'supported layers, or add a rule (see dp/src/tfjs/README.md, "Adding a layer").',
    );
    this.name = 'UnsupportedLayerError';
  }
}

/** Options or inputs that the engine cannot use (a bad clip norm, mismatched batch sizes, ...). */
export class InvalidClippingOptionsError extends ClippingEngineError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InvalidClippingOptionsError';
  }
}
