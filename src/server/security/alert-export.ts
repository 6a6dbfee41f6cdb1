/**
 * Sends new alerts out of Rampart, to what operators already watch:
 *
 * - A webhook (RAMPART_ALERT_WEBHOOK_URL, http or https): the alert as JSON in a POST, signed with
 *   HMAC-SHA256 under a shared secret (RAMPART_ALERT_WEBHOOK_SECRET_FILE, a file only the server reads;
 *   or RAMPART_ALERT_WEBHOOK_SECRET): `X-Rampart-Timestamp: <unix seconds>` and
 *   `X-Rampart-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>` (the receiver recomputes
 *   it and refuses old timestamps: no replay). 5 s timeout, 3 attempts with backoff. The secret is never
 *   logged.
 * - Syslog (RAMPART_ALERT_SYSLOG=udp://host:port or tcp://host:port): one RFC 5424 message per alert,
 *   facility authpriv (10), severity from the alert (critical 2, high 3, medium 4, low 5, info 6),
 *   APP-NAME `rampart`, MSGID `alert`, structured data `[rampart@32473 alertId= ruleId= tenant=
 *   severity= action=]`; over TCP framed by octet counting (RFC 6587).
 */
import { createHmac } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import type { SecurityAlert } from '../../api/security.js';
import type { Logger } from '../../common/logger.js';

export interface AlertExporter {
  readonly name: string;
  send(alert: SecurityAlert): Promise<void>;
}

const SYSLOG_SEVERITY: Record<string, number> = { critical: 2, high: 3, medium: 4, low: 5, info: 6 };
const AUTHPRIV = 10;
/** Private enterprise number placeholder for Rampart's structured data (documentation range). */
const SD_ID = 'rampart@32473';

/** The signature header value a receiver expects for `body` sent at `timestamp`. */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class WebhookExporter implements AlertExporter {
  readonly name = 'webhook';
  constructor(
    private readonly url: URL,
    private readonly secret: string,
    private readonly options: { timeoutMs?: number; attempts?: number; now?: () => number } = {},
  ) {
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new Error('the alert webhook must be an http(s) URL');
    if (secret.length < 16) throw new Error('the alert webhook secret must have at least 16 characters');
  }

  async send(alert: SecurityAlert): Promise<void> {
    const body = JSON.stringify({ type: 'rampart.alert', alert });
    const attempts = this.options.attempts ?? 3;
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const timestamp = String(Math.floor((this.options.now ?? Date.now)() / 1000));
      try {
        const response = await fetch(this.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-rampart-timestamp': timestamp,
            'x-rampart-signature': webhookSignature(this.secret, timestamp, body),
          },
          body,
          redirect: 'error',
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
        });
        if (response.ok) return;
        last = new Error(`the webhook answered ${response.status}`);
      } catch (error) {
        last = error;
      }
      if (attempt < attempts) await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
    }
    throw last instanceof Error ? last : new Error(String(last));
  }
}

/** Structured-data parameter value escaping (RFC 5424 6.3.3): `"`, `\` and `]`. */
function sdValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** One RFC 5424 message for an alert. */
export function syslogMessage(alert: SecurityAlert, host = hostname(), pid = process.pid): string {
  const pri = AUTHPRIV * 8 + (SYSLOG_SEVERITY[alert.severity] ?? 4);
  const sd =
    `[${SD_ID} alertId="${sdValue(alert.id)}" ruleId="${sdValue(alert.ruleId)}" ` +
    `tenant="${sdValue(alert.tenantId ?? '-')}" severity="${alert.severity}" action="${sdValue(alert.response.action)}"]`;
  const safeHost = host.replace(/[^\x21-\x7e]/g, '').slice(0, 255) || '-';
  const message = `${alert.ruleId}: ${alert.summary} (group ${alert.groupKey || '-'}, ${alert.response.outcome})`;
  return `<${pri}>1 ${alert.createdAt} ${safeHost} rampart ${pid} alert ${sd} ${message.replace(/[\r\n]+/g, ' ')}`;
}

export class SyslogExporter implements AlertExporter {
  readonly name = 'syslog';
  constructor(
    private readonly transport: 'udp' | 'tcp',
    private readonly host: string,
    private readonly port: number,
  ) {}

  send(alert: SecurityAlert): Promise<void> {
    const message = Buffer.from(syslogMessage(alert), 'utf8');
    if (this.transport === 'udp') {
      return new Promise((resolve, reject) => {
        const socket = createSocket(this.host.includes(':') ? 'udp6' : 'udp4');
        socket.send(message, this.port, this.host, (error) => {
          socket.close();
          if (error) reject(error);
          else resolve();
        });
      });
    }
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port, timeout: 5_000 });
      socket.once('connect', () => {
        socket.end(Buffer.concat([Buffer.from(`${message.length} `), message]), () => resolve());
      });
      socket.once('timeout', () => socket.destroy(new Error('syslog connection timed out')));
      socket.once('error', reject);
    });
  }
}

/** The webhook signing secret (RAMPART_ALERT_WEBHOOK_SECRET_FILE, else _SECRET), or null if unset. */
export function alertWebhookSecret(env: NodeJS.ProcessEnv): string | null {
  const secretFile = env['RAMPART_ALERT_WEBHOOK_SECRET_FILE'];
  if (secretFile) return readFileSync(secretFile, 'utf8').trim();
  return env['RAMPART_ALERT_WEBHOOK_SECRET'] || null;
}

/** The exporters configured in the environment (none by default). Throws on a bad setting. */
export function alertExportersFromEnv(env: NodeJS.ProcessEnv): AlertExporter[] {
  const exporters: AlertExporter[] = [];
  const url = env['RAMPART_ALERT_WEBHOOK_URL'];
  if (url) exporters.push(new WebhookExporter(new URL(url), alertWebhookSecret(env) ?? ''));
  const syslog = env['RAMPART_ALERT_SYSLOG'];
  if (syslog) {
    const match = /^(udp|tcp):\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(syslog);
    if (!match || Number(match[3]) < 1 || Number(match[3]) > 65_535)
      throw new Error('RAMPART_ALERT_SYSLOG must be udp://host:port or tcp://host:port');
    exporters.push(
      new SyslogExporter(match[1] as 'udp' | 'tcp', match[2]!.replace(/^\[|\]$/g, ''), Number(match[3])),
    );
  }
  return exporters;
}

/** Sends an alert to every exporter; a failure is logged (never the secret), not thrown. */
export async function exportAlert(
  exporters: readonly AlertExporter[],
  alert: SecurityAlert,
  log: Logger,
): Promise<void> {
  await Promise.all(
    exporters.map((exporter) =>
      exporter
        .send(alert)
        .catch((error: unknown) =>
          log.error(
            { exporter: exporter.name, alertId: alert.id, err: (error as Error).message },
            'alert export failed',
          ),
        ),
    ),
  );
}
