import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contains, intToIp, ipToInt, parseCidr, usableRange } from './ipv4.js';

test('addresses round-trip and bad ones are refused', () => {
  assert.equal(intToIp(ipToInt('10.1.2.3')), '10.1.2.3');
  assert.equal(ipToInt('255.255.255.255'), 0xffffffff);
  for (const bad of ['10.1.2', '10.1.2.256', '01.1.1.1', 'a.b.c.d', '1.2.3.4.5'])
    assert.throws(() => ipToInt(bad), /not an IPv4 address/);
});

test('CIDRs: strict networks, normalized remote ranges, usable ranges', () => {
  assert.deepEqual(parseCidr('10.0.0.0/24', { strict: true }), {
    base: ipToInt('10.0.0.0'),
    prefixLength: 24,
    cidr: '10.0.0.0/24',
  });
  assert.throws(
    () => parseCidr('10.0.0.5/24', { strict: true }),
    /host bits set; the subnet is 10.0.0.0\/24/,
  );
  assert.equal(parseCidr('10.0.0.5/24').cidr, '10.0.0.0/24');
  assert.equal(parseCidr('0.0.0.0/0').cidr, '0.0.0.0/0');
  assert.throws(() => parseCidr('10.0.0.0/33'), /not an IPv4 CIDR/);
  const range = usableRange(parseCidr('192.168.5.0/29'));
  assert.equal(intToIp(range.first), '192.168.5.2');
  assert.equal(intToIp(range.last), '192.168.5.6');
  assert.equal(range.count, 5);
  assert.ok(contains(parseCidr('10.0.0.0/8'), '10.200.1.1'));
  assert.ok(!contains(parseCidr('10.0.0.0/24'), '10.0.1.1'));
});
