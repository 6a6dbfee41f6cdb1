/**
 * A remote host's certificate renewed by itself (RAMPART_HOST_CERT_RENEW_DAYS): with a window longer
 * than a certificate lasts, the host's first connection is already "about to expire", so the server
 * renews it over the link at the hello: the agent makes a new key, installs the new certificate, dials
 * again with it, and the certificate it joined with is revoked then. One renewal, not one per
 * reconnect (at most one attempt per host an hour). No VM is booted.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Host } from '../src/api/host.js';
import { freePort } from './helpers/debian-guest.js';
import { RampartHarness } from './helpers/rampart-harness.js';
import { joinHost, killAgent, startRemoteAgent } from './helpers/remote-hosts.js';

const NAME = 'renewing-1';
let harness: RampartHarness;
let agent: ChildProcess | null = null;

function serialOf(dir: string): string {
  return new X509Certificate(readFileSync(join(dir, 'host.crt'), 'utf8')).serialNumber.replace(/^0+/, '');
}

before(async () => {
  harness = await RampartHarness.start({
    env: {
      RAMPART_HOST_NAME: 'host-a',
      RAMPART_AGENT_LISTEN: `127.0.0.1:${await freePort()}`,
      RAMPART_AGENT_HEARTBEAT_SECONDS: '1',
      // Host certificates last 365 days: every one is within this window.
      RAMPART_HOST_CERT_RENEW_DAYS: '366',
    },
  });
});

process.on('exit', () => killAgent(agent));

after(async () => {
  killAgent(agent);
  agent = null;
  await harness?.cleanup();
});

test('a certificate about to expire is renewed over the link once, and the old one revoked', async () => {
  const dir = join(harness.dataDir, 'hosts', NAME);
  const hostId = await joinHost(harness, NAME, dir);
  const joinedSerial = serialOf(dir);
  agent = startRemoteAgent({
    name: NAME,
    dataDir: dir,
    logFile: join(harness.dataDir, `agent-${NAME}.log`),
    cgroupParent: harness.cgroupParent,
  });
  await harness.waitFor(
    async () => /older host certificates revoked/.test(harness.serverOutput),
    60_000,
    'the host to reconnect with a renewed certificate',
  );
  const renewedSerial = serialOf(dir);
  assert.notEqual(renewedSerial, joinedSerial, 'the host holds a new certificate');
  assert.match(
    harness.serverOutput,
    new RegExp(`"serial":"${renewedSerial}"[^\\n]*host certificate renewed`),
  );
  await harness.waitFor(
    async () =>
      (await harness.api<{ items: Host[] }>('GET', '/v1/hosts')).body.items.find((h) => h.id === hostId)
        ?.state === 'online',
    20_000,
    `${NAME} online`,
  );
  // Its reconnection (with a certificate still inside the window) starts no second renewal.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal(harness.serverOutput.match(/renewing an expiring host certificate/g)?.length, 1);
  assert.equal(serialOf(dir), renewedSerial);
  const log = readFileSync(join(harness.dataDir, `agent-${NAME}.log`), 'utf8');
  assert.equal(log.match(/new host certificate installed/g)?.length, 1);
  assert.ok(!/BEGIN (EC |)PRIVATE KEY/.test(log + harness.serverOutput), 'no key material in the logs');
});
