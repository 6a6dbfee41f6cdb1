/** Schemas shared by every resource: names, ids, timestamps, the error body, list envelopes. */
import { Type, type TSchema } from 'typebox';

/** DNS-label names: lowercase letters, digits and dashes, 1-63 chars. Never a path or shell fragment. */
export const NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
export const Name = Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: 63 });
export const Id = Type.String({ format: 'uuid', maxLength: 36 });
/** A path parameter naming an object by id or by name. */
export const Ref = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
export const Timestamp = Type.String({ format: 'date-time' });

export const RefParams = Type.Object({ ref: Ref }, { additionalProperties: false });

export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      requestId: Type.String(),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { $id: 'Error' },
);

export function listOf<T extends TSchema>(item: T) {
  return Type.Object({ items: Type.Array(item) });
}

/** The (empty) answer of a 204 No Content. */
export const NoContent = Type.Null({ description: 'No content' });

/**
 * An OpenSSH public key line: type, base64 body, optional comment (printable ASCII without `"` and `\`,
 * so it can be written quoted into a seed's YAML as is).
 */
export const SSH_PUBLIC_KEY_PATTERN =
  '^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\\.com) [A-Za-z0-9+/]+={0,3}( [ !#-\\[\\]-~]{1,255})?$';
