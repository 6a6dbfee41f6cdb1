/** /v1/networks, /v1/security-groups and the ports of a VM. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, Id, NoContent, Ref, RefParams, listOf } from '../../../api/common.js';
import { TenantQuery } from '../../../api/iam.js';
import {
  AllowedAddressesUpdate,
  Network,
  NetworkCreate,
  NetworkUpdate,
  Port,
  PortSecurityGroupsUpdate,
  SecurityGroup,
  SecurityGroupCreate,
  SecurityGroupRule,
  SecurityGroupRuleCreate,
} from '../../../api/network.js';
import { NotFoundError } from '../../../api/errors.js';
import { requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const RuleParams = Type.Object({ ref: Ref, rule: Id }, { additionalProperties: false });
const PortParams = Type.Object({ ref: Ref, port: Id }, { additionalProperties: false });

export async function networkRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const net = ctx.networks;
  /** After a change to a tenant's groups or ports: every host with its VMs gets its new firewall. */
  const republish = async (tenantId: string) => ctx.vms.publishFirewalls(await net.hostsOfTenant(tenantId));

  app.get(
    '/v1/networks',
    {
      schema: {
        tags: ['networks'],
        summary: "List the tenant's networks",
        querystring: TenantQuery,
        response: { 200: listOf(Network), ...errors },
      },
    },
    async (request) => ({ items: await net.listNetworks(requireTenant(request).id) }),
  );

  app.post(
    '/v1/networks',
    {
      schema: {
        tags: ['networks'],
        summary:
          'Create a network (an isolated layer-2 segment with an IPv4 subnet; IPAM hands out addresses)',
        querystring: TenantQuery,
        body: NetworkCreate,
        response: { 201: Network, ...errors },
      },
    },
    async (request, reply) => {
      const created = await net.createNetwork(requireTenant(request).id, request.body);
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `${created.name} ${created.cidr}`;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/networks/:ref',
    {
      schema: {
        tags: ['networks'],
        summary: 'Show a network by id or name',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Network, ...errors },
      },
    },
    async (request) => net.getNetwork(request.params.ref, requireTenant(request).id),
  );

  app.patch(
    '/v1/networks/:ref',
    {
      schema: {
        tags: ['networks'],
        summary:
          "Turn outbound access (NAT on the host, never into the host's management networks) on or off, or change the description",
        params: RefParams,
        querystring: TenantQuery,
        body: NetworkUpdate,
        response: { 200: Network, ...errors },
      },
    },
    async (request) => {
      const tenantId = requireTenant(request).id;
      const updated = await net.updateNetwork(request.params.ref, tenantId, request.body);
      request.auditInfo!.target = updated.id;
      request.auditInfo!.detail = `outbound ${updated.outbound ? 'on' : 'off'}`;
      await ctx.vms.publishFirewalls(await net.hostsOfNetwork(updated.id));
      return updated;
    },
  );

  app.delete(
    '/v1/networks/:ref',
    {
      schema: {
        tags: ['networks'],
        summary: 'Delete a network that no VM uses',
        params: RefParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const deleted = await net.deleteNetwork(request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = deleted.id;
      request.auditInfo!.detail = deleted.name;
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/security-groups',
    {
      schema: {
        tags: ['security groups'],
        summary: "List the tenant's security groups with their rules (the `default` group always exists)",
        querystring: TenantQuery,
        response: { 200: listOf(SecurityGroup), ...errors },
      },
    },
    async (request) => ({ items: await net.listGroups(requireTenant(request).id) }),
  );

  app.post(
    '/v1/security-groups',
    {
      schema: {
        tags: ['security groups'],
        summary: 'Create a security group (no rules: it allows nothing until rules are added)',
        querystring: TenantQuery,
        body: SecurityGroupCreate,
        response: { 201: SecurityGroup, ...errors },
      },
    },
    async (request, reply) => {
      const created = await net.createGroup(requireTenant(request).id, request.body);
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = created.name;
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/v1/security-groups/:ref',
    {
      schema: {
        tags: ['security groups'],
        summary: 'Show a security group and its rules',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: SecurityGroup, ...errors },
      },
    },
    async (request) => net.getGroup(request.params.ref, requireTenant(request).id),
  );

  app.delete(
    '/v1/security-groups/:ref',
    {
      schema: {
        tags: ['security groups'],
        summary: 'Delete a security group no port carries and no rule refers to',
        params: RefParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const deleted = await net.deleteGroup(request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = deleted.id;
      request.auditInfo!.detail = deleted.name;
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/security-groups/:ref/rules',
    {
      schema: {
        tags: ['security groups'],
        summary:
          'Add a rule: direction, protocol (tcp, udp, icmp, any), port range (tcp/udp), remote CIDR (default 0.0.0.0/0) or remote group. Applied to every host at once',
        params: RefParams,
        querystring: TenantQuery,
        body: SecurityGroupRuleCreate,
        response: { 201: SecurityGroupRule, ...errors },
      },
    },
    async (request, reply) => {
      const tenantId = requireTenant(request).id;
      const rule = await net.addRule(request.params.ref, tenantId, request.body);
      request.auditInfo!.target = rule.id;
      request.auditInfo!.detail = describeRule(request.params.ref, rule);
      await republish(tenantId);
      return reply.status(201).send(rule);
    },
  );

  app.delete(
    '/v1/security-groups/:ref/rules/:rule',
    {
      schema: {
        tags: ['security groups'],
        summary: 'Delete a rule (new connections it allowed are refused at once)',
        params: RuleParams,
        querystring: TenantQuery,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const tenantId = requireTenant(request).id;
      const rule = await net.deleteRule(request.params.ref, tenantId, request.params.rule);
      request.auditInfo!.target = rule.id;
      await republish(tenantId);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/vms/:ref/ports',
    {
      schema: {
        tags: ['vms'],
        summary:
          "A VM's network ports: addresses, security groups and live counters (accepted, dropped by reason)",
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: listOf(Port), ...errors },
      },
    },
    async (request) => {
      const vm = await ctx.vms.findRow(request.params.ref, requireTenant(request).id);
      return { items: await ctx.vms.portsWithCounters(vm) };
    },
  );

  app.put(
    '/v1/vms/:ref/isolation',
    {
      schema: {
        tags: ['vms', 'security'],
        summary:
          'Isolate a VM (every frame from and to its ports dropped by its host, established flows included) or release it; what the isolate-vm detection response does',
        params: RefParams,
        querystring: TenantQuery,
        body: Type.Object({ isolated: Type.Boolean() }, { additionalProperties: false }),
        response: { 200: listOf(Port), ...errors },
      },
    },
    async (request) => {
      const vm = await ctx.vms.findRow(request.params.ref, requireTenant(request).id);
      request.auditInfo!.target = vm.id;
      request.auditInfo!.detail = request.body.isolated ? 'isolated' : 'released from isolation';
      return { items: await ctx.vms.setIsolation(vm, request.body.isolated) };
    },
  );

  app.put(
    '/v1/vms/:ref/ports/:port/security-groups',
    {
      schema: {
        tags: ['vms'],
        summary: 'Set the security groups of a VM port (their rules add up; none: only return traffic)',
        params: PortParams,
        querystring: TenantQuery,
        body: PortSecurityGroupsUpdate,
        response: { 200: Port, ...errors },
      },
    },
    async (request) => {
      const tenantId = requireTenant(request).id;
      const vm = await ctx.vms.findRow(request.params.ref, tenantId);
      const port = await net.findPort(vm.id, request.params.port);
      request.auditInfo!.target = port.id;
      request.auditInfo!.detail = `security groups: ${request.body.securityGroups.join(', ') || '(none)'}`;
      await net.setPortGroups(port, request.body.securityGroups);
      await republish(tenantId);
      const ports = await ctx.vms.portsWithCounters(vm);
      const updated = ports.find((p) => p.id === port.id);
      if (!updated) throw new NotFoundError('port');
      return updated;
    },
  );

  app.put(
    '/v1/platform/vms/:ref/ports/:port/allowed-addresses',
    {
      schema: {
        tags: ['vms'],
        summary:
          'Platform admins: extra source addresses a VM port may use (anti-spoofing exceptions, e.g. a VIP); never 0.0.0.0/0',
        params: PortParams,
        body: AllowedAddressesUpdate,
        response: { 200: Port, ...errors },
      },
    },
    async (request) => {
      const vm = await ctx.vms.findRow(request.params.ref);
      const port = await net.findPort(vm.id, request.params.port);
      request.auditInfo!.target = port.id;
      request.auditInfo!.detail = `allowed addresses: ${request.body.allowedAddresses.join(', ') || '(none)'}`;
      await net.setAllowedAddresses(port, request.body.allowedAddresses);
      if (vm.hostId) await ctx.vms.publishFirewalls([vm.hostId]);
      const updated = (await ctx.vms.portsWithCounters(vm)).find((p) => p.id === port.id);
      if (!updated) throw new NotFoundError('port');
      return updated;
    },
  );
}

function describeRule(group: string, rule: SecurityGroupRule): string {
  const ports =
    rule.portMin === null ? '' : `/${rule.portMin}${rule.portMax !== rule.portMin ? `-${rule.portMax}` : ''}`;
  const remote = rule.remoteCidr ?? `group ${rule.remoteGroupId ?? '?'}`;
  return `${group}: ${rule.direction} ${rule.protocol}${ports} ${rule.direction === 'ingress' ? 'from' : 'to'} ${remote}`;
}
