/** The score of a compliance run and which checks newly fail (pure, unit-tested in score.test.ts). */
import type { ComplianceCheckResult } from '../../../api/compliance.js';

export interface ComplianceScore {
  /** Percentage of passing checks, one decimal; 100 when there are no checks. */
  score: number;
  passed: number;
  failed: number;
}

export function scoreOf(results: readonly Pick<ComplianceCheckResult, 'passed'>[]): ComplianceScore {
  const passed = results.filter((r) => r.passed).length;
  const failed = results.length - passed;
  const score = results.length === 0 ? 100 : Math.round((passed * 1000) / results.length) / 10;
  return { score, passed, failed };
}

/**
 * The checks that fail now and passed (or were absent) in the previous run; every failing check when
 * there is no previous run.
 */
export function newlyFailing<T extends Pick<ComplianceCheckResult, 'id' | 'passed'>>(
  current: readonly T[],
  previous: readonly Pick<ComplianceCheckResult, 'id' | 'passed'>[] | null,
): T[] {
  const before = new Map((previous ?? []).map((r) => [r.id, r.passed]));
  return current.filter((r) => !r.passed && before.get(r.id) !== false);
}

/** RAMPART_COMPLIANCE_INTERVAL_SECONDS: a whole number of seconds, default 3600, 0 = no schedule. */
export function complianceIntervalSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const text = env['RAMPART_COMPLIANCE_INTERVAL_SECONDS'];
  if (text === undefined || text.trim() === '') return 3600;
  if (!/^[0-9]{1,9}$/.test(text.trim()))
    throw new Error(`RAMPART_COMPLIANCE_INTERVAL_SECONDS: expected a whole number of seconds, got "${text}"`);
  return Number(text.trim());
}
