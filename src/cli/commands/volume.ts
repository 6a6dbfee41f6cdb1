/**
 * `rampart volume list|create|show|resize|delete|attach|detach`: a tenant's LUKS-encrypted volumes.
 * Attach and detach work on a stopped VM; the volume shows up as the VM's next virtio disk at its
 * next start. Delete erases the volume's file on its host (zeros, then removed).
 */
import type { Command } from 'commander';
import { VOLUME_SIZE, type Volume } from '../../api/volume.js';
import type { CommandDeps } from '../context.js';
import { formatAge, formatKeyValue, formatTable, shortId } from '../output.js';
import { integerIn, parseName, parseRef } from '../validation.js';

export function volumeTable(volumes: readonly Volume[], nowMs: number, color = false): string {
  return formatTable(
    ['NAME', 'SIZE', 'STATUS', 'VM', 'HOST', 'AGE'],
    volumes.map((v) => [
      v.name,
      `${v.sizeGiB} GiB`,
      v.status,
      v.vm?.name ?? '-',
      v.hostId ? shortId(v.hostId) : '-',
      formatAge(v.createdAt, nowMs),
    ]),
    color,
  );
}

export function volumeDetails(volume: Volume, color = false): string {
  return formatKeyValue(
    [
      ['Name', volume.name],
      ['ID', volume.id],
      ['Size', `${volume.sizeGiB} GiB`],
      ['Status', volume.status],
      ['VM', volume.vm ? `${volume.vm.name} (${volume.vm.id})` : '-'],
      ['Host', volume.hostId ?? '- (created on the host of the first VM it is attached to)'],
      ['Encryption', `${volume.encryption} (a key of its own, wrapped by the tenant key)`],
      ['Created', volume.createdAt],
    ],
    color,
  );
}

const size = integerIn(VOLUME_SIZE.minimum, VOLUME_SIZE.maximum);
const path = (ref: string) => `/v1/volumes/${encodeURIComponent(ref)}`;

export function registerVolumeCommands(program: Command, deps: CommandDeps): void {
  const volume = program
    .command('volume')
    .description('encrypted volumes: create, attach to VMs, grow, delete');

  volume
    .command('list')
    .alias('ls')
    .description("list the tenant's volumes")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: Volume[] }>('GET', '/v1/volumes');
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(volumeTable(list.items, ctx.now(), ctx.out.color));
    });

  volume
    .command('create')
    .description('create a volume (counted in the volumes and volumeGiB quotas)')
    .argument('<name>', 'volume name (a DNS label)', parseName)
    .requiredOption('--size <GiB>', `size in GiB (${VOLUME_SIZE.minimum}-${VOLUME_SIZE.maximum})`, size)
    .action(async (name: string, opts: { size: number }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<Volume>('POST', '/v1/volumes', {
        body: { name, sizeGiB: opts.size },
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`volume ${created.name} created (${created.sizeGiB} GiB, ${created.id})`);
    });

  volume
    .command('show')
    .description('show a volume')
    .argument('<ref>', 'volume name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.request<Volume>('GET', path(ref));
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(volumeDetails(found, ctx.out.color));
    });

  volume
    .command('resize')
    .description('grow a volume (never shrink; its VM must be stopped)')
    .argument('<ref>', 'volume name or id', parseRef)
    .requiredOption('--size <GiB>', 'the new size in GiB', size)
    .action(async (ref: string, opts: { size: number }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const resized = await ctx.client.request<Volume>('PATCH', path(ref), { body: { sizeGiB: opts.size } });
      if (ctx.out.json) ctx.out.printJson(resized);
      else ctx.out.print(`volume ${resized.name}: ${resized.sizeGiB} GiB`);
    });

  volume
    .command('delete')
    .alias('rm')
    .description('delete a detached volume: its host overwrites it with zeros, then removes it')
    .argument('<ref>', 'volume name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const deleting = await ctx.client.request<Volume>('DELETE', path(ref));
      if (ctx.out.json) ctx.out.printJson(deleting);
      else ctx.out.print(`volume ${deleting.name} is being erased and deleted`);
    });

  volume
    .command('attach')
    .description('attach a volume to a stopped VM (its next virtio disk at the next start)')
    .argument('<volume>', 'volume name or id', parseRef)
    .argument('<vm>', 'VM name or id', parseRef)
    .action(async (ref: string, vm: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const attached = await ctx.client.request<Volume>('POST', `/v1/vms/${encodeURIComponent(vm)}/volumes`, {
        body: { volume: ref },
      });
      if (ctx.out.json) ctx.out.printJson(attached);
      else ctx.out.print(`volume ${attached.name} attached to ${attached.vm?.name ?? vm}`);
    });

  volume
    .command('detach')
    .description('detach a volume from its stopped VM')
    .argument('<volume>', 'volume name or id', parseRef)
    .argument('<vm>', 'VM name or id', parseRef)
    .action(async (ref: string, vm: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const detached = await ctx.client.request<Volume>(
        'DELETE',
        `/v1/vms/${encodeURIComponent(vm)}/volumes/${encodeURIComponent(ref)}`,
      );
      if (ctx.out.json) ctx.out.printJson(detached);
      else ctx.out.print(`volume ${detached.name} detached from ${vm}`);
    });
}
