/**
 * `rampart image ...`: the bootable images the server offers (read-only), and signing images locally
 * (./image-sign.ts).
 */
import type { Command } from 'commander';
import type { CommandDeps } from '../context.js';
import { registerImageSigningCommands } from './image-sign.js';
import { parseRef } from '../validation.js';
import { imageDetails, imageTable } from '../views.js';

export function registerImageCommands(program: Command, deps: CommandDeps): void {
  const image = program.command('image').description('list and inspect VM images; sign them locally');

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

  registerImageSigningCommands(image, deps);
}
