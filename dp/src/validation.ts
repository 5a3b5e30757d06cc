// Argument checks shared by the public functions; each throws InvalidArgumentError naming the field.
import { InvalidArgumentError } from './errors.js';

export function requireProbability(field: string, value: number, allowZero = true): void {
  if (!(Number.isFinite(value) && value <= 1 && (allowZero ? value >= 0 : value > 0))) {
    throw new InvalidArgumentError(
      field,
      `${field} must be a number in ${allowZero ? '[0, 1]' : '(0, 1]'}, got ${value}`,
    );
  }
}

export function requireNonNegative(field: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new InvalidArgumentError(field, `${field} must be a finite number >= 0, got ${value}`);
  }
}

export function requirePositive(field: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0)) {
    throw new InvalidArgumentError(field, `${field} must be a finite number > 0, got ${value}`);
  }
}

export function requireCount(field: string, value: number, min = 0): void {
  if (!(Number.isSafeInteger(value) && value >= min)) {
    throw new InvalidArgumentError(field, `${field} must be an integer >= ${min}, got ${value}`);
  }
}

export function requireDelta(field: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0 && value < 1)) {
    throw new InvalidArgumentError(field, `${field} must be in (0, 1), got ${value}`);
  }
}
