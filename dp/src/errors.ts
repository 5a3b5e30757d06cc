// The errors @tensorguard/dp throws. Callers branch on the class (or on `code`, which survives
// serialization across process boundaries); messages say what to change.

/** Closed set of error codes, one per subclass. */
export type DpErrorCode =
  'INVALID_ARGUMENT' | 'UNSUPPORTED_EVENT' | 'BUDGET_EXCEEDED' | 'CALIBRATION_FAILED' | 'INVALID_STATE';

/** Base class of every error thrown by @tensorguard/dp. */
export class DpError extends Error {
  readonly code: DpErrorCode;

  constructor(code: DpErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An argument is out of its domain; `field` names it (e.g. `samplingRate`, `--delta`). */
export class InvalidArgumentError extends DpError {
  readonly field: string;

  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, options);
    this.field = field;
  }
}

/** An accountant cannot compose this event (wrong neighbouring relation, unsupported kind). */
export class UnsupportedEventError extends DpError {
  readonly eventKind: string;

  constructor(eventKind: string, message: string) {
    super('UNSUPPORTED_EVENT', message);
    this.eventKind = eventKind;
  }
}

/**
 * Recording the round would take ε past the budget. Nothing was recorded: the ledger still holds
 * the state before the refused round. `epsilon` is what ε would have become, `budget` the limit,
 * `round` the refused round's number, `shard` the shard that would overspend (if any).
 */
export class BudgetExceededError extends DpError {
  readonly epsilon: number;
  readonly budget: number;
  readonly delta: number;
  readonly round: number;
  readonly shard: string | undefined;

  constructor(fields: {
    epsilon: number;
    budget: number;
    delta: number;
    round: number;
    shard?: string | undefined;
  }) {
    super(
      'BUDGET_EXCEEDED',
      `round ${fields.round} refused: ε would reach ${fields.epsilon.toPrecision(6)} at δ=${fields.delta}` +
        `${fields.shard === undefined ? '' : ` on shard "${fields.shard}"`}, over the budget ε=${fields.budget}; ` +
        'stop training here, or raise the budget / noise multiplier for a new job',
    );
    this.epsilon = fields.epsilon;
    this.budget = fields.budget;
    this.delta = fields.delta;
    this.round = fields.round;
    this.shard = fields.shard;
  }
}

/** A calibration search found no value meeting the target within its bracket. */
export class CalibrationError extends DpError {
  constructor(message: string) {
    super('CALIBRATION_FAILED', message);
  }
}

/** Serialized state (toJSON output) is malformed, from another version, or inconsistent. */
export class InvalidStateError extends DpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_STATE', message, options);
  }
}
