// A sandbox request after validation (api/request.ts makes these from bodies): every field is safe to
// turn into object names and host paths, which is all the provisioner does with it.

import { SKILLS_PATH } from './sandbox.ts';

export type ExtraMount = { hostPath: string; containerPath: string; readOnly: boolean };

export type SandboxRequest = {
  sandboxId: string;
  threadId: string;
  userId: string;
  extraMounts: ExtraMount[];
  includeLegacySkills: boolean;
  larkRuntime: boolean;
  larkBroker: boolean;
  /** DeerFlow 2.1: where the skills are mounted (`/mnt/skills` unless asked), validated. */
  skillsRoot: string;
  /** DeerFlow 2.1: the sandbox's MAX_SHELL_SESSIONS, when asked (the image's 10 otherwise). */
  maxShellSessions: number | undefined;
  /** Maximum age of this sandbox, overriding SANDBOX_TTL_SECONDS. */
  ttlSeconds: number | undefined;
};

/** The request of a bare create (`{"sandbox_id": id}`), as the API makes it with every default. */
export const plainRequest = (sandboxId: string): SandboxRequest => ({
  sandboxId,
  threadId: sandboxId,
  userId: 'default',
  extraMounts: [],
  includeLegacySkills: false,
  larkRuntime: false,
  larkBroker: false,
  ttlSeconds: undefined,
  skillsRoot: SKILLS_PATH,
  maxShellSessions: undefined,
});

/** Fills `{thread_id}` and `{user_id}` in a relative path template (values are already validated). */
export function fillTemplate(template: string, req: Pick<SandboxRequest, 'threadId' | 'userId'>): string {
  return template.replaceAll('{thread_id}', req.threadId).replaceAll('{user_id}', req.userId);
}
