/**
 * `rampart volume list|create|show|resize|delete|attach|detach`: a tenant's LUKS-encrypted volumes.
 * Attach and detach work on a stopped VM; the volume shows up as the VM's next virtio disk at its
 * next start. Delete erases the volume's file on its host (zeros, then removed).
 */
import type { Command } from 'commander';
import { VOLUME_SIZE, type Volume, type VolumeBackup, type VolumeSnapshot } from '../../api/volume.js';
import type { CommandDeps } from '../context.js';
import { formatAge, formatKeyValue, formatTable, shortId } from '../output.js';
import { UsageError } from '../errors.js';
import { integerIn, isUuid, parseName, parseRef } from '../validation.js';

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

function originText(origin: Volume['origin']): string {
  if (!origin) return '-';
  if (origin.snapshotId) return `clone of snapshot ${origin.snapshotId} of volume ${origin.volumeId}`;
  if (origin.backupId) return `restored from backup ${origin.backupId} of volume ${origin.volumeId}`;
  return `made from volume ${origin.volumeId}`;
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
      ['Format', volume.format === 'qcow2' ? 'qcow2 with LUKS encryption (copy-on-write)' : 'raw LUKS file'],
      ['Image', volume.image ? `${volume.image.name} (${volume.image.id}): bootable` : '- (created empty)'],
      ['Root disk', volume.rootDisk ? 'yes: made with its VM, erased with it' : 'no'],
      ['Origin', originText(volume.origin)],
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
    .description('encrypted volumes: create, attach to VMs, grow, snapshot, clone, back up, delete');

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
    .description(
      'create a volume: empty, cloned from a snapshot or restored from a backup, always under a key of its own (counted in the volumes and volumeGiB quotas)',
    )
    .argument('<name>', 'volume name (a DNS label)', parseName)
    .option(
      '--size <GiB>',
      `size in GiB (${VOLUME_SIZE.minimum}-${VOLUME_SIZE.maximum}; a clone: at least the snapshot's)`,
      size,
    )
    .option('--from-snapshot <id>', 'clone this snapshot (its id, as in `volume snapshot list`)')
    .option('--from-backup <id>', 'restore this backup (its id, as in `volume backup list`); verified first')
    .option('--host <id>', 'with --from-backup: the host to restore on (platform admins)')
    .action(
      async (
        name: string,
        opts: { size?: number; fromSnapshot?: string; fromBackup?: string; host?: string },
        cmd: Command,
      ) => {
        for (const [flag, value] of [
          ['--from-snapshot', opts.fromSnapshot],
          ['--from-backup', opts.fromBackup],
          ['--host', opts.host],
        ] as const)
          if (value !== undefined && !isUuid(value)) throw new UsageError(`${flag} takes an id`);
        if (opts.size === undefined && opts.fromSnapshot === undefined && opts.fromBackup === undefined)
          throw new UsageError('give --size (or --from-snapshot to clone, --from-backup to restore)');
        const ctx = deps.context(cmd);
        const created = await ctx.client.request<Volume>('POST', '/v1/volumes', {
          body: {
            name,
            ...(opts.size !== undefined ? { sizeGiB: opts.size } : {}),
            ...(opts.fromSnapshot !== undefined ? { snapshot: opts.fromSnapshot } : {}),
            ...(opts.fromBackup !== undefined ? { backup: opts.fromBackup } : {}),
            ...(opts.host !== undefined ? { host: opts.host } : {}),
          },
        });
        if (ctx.out.json) ctx.out.printJson(created);
        else ctx.out.print(`volume ${created.name} created (${created.sizeGiB} GiB, ${created.id})`);
      },
    );

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

  volume
    .command('restore')
    .description("put a snapshot's content back into its volume (its VM stopped): later writes are gone")
    .argument('<volume>', 'volume name or id', parseRef)
    .requiredOption('--snapshot <ref>', 'snapshot name or id', parseRef)
    .action(async (ref: string, opts: { snapshot: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const restored = await ctx.client.request<VolumeSnapshot>('POST', `${path(ref)}/restore`, {
        body: { snapshot: opts.snapshot },
      });
      if (ctx.out.json) ctx.out.printJson(restored);
      else ctx.out.print(`volume ${restored.volume.name} restored to snapshot ${restored.name}`);
    });

  const snapshot = volume.command('snapshot').description('snapshots of a volume');
  snapshot
    .command('create')
    .description('snapshot a volume (its VM stopped)')
    .argument('<volume>', 'volume name or id', parseRef)
    .argument('<name>', 'snapshot name (a DNS label)', parseName)
    .action(async (ref: string, name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<VolumeSnapshot>('POST', `${path(ref)}/snapshots`, {
        body: { name },
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`snapshot ${created.name} of ${created.volume.name} created (${created.id})`);
    });
  snapshot
    .command('list')
    .alias('ls')
    .description("list a volume's snapshots")
    .argument('<volume>', 'volume name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: VolumeSnapshot[] }>('GET', `${path(ref)}/snapshots`);
      if (ctx.out.json) ctx.out.printJson(list);
      else
        ctx.out.print(
          formatTable(
            ['NAME', 'ID', 'SIZE', 'STATUS', 'BY', 'AGE'],
            list.items.map((s) => [
              s.name,
              s.id,
              `${s.sizeGiB} GiB`,
              s.status,
              s.createdBy,
              formatAge(s.createdAt, ctx.now()),
            ]),
            ctx.out.color,
          ),
        );
    });
  snapshot
    .command('delete')
    .alias('rm')
    .description('delete a snapshot (its host erases the copy)')
    .argument('<volume>', 'volume name or id', parseRef)
    .argument('<snapshot>', 'snapshot name or id', parseRef)
    .action(async (ref: string, name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const deleting = await ctx.client.request<VolumeSnapshot>(
        'DELETE',
        `${path(ref)}/snapshots/${encodeURIComponent(name)}`,
      );
      if (ctx.out.json) ctx.out.printJson(deleting);
      else ctx.out.print(`snapshot ${deleting.name} is being erased and deleted`);
    });

  const backup = volume
    .command('backup')
    .description('backups of volumes (signed, encrypted, restorable on any host)');
  backup
    .command('create')
    .description("back up a volume (its VM stopped) into the server's backup store")
    .argument('<volume>', 'volume name or id', parseRef)
    .argument('<name>', 'backup name (a DNS label)', parseName)
    .action(async (ref: string, name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<VolumeBackup>('POST', `${path(ref)}/backups`, {
        body: { name },
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else
        ctx.out.print(
          `backup ${created.name} of ${created.volume.name} created (${created.id}, sha256 ${created.sha256})`,
        );
    });
  backup
    .command('list')
    .alias('ls')
    .description("list the tenant's backups")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: VolumeBackup[] }>('GET', '/v1/backups');
      if (ctx.out.json) ctx.out.printJson(list);
      else
        ctx.out.print(
          formatTable(
            ['NAME', 'ID', 'VOLUME', 'SIZE', 'STATUS', 'AGE'],
            list.items.map((b) => [
              b.name,
              b.id,
              b.volume.name,
              `${b.sizeGiB} GiB`,
              b.status,
              formatAge(b.createdAt, ctx.now()),
            ]),
            ctx.out.color,
          ),
        );
    });
  backup
    .command('delete')
    .alias('rm')
    .description('delete a backup (its file is overwritten with zeros, then removed)')
    .argument('<backup>', 'backup name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const deleted = await ctx.client.request<VolumeBackup>(
        'DELETE',
        `/v1/backups/${encodeURIComponent(ref)}`,
      );
      if (ctx.out.json) ctx.out.printJson(deleted);
      else ctx.out.print(`backup ${deleted.name} erased and deleted`);
    });
}
