/**
 * HostNetwork keeps the firewall equal to the server's latest intent. A periodic reconciliation that
 * starts while a newer firewall is being applied must not put the older ruleset back afterwards (a
 * deleted security group rule came back that way). The nft side is a stand-in that serializes its calls
 * like the real manager and takes a while to apply; the device commands run in a namespace of the
 * test's own (root), which is deleted afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { HostFirewall } from '../../api/host-network.js';
import { createLogger } from '../../common/logger.js';
import { run, runSettled } from '../../common/subprocess.js';
import { HostNetwork, type FirewallPort } from './host-network.js';

const isRoot = process.getuid?.() === 0;

/** Applies after `applyMs`, one call at a time (as HostFirewallManager does); `live` is what is in place. */
class SlowFirewall implements FirewallPort {
  live: HostFirewall | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  constructor(private readonly applyMs: number) {}
  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }
  apply(fw: HostFirewall): Promise<void> {
    return this.serialized(async () => {
      await new Promise((resolve) => setTimeout(resolve, this.applyMs));
      this.live = fw;
    });
  }
  reconcile(fw: HostFirewall): Promise<string[]> {
    return this.serialized(() => {
      const differences = this.live?.generation === fw.generation ? [] : ['ruleset'];
      this.live = fw;
      return Promise.resolve(differences);
    });
  }
  remove(): Promise<void> {
    return this.serialized(() => {
      this.live = null;
      return Promise.resolve();
    });
  }
  readCounters(): ReturnType<FirewallPort['readCounters']> {
    return Promise.resolve([]);
  }
  readTelemetry(): ReturnType<FirewallPort['readTelemetry']> {
    return Promise.resolve({ counters: [], denied: [] });
  }
}

function firewall(generation: number, rulePort: number): HostFirewall {
  return {
    generation,
    ports: [
      {
        id: '00000000-0000-4000-8000-000000000001',
        networkId: '00000000-0000-4000-8000-000000000002',
        bridge: 'rbr-test',
        tap: 'rtap-test',
        tag: 1,
        zone: 2,
        mac: '02:00:00:00:00:01',
        ipv4: '10.9.0.2',
        prefixLength: 24,
        gateway: null,
        allowedAddresses: [],
      },
    ],
    rules: [{ tag: 1, direction: 'ingress', protocol: 'tcp', portMin: rulePort, portMax: rulePort } as never],
  };
}

test(
  'a reconciliation racing with a newer firewall never puts the older one back',
  { skip: isRoot ? false : 'needs root (a network namespace)' },
  async (t) => {
    const ns = `hn-${randomBytes(4).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    t.after(async () => {
      await runSettled('ip', ['netns', 'del', ns]);
    });
    for (let round = 0; round < 5; round++) {
      const nft = new SlowFirewall(40);
      const network = new HostNetwork({ netns: ns, log: createLogger('test', 'silent'), firewall: nft });
      await network.apply(firewall(1, 80));
      // The server removes the tcp/80 rule; the periodic reconciliation starts while it is applied.
      const applying = network.apply(firewall(2, 443));
      await new Promise((resolve) => setTimeout(resolve, 5 + round * 5));
      const reconciling = network.reconcile();
      await Promise.all([applying, reconciling]);
      assert.equal(nft.live?.generation, 2, `round ${round}: the newer firewall stays in place`);
      // And the next reconciliation keeps it too.
      await network.reconcile();
      assert.equal(nft.live?.generation, 2);
    }
  },
);
