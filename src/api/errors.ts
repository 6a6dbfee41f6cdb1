/**
 * The closed family of Rampart errors. Each has a stable code and an HTTP status; the server's single
 * error handler turns them into `{"error":{"code","message","requestId"}}`. Messages never carry secrets.
 */
export const ERROR_CODES = {
  RAMPART_INVALID_INPUT: 400,
  RAMPART_UNAUTHENTICATED: 401,
  RAMPART_FORBIDDEN: 403,
  RAMPART_QUOTA_EXCEEDED: 403,
  RAMPART_UNTRUSTED_IMAGE: 403,
  RAMPART_NOT_FOUND: 404,
  RAMPART_CONFLICT: 409,
  RAMPART_ILLEGAL_STATE: 409,
  RAMPART_PAYLOAD_TOO_LARGE: 413,
  /** A stored image failed its integrity check (tampered or unreadable ciphertext, key or cache). */
  RAMPART_IMAGE_INTEGRITY: 422,
  /** A backup's file or signed manifest does not verify (tampered, truncated or not the platform's). */
  RAMPART_BACKUP_INTEGRITY: 422,
  /** The image is quarantined (malware scan hit) or not ready (still importing, failed import). */
  RAMPART_IMAGE_UNAVAILABLE: 409,
  RAMPART_RATE_LIMITED: 429,
  RAMPART_INTERNAL: 500,
  RAMPART_HOST_UNAVAILABLE: 503,
  RAMPART_NO_CAPACITY: 503,
  RAMPART_AUDIT_UNAVAILABLE: 503,
  RAMPART_TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class RampartError extends Error {
  override name = 'RampartError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.status = ERROR_CODES[code];
  }
}

export class InvalidInputError extends RampartError {
  override name = 'InvalidInputError';
  constructor(message: string, details?: Record<string, unknown>) {
    super('RAMPART_INVALID_INPUT', message, details);
  }
}

export class UnauthenticatedError extends RampartError {
  override name = 'UnauthenticatedError';
  constructor(message = 'authentication required') {
    super('RAMPART_UNAUTHENTICATED', message);
  }
}

export class ForbiddenError extends RampartError {
  override name = 'ForbiddenError';
  constructor(message = 'permission denied') {
    super('RAMPART_FORBIDDEN', message);
  }
}

/** A create or resize would take the tenant over one of its quotas; nothing was changed. */
export class QuotaExceededError extends RampartError {
  override name = 'QuotaExceededError';
  constructor(message: string, details: Record<string, unknown>) {
    super('RAMPART_QUOTA_EXCEEDED', message, details);
  }
}

/** The tenant's image trust policy refuses the image (unsigned, untrusted signer, wrong digest). */
export class UntrustedImageError extends RampartError {
  override name = 'UntrustedImageError';
  constructor(message: string) {
    super('RAMPART_UNTRUSTED_IMAGE', message);
  }
}

/** A request body above its size limit. */
export class PayloadTooLargeError extends RampartError {
  override name = 'PayloadTooLargeError';
  constructor(message: string) {
    super('RAMPART_PAYLOAD_TOO_LARGE', message);
  }
}

/** The image cannot be used: quarantined, still importing, or its import failed. */
export class ImageUnavailableError extends RampartError {
  override name = 'ImageUnavailableError';
  constructor(message: string) {
    super('RAMPART_IMAGE_UNAVAILABLE', message);
  }
}

export class RateLimitedError extends RampartError {
  override name = 'RateLimitedError';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('RAMPART_RATE_LIMITED', message, { retryAfterSeconds });
  }
}

/**
 * Not found — also what another tenant's object answers. The message names only the kind, never the
 * reference, so a foreign object's answer is byte-for-byte the answer for one that never existed.
 */
export class NotFoundError extends RampartError {
  override name = 'NotFoundError';
  constructor(kind: string) {
    super('RAMPART_NOT_FOUND', `${kind} not found`);
  }
}

export class ConflictError extends RampartError {
  override name = 'ConflictError';
  constructor(message: string) {
    super('RAMPART_CONFLICT', message);
  }
}

/** An action that the VM state machine does not allow from the current state. */
export class IllegalStateError extends RampartError {
  override name = 'IllegalStateError';
  constructor(
    readonly action: string,
    readonly state: string,
  ) {
    super('RAMPART_ILLEGAL_STATE', `cannot ${action} a VM that is ${state}`, { action, state });
  }
}

export class HostUnavailableError extends RampartError {
  override name = 'HostUnavailableError';
  constructor(message: string) {
    super('RAMPART_HOST_UNAVAILABLE', message);
  }
}

export class NoCapacityError extends RampartError {
  override name = 'NoCapacityError';
  constructor(message: string) {
    super('RAMPART_NO_CAPACITY', message);
  }
}

/** The audit log cannot be written: mutating requests fail closed rather than go unrecorded. */
export class AuditUnavailableError extends RampartError {
  override name = 'AuditUnavailableError';
  constructor(message: string, cause?: unknown) {
    super('RAMPART_AUDIT_UNAVAILABLE', message);
    if (cause !== undefined) this.cause = cause;
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; details?: Record<string, unknown> };
}
