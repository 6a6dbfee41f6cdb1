/**
 * `rampart image ...`: the bootable images the server offers (read-only), signing images locally
 * (./image-sign.ts), and attaching signatures to images (the server checks them against the tenant's
 * trusted keys; they count for that tenant only).
 */
import type { Command } from 'commander';
import { DSSE_MAX_ENVELOPE_BYTES, parseEnvelope } from '../../common/dsse.js';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { formatAge, formatKeyValue, formatTable } from '../output.js';
import { readSmallFile, registerImageSigningCommands } from './image-sign.js';
import { registerImageTransferCommands } from './image-transfer.js';
import { parsePath, parseRef } from '../validation.js';
import { imageDetails, imageTable } from '../views.js';

export function registerImageCommands(program: Command, deps: CommandDeps): void {
  const image = program.command('image').description('VM images: list, upload, download, scan and sign them');

  image
    .command('list')
    .alias('ls')
    .description('list images')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listImages();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(imageTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  image
    .command('show')
    .description('show an image in detail')
    .argument('<ref>', 'image name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getImage(ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(imageDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  image
    .command('attach-signature')
    .description(
      'attach a signature (a DSSE envelope from `rampart image sign`) to an image; it must verify ' +
        "with one of the tenant's trusted keys and name the image's sha256",
    )
    .argument('<image>', 'image name or id', parseRef)
    .requiredOption('--envelope <file>', 'the DSSE envelope file', parsePath)
    .action(async (ref: string, opts: { envelope: string }, cmd: Command) => {
      const text = readSmallFile(opts.envelope, DSSE_MAX_ENVELOPE_BYTES);
      const parsed = parseEnvelope(text);
      if (!parsed.ok) throw new UsageError(`${opts.envelope}: ${parsed.reason}`);
      const ctx = deps.context(cmd);
      const attached = await ctx.client.attachImageSignature(ref, parsed.envelope);
      if (ctx.out.json) ctx.out.printJson(attached);
      else
        ctx.out.print(
          formatKeyValue(
            [
              ['Signature', attached.id],
              ['Image', ref],
              ['Key ID', attached.keyid],
              ['Key', attached.keyName ?? '-'],
            ],
            ctx.out.color,
          ),
        );
    });

  image
    .command('signatures')
    .description('list the signatures the tenant attached to an image')
    .argument('<image>', 'image name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listImageSignatures(ref);
      if (ctx.out.json) ctx.out.printJson(list);
      else
        ctx.out.print(
          formatTable(
            ['ID', 'KEY', 'KEYID', 'AGE'],
            list.items.map((s) => [
              s.id,
              s.keyName ?? '(untrusted)',
              s.keyid.slice(0, 16),
              formatAge(s.createdAt, ctx.now()),
            ]),
            ctx.out.color,
          ),
        );
    });

  registerImageSigningCommands(image, deps);
  registerImageTransferCommands(image, deps);
}
