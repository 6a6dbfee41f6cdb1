/** /v1/vms: create, list, show, actions, delete, console tail and the live console WebSocket. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, RefParams, listOf } from '../../../api/common.js';
import { NotFoundError } from '../../../api/errors.js';
import { TenantQuery } from '../../../api/iam.js';
import { VmResizeBody } from '../../../api/vm.js';
import { VmHardening } from '../../../api/hardening.js';
import {
  ConsoleQuery,
  ConsoleTail,
  Vm,
  VmCreate,
  VmSample,
  VmSamplesQuery,
  VmStopBody,
  type VmAction,
} from '../../../api/vm.js';
import { auditEntry, requireTenant } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  409: ErrorSchema,
  503: ErrorSchema,
};
const NoBody = Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })]);

export async function vmRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/vms',
    {
      schema: {
        tags: ['vms'],
        summary: 'List the VMs of the request tenant',
        querystring: TenantQuery,
        response: { 200: listOf(Vm), ...errors },
      },
    },
    async (request) => ({
      items: await ctx.vms.list(requireTenant(request).id),
    }),
  );

  app.post(
    '/v1/vms',
    {
      schema: {
        tags: ['vms'],
        summary: 'Create a VM (and start it unless start is false)',
        querystring: TenantQuery,
        body: VmCreate,
        response: { 201: Vm, ...errors },
      },
    },
    async (request, reply) => {
      const vm = await ctx.vms.create(request.body, requireTenant(request).id);
      request.auditInfo!.target = vm.id;
      return reply.status(201).send(vm);
    },
  );

  app.get(
    '/v1/vms/:ref',
    {
      schema: {
        tags: ['vms'],
        summary: 'Show a VM by id or name',
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: Vm, ...errors },
      },
    },
    async (request) => ctx.vms.get(request.params.ref, requireTenant(request).id),
  );

  app.delete(
    '/v1/vms/:ref',
    {
      schema: {
        tags: ['vms'],
        summary:
          'Delete a VM (QEMU is stopped by force and its files removed); answers with the VM in state deleting',
        params: RefParams,
        querystring: TenantQuery,
        response: { 202: Vm, ...errors },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await ctx.vms.delete(request.params.ref, requireTenant(request).id)),
  );

  const simpleActions: Exclude<VmAction, 'stop'>[] = ['start', 'reboot', 'pause', 'resume'];
  for (const action of simpleActions) {
    app.post(
      `/v1/vms/:ref/${action}`,
      {
        schema: {
          tags: ['vms'],
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} a VM`,
          params: RefParams,
          querystring: TenantQuery,
          body: Type.Optional(NoBody),
          response: { 202: Vm, ...errors },
        },
      },
      async (request, reply) =>
        reply
          .status(202)
          .send(await ctx.vms.act(request.params.ref, action, undefined, requireTenant(request).id)),
    );
  }

  app.post(
    '/v1/vms/:ref/stop',
    {
      schema: {
        tags: ['vms'],
        summary: 'Stop a VM: ACPI power button, then by force after timeoutSeconds (or at once with force)',
        params: RefParams,
        querystring: TenantQuery,
        body: Type.Optional(Type.Union([Type.Null(), VmStopBody])),
        response: { 202: Vm, ...errors },
      },
    },
    async (request, reply) =>
      reply
        .status(202)
        .send(await ctx.vms.act(request.params.ref, 'stop', request.body ?? {}, requireTenant(request).id)),
  );

  app.post(
    '/v1/vms/:ref/resize',
    {
      schema: {
        tags: ['vms'],
        summary: 'Give a stopped VM another flavor (quota counts the difference)',
        params: RefParams,
        querystring: TenantQuery,
        body: VmResizeBody,
        response: { 200: Vm, ...errors },
      },
    },
    async (request) => ctx.vms.resize(request.params.ref, request.body.flavor, requireTenant(request).id),
  );

  app.get(
    '/v1/vms/:ref/hardening',
    {
      schema: {
        tags: ['vms'],
        summary:
          "The VM's hardening self-check, read back from its host: uid, seccomp mode, no_new_privs, capabilities, rlimits, environment, cgroups, PCI devices (QMP) and listening sockets, each judged",
        params: RefParams,
        querystring: TenantQuery,
        response: { 200: VmHardening, ...errors },
      },
    },
    async (request) => ctx.vms.hardening(request.params.ref, requireTenant(request).id),
  );

  app.get(
    '/v1/vms/:ref/console',
    {
      schema: {
        tags: ['vms'],
        summary: 'The tail of the VM serial console (kept on the host up to a size cap)',
        params: RefParams,
        querystring: ConsoleQuery,
        response: { 200: ConsoleTail, ...errors },
      },
    },
    async (request) => {
      const bytes = Number(request.query.bytes ?? 65_536);
      const tail = await ctx.vms.consoleTail(
        request.params.ref,
        Math.min(bytes, 1_048_576),
        requireTenant(request).id,
      );
      return {
        vmId: tail.vmId,
        bytes: tail.data.length,
        capBytes: tail.capBytes,
        data: tail.data.toString('utf8'),
      };
    },
  );

  app.get(
    '/v1/vms/:ref/samples',
    {
      schema: {
        tags: ['vms'],
        summary:
          "The VM's resource samples of the last hour, oldest first (CPU, memory, packets and bytes; one per RAMPART_TELEMETRY_SECONDS while it runs)",
        params: RefParams,
        querystring: VmSamplesQuery,
        response: { 200: listOf(VmSample), ...errors },
      },
    },
    async (request) => {
      const vm = await ctx.vms.findRow(request.params.ref, requireTenant(request).id);
      return { items: ctx.vmSamples.list(vm.id, request.query.after) };
    },
  );

  app.get(
    '/v1/vms/:ref/console/stream',
    {
      websocket: true,
      schema: {
        tags: ['vms'],
        summary:
          'WebSocket: the console tail, then live output; text sent by the client is typed into the console',
        params: RefParams,
        querystring: TenantQuery,
      },
    },
    async (socket, request) => {
      const { ref } = request.params;
      const tenantId = requireTenant(request).id;
      // Handlers are attached before any await: messages that arrive meanwhile are queued, not lost.
      let vmId: string | null = null;
      const early: Buffer[] = [];
      // Keystrokes are written one after another: concurrent writes could overtake each other (a
      // pooled database answers the VM lookups in any order; a forwarded write crosses replicas).
      let writing: Promise<void> = Promise.resolve();
      const write = (data: Buffer) => {
        const id = vmId;
        if (!id) return;
        writing = writing.then(() => ctx.vms.consoleWrite(id, data)).catch(() => undefined);
      };
      socket.on('message', (data: Buffer) => {
        if (data.length > 4096) return;
        if (vmId) write(data);
        else if (early.length < 64) early.push(data);
      });
      let unsubscribe: () => void = () => undefined;
      socket.on('close', () => unsubscribe());
      try {
        const id = (await ctx.vms.findRow(ref, tenantId)).id;
        // A console session is recorded before it starts (fail closed: no record, no console).
        await ctx.audit.append(auditEntry(request, 101));
        const tail = await ctx.vms.consoleTail(id, 4096);
        socket.send(tail.data);
        unsubscribe = ctx.consoleHub.subscribe(id, (data) => socket.send(data));
        vmId = id;
      } catch (error) {
        if (error instanceof NotFoundError) {
          await ctx.audit.append(auditEntry(request, 404, 'RAMPART_NOT_FOUND')).catch(() => undefined);
          socket.close(4404, error.message.slice(0, 100));
        } else {
          socket.close(4503, 'console unavailable');
        }
        return;
      }
      for (const data of early.splice(0)) write(data);
    },
  );
}
