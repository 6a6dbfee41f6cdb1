/**
 * Networks that span hosts, at the service level (SQLite): each host's firewall intent names, for every
 * network with ports there, its VNI (the network's zone) and the tunnel addresses of the other hosts
 * with running ports on it; hosts without a tunnel address are never peers and get none; the hosts to
 * update after a change include every host sharing a network with the changed one.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_QUOTA, QuotaService } from '../quota/quota-service.js';
import { openDatabase, rawSqlite, type Db } from '../store/database.js';
import { bridgeName, NetworkService } from './network-service.js';

const root = mkdtempSync(join(tmpdir(), 'rampart-netsvc-'));
let db: Db;
let service: NetworkService;
const now = new Date().toISOString();
const TENANT = randomUUID();
const hosts = { a: randomUUID(), b: randomUUID(), c: randomUUID(), d: randomUUID() };
const nets = { blue: randomUUID(), red: randomUUID(), lone: randomUUID() };
let tag = 0;

async function addHost(id: string, name: string, tunnelIp: string | null): Promise<void> {
  await db
    .insertInto('hosts')
    .values({
      id,
      hostname: name,
      state: 'online',
      accelerator: 'tcg',
      acceleratorReason: '',
      qemuVersion: '',
      agentVersion: '',
      cpus: 4,
      memoryMib: 4096,
      vcpusAllocatable: 4,
      memoryMibAllocatable: 4096,
      maintenance: 0,
      tunnelIp,
      lastSeenAt: now,
      createdAt: now,
    })
    .execute();
}

async function addNetwork(id: string, name: string, zone: number): Promise<void> {
  await db
    .insertInto('networks')
    .values({
      id,
      tenantId: TENANT,
      name,
      cidr: '10.9.0.0/24',
      zone,
      outbound: 0,
      description: '',
      createdAt: now,
    })
    .execute();
}

/** A VM on `hostId` with one port on each of `networks`. */
async function addVm(hostId: string, networks: string[], power = 'running'): Promise<string> {
  const id = randomUUID();
  await db
    .insertInto('vms')
    .values({
      id,
      tenantId: TENANT,
      name: `vm-${id.slice(0, 8)}`,
      imageId: randomUUID(),
      flavorId: randomUUID(),
      vcpus: 1,
      memoryMib: 128,
      diskGib: 1,
      cpuLimitPercent: null,
      networkMbps: null,
      cpuWeight: 100,
      pidsMax: 100,
      state: 'running',
      power,
      bootId: 1,
      rebootId: 0,
      stopTimeoutMs: 1000,
      restartPolicy: 'never',
      restartCount: 0,
      hostId,
      accelerator: null,
      pid: null,
      guestIps: '[]',
      lastHeartbeatAt: null,
      guestUptimeSeconds: null,
      bootMs: null,
      error: null,
      createdAt: now,
      updatedAt: now,
    })
    .execute();
  for (const networkId of networks) {
    tag += 1;
    await db
      .insertInto('ports')
      .values({
        id: randomUUID(),
        tenantId: TENANT,
        networkId,
        vmId: id,
        tag,
        mac: `52:54:00:00:00:${tag.toString(16).padStart(2, '0')}`,
        ipv4: `10.9.0.${tag + 1}`,
        allowedAddresses: '[]',
        createdAt: now,
      })
      .execute();
  }
  return id;
}

before(async () => {
  db = await openDatabase(join(root, 'rampart.db'));
  // Only the rows these tests need (no images, flavors or tenants behind the VMs).
  rawSqlite(db).pragma('foreign_keys = OFF');
  service = new NetworkService(db, new QuotaService(db, { defaults: DEFAULT_QUOTA, enforce: false }));
  await addHost(hosts.a, 'a', '192.0.2.1');
  await addHost(hosts.b, 'b', '192.0.2.2');
  await addHost(hosts.c, 'c', '192.0.2.3');
  await addHost(hosts.d, 'd', null);
  await addNetwork(nets.blue, 'blue', 11);
  await addNetwork(nets.red, 'red', 12);
  await addNetwork(nets.lone, 'lone', 13);
  // blue: a, b, c (c's VM powered off), d (no tunnel address); red: a, b; lone: a only.
  await addVm(hosts.a, [nets.blue, nets.red, nets.lone]);
  await addVm(hosts.a, [nets.blue]);
  await addVm(hosts.b, [nets.blue]);
  await addVm(hosts.b, [nets.red]);
  await addVm(hosts.c, [nets.blue], 'stopped');
  await addVm(hosts.d, [nets.blue]);
});

after(async () => {
  await db?.destroy();
  rmSync(root, { recursive: true, force: true });
});

describe('tunnel peers in the firewall intent', () => {
  test('each network with ports on the host names its VNI and the other hosts with running ports', async () => {
    const fw = await service.firewallFor(hosts.a, 1);
    const byBridge = new Map((fw.networks ?? []).map((n) => [n.bridge, n]));
    assert.deepEqual(
      { vni: byBridge.get(bridgeName(nets.blue))?.vni, peers: byBridge.get(bridgeName(nets.blue))?.peers },
      // c's only VM there is powered off (no tap, no peer); d has no tunnel address.
      { vni: 11, peers: ['192.0.2.2'] },
    );
    assert.deepEqual(byBridge.get(bridgeName(nets.red))?.peers, ['192.0.2.2']);
    assert.equal(byBridge.get(bridgeName(nets.red))?.vni, 12);
    // A network on this host only: no tunnel.
    assert.equal(byBridge.get(bridgeName(nets.lone))?.peers, undefined);
    assert.equal(byBridge.get(bridgeName(nets.lone))?.vni, undefined);

    const b = await service.firewallFor(hosts.b, 2);
    assert.deepEqual(
      (b.networks ?? []).map((n) => [n.bridge, n.vni, n.peers]).sort(),
      [
        [bridgeName(nets.blue), 11, ['192.0.2.1']],
        [bridgeName(nets.red), 12, ['192.0.2.1']],
      ].sort(),
    );
  });

  test('a host without a tunnel address gets no peers, and a host with no running port none', async () => {
    const d = await service.firewallFor(hosts.d, 3);
    assert.equal(d.ports.length, 1);
    assert.ok((d.networks ?? []).every((n) => n.peers === undefined && n.vni === undefined));
    const c = await service.firewallFor(hosts.c, 4);
    assert.deepEqual(c.ports, []);
    assert.deepEqual(c.networks, []);
  });

  test('a VM starting on another host makes it a peer of the hosts on its network', async () => {
    const vm = await addVm(hosts.c, [nets.red]);
    const a = await service.firewallFor(hosts.a, 5);
    assert.deepEqual(a.networks?.find((n) => n.bridge === bridgeName(nets.red))?.peers, [
      '192.0.2.2',
      '192.0.2.3',
    ]);
    await db.deleteFrom('ports').where('vmId', '=', vm).execute();
    await db.deleteFrom('vms').where('id', '=', vm).execute();
    const again = await service.firewallFor(hosts.a, 6);
    assert.deepEqual(again.networks?.find((n) => n.bridge === bridgeName(nets.red))?.peers, ['192.0.2.2']);
  });

  test('the hosts to update after a change: every host (with a tunnel address) sharing a network', async () => {
    // b shares blue and red with a (and blue with c, whose VM there is off but may start again).
    assert.deepEqual(
      (await service.hostsSharingNetworks([hosts.b])).sort(),
      [hosts.a, hosts.b, hosts.c].sort(),
    );
    // A VM gone from its host: the hosts of its networks, given by the caller (red: a, b), with those
    // of the host's remaining networks (d's blue: a, b, c).
    assert.deepEqual(
      (await service.hostsSharingNetworks([hosts.c], [nets.red])).sort(),
      [hosts.a, hosts.b, hosts.c].sort(),
    );
    assert.deepEqual(
      (await service.hostsSharingNetworks([hosts.d], [nets.red])).sort(),
      [hosts.a, hosts.b, hosts.c, hosts.d].sort(),
    );
    // A host with only a network of its own: nobody else.
    const lonely = randomUUID();
    await addHost(lonely, 'e', '192.0.2.5');
    const net = randomUUID();
    await addNetwork(net, 'solo', 14);
    await addVm(lonely, [net]);
    assert.deepEqual(await service.hostsSharingNetworks([lonely]), [lonely]);
    assert.deepEqual(await service.hostsSharingNetworks([]), []);
  });
});
