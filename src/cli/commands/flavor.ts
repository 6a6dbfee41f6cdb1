/** `rampart flavor ...`: named VM sizes (vCPUs, memory, disk) and their runtime limits. */
import { InvalidArgumentError, type Command } from 'commander';
import type { FlavorCreate } from '../../api/flavor.js';
import type { CommandDeps } from '../context.js';
import { FLAVOR_DEFAULTS, FLAVOR_LIMITS, integerIn, parseName, parseRef } from '../validation.js';
import { flavorDetails, flavorTable } from '../views.js';

interface CreateFlags {
  vcpus: number;
  memory: number;
  disk: number;
  cpuLimit?: number;
  cpuWeight?: number;
  pidsMax?: number;
  networkMbps?: number;
  diskIops?: number;
  diskMibps?: number;
  cpuPolicy?: 'shared' | 'dedicated';
}

export function registerFlavorCommands(program: Command, deps: CommandDeps): void {
  const flavor = program.command('flavor').description('list, inspect and create VM flavors (sizes)');

  flavor
    .command('list')
    .alias('ls')
    .description('list flavors')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listFlavors();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(flavorTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  flavor
    .command('show')
    .description('show a flavor in detail')
    .argument('<ref>', 'flavor name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getFlavor(ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(flavorDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  const { vcpus, memoryMiB, diskGiB, cpuLimitPercent, cpuWeight, pidsMax, networkMbps, diskIops, diskMiBps } =
    FLAVOR_LIMITS;
  flavor
    .command('create')
    .description('create a flavor')
    .argument('<name>', 'flavor name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .requiredOption(
      '--vcpus <n>',
      `virtual CPUs (${vcpus.minimum}-${vcpus.maximum})`,
      integerIn(vcpus.minimum, vcpus.maximum),
    )
    .requiredOption(
      '--memory <mib>',
      `memory in MiB (${memoryMiB.minimum}-${memoryMiB.maximum})`,
      integerIn(memoryMiB.minimum, memoryMiB.maximum),
    )
    .requiredOption(
      '--disk <gib>',
      `disk in GiB (${diskGiB.minimum}-${diskGiB.maximum})`,
      integerIn(diskGiB.minimum, diskGiB.maximum),
    )
    .option(
      '--cpu-limit <percent>',
      `CPU time the whole VM may use, in % of one host CPU (${cpuLimitPercent.minimum}-${cpuLimitPercent.maximum}; ` +
        'default: no cap beyond its vCPUs, i.e. vCPUs x 100)',
      integerIn(cpuLimitPercent.minimum, cpuLimitPercent.maximum),
    )
    .option(
      '--cpu-weight <n>',
      `relative CPU share under contention (${cpuWeight.minimum}-${cpuWeight.maximum}; server default ${FLAVOR_DEFAULTS.cpuWeight})`,
      integerIn(cpuWeight.minimum, cpuWeight.maximum),
    )
    .option(
      '--pids-max <n>',
      `most tasks (threads) the VM's QEMU may have (${pidsMax.minimum}-${pidsMax.maximum}; server default ${FLAVOR_DEFAULTS.pidsMax})`,
      integerIn(pidsMax.minimum, pidsMax.maximum),
    )
    .option(
      '--network-mbps <n>',
      `rate limit of each network port per direction in Mbit/s (${networkMbps.minimum}-${networkMbps.maximum}; default none)`,
      integerIn(networkMbps.minimum, networkMbps.maximum),
    )
    .option(
      '--disk-iops <n>',
      `I/O operations per second of each disk (${diskIops.minimum}-${diskIops.maximum}; default none)`,
      integerIn(diskIops.minimum, diskIops.maximum),
    )
    .option(
      '--disk-mibps <n>',
      `MiB per second of each disk (${diskMiBps.minimum}-${diskMiBps.maximum}; default none)`,
      integerIn(diskMiBps.minimum, diskMiBps.maximum),
    )
    .option(
      '--cpu-policy <policy>',
      'shared (vCPUs float over the shared CPUs; default) or dedicated (whole physical cores of its own, pinned)',
      (value: string) => {
        if (value !== 'shared' && value !== 'dedicated')
          throw new InvalidArgumentError('must be shared or dedicated');
        return value;
      },
    )
    .action(async (name: string, opts: CreateFlags, cmd: Command) => {
      const ctx = deps.context(cmd);
      const body: FlavorCreate = { name, vcpus: opts.vcpus, memoryMiB: opts.memory, diskGiB: opts.disk };
      // Unset limits are left out: the server applies its defaults.
      if (opts.cpuLimit !== undefined) body.cpuLimitPercent = opts.cpuLimit;
      if (opts.cpuWeight !== undefined) body.cpuWeight = opts.cpuWeight;
      if (opts.pidsMax !== undefined) body.pidsMax = opts.pidsMax;
      if (opts.networkMbps !== undefined) body.networkMbps = opts.networkMbps;
      if (opts.cpuPolicy !== undefined) body.cpuPolicy = opts.cpuPolicy;
      if (opts.diskIops !== undefined) body.diskIops = opts.diskIops;
      if (opts.diskMibps !== undefined) body.diskMiBps = opts.diskMibps;
      const created = await ctx.client.createFlavor(body);
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`flavor ${created.name} created (${created.id})`);
    });
}
