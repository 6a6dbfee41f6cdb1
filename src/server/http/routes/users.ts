/** /v1/users: platform administration of user accounts. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ConflictError } from '../../../api/errors.js';
import { ErrorSchema, NoContent, listOf } from '../../../api/common.js';
import { PasswordReset, User, UserCreate, UserUpdate } from '../../../api/iam.js';
import { userToApi } from '../../iam/user-directory.js';
import { requirePrincipal } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema };
const UserParams = Type.Object(
  { ref: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export async function userRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  /** The last platform admin can be neither disabled nor deleted (the platform would be unmanageable). */
  async function assertNotLastAdmin(userId: string): Promise<void> {
    const isAdmin = ctx.roles.policy.rolesOf(userId, null).includes('platform-admin');
    if (isAdmin && (await ctx.roles.platformAdminCount()) <= 1)
      throw new ConflictError('this is the last platform admin');
  }

  app.get(
    '/v1/users',
    { schema: { tags: ['users'], summary: 'List users', response: { 200: listOf(User), ...errors } } },
    async () => ({ items: (await ctx.users.list()).map(userToApi) }),
  );

  app.post(
    '/v1/users',
    {
      schema: {
        tags: ['users'],
        summary:
          'Create a user (password policy applies; they change it at first login unless told otherwise)',
        body: UserCreate,
        response: { 201: User, ...errors },
      },
    },
    async (request, reply) => {
      const row = await ctx.users.create(request.body);
      request.auditInfo!.target = row.id;
      return reply.status(201).send(userToApi(row));
    },
  );

  app.get(
    '/v1/users/:ref',
    {
      schema: {
        tags: ['users'],
        summary: 'Show a user by id or username',
        params: UserParams,
        response: { 200: User, ...errors },
      },
    },
    async (request) => userToApi(await ctx.users.get(request.params.ref)),
  );

  app.patch(
    '/v1/users/:ref',
    {
      schema: {
        tags: ['users'],
        summary: 'Disable or enable a user; disabling revokes all their sessions and tokens at once',
        params: UserParams,
        body: UserUpdate,
        response: { 200: User, ...errors },
      },
    },
    async (request) => {
      const user = await ctx.users.get(request.params.ref);
      if (request.body.disabled === undefined) return userToApi(user);
      if (request.body.disabled) {
        if (user.id === requirePrincipal(request).userId)
          throw new ConflictError('you cannot disable yourself');
        await assertNotLastAdmin(user.id);
      }
      return userToApi(await ctx.users.setDisabled(user.id, request.body.disabled));
    },
  );

  app.post(
    '/v1/users/:ref/password',
    {
      schema: {
        tags: ['users'],
        summary: "Reset a user's password (revokes their sessions; they must change it at next login)",
        params: UserParams,
        body: PasswordReset,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const user = await ctx.users.get(request.params.ref);
      await ctx.users.resetPassword(user.id, request.body.password);
      return reply.status(204).send(null);
    },
  );

  app.delete(
    '/v1/users/:ref',
    {
      schema: {
        tags: ['users'],
        summary: 'Delete a user (sessions, tokens and role bindings go too)',
        params: UserParams,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      const user = await ctx.users.get(request.params.ref);
      if (user.id === requirePrincipal(request).userId) throw new ConflictError('you cannot delete yourself');
      await assertNotLastAdmin(user.id);
      await ctx.users.delete(user.id);
      await ctx.roles.reload();
      return reply.status(204).send(null);
    },
  );
}
