/** Test helpers: synthetic security events for the detection tests and benchmark. */
import type { DetectionEvent } from './rule-loader.js';

let nextSeq = 1;

export interface EventOptions {
  severity?: string;
  tenantId?: string | null;
  subjectType?: string;
  subjectId?: string | null;
  /** Event time in seconds from T0 (sets occurredAt). */
  at?: number;
}

/** 2026-01-01T00:00:00Z */
export const T0 = Date.UTC(2026, 0, 1);

export function ev(
  kind: string,
  detail: Record<string, unknown> = {},
  options: EventOptions = {},
): DetectionEvent {
  const vmId = typeof detail.vmId === 'string' ? detail.vmId : undefined;
  return {
    seq: nextSeq++,
    occurredAt: new Date(T0 + (options.at ?? 0) * 1000).toISOString(),
    kind,
    severity: options.severity ?? 'info',
    tenantId: options.tenantId === undefined ? 'tenant-1' : options.tenantId,
    subjectType: options.subjectType ?? (vmId ? 'vm' : 'user'),
    subjectId: options.subjectId === undefined ? (vmId ?? null) : options.subjectId,
    summary: kind,
    detail,
  };
}

/** The time (ms) of `seconds` after T0. */
export const at = (seconds: number): number => T0 + seconds * 1000;
