/**
 * The NoCloud seed of a VM (cloud-init's config drive, also read by the Debian image's rampart-nocloud):
 * a small FAT filesystem labelled CIDATA holding
 *   meta-data       instance-id, local-hostname
 *   user-data       #cloud-config: hostname, ssh_authorized_keys
 *   network-config  version 2: each port's MAC, address, gateway (static; no DHCP on tenant networks)
 * made with mkfs.vfat and mcopy (no mount, no loop device), written by the agent into the VM's run
 * directory and attached read-only. Every value comes from the intent (schema-checked) and is checked
 * again here before it is written into YAML; SSH keys are written double-quoted (the key pattern
 * excludes `"` and `\`).
 */
import { chmodSync, chownSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SeedIntent } from '../../api/agent-protocol.js';
import { NAME_PATTERN, SSH_PUBLIC_KEY_PATTERN } from '../../api/common.js';
import { run } from '../../common/subprocess.js';

export interface SeedNic {
  mac: string;
  ipv4: string;
  prefixLength: number;
  gateway: string | null;
}

export interface SeedFiles {
  'meta-data': string;
  'user-data': string;
  'network-config': string;
}

export interface SeedTools {
  mkfsVfat: string;
  mcopy: string;
}

/** The seed filesystem's size: ample for three small files, the smallest FAT12 mkfs.vfat makes quickly. */
const SEED_BYTES = 1024 * 1024;

const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const HOSTNAME = new RegExp(NAME_PATTERN);
const SSH_KEY = new RegExp(SSH_PUBLIC_KEY_PATTERN);
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4(value: string): string {
  const match = IPV4.exec(value);
  if (!match || match.slice(1).some((p) => Number(p) > 255)) throw new Error(`not an IPv4 address: ${value}`);
  return value;
}

/** The three files' contents (pure; throws on anything that should never have reached here). */
export function seedFiles(seed: SeedIntent, nics: readonly SeedNic[]): SeedFiles {
  if (!INSTANCE_ID.test(seed.instanceId)) throw new Error('bad instance-id for the seed');
  if (!HOSTNAME.test(seed.hostname)) throw new Error('bad hostname for the seed');
  for (const key of seed.sshKeys) if (!SSH_KEY.test(key)) throw new Error('bad SSH public key for the seed');
  const metaData = `instance-id: ${seed.instanceId}\nlocal-hostname: ${seed.hostname}\n`;
  const userData = [
    '#cloud-config',
    `hostname: ${seed.hostname}`,
    ...(seed.sshKeys.length > 0
      ? ['ssh_authorized_keys:', ...seed.sshKeys.map((key) => `  - "${key}"`)]
      : ['ssh_authorized_keys: []']),
    '',
  ].join('\n');
  const ethernets = nics.flatMap((nic, index) => {
    if (!MAC.test(nic.mac)) throw new Error(`bad MAC ${JSON.stringify(nic.mac)} for the seed`);
    const prefix = Number(nic.prefixLength);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new Error('bad prefix length');
    return [
      `    eth${index}:`,
      '      match:',
      `        macaddress: "${nic.mac}"`,
      '      dhcp4: false',
      '      addresses:',
      `        - ${ipv4(nic.ipv4)}/${prefix}`,
      ...(nic.gateway && index === 0 ? [`      gateway4: ${ipv4(nic.gateway)}`] : []),
    ];
  });
  const networkConfig =
    ethernets.length > 0
      ? ['version: 2', 'ethernets:', ...ethernets, ''].join('\n')
      : ['version: 2', 'ethernets: {}', ''].join('\n');
  return { 'meta-data': metaData, 'user-data': userData, 'network-config': networkConfig };
}

/**
 * Writes the seed image to `target` (replacing it), owned by `owner` (the VM's uid, 0400): the files
 * are staged in a fresh root-only directory beside it, which is removed whatever happens.
 */
export async function writeSeedImage(
  target: string,
  files: SeedFiles,
  tools: SeedTools,
  owner: { uid: number; gid: number },
): Promise<void> {
  const dir = target.slice(0, target.lastIndexOf('/')) || '/';
  const staging = mkdtempSync(join(dir, '.seed-'));
  try {
    chmodSync(staging, 0o700);
    const image = join(staging, 'seed.img');
    const names = Object.keys(files) as Array<keyof SeedFiles>;
    for (const name of names) writeFileSync(join(staging, name), files[name], { mode: 0o600 });
    await run(tools.mkfsVfat, ['-C', '-n', 'CIDATA', image, String(SEED_BYTES / 1024)], {
      timeoutMs: 30_000,
      env: {},
    });
    await run(tools.mcopy, ['-i', image, ...names.map((n) => join(staging, n)), '::'], {
      timeoutMs: 30_000,
      env: { MTOOLS_SKIP_CHECK: '1' },
    });
    chownSync(image, owner.uid, owner.gid);
    chmodSync(image, 0o400);
    // Same filesystem (the staging directory is beside the target): the rename replaces it atomically.
    renameSync(image, target);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
