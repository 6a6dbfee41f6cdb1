/**
 * `rampart image upload|download|scan|delete|import|rotate-master-key`: getting images in and out.
 * Uploads stream the files (any size, bounded memory) with progress on stderr; the server hashes,
 * inspects (qemu-img), scans (ClamAV), compresses and encrypts them, and answers the verdict.
 */
import { isAbsolute, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Image, ImageImport, ImagePart } from '../../api/image.js';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { downloadImageFile, progressPrinter, uploadImageFile } from '../image-transfer.js';
import { formatKeyValue } from '../output.js';
import { parseName, parsePath, parseRef } from '../validation.js';
import { imageDetails } from '../views.js';

type Format = Image['format'];

interface FileOptions {
  kernel?: string;
  initrd?: string;
  disk?: string;
  format?: Format;
  description?: string;
}

/** The files of the image as `part -> path`, checked against the format. */
function filesFor(opts: FileOptions): { format: Format; files: [ImagePart, string][] } {
  if (opts.disk !== undefined) {
    if (opts.kernel !== undefined || opts.initrd !== undefined)
      throw new UsageError('give either --disk, or --kernel and --initrd');
    const format = opts.format ?? 'raw';
    if (format === 'kernel-initrd') throw new UsageError('--disk needs --format raw or qcow2');
    return { format, files: [['disk', opts.disk]] };
  }
  if (opts.kernel === undefined || opts.initrd === undefined)
    throw new UsageError('give --kernel and --initrd (a bundle), or --disk (a disk image)');
  if (opts.format !== undefined && opts.format !== 'kernel-initrd')
    throw new UsageError('--kernel/--initrd make a kernel-initrd image');
  return {
    format: 'kernel-initrd',
    files: [
      ['kernel', opts.kernel],
      ['initrd', opts.initrd],
    ],
  };
}

const formatOption = () =>
  new Option('--format <format>', 'disk image format (with --disk)').choices(['raw', 'qcow2']);

export function registerImageTransferCommands(image: Command, deps: CommandDeps): void {
  image
    .command('upload')
    .description(
      'upload an image: --kernel and --initrd (a bundle) or --disk with --format raw|qcow2; it is ' +
        'scanned, compressed and encrypted by the server (a scan hit quarantines it)',
    )
    .argument('<name>', 'name of the new image', parseName)
    .option('--kernel <file>', 'Linux kernel of a kernel-initrd bundle', parsePath)
    .option('--initrd <file>', 'initramfs of a kernel-initrd bundle', parsePath)
    .option('--disk <file>', 'disk image file', parsePath)
    .addOption(formatOption())
    .option('--description <text>', 'free text shown with the image')
    .action(async (name: string, opts: FileOptions, cmd: Command) => {
      const { format, files } = filesFor(opts);
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<Image>('POST', '/v1/images', {
        body: { name, format, ...(opts.description ? { description: opts.description } : {}) },
      });
      let current = created;
      try {
        for (const [part, path] of files) {
          current = await uploadImageFile(
            ctx.client,
            created.id,
            part,
            path,
            progressPrinter(`uploading ${part}`, (line) => ctx.out.progress(line)),
          );
        }
      } catch (error) {
        // A refused file (too large, not the declared format, a backing file): drop the queued record.
        await ctx.client.request('DELETE', `/v1/images/${created.id}`).catch(() => undefined);
        throw error;
      }
      if (current.status === 'quarantined')
        ctx.out.progress(`rampart: warning: image ${name} is QUARANTINED: ${current.statusReason}`);
      if (ctx.out.json) ctx.out.printJson(current);
      else ctx.out.print(imageDetails(current, { now: ctx.now(), color: ctx.out.color }));
    });

  image
    .command('download')
    .description('download one file of an image (decrypted and verified) to a local file')
    .argument('<image>', 'image name or id', parseRef)
    .addOption(
      new Option('--part <part>', 'which file').choices(['kernel', 'initrd', 'disk']).makeOptionMandatory(),
    )
    .requiredOption('-f, --file <path>', 'where to write it (must not exist)', parsePath)
    .action(async (ref: string, opts: { part: ImagePart; file: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const result = await downloadImageFile(
        ctx.client,
        ref,
        opts.part,
        opts.file,
        progressPrinter(`downloading ${opts.part}`, (line) => ctx.out.progress(line)),
      );
      if (ctx.out.json) ctx.out.printJson({ file: opts.file, ...result });
      else
        ctx.out.print(
          formatKeyValue(
            [
              ['File', opts.file],
              ['SHA-256', result.sha256],
              ['Bytes', String(result.bytes)],
            ],
            ctx.out.color,
          ),
        );
    });

  image
    .command('scan')
    .description(
      're-scan an image with the current scanner databases (--platform: any image, platform admins)',
    )
    .argument('<image>', 'image name or id', parseRef)
    .option('--platform', 'use the platform route (any image by id; platform images by name)')
    .action(async (ref: string, opts: { platform?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const path = opts.platform ? `/v1/platform/images/${ref}/scan` : `/v1/images/${ref}/scan`;
      const scanned = await ctx.client.request<Image>('POST', path, opts.platform ? { tenant: false } : {});
      if (ctx.out.json) ctx.out.printJson(scanned);
      else ctx.out.print(imageDetails(scanned, { now: ctx.now(), color: ctx.out.color }));
    });

  image
    .command('delete')
    .alias('rm')
    .description('delete an own image that no VM uses')
    .argument('<image>', 'image name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.request('DELETE', `/v1/images/${ref}`);
      if (!ctx.out.json) ctx.out.progress(`image ${ref} deleted`);
    });

  image
    .command('import')
    .description(
      "platform admins: import a platform image from files on the server's host (absolute paths there)",
    )
    .argument('<name>', 'name of the new platform image', parseName)
    .option('--kernel <path>', 'kernel on the server host', parsePath)
    .option('--initrd <path>', 'initramfs on the server host', parsePath)
    .option('--disk <path>', 'disk image on the server host', parsePath)
    .addOption(formatOption())
    .option('--description <text>', 'free text shown with the image')
    .action(async (name: string, opts: FileOptions, cmd: Command) => {
      const { format, files } = filesFor(opts);
      const body: ImageImport = {
        name,
        format,
        files: Object.fromEntries(
          files.map(([part, path]) => [part, isAbsolute(path) ? path : resolve(path)]),
        ),
        ...(opts.description ? { description: opts.description } : {}),
      };
      const ctx = deps.context(cmd);
      const imported = await ctx.client.request<Image>('POST', '/v1/platform/images/import', {
        body,
        tenant: false,
        timeoutMs: 30 * 60_000,
      });
      if (ctx.out.json) ctx.out.printJson(imported);
      else ctx.out.print(imageDetails(imported, { now: ctx.now(), color: ctx.out.color }));
    });

  image
    .command('rotate-master-key')
    .description(
      'platform admins: replace the master key file; every data key is re-wrapped, no image is re-encrypted',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const result = await ctx.client.request<{ masterKeyId: string; rewrapped: number }>(
        'POST',
        '/v1/platform/keys/rotate-master',
        { tenant: false },
      );
      if (ctx.out.json) ctx.out.printJson(result);
      else
        ctx.out.print(
          formatKeyValue(
            [
              ['Master key', result.masterKeyId],
              ['Data keys re-wrapped', String(result.rewrapped)],
            ],
            ctx.out.color,
          ),
        );
    });
}
