/**
 * Security alerts: what the detection engine raises, kept in security_alerts (migration 0023). One
 * alert per rule and group while it is not resolved: a rule firing again for the same group counts up
 * (`count`, `lastAt`, the latest event seqs) instead of piling up rows. People acknowledge, resolve or
 * reopen alerts, assign them and add notes; every change is audited by the route that makes it.
 */
import type { AlertStatus, SecurityAlert, SecurityAlertUpdate } from '../../api/security.js';
import { NotFoundError } from '../../api/errors.js';
import { isUuid, newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';
import type { SecurityAlertsTable } from '../store/schema.js';
import type { Detection } from './detection/rule-engine.js';

/** Event seqs kept per alert. */
const MAX_EVENT_SEQS = 50;

export interface AlertResponse {
  action: string;
  target: string | null;
  outcome: string;
}

export interface RaisedAlert {
  alert: SecurityAlert;
  /** False when an open alert of the same rule and group was counted up. */
  created: boolean;
}

function toApi(row: SecurityAlertsTable): SecurityAlert {
  return {
    id: row.id,
    ruleId: row.ruleId,
    severity: row.severity,
    status: row.status,
    tenantId: row.tenantId,
    groupKey: row.groupKey,
    summary: row.summary,
    subjectType: row.subjectType,
    subjectId: row.subjectId,
    eventSeqs: JSON.parse(row.eventSeqs) as number[],
    count: row.count,
    firstAt: row.firstAt,
    lastAt: row.lastAt,
    response: JSON.parse(row.response) as AlertResponse,
    assignee: row.assignee,
    notes: JSON.parse(row.notes) as SecurityAlert['notes'],
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export class AlertStore {
  constructor(private readonly db: Db) {}

  /**
   * Records a detection: counts up the rule's unresolved alert for the group, or opens a new one.
   * `subject` is what the completing event was about.
   */
  async raise(
    detection: Detection,
    subject: { type: string; id: string | null },
    response: AlertResponse,
  ): Promise<RaisedAlert> {
    const now = nowIso();
    return this.db.transaction().execute(async (trx) => {
      const open = await trx
        .selectFrom('securityAlerts')
        .selectAll()
        .where('ruleId', '=', detection.ruleId)
        .where('groupKey', '=', detection.groupKey)
        .where('status', '!=', 'resolved')
        .executeTakeFirst();
      if (open) {
        const seqs = [...(JSON.parse(open.eventSeqs) as number[]), ...detection.events];
        const patch = {
          count: open.count + detection.count,
          lastAt: detection.lastAt,
          eventSeqs: JSON.stringify([...new Set(seqs)].slice(-MAX_EVENT_SEQS)),
          updatedAt: now,
        };
        await trx.updateTable('securityAlerts').set(patch).where('id', '=', open.id).execute();
        return { alert: toApi({ ...open, ...patch }), created: false };
      }
      const row: SecurityAlertsTable = {
        id: newId(),
        tenantId: detection.tenantId,
        ruleId: detection.ruleId,
        severity: detection.severity,
        status: 'open',
        groupKey: detection.groupKey,
        summary: detection.description,
        subjectType: subject.type,
        subjectId: subject.id,
        eventSeqs: JSON.stringify(detection.events.slice(-MAX_EVENT_SEQS)),
        count: detection.count,
        firstAt: detection.firstAt,
        lastAt: detection.lastAt,
        response: JSON.stringify(response),
        assignee: null,
        notes: '[]',
        createdAt: now,
        updatedAt: now,
      };
      await trx.insertInto('securityAlerts').values(row).execute();
      return { alert: toApi(row), created: true };
    });
  }

  /** Records what the automatic response did (after it ran). */
  async setResponse(id: string, response: AlertResponse): Promise<void> {
    await this.db
      .updateTable('securityAlerts')
      .set({ response: JSON.stringify(response), updatedAt: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  /** Newest first; `tenantId` undefined: every tenant and the platform (platform readers). */
  async list(filter: { tenantId?: string; status?: AlertStatus; limit: number }): Promise<SecurityAlert[]> {
    let query = this.db.selectFrom('securityAlerts').selectAll();
    if (filter.tenantId !== undefined) query = query.where('tenantId', '=', filter.tenantId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    const rows = await query.orderBy('createdAt', 'desc').orderBy('id').limit(filter.limit).execute();
    return rows.map(toApi);
  }

  /** One alert; another tenant's answers like an absent one. */
  async get(id: string, tenantId?: string): Promise<SecurityAlert> {
    return toApi(await this.find(id, tenantId));
  }

  async update(
    id: string,
    change: SecurityAlertUpdate,
    author: string,
    tenantId?: string,
  ): Promise<SecurityAlert> {
    const row = await this.find(id, tenantId);
    const now = nowIso();
    const notes = JSON.parse(row.notes) as SecurityAlert['notes'];
    if (change.note !== undefined) notes.push({ at: now, author, text: change.note });
    const patch: Partial<SecurityAlertsTable> = { notes: JSON.stringify(notes), updatedAt: now };
    if (change.status !== undefined) patch.status = change.status;
    if (change.assignee !== undefined) patch.assignee = change.assignee;
    await this.db.updateTable('securityAlerts').set(patch).where('id', '=', row.id).execute();
    return toApi({ ...row, ...patch });
  }

  /** Open (and acknowledged) alerts by severity, for /metrics. */
  async openBySeverity(): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('securityAlerts')
      .select(['severity', (eb) => eb.fn.countAll<number>().as('n')])
      .where('status', '!=', 'resolved')
      .groupBy('severity')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.severity, Number(r.n)]));
  }

  private async find(id: string, tenantId?: string): Promise<SecurityAlertsTable> {
    if (!isUuid(id)) throw new NotFoundError('alert');
    let query = this.db.selectFrom('securityAlerts').selectAll().where('id', '=', id);
    if (tenantId !== undefined) query = query.where('tenantId', '=', tenantId);
    const row = await query.executeTakeFirst();
    if (!row) throw new NotFoundError('alert');
    return row;
  }
}
