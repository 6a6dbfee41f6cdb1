/**
 * `rampart security events`: read the security event stream, newest first: the request tenant's
 * (GET /v1/security/events, needs security:read), or with --platform every tenant's and the
 * platform-wide events (GET /v1/platform/security/events); there the global --tenant narrows to one tenant.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { SecurityEvent, SecurityEventList } from '../../api/security.js';
import type { CommandDeps } from '../context.js';
import { formatTable, shortId, truncate, type Cell } from '../output.js';
import { integerIn } from '../validation.js';

/** The largest page the server answers. */
export const SECURITY_EVENTS_LIMIT_MAX = 1000;
const KIND_RE = /^[a-z0-9][a-z0-9._:-]{0,63}$/;

function parseKind(value: string): string {
  if (!KIND_RE.test(value))
    throw new InvalidArgumentError('Expected an event kind such as image.quarantined.');
  return value;
}

interface EventsFlags {
  kind?: string;
  after?: number;
  limit?: number;
  platform?: boolean;
}

const SEVERITY_COLOR: Record<string, Cell> = {
  info: 'info',
  low: 'low',
  medium: { text: 'medium', color: 'yellow' },
  high: { text: 'high', color: 'red' },
  critical: { text: 'critical', color: 'red' },
};

export function securityEventTable(
  events: readonly SecurityEvent[],
  options: { color: boolean; tenants: boolean },
): string {
  const headers = ['SEQ', 'TIME', 'SEVERITY', 'KIND', 'SUBJECT', 'SUMMARY'];
  if (options.tenants) headers.push('TENANT');
  return formatTable(
    headers,
    events.map((event) => {
      const row: Cell[] = [
        String(event.seq),
        event.occurredAt,
        SEVERITY_COLOR[event.severity] ?? event.severity,
        event.kind,
        event.subjectId ? `${event.subjectType}/${shortId(event.subjectId)}` : event.subjectType,
        truncate(event.summary, 72),
      ];
      if (options.tenants) row.push(event.tenantId ? shortId(event.tenantId) : '(platform)');
      return row;
    }),
    options.color,
  );
}

export function registerSecurityCommands(program: Command, deps: CommandDeps): void {
  const security = program.command('security').description('read the security event stream');

  security
    .command('events')
    .description(
      "list security events, newest first: the tenant's (--tenant), or with --platform every tenant's " +
        'and the platform-wide ones (platform admins; there --tenant narrows to one tenant)',
    )
    .option('--kind <kind>', 'only this kind, e.g. image.quarantined', parseKind)
    .option(
      '--after <seq>',
      'the events after this sequence number, oldest first (to tail the stream)',
      integerIn(0, 999_999_999_999_999),
    )
    .option(
      '--limit <n>',
      `at most this many events (1-${SECURITY_EVENTS_LIMIT_MAX}; default 100)`,
      integerIn(1, SECURITY_EVENTS_LIMIT_MAX),
    )
    .option('--platform', 'all tenants (GET /v1/platform/security/events) instead of the request tenant')
    .action(async (opts: EventsFlags, cmd: Command) => {
      const ctx = deps.context(cmd);
      const platform = opts.platform === true;
      const path = platform ? '/v1/platform/security/events' : '/v1/security/events';
      // The client adds the global --tenant as ?tenant= (the request tenant, or the platform filter).
      const list = await ctx.client.request<SecurityEventList>('GET', path, {
        query: {
          kind: opts.kind,
          after: opts.after === undefined ? undefined : String(opts.after),
          limit: opts.limit === undefined ? undefined : String(opts.limit),
        },
      });
      if (ctx.out.json) {
        ctx.out.printJson(list);
        return;
      }
      ctx.out.print(securityEventTable(list.items, { color: ctx.out.color, tenants: platform }));
    });
}
