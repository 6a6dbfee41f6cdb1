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
 *
 * Across leaders and restarts (with `progress`): the seq of the last event processed is saved every
 * second and at stop. Whoever starts the engine next first fills its windows and cooldowns again from
 * the stored events up to that seq (as far back as a rule remembers: its longest window or cooldown),
 * with no alert and no response, then processes the events after it for real: those recorded while no
 * engine ran (between a leader's death and the takeover) are detected late rather than never, and a
 * brute force spread across a restart still adds up. An event processed twice (the last second before
 * a crash) counts up its open alert at worst; it never starts a response again.
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
import type { DetectionProgress } from './detection-progress.js';
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
  /** Where the engine keeps how far it got (resumed by the next engine); without it, from now on. */
  progress?: Pick<DetectionProgress, 'load' | 'save'>;
}

/** Events read per query while catching up. */
const CATCH_UP_PAGE = 1000;
/** How often the progress mark is saved while events flow. */
const PROGRESS_SAVE_MS = 1000;
/** Windows are filled from at most this far back, whatever a rule's window or cooldown. */
const MAX_MEMORY_MS = 24 * 3600_000;

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
  /** Bumped at every start and stop: queued work of an earlier run is dropped. */
  private generation = 0;
  /** The seq of the last event processed (events at or below it are not processed again). */
  private processedSeq = 0;
  private savedSeq = 0;
  private saveTimer: NodeJS.Timeout | null = null;
  private readonly listener = (event: SecurityEvent) => {
    const generation = this.generation;
    this.queue = this.queue
      .then(async () => {
        if (generation !== this.generation || event.seq <= this.processedSeq) return;
        await this.process(event);
        this.processedSeq = event.seq;
      })
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

  /** Starts processing events (again, from where the last engine got); a no-op while started. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const generation = ++this.generation;
    // Listening first, catching up next: an event committed meanwhile is read or heard (or both: it
    // is processed once, by seq).
    this.deps.events.on('event', this.listener);
    const progress = this.deps.progress;
    if (progress !== undefined) {
      this.queue = this.queue
        .then(() => this.catchUp(progress, generation))
        .catch((error: unknown) =>
          this.deps.log.error({ err: (error as Error).message }, 'detection catch-up failed'),
        );
      this.saveTimer = setInterval(() => void this.saveProgress(), PROGRESS_SAVE_MS);
      this.saveTimer.unref();
    }
    if (this.deps.rulesFile !== undefined) {
      try {
        this.watcher = watch(this.deps.rulesFile, { persistent: false }, () => this.reload());
      } catch (error) {
        this.deps.log.error({ err: (error as Error).message }, 'cannot watch the detection rule file');
      }
    }
  }

  /**
   * Stops processing events (queued ones are dropped: the next engine reads them again). Resolves once
   * the work in hand is done and the progress mark saved.
   */
  async stop(): Promise<void> {
    if (this.started) this.generation++;
    this.started = false;
    this.deps.events.off('event', this.listener);
    this.watcher?.close();
    this.watcher = null;
    if (this.saveTimer !== null) clearInterval(this.saveTimer);
    this.saveTimer = null;
    await this.queue;
    await this.saveProgress();
  }

  /** Saves the progress mark if it moved (a failure is logged: the next save tries again). */
  private async saveProgress(): Promise<void> {
    const seq = this.processedSeq;
    if (this.deps.progress === undefined || seq <= this.savedSeq) return;
    try {
      await this.deps.progress.save(seq);
      this.savedSeq = Math.max(this.savedSeq, seq);
    } catch (error) {
      this.deps.log.error({ err: (error as Error).message, seq }, 'detection progress not saved');
    }
  }

  /**
   * From the saved mark: the windows filled again from the events up to it (no alert, no response),
   * then the events after it processed for real, up to the end of the stream.
   */
  private async catchUp(
    progress: Pick<DetectionProgress, 'load' | 'save'>,
    generation: number,
  ): Promise<void> {
    const events = this.deps.events;
    const last = await events.lastSeq();
    const saved = await progress.load();
    // Never saved (a new installation, or an upgrade): from the end, with the windows filled.
    const mark = saved === null ? last : Math.min(saved, last);
    this.engine.reset();
    this.processedSeq = mark;
    this.savedSeq = saved ?? 0;
    const memoryMs = Math.min(this.engine.memoryMs, MAX_MEMORY_MS);
    let filled = 0;
    if (memoryMs > 0) {
      const first = await events.firstSeqSince(new Date(Date.now() - memoryMs).toISOString());
      if (first !== null && first <= mark) {
        filled = await this.readFrom(first - 1, mark, generation, (event) => {
          if (!event.kind.startsWith('alert.')) this.engine.process(event);
          return Promise.resolve();
        });
      }
    }
    const missed = await this.readFrom(mark, Number.MAX_SAFE_INTEGER, generation, async (event) => {
      await this.process(event);
      this.processedSeq = event.seq;
    });
    if (generation !== this.generation) return;
    this.deps.log.info(
      { from: mark, windowEvents: filled, missedEvents: missed, rules: this.engine.ruleIds.length },
      'detection resumed',
    );
  }

  /** Hands the stored events with afterSeq < seq <= throughSeq to `each`, in order; answers how many. */
  private async readFrom(
    afterSeq: number,
    throughSeq: number,
    generation: number,
    each: (event: SecurityEvent) => Promise<void>,
  ): Promise<number> {
    let after = afterSeq;
    let count = 0;
    while (after < throughSeq && generation === this.generation) {
      const page = await this.deps.events.list({ afterSeq: after, limit: CATCH_UP_PAGE });
      for (const event of page) {
        if (event.seq > throughSeq || generation !== this.generation) return count;
        await each(event);
        after = event.seq;
        count++;
      }
      if (page.length < CATCH_UP_PAGE) break;
    }
    return count;
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
