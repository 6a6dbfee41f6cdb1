/**
 * `rampart host ...`: the hypervisor hosts. Tables show 8-character ids, so `host show` also takes an
 * id prefix or a hostname and resolves it from the host list.
 */
import type { Command } from 'commander';
import type {
  Host,
  HostCertificateRenewed,
  HostEvacuation,
  HostRevoked,
  JoinTokenCreated,
} from '../../api/host.js';
import type { ApiClient } from '../api-client.js';
import type { CommandDeps } from '../context.js';
import { IncompleteError, LocalNotFoundError, UsageError } from '../errors.js';
import { isUuid, parseDurationSeconds, parseHostName, parseHostRef, parseOnOff } from '../validation.js';
import { hostDetails, hostTable } from '../views.js';

/** Finds a host by full id (one GET), or by unique id prefix or exact hostname (from the list). */
export async function findHost(client: ApiClient, ref: string): Promise<Host> {
  const id = ref.toLowerCase();
  if (isUuid(id)) return client.getHost(id);
  const { items } = await client.listHosts();
  const byName = items.filter((host) => host.hostname === ref);
  const matches = byName.length > 0 ? byName : items.filter((host) => host.id.startsWith(id));
  const [first, second] = matches;
  if (!first) throw new LocalNotFoundError(`host ${JSON.stringify(ref)} not found`);
  if (second) {
    throw new UsageError(
      `host ${JSON.stringify(ref)} is ambiguous (${matches.length} hosts match); give more of the id`,
    );
  }
  return first;
}

export function registerHostCommands(program: Command, deps: CommandDeps): void {
  const host = program
    .command('host')
    .description(
      'list and inspect hypervisor hosts, put them into maintenance, evacuate them, let remote hosts join, renew their certificates, revoke them',
    );

  host
    .command('list')
    .alias('ls')
    .description('list hosts with their capacity and what is allocated on them')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listHosts();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(hostTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  host
    .command('show')
    .description('show a host in detail')
    .argument('<id>', 'host id, unique id prefix (as in `host list`) or hostname', parseHostRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await findHost(ctx.client, ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(hostDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  host
    .command('maintenance')
    .description('put a host into maintenance (no new VMs; running ones stay) or take it out')
    .argument('<id>', 'host id, unique id prefix (as in `host list`) or hostname', parseHostRef)
    .argument('<on|off>', 'on: no new VMs are placed on the host', parseOnOff)
    .action(async (ref: string, on: boolean, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await findHost(ctx.client, ref);
      const updated = await ctx.client.request<Host>('PATCH', `/v1/hosts/${found.id}`, {
        body: { maintenance: on },
        tenant: false,
      });
      if (ctx.out.json) ctx.out.printJson(updated);
      else ctx.out.print(`host ${updated.hostname}: maintenance ${updated.maintenance ? 'on' : 'off'}`);
    });

  host
    .command('evacuate')
    .description(
      'move the stopped VMs of a host to other hosts (usually after `host maintenance HOST on`); running VMs stay and are listed with the reason (exit 4 when any VM stayed)',
    )
    .argument('<id>', 'host id, unique id prefix (as in `host list`) or hostname', parseHostRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await findHost(ctx.client, ref);
      const result = await ctx.client.request<HostEvacuation>('POST', `/v1/hosts/${found.id}/evacuate`, {
        tenant: false,
      });
      if (ctx.out.json) {
        ctx.out.printJson(result);
        return;
      }
      const lines = [
        `host ${found.hostname}: ${result.moved.length} moved, ${result.skipped.length} not moved`,
        ...result.moved.map((m) => `  moved    ${m.name} -> ${m.toHostname} (${m.toHostId.slice(0, 8)})`),
        ...result.skipped.map((s) => `  stayed   ${s.name}: ${s.reason}`),
      ];
      ctx.out.print(lines.join('\n'));
      // A VM that stayed needs the operator (exit 4, like any state conflict).
      if (result.skipped.length > 0)
        throw new IncompleteError(`${result.skipped.length} VM(s) stayed on host ${found.hostname}`);
    });

  host
    .command('join-token')
    .description(
      'create a one-time token for a remote host to join (`rampart agent join --server URL --token T` on that host); shown once',
    )
    .option('--name <name>', 'the host name the joining agent must give (default: any)', parseHostName)
    .option(
      '--ttl <duration>',
      'how long the token stays usable: 60s to 7d (default 1h)',
      parseDurationSeconds,
    )
    .action(async (opts: { name?: string; ttl?: number }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<JoinTokenCreated>('POST', '/v1/platform/hosts/join-tokens', {
        body: { ...(opts.name ? { name: opts.name } : {}), ...(opts.ttl ? { ttlSeconds: opts.ttl } : {}) },
        tenant: false,
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else
        ctx.out.print(
          [
            `join token for ${created.hostname ?? 'any host name'} (expires ${created.expiresAt}; shown only now):`,
            '',
            `  ${created.token}`,
            '',
            `On the host: RAMPART_JOIN_TOKEN=<token> rampart agent join --server <this server's URL>${created.hostname ? ` --name ${created.hostname}` : ''} --ca-fingerprint ${created.caFingerprint}`,
          ].join('\n'),
        );
    });

  host
    .command('renew-certificate')
    .description(
      "renew a connected remote host's certificate now (a new key made on the host; the older certificates are revoked once it reconnects with the new one; done by itself 30 days before expiry)",
    )
    .argument('<host>', 'host id or hostname of a host that joined', parseHostRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const renewed = await ctx.client.request<HostCertificateRenewed>(
        'POST',
        `/v1/platform/hosts/${encodeURIComponent(ref)}/certificate`,
        { tenant: false },
      );
      if (ctx.out.json) ctx.out.printJson(renewed);
      else
        ctx.out.print(
          `host ${renewed.hostname} (${renewed.hostId}): new certificate ${renewed.serial}, valid until ${renewed.notAfter}`,
        );
    });

  host
    .command('revoke')
    .description(
      "revoke a remote host's certificate: its connection is closed at once and it cannot connect again (it must join anew)",
    )
    .argument('<host>', 'host id or hostname of a host that joined', parseHostRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const revoked = await ctx.client.request<HostRevoked>(
        'POST',
        `/v1/platform/hosts/${encodeURIComponent(ref)}/revoke`,
        { tenant: false },
      );
      if (ctx.out.json) ctx.out.printJson(revoked);
      else
        ctx.out.print(
          `host ${revoked.hostname} (${revoked.hostId}): ${revoked.revoked} certificate(s) revoked`,
        );
    });
}
