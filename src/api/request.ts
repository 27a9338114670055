// What a client may ask for, validated before anything reaches the Kubernetes API. Identifiers become
// object names and host paths, so only values matching these rules ever leave this module.

import { posix } from 'node:path';
import { z } from 'zod';
import type { Config } from '../config.ts';
import {
  MAX_SANDBOX_ID,
  RESERVED_MOUNT_PATHS,
  SANDBOX_ID,
  SANDBOX_ID_LENGTH_RULE,
  SANDBOX_ID_RULE,
  SKILL_CATEGORIES,
  skillPath,
  SKILLS_PATH,
  THREAD_ID,
  USER_ID,
} from '../domain/sandbox.ts';
import type { ExtraMount, SandboxRequest } from '../domain/request.ts';
import { HttpError } from '../http/errors.ts';
import { builtinMountPaths } from '../provisioner/pod-spec.ts';

export const MAX_EXTRA_MOUNTS = 10;

export const sandboxIdSchema = z.string().max(MAX_SANDBOX_ID, SANDBOX_ID_LENGTH_RULE).regex(SANDBOX_ID, SANDBOX_ID_RULE);

export const threadIdSchema = z.string().regex(THREAD_ID, `thread_id must match ${THREAD_ID.source}`);

/** A sandbox's maximum age, at most 30 days. */
const ttlSecondsSchema = z
  .number()
  .int()
  .min(1)
  .max(30 * 86_400);

export const extraMountSchema = z.strictObject({
  host_path: z.string().min(1).max(4096),
  container_path: z.string().min(1).max(4096),
  read_only: z.boolean().default(false),
});

export const createRequestSchema = z
  .object({
    sandbox_id: sandboxIdSchema,
    thread_id: threadIdSchema.nullish(),
    user_id: z.string().regex(USER_ID, `user_id must match ${USER_ID.source}`).nullish(),
    // Bounded before its items are checked: a body of thousands of bad items costs one issue, not thousands.
    extra_mounts: z.array(extraMountSchema).max(MAX_EXTRA_MOUNTS, `at most ${MAX_EXTRA_MOUNTS} extra mounts`).nullish(),
    include_legacy_skills: z.boolean().default(false),
    provision_lark_cli_runtime: z.boolean().default(false),
    provision_lark_cli_broker: z.boolean().default(false),
    ttl_seconds: ttlSecondsSchema.nullish(),
    /** DeerFlow 2.1: where the skills are mounted; checked by toSandboxRequest (400 with DeerFlow's words). */
    skills_container_path: z.string().max(4096).default(SKILLS_PATH),
    /** DeerFlow 2.1: the sandbox's MAX_SHELL_SESSIONS (null or absent: the image's 10). */
    max_shell_sessions: z.number().int().gt(0).max(10_000).nullish(),
  })
  .meta({ id: 'CreateSandboxRequest' });

export const keepaliveRequestSchema = z
  .object({
    ttl_seconds: ttlSecondsSchema.nullish(),
    /** A lease: no suspension for this long (a run under way that the proxy may not see); 0 ends one. */
    lease_seconds: z.number().int().min(0).max(86_400).nullish(),
  })
  .meta({ id: 'KeepaliveRequest' });

const isUnder = (path: string, base: string): boolean => path === base || path.startsWith(base.endsWith('/') ? base : `${base}/`);

/** The header DeerFlow 2.1's gateway reads on a Lark conflict: drop the cached broker capability and ask again. */
export const CAPABILITY_REFRESH = { 'x-deerflow-capability-refresh': 'lark-broker' } as const;

/** DeerFlow 2.1's skills root rules, with its three details (400). */
export function skillsRoot(path: string): string {
  if (!path.startsWith('/') || path.startsWith('//') || path.includes('\0'))
    throw new HttpError('invalid_request', 'The skills container path must be an absolute non-root path');
  if (posix.normalize(path) !== path || path === '/' || path.endsWith('/'))
    throw new HttpError('invalid_request', "The skills container path must not be root or contain redundant separators, '.' or '..'");
  for (const reserved of RESERVED_MOUNT_PATHS)
    if (isUnder(path, reserved) || isUnder(reserved, path))
      throw new HttpError('invalid_request', `The skills container path '${path}' overlaps reserved sandbox path '${reserved}'`);
  return path;
}

/** The Lark flags against this provisioner's images: DeerFlow 2.1's 503 and 409, each asking the gateway to refresh. */
function checkLark(body: z.infer<typeof createRequestSchema>, config: Config): void {
  if (body.provision_lark_cli_broker && !config.lark.brokerImage)
    throw new HttpError('lark_broker_not_configured', 'Requested Lark broker image is not configured', { headers: CAPABILITY_REFRESH });
  if (body.provision_lark_cli_runtime && config.lark.brokerImage && !body.provision_lark_cli_broker)
    throw new HttpError('lark_broker_conflict', 'Configured Lark broker is required; refresh provisioner capabilities', {
      headers: CAPABILITY_REFRESH,
    });
  if (body.provision_lark_cli_runtime && !body.provision_lark_cli_broker && !config.lark.initImage) {
    throw new HttpError(
      'unsupported_feature',
      'provision_lark_cli_runtime needs LARK_CLI_INIT_IMAGE, which this provisioner is not configured with',
    );
  }
}

/** Validates a parsed body against the operator's configuration (400 with a clear detail otherwise). */
export function toSandboxRequest(body: z.infer<typeof createRequestSchema>, config: Config): SandboxRequest {
  const root = skillsRoot(body.skills_container_path);
  checkLark(body, config);
  const mounts = body.extra_mounts ?? [];
  if (mounts.length > 0 && config.extraMounts.baseDir === undefined) {
    throw new HttpError('unsupported_feature', 'extra_mounts need EXTRA_MOUNTS_BASE_DIR, which this provisioner is not configured with');
  }
  const seen = new Set<string>();
  const extraMounts: ExtraMount[] = [];
  for (const m of mounts) {
    const host = m.host_path;
    if (!host.startsWith('/') || host.includes('\0'))
      throw new HttpError('invalid_request', `Extra mount host path must be absolute: ${JSON.stringify(host)}`);
    const hostPath = posix.normalize(host);
    if (host.split('/').includes('..') || !isUnder(hostPath, config.extraMounts.baseDir ?? '/nonexistent')) {
      throw new HttpError('invalid_request', `Extra mount host path is outside ${config.extraMounts.baseDir}: ${JSON.stringify(host)}`);
    }
    const containerPath = posix.normalize(m.container_path);
    if (!m.container_path.startsWith('/') || m.container_path.includes('\0') || m.container_path.split('/').includes('..')) {
      throw new HttpError('invalid_request', `Extra mount container path must be absolute: ${JSON.stringify(m.container_path)}`);
    }
    const clean = containerPath.length > 1 ? containerPath.replace(/\/+$/, '') : containerPath;
    if (!config.extraMounts.allowedPaths.includes(clean) && !SKILL_CATEGORIES.some((c) => clean === skillPath(root, c)))
      throw new HttpError('invalid_request', `Unsupported extra mount path: ${clean}`);
    if (builtinMountPaths(root).some((b) => b === clean || isUnder(b, clean)))
      throw new HttpError('invalid_request', `Extra mount path clashes with a built-in mount: ${clean}`);
    if (seen.has(clean)) throw new HttpError('invalid_request', `Duplicate extra mount path: ${clean}`);
    seen.add(clean);
    extraMounts.push({ hostPath, containerPath: clean, readOnly: m.read_only });
  }
  return {
    sandboxId: body.sandbox_id,
    threadId: body.thread_id ?? body.sandbox_id,
    userId: body.user_id ?? 'default',
    extraMounts,
    includeLegacySkills: body.include_legacy_skills,
    larkRuntime: body.provision_lark_cli_runtime,
    larkBroker: body.provision_lark_cli_broker,
    ttlSeconds: body.ttl_seconds ?? undefined,
    skillsRoot: root,
    maxShellSessions: body.max_shell_sessions ?? undefined,
  };
}
