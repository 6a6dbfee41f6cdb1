/**
 * `rampart alert`: the alerts the detection engine raised. `list` / `show` read them (the request
 * tenant's, or with --platform every tenant's and the platform-wide ones); `ack`, `resolve`, `reopen`,
 * `assign` and `note` move them through their lifecycle (security:respond; audited).
 */
import type { Command } from 'commander';
import type { AlertStatus, SecurityAlert } from '../../api/security.js';
import type { CommandDeps } from '../context.js';
import { formatKeyValue, formatTable, shortId, truncate } from '../output.js';
import { UsageError } from '../errors.js';
import { integerIn } from '../validation.js';

const STATUSES: readonly AlertStatus[] = ['open', 'acknowledged', 'resolved'];
const ALERT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function alertId(value: string): string {
  if (!ALERT_ID.test(value)) throw new UsageError(`not an alert id: ${value}`);
  return value;
}

export function alertTable(alerts: readonly SecurityAlert[], color: boolean): string {
  return formatTable(
    ['ID', 'SEVERITY', 'STATUS', 'RULE', 'GROUP', 'COUNT', 'RESPONSE', 'LAST'],
    alerts.map((a) => [
      shortId(a.id),
      a.severity,
      a.status,
      a.ruleId,
      truncate(a.groupKey || '-', 40),
      String(a.count),
      truncate(`${a.response.action}: ${a.response.outcome}`, 48),
      a.lastAt,
    ]),
    color,
  );
}

export function alertDetails(alert: SecurityAlert, color: boolean): string {
  return formatKeyValue(
    [
      ['ID', alert.id],
      ['Rule', alert.ruleId],
      ['Summary', alert.summary],
      ['Severity', alert.severity],
      ['Status', alert.status],
      ['Assignee', alert.assignee ?? '-'],
      ['Tenant', alert.tenantId ?? '(platform)'],
      ['Group', alert.groupKey || '-'],
      ['Subject', alert.subjectId ? `${alert.subjectType}/${alert.subjectId}` : alert.subjectType],
      ['Count', String(alert.count)],
      ['First / last', `${alert.firstAt} / ${alert.lastAt}`],
      ['Response', `${alert.response.action} ${alert.response.target ?? ''}: ${alert.response.outcome}`],
      ['Events', alert.eventSeqs.join(', ') || '-'],
      ['Notes', alert.notes.map((n) => `${n.at} ${n.author}: ${n.text}`).join('\n') || '-'],
    ],
    color,
  );
}

interface ListFlags {
  status?: AlertStatus;
  limit?: number;
  platform?: boolean;
}

export function registerAlertCommands(program: Command, deps: CommandDeps): void {
  const alert = program
    .command('alert')
    .description('security alerts raised by the detection rules: list, show, ack, resolve, assign, note');

  alert
    .command('list')
    .alias('ls')
    .description("alerts, newest first: the tenant's, or with --platform all (platform admins)")
    .option('--status <status>', `only this status (${STATUSES.join(', ')})`, (v: string) => {
      if (!(STATUSES as readonly string[]).includes(v))
        throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
      return v as AlertStatus;
    })
    .option('--limit <n>', 'at most this many (1-1000; default 100)', integerIn(1, 1000))
    .option('--platform', 'every tenant and the platform-wide alerts (GET /v1/platform/security/alerts)')
    .action(async (opts: ListFlags, cmd: Command) => {
      const ctx = deps.context(cmd);
      const path = opts.platform ? '/v1/platform/security/alerts' : '/v1/security/alerts';
      const list = await ctx.client.request<{ items: SecurityAlert[] }>('GET', path, {
        query: { status: opts.status, limit: opts.limit === undefined ? undefined : String(opts.limit) },
      });
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(alertTable(list.items, ctx.out.color));
    });

  alert
    .command('show')
    .description('one alert with its response, events and notes')
    .argument('<id>', 'alert id', alertId)
    .option('--platform', 'through the platform route (any tenant, platform-wide alerts)')
    .action(async (id: string, opts: { platform?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = opts.platform
        ? (
            await ctx.client.request<{ items: SecurityAlert[] }>('GET', '/v1/platform/security/alerts', {
              query: { limit: '1000' },
            })
          ).items.find((a) => a.id === id)
        : await ctx.client.request<SecurityAlert>('GET', `/v1/security/alerts/${id}`);
      if (!found) throw new UsageError(`no alert ${id}`);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(alertDetails(found, ctx.out.color));
    });

  const update = (
    name: string,
    description: string,
    body: (arg?: string) => Record<string, unknown>,
    arg?: string,
  ) => {
    const command = alert.command(name).description(description).argument('<id>', 'alert id', alertId);
    if (arg) command.argument(`<${arg}>`, arg);
    command
      .option('--note <text>', 'add a note with the change')
      .option('--platform', 'through the platform route (platform-wide alerts; platform admins)')
      .action(async (id: string, ...rest: unknown[]) => {
        const value = arg ? (rest[0] as string) : undefined;
        const opts = (arg ? rest[1] : rest[0]) as { note?: string; platform?: boolean };
        const cmd = rest[rest.length - 1] as Command;
        const ctx = deps.context(cmd);
        const path = `${opts.platform ? '/v1/platform/security/alerts' : '/v1/security/alerts'}/${id}`;
        const payload = { ...body(value), ...(opts.note !== undefined ? { note: opts.note } : {}) };
        const updated = await ctx.client.request<SecurityAlert>('PATCH', path, {
          body: payload,
          ...(opts.platform ? { tenant: false } : {}),
        });
        if (ctx.out.json) ctx.out.printJson(updated);
        else
          ctx.out.progress(
            `alert ${shortId(updated.id)}: ${updated.status}${updated.assignee ? ` (${updated.assignee})` : ''}`,
          );
      });
  };
  update('ack', 'acknowledge an alert (someone is on it)', () => ({ status: 'acknowledged' }));
  update('resolve', 'resolve an alert', () => ({ status: 'resolved' }));
  update('reopen', 'reopen a resolved alert', () => ({ status: 'open' }));
  update('assign', 'assign an alert to a user (name)', (user) => ({ assignee: user }), 'user');
  update('note', 'add a note to an alert', (text) => ({ note: text }), 'text');
}
