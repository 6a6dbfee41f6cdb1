/**
 * The detection engine at work: every security event, once committed, goes through the rules
 * (detection/rule-engine.ts); a detection raises (or counts up) an alert, and a new alert runs its
 * rule's automatic response once. Every automatic action is audited (actor `system:detection`) and
 * recorded on the alert with its outcome; a person undoes it with the usual API (resume or start the
 * VM, re-enable the user).
 *
 * Rules: the shipped set, or the operator's file (RAMPART_DETECTION_RULES) instead, watched and
 * reloaded on change. A file with an error is refused with its line numbers in the log, and the rules
 * in force stay active.
 *
 * New alerts are also sent to the configured webhook and syslog collector (alert-export.ts).
 *
 * Events are processed one at a time in stream order. Alerts raise an `alert.raised` security event
 * themselves; the engine ignores `alert.*` kinds, so a rule can never feed on its own alerts.
 */
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import type { SecurityEvent } from '../../api/security.js';
import { newId } from '../../common/ids.js';
import type { Logger } from '../../common/logger.js';
import type { AuditLog } from '../audit/audit-log.js';
import {
  WebhookExporter,
  alertExportersFromEnv,
  alertWebhookSecret,
  exportAlert,
  type AlertExporter,
} from './alert-export.js';
import type { AlertResponse, AlertStore } from './alerts.js';
import { DetectionEngine, type Detection } from './detection/rule-engine.js';
import { SHIPPED_RULES_TEXT } from './detection/shipped-rules.js';
import type { SecurityEventLog } from './security-events.js';

/** What the automatic responses act on; each answers a short outcome for the alert. */
export interface DetectionResponder {
  pauseVm(vmId: string): Promise<string>;
  stopVm(vmId: string): Promise<string>;
  isolateVm(vmId: string): Promise<string>;
  /** `label`: the snapshot's name (a DNS label naming the alert). */
  snapshotVm(vmId: string, label: string): Promise<string>;
  disableUser(userId: string): Promise<string>;
  revokeToken(tokenId: string): Promise<string>;
}

export interface DetectionServiceDeps {
  events: SecurityEventLog;
  alerts: AlertStore;
  audit: AuditLog;
  log: Logger;
  responder: DetectionResponder;
  /** The operator's rule file (replaces the shipped rules); watched. */
  rulesFile?: string;
  /** Where new alerts are sent (webhook, syslog); default: as configured in the environment. */
  exporters?: readonly AlertExporter[];
  /** The key that signs webhook responses; default: RAMPART_ALERT_WEBHOOK_SECRET(_FILE). */
  webhookSecret?: string | null;
}

/** The value at a dotted path of an event (`detail.x.y`, `subjectId`, ...), as a string, or null. */
export function fieldOf(event: SecurityEvent, path: string): string | null {
  let value: unknown = event;
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object') return null;
    value = (value as Record<string, unknown>)[part];
  }
  return typeof value === 'string' || typeof value === 'number' ? String(value) : null;
}

export class DetectionService {
  private readonly engine: DetectionEngine;
  private queue: Promise<void> = Promise.resolve();
  private watcher: FSWatcher | null = null;
  private started = false;
  private readonly listener = (event: SecurityEvent) => {
    this.queue = this.queue
      .then(() => this.process(event))
      .catch((error: unknown) =>
        this.deps.log.error({ err: (error as Error).message, seq: event.seq }, 'detection failed'),
      );
  };

  private readonly exporters: readonly AlertExporter[];

  constructor(private readonly deps: DetectionServiceDeps) {
    this.engine = new DetectionEngine(SHIPPED_RULES_TEXT);
    this.exporters = deps.exporters ?? alertExportersFromEnv(process.env);
    if (deps.rulesFile !== undefined) this.reload();
  }

  /** Starts processing events (again); a no-op while started. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.deps.events.on('event', this.listener);
    if (this.deps.rulesFile !== undefined) {
      try {
        this.watcher = watch(this.deps.rulesFile, { persistent: false }, () => this.reload());
      } catch (error) {
        this.deps.log.error({ err: (error as Error).message }, 'cannot watch the detection rule file');
      }
    }
  }

  stop(): void {
    this.started = false;
    this.deps.events.off('event', this.listener);
    this.watcher?.close();
    this.watcher = null;
  }

  /** Resolves once every event handed over so far has been processed (tests, shutdown). */
  idle(): Promise<void> {
    return this.queue;
  }

  get ruleIds(): readonly string[] {
    return this.engine.ruleIds;
  }

  /** Loads the operator's rule file; on any error the rules in force stay. Answers the errors. */
  reload(): string[] {
    const file = this.deps.rulesFile;
    if (file === undefined) return [];
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      const message = `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`;
      this.deps.log.error({ file }, message);
      return [message];
    }
    const result = this.engine.replace(text);
    if (result.ok) {
      this.deps.log.info({ file, rules: this.engine.ruleIds.length }, 'detection rules loaded');
      return [];
    }
    const errors = result.errors.map((e) => `${file}:${e.line}:${e.column}: ${e.message}`);
    this.deps.log.error({ file, errors }, 'detection rule file refused; the rules in force stay');
    return errors;
  }

  private async process(event: SecurityEvent): Promise<void> {
    if (event.kind.startsWith('alert.')) return;
    for (const detection of this.engine.process(event)) await this.raise(detection, event);
  }

  private async raise(detection: Detection, event: SecurityEvent): Promise<void> {
    const action = detection.response.action;
    const target = detection.response.target ? fieldOf(event, detection.response.target) : null;
    const pending: AlertResponse = {
      action,
      target,
      outcome: action === 'alert' ? 'alert only' : 'pending',
    };
    const { alert, created } = await this.deps.alerts.raise(
      detection,
      { type: event.subjectType, id: event.subjectId },
      pending,
    );
    if (!created) return;
    this.deps.log.warn(
      { alertId: alert.id, rule: detection.ruleId, severity: detection.severity, group: detection.groupKey },
      'security alert',
    );
    // The response (a forensic snapshot waits for the VM to stop), the export and the alert.raised
    // event run in the background: detection goes on with the next events meanwhile.
    void this.finish(detection, alert.id, action, target, pending.outcome).catch((error: unknown) =>
      this.deps.log.error({ alertId: alert.id, err: (error as Error).message }, 'alert response failed'),
    );
  }

  private async finish(
    detection: Detection,
    alertId: string,
    action: string,
    target: string | null,
    initial: string,
  ): Promise<void> {
    let outcome = initial;
    if (action === 'webhook') {
      outcome = await this.callWebhook(detection, alertId).catch(
        (error: unknown) => `failed: ${(error as Error).message}`,
      );
      await this.deps.alerts.setResponse(alertId, { action, target, outcome });
    } else if (action !== 'alert') {
      outcome = await this.respond(action, target, `forensic-${alertId.slice(0, 8)}`).catch(
        (error: unknown) => `failed: ${(error as Error).message}`,
      );
      await this.deps.alerts.setResponse(alertId, { action, target, outcome });
      await this.deps.audit.append({
        actorId: null,
        actor: 'system:detection',
        tenantId: detection.tenantId,
        action: 'security:respond',
        target: target ?? alertId,
        outcome: outcome.startsWith('failed') || outcome.startsWith('not ') ? 'failure' : 'success',
        status: 0,
        source: 'detection',
        requestId: newId(),
        detail: `${detection.ruleId}: ${action} ${target ?? '-'}: ${outcome} (alert ${alertId})`,
      });
    }
    if (this.exporters.length > 0)
      await exportAlert(this.exporters, await this.deps.alerts.get(alertId), this.deps.log);
    await this.deps.events.record({
      kind: 'alert.raised',
      severity: detection.severity,
      tenantId: detection.tenantId,
      subjectType: 'alert',
      subjectId: alertId,
      summary: `${detection.ruleId}: ${detection.description}`,
      detail: { ruleId: detection.ruleId, groupKey: detection.groupKey, action, target, outcome },
    });
  }

  /**
   * The rule's own webhook: the alert, signed like the export (alert-export.ts) with the configured
   * secret (RAMPART_ALERT_WEBHOOK_SECRET or _FILE); without a secret nothing is sent.
   */
  private async callWebhook(detection: Detection, alertId: string): Promise<string> {
    const url = detection.response.url;
    if (url === null) return 'not done: the rule names no url';
    const secret =
      this.deps.webhookSecret !== undefined ? this.deps.webhookSecret : alertWebhookSecret(process.env);
    if (secret === null) return 'not done: no webhook secret configured (RAMPART_ALERT_WEBHOOK_SECRET)';
    const target = new URL(url);
    await new WebhookExporter(target, secret).send(await this.deps.alerts.get(alertId));
    return `delivered to ${target.origin}`;
  }

  private respond(action: string, target: string | null, label: string): Promise<string> {
    if (target === null) return Promise.resolve('not done: the event names no target');
    const responder = this.deps.responder;
    switch (action) {
      case 'pause-vm':
        return responder.pauseVm(target);
      case 'stop-vm':
        return responder.stopVm(target);
      case 'isolate-vm':
        return responder.isolateVm(target);
      case 'snapshot-vm':
        return responder.snapshotVm(target, label);
      case 'disable-user':
        return responder.disableUser(target);
      case 'revoke-token':
        return responder.revokeToken(target);
      default:
        return Promise.resolve(`not done: unknown action ${action}`);
    }
  }
}
