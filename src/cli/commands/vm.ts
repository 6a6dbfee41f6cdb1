/** `rampart vm ...`: create, list, show, power actions, resize, delete and the serial console. */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Port } from '../../api/network.js';
import type { RestartPolicy, Vm, VmCreate, VmStopBody } from '../../api/vm.js';
import type { CliContext, CommandDeps } from '../context.js';
import { followConsole } from '../console-stream.js';
import { UsageError } from '../errors.js';
import {
  CONSOLE_BYTES_MAX,
  RESTART_POLICIES,
  STOP_TIMEOUT_MAX_SECONDS,
  integerIn,
  parseName,
  parseRef,
  parseWaitTimeout,
} from '../validation.js';
import { formatMiB } from '../output.js';
import { vmDetails, vmTable } from '../views.js';
import { collectGroups, registerVmPortCommands } from './network.js';
import { DEFAULT_WAIT_TIMEOUT_SECONDS, waitForVm, type WaitTarget } from '../wait.js';

interface WaitFlags {
  wait?: boolean;
  timeout: number;
}

interface CreateFlags extends WaitFlags {
  placementGroup?: string;
  image?: string;
  bootVolume?: string;
  sshKey?: string[];
  flavor: string;
  restartPolicy?: RestartPolicy;
  start: boolean;
  network?: string;
  securityGroup?: string[];
}

function addWaitOptions(cmd: Command, target: string): Command {
  return cmd
    .option('--wait', `wait until the VM is ${target}; progress goes to stderr`)
    .option(
      '--timeout <seconds>',
      'give up waiting after this many seconds (with --wait)',
      parseWaitTimeout,
      DEFAULT_WAIT_TIMEOUT_SECONDS,
    );
}

function viewOptions(ctx: CliContext) {
  return { now: ctx.now(), color: ctx.out.color };
}

/**
 * Prints the result of an operation on a VM, waiting first when asked. JSON mode prints the VM as the
 * operation returned it, or its final state after a wait.
 */
async function finishVmOperation(
  ctx: CliContext,
  ref: string,
  accepted: Vm,
  verb: string,
  target: WaitTarget,
  flags: WaitFlags,
): Promise<void> {
  if (!flags.wait) {
    if (ctx.out.json) ctx.out.printJson(accepted);
    else ctx.out.print(`vm ${accepted.name}: ${verb} (state: ${accepted.state})`);
    return;
  }
  if (!ctx.out.json) ctx.out.print(`vm ${accepted.name}: ${verb}`);
  const final = await waitForVm(ctx.client, ref, target, {
    timeoutMs: flags.timeout * 1000,
    initial: accepted,
    progress: (line) => ctx.out.progress(line),
    now: ctx.now,
    intervalMs: ctx.io.waitIntervalMs,
  });
  if (ctx.out.json) ctx.out.printJson(final ?? accepted);
}

/** Reads an OpenSSH public key file (one key line) for --ssh-key; the server validates the key. */
function collectKeyFiles(file: string, previous: string[] = []): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new InvalidArgumentError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw new InvalidArgumentError(`${file} holds no public key`);
  return [...previous, ...keys];
}
export function registerVmCommands(program: Command, deps: CommandDeps): void {
  const vm = program.command('vm').description('manage virtual machines');

  addWaitOptions(
    vm
      .command('create')
      .description(
        'create a VM from an image (or boot volume) and a flavor, and start it unless --no-start. A disk image (raw/qcow2) gets an encrypted root disk of the flavor’s size (a copy-on-write overlay of the image) and a NoCloud seed (hostname, SSH keys, network)',
      )
      .argument('<name>', 'VM name: lowercase letters, digits and dashes (a DNS label)', parseName)
      .option('--image <image>', 'image name or id (kernel+initrd, or a raw/qcow2 disk image)', parseRef)
      .option(
        '--boot-volume <volume>',
        'boot from this volume instead of an image (a clone of a root disk snapshot, a restored backup), name or id',
        parseRef,
      )
      .option(
        '--ssh-key <file>',
        'an OpenSSH public key file for root (disk images, via the seed); repeat for more',
        collectKeyFiles,
      )
      .requiredOption('--flavor <flavor>', 'flavor name or id', parseRef)
      .addOption(
        new Option('--restart-policy <policy>', 'what to do when the VM stops on its own').choices(
          RESTART_POLICIES,
        ),
      )
      .option('--no-start', 'create the VM stopped')
      .option(
        '--network <network>',
        'give the VM a port (and an address) on this network: name or id',
        parseRef,
      )
      .option(
        '--security-group <group>',
        "the port's security group, name or id; repeat for more (with --network; default: `default`)",
        collectGroups,
      )
      .option(
        '--placement-group <group>',
        'a placement group (affinity: its members’ host; anti-affinity: another host), name or id',
        parseRef,
      ),
    'running (stopped with --no-start)',
  ).action(async (name: string, opts: CreateFlags, cmd: Command) => {
    const ctx = deps.context(cmd);
    if ((opts.image === undefined) === (opts.bootVolume === undefined))
      throw new UsageError('give --image or --boot-volume (one of them)');
    const body: VmCreate = { name, flavor: opts.flavor };
    if (opts.image !== undefined) body.image = opts.image;
    if (opts.bootVolume !== undefined) body.bootVolume = opts.bootVolume;
    if (opts.sshKey !== undefined) body.sshKeys = opts.sshKey;
    if (opts.restartPolicy !== undefined) body.restartPolicy = opts.restartPolicy;
    if (!opts.start) body.start = false;
    if (opts.securityGroup !== undefined && opts.network === undefined)
      throw new UsageError('--security-group applies to the port: give --network too');
    if (opts.network !== undefined) body.network = opts.network;
    if (opts.securityGroup !== undefined) body.securityGroups = opts.securityGroup;
    if (opts.placementGroup !== undefined) body.placementGroup = opts.placementGroup;
    const created = await ctx.client.createVm(body);
    await finishVmOperation(
      ctx,
      created.id,
      created,
      'created',
      body.start === false ? 'stopped' : 'running',
      opts,
    );
  });

  vm.command('list')
    .alias('ls')
    .description('list VMs')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listVms();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(vmTable(list.items, viewOptions(ctx)));
    });

  vm.command('isolate')
    .description(
      'isolate a VM: its host drops every frame from and to its ports, established flows included (what the isolate-vm detection response does); --off releases it',
    )
    .argument('<ref>', 'VM name or id', parseRef)
    .option('--off', 'release the VM from isolation')
    .action(async (ref: string, opts: { off?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const ports = await ctx.client.request<{ items: Port[] }>('PUT', `/v1/vms/${ref}/isolation`, {
        body: { isolated: opts.off !== true },
      });
      if (ctx.out.json) ctx.out.printJson(ports);
      else
        ctx.out.progress(
          `vm ${ref}: ${opts.off === true ? 'released from isolation' : 'isolated'} (${ports.items.length} port(s))`,
        );
    });

  vm.command('show')
    .description('show a VM in detail')
    .argument('<ref>', 'VM name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getVm(ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(vmDetails(found, viewOptions(ctx)));
    });

  addWaitOptions(
    vm.command('start').description('start a stopped VM').argument('<ref>', 'VM name or id', parseRef),
    'running',
  ).action(async (ref: string, opts: WaitFlags, cmd: Command) => {
    const ctx = deps.context(cmd);
    const accepted = await ctx.client.vmAction(ref, 'start');
    await finishVmOperation(ctx, ref, accepted, 'start accepted', 'running', opts);
  });

  addWaitOptions(
    vm
      .command('stop')
      .description('stop a VM: ACPI shutdown, then by force after the stop timeout')
      .argument('<ref>', 'VM name or id', parseRef)
      .option('--force', 'stop at once, without a graceful shutdown')
      .option(
        '--stop-timeout <seconds>',
        'seconds to wait for a graceful shutdown before forcing it (server default if omitted)',
        integerIn(0, STOP_TIMEOUT_MAX_SECONDS),
      ),
    'stopped',
  ).action(async (ref: string, opts: WaitFlags & { force?: boolean; stopTimeout?: number }, cmd: Command) => {
    const ctx = deps.context(cmd);
    const body: VmStopBody = {};
    if (opts.force) body.force = true;
    if (opts.stopTimeout !== undefined) body.timeoutSeconds = opts.stopTimeout;
    const accepted = await ctx.client.stopVm(ref, body);
    await finishVmOperation(ctx, ref, accepted, 'stop accepted', 'stopped', opts);
  });

  for (const [action, description] of [
    ['reboot', 'reboot a running VM (reset of the guest)'],
    ['pause', 'pause a running VM (its vCPUs stop; memory is kept)'],
    ['resume', 'resume a paused VM'],
  ] as const) {
    vm.command(action)
      .description(description)
      .argument('<ref>', 'VM name or id', parseRef)
      .action(async (ref: string, _opts: unknown, cmd: Command) => {
        const ctx = deps.context(cmd);
        const accepted = await ctx.client.vmAction(ref, action);
        if (ctx.out.json) ctx.out.printJson(accepted);
        else ctx.out.print(`vm ${accepted.name}: ${action} accepted (state: ${accepted.state})`);
      });
  }

  vm.command('resize')
    .description(
      "give a stopped VM another flavor (the tenant's quota must have room for the growth); " +
        'it takes effect at the next start',
    )
    .argument('<ref>', 'VM name or id', parseRef)
    .requiredOption('--flavor <flavor>', 'the new flavor: name or id', parseRef)
    .action(async (ref: string, opts: { flavor: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const resized = await ctx.client.resizeVm(ref, opts.flavor);
      if (ctx.out.json) ctx.out.printJson(resized);
      else
        ctx.out.print(
          `vm ${resized.name}: resized to ${resized.flavor?.name ?? opts.flavor} ` +
            `(${resized.vcpus} vCPUs, ${formatMiB(resized.memoryMiB)} memory, ${resized.diskGiB} GiB disk)`,
        );
    });

  addWaitOptions(
    vm
      .command('delete')
      .alias('rm')
      .description('delete a VM: it is stopped and its resources are released')
      .argument('<ref>', 'VM name or id', parseRef),
    'gone',
  ).action(async (ref: string, opts: WaitFlags, cmd: Command) => {
    const ctx = deps.context(cmd);
    const accepted = await ctx.client.deleteVm(ref);
    // Poll by id: the name may be reused as soon as the VM is gone.
    await finishVmOperation(ctx, accepted.id, accepted, 'delete accepted', 'deleted', opts);
  });

  vm.command('console')
    .description(
      'print the tail of the serial console; with --follow, stream it live until Ctrl-C ' +
        '(on a terminal, keystrokes go to the VM and Ctrl-] detaches)',
    )
    .argument('<ref>', 'VM name or id', parseRef)
    .option(
      '--bytes <n>',
      'how much of the console tail to print (server default if omitted)',
      integerIn(1, CONSOLE_BYTES_MAX),
    )
    .option('-f, --follow', 'stream the console live; it starts with the recent output')
    .action(async (ref: string, opts: { bytes?: number; follow?: boolean }, cmd: Command) => {
      if (opts.follow && opts.bytes !== undefined) {
        throw new UsageError(
          '--bytes and --follow do not go together: the live stream starts with the recent output',
        );
      }
      const ctx = deps.context(cmd);
      if (!opts.follow) {
        const tail = await ctx.client.consoleTail(ref, opts.bytes);
        if (ctx.out.json) {
          ctx.out.printJson(tail);
        } else {
          ctx.out.raw(tail.data);
          // Leave a terminal's prompt on a line of its own.
          if (ctx.io.stdout.isTTY && tail.data.length > 0 && !tail.data.endsWith('\n')) ctx.out.raw('\n');
        }
        return;
      }
      await followConsole({
        url: ctx.client.consoleStreamUrl(ref),
        headers: await ctx.client.authHeaders(),
        name: ref,
        stdin: ctx.io.stdin,
        stdout: ctx.io.stdout,
        stderr: ctx.io.stderr,
      });
    });

  registerVmPortCommands(vm, deps);
}
