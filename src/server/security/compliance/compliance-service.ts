/**
 * The compliance benchmark: runs every check (on a schedule and on demand), keeps each run in
 * compliance_runs (migration 0025) with its score, and raises an alert for every check that newly fails
 * (failed now, passed or absent in the previous run).
 *
 * Runs are serialised: a run asked for while one is in progress starts after it.
 */
import type { AuditVerification } from '../../../api/audit.js';
import type {
  ComplianceCheckResult,
  ComplianceReport,
  ComplianceRunSummary,
  ComplianceTrigger,
} from '../../../api/compliance.js';
import { newId } from '../../../common/ids.js';
import type { Logger } from '../../../common/logger.js';
import { nowIso } from '../../store/database.js';
import type { ComplianceRunsTable } from '../../store/schema.js';
import type { AlertStore } from '../alerts.js';
import type { Detection } from '../detection/rule-engine.js';
import { COMPLIANCE_CHECKS, runChecks, type ComplianceCheck, type ComplianceDeps } from './checks.js';
import { newlyFailing, scoreOf } from './score.js';

export const HISTORY_LIMIT_DEFAULT = 100;
export const HISTORY_LIMIT_MAX = 1000;

export interface ComplianceServiceOptions {
  /** The checks' view of the platform; auditVerification and now are provided by the service. */
  deps: Omit<ComplianceDeps, 'auditVerification' | 'now'>;
  verifyAudit(): Promise<AuditVerification>;
  alerts: Pick<AlertStore, 'raise'>;
  log: Logger;
  checks?: readonly ComplianceCheck[];
  now?: () => number;
}

function toReport(row: ComplianceRunsTable): ComplianceReport {
  return {
    id: row.id,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    trigger: row.trigger,
    score: row.score,
    passed: row.passed,
    failed: row.failed,
    results: JSON.parse(row.results) as ComplianceCheckResult[],
  };
}

export class ComplianceService {
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** The last audit chain verification (a success is reused while recent). */
  private lastVerification: { atMs: number; at: string; result: AuditVerification } | null = null;
  private readonly now: () => number;

  constructor(private readonly options: ComplianceServiceOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Runs every `intervalSeconds` (0: never); the timer does not keep the process alive. */
  start(intervalSeconds: number): void {
    this.stop();
    if (intervalSeconds <= 0) return;
    this.timer = setInterval(() => {
      this.run('schedule').catch((error: unknown) =>
        this.options.log.error({ err: (error as Error).message }, 'scheduled compliance run failed'),
      );
    }, intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Runs the benchmark now (after any run in progress); answers the report. */
  run(trigger: ComplianceTrigger): Promise<ComplianceReport> {
    const next = this.chain.then(
      () => this.runOnce(trigger),
      () => this.runOnce(trigger),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The latest run, or null when the benchmark never ran. */
  async latest(): Promise<ComplianceReport | null> {
    const row = await this.options.deps.db
      .selectFrom('complianceRuns')
      .selectAll()
      .orderBy('startedAt', 'desc')
      .orderBy('finishedAt', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? toReport(row) : null;
  }

  /** Score history, newest first. */
  async history(limit: number): Promise<ComplianceRunSummary[]> {
    return this.options.deps.db
      .selectFrom('complianceRuns')
      .select(['id', 'startedAt', 'finishedAt', 'trigger', 'score', 'passed', 'failed'])
      .orderBy('startedAt', 'desc')
      .orderBy('finishedAt', 'desc')
      .limit(limit)
      .execute();
  }

  private async auditVerification(maxAgeMs: number): Promise<{ at: string; result: AuditVerification }> {
    const last = this.lastVerification;
    if (last && last.result.ok && this.now() - last.atMs < maxAgeMs) return last;
    const result = await this.options.verifyAudit();
    const atMs = this.now();
    this.lastVerification = { atMs, at: new Date(atMs).toISOString(), result };
    return this.lastVerification;
  }

  private async runOnce(trigger: ComplianceTrigger): Promise<ComplianceReport> {
    const { db } = this.options.deps;
    const previous = await this.latest();
    const startedAt = nowIso();
    const results = await runChecks(
      {
        ...this.options.deps,
        auditVerification: (maxAgeMs) => this.auditVerification(maxAgeMs),
        now: this.now,
      },
      this.options.checks ?? COMPLIANCE_CHECKS,
    );
    const row: ComplianceRunsTable = {
      id: newId(),
      startedAt,
      finishedAt: nowIso(),
      trigger,
      ...scoreOf(results),
      results: JSON.stringify(results),
    };
    await db.insertInto('complianceRuns').values(row).execute();
    const report = toReport(row);
    for (const check of newlyFailing(results, previous ? previous.results : null)) {
      await this.alert(report, check).catch((error: unknown) =>
        this.options.log.error(
          { err: (error as Error).message, check: check.id },
          'compliance alert could not be raised',
        ),
      );
    }
    this.options.log.info(
      { runId: row.id, trigger, score: row.score, failed: results.filter((r) => !r.passed).map((r) => r.id) },
      'compliance run finished',
    );
    return report;
  }

  private async alert(report: ComplianceReport, check: ComplianceCheckResult): Promise<void> {
    const detection: Detection = {
      ruleId: `compliance-${check.id}`,
      severity: check.severity,
      description: `${check.title}: ${check.evidence}`,
      response: { action: 'alert', target: null, targetId: null, allow: [], url: null },
      groupKey: check.id,
      tenantId: null,
      events: [],
      firstAt: report.finishedAt,
      lastAt: report.finishedAt,
      count: 1,
    };
    await this.options.alerts.raise(
      detection,
      { type: 'compliance', id: report.id },
      { action: 'alert', target: null, outcome: 'alert only' },
    );
  }
}
