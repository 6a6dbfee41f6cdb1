/** /v1/vms: create, list, show, actions, delete, console tail and the live console WebSocket. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, RefParams, listOf } from '../../../api/common.js';
import { ConsoleQuery, ConsoleTail, Vm, VmCreate, VmStopBody, type VmAction } from '../../../api/vm.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema, 503: ErrorSchema };
const NoBody = Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })]);

export async function vmRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/vms',
    { schema: { tags: ['vms'], summary: 'List VMs', response: { 200: listOf(Vm), ...errors } } },
    async () => ({
      items: await ctx.vms.list(),
    }),
  );

  app.post(
    '/v1/vms',
    {
      schema: {
        tags: ['vms'],
        summary: 'Create a VM (and start it unless start is false)',
        body: VmCreate,
        response: { 201: Vm, ...errors },
      },
    },
    async (request, reply) => reply.status(201).send(await ctx.vms.create(request.body)),
  );

  app.get(
    '/v1/vms/:ref',
    {
      schema: {
        tags: ['vms'],
        summary: 'Show a VM by id or name',
        params: RefParams,
        response: { 200: Vm, ...errors },
      },
    },
    async (request) => ctx.vms.get(request.params.ref),
  );

  app.delete(
    '/v1/vms/:ref',
    {
      schema: {
        tags: ['vms'],
        summary:
          'Delete a VM (QEMU is stopped by force and its files removed); answers with the VM in state deleting',
        params: RefParams,
        response: { 202: Vm, ...errors },
      },
    },
    async (request, reply) => reply.status(202).send(await ctx.vms.delete(request.params.ref)),
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
          body: Type.Optional(NoBody),
          response: { 202: Vm, ...errors },
        },
      },
      async (request, reply) => reply.status(202).send(await ctx.vms.act(request.params.ref, action)),
    );
  }

  app.post(
    '/v1/vms/:ref/stop',
    {
      schema: {
        tags: ['vms'],
        summary: 'Stop a VM: ACPI power button, then by force after timeoutSeconds (or at once with force)',
        params: RefParams,
        body: Type.Optional(Type.Union([Type.Null(), VmStopBody])),
        response: { 202: Vm, ...errors },
      },
    },
    async (request, reply) =>
      reply.status(202).send(await ctx.vms.act(request.params.ref, 'stop', request.body ?? {})),
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
      const tail = await ctx.vms.consoleTail(request.params.ref, Math.min(bytes, 1_048_576));
      return {
        vmId: tail.vmId,
        bytes: tail.data.length,
        capBytes: tail.capBytes,
        data: tail.data.toString('utf8'),
      };
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
      },
    },
    async (socket, request) => {
      const { ref } = request.params;
      // Handlers are attached before any await: messages that arrive meanwhile are queued, not lost.
      let vmId: string | null = null;
      const early: Buffer[] = [];
      const write = (data: Buffer) => {
        if (vmId) void ctx.vms.consoleWrite(vmId, data).catch(() => undefined);
      };
      socket.on('message', (data: Buffer) => {
        if (data.length > 4096) return;
        if (vmId) write(data);
        else if (early.length < 64) early.push(data);
      });
      let unsubscribe: () => void = () => undefined;
      socket.on('close', () => unsubscribe());
      try {
        const id = (await ctx.vms.findRow(ref)).id;
        const tail = await ctx.vms.consoleTail(id, 4096);
        socket.send(tail.data);
        unsubscribe = ctx.consoleHub.subscribe(id, (data) => socket.send(data));
        vmId = id;
      } catch (error) {
        socket.close(4404, (error as Error).message.slice(0, 100));
        return;
      }
      for (const data of early.splice(0)) write(data);
    },
  );
}
