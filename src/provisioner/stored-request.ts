// The request a sandbox's pods are made from, as its Service keeps it (ANNOTATION_REQUEST): what a
// suspended sandbox wakes from. Read back with the same rules a request passed when it was made: an
// annotation edited by hand into something else is refused, never turned into a pod.

import { z } from 'zod';
import type { SandboxRequest } from '../domain/request.ts';
import { isSandboxId, THREAD_ID, USER_ID } from '../domain/sandbox.ts';
import { HttpError } from '../http/errors.ts';

const absolute = z
  .string()
  .max(4096)
  .regex(/^\/[^\0]*$/)
  .refine((p) => !p.split('/').includes('..'));

const schema = z.object({
  sandboxId: z.string().refine(isSandboxId),
  threadId: z.string().regex(THREAD_ID),
  userId: z.string().regex(USER_ID),
  extraMounts: z.array(z.object({ hostPath: absolute, containerPath: absolute, readOnly: z.boolean() })).max(10),
  includeLegacySkills: z.boolean(),
  larkRuntime: z.boolean(),
  larkBroker: z.boolean(),
  skillsRoot: absolute,
  maxShellSessions: z.number().int().positive().max(10_000).optional(),
  ttlSeconds: z.number().int().positive().optional(),
});

/** The stored request of sandbox `id`, or a 409 `not_resumable` saying why it cannot be woken. */
export function storedRequest(id: string, text: string | undefined): SandboxRequest {
  if (text === undefined)
    throw new HttpError(
      'not_resumable',
      `Sandbox '${id}' has no stored request on its Service (made by an earlier version or another provisioner): it cannot be suspended or woken; delete it and create it again`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const result = schema.safeParse(parsed);
  if (!result.success || result.data.sandboxId !== id)
    throw new HttpError(
      'not_resumable',
      `Sandbox '${id}': the request stored on its Service is not one this service wrote; delete it and create it again`,
    );
  const r = result.data;
  return { ...r, maxShellSessions: r.maxShellSessions, ttlSeconds: r.ttlSeconds };
}
