/** Identifiers: random UUIDs for objects, and the validation every id passes before reaching a path. */
import { randomUUID } from 'node:crypto';

export const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
const UUID_RE = new RegExp(UUID_PATTERN);

export function newId(): string {
  return randomUUID();
}

export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

/** Throws unless `value` is a lowercase UUID: ids are the only names that become file names. */
export function assertSafeId(value: string): string {
  if (!isUuid(value)) throw new Error(`not a valid id: ${JSON.stringify(value.slice(0, 64))}`);
  return value;
}
