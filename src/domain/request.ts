// A sandbox request after validation (api/request.ts makes these from bodies): every field is safe to
// turn into object names and host paths, which is all the provisioner does with it.

export type ExtraMount = { hostPath: string; containerPath: string; readOnly: boolean };

export type SandboxRequest = {
  sandboxId: string;
  threadId: string;
  userId: string;
  extraMounts: ExtraMount[];
  includeLegacySkills: boolean;
  larkRuntime: boolean;
  larkBroker: boolean;
  /** Maximum age of this sandbox, overriding SANDBOX_TTL_SECONDS. */
  ttlSeconds: number | undefined;
};

/** Fills `{thread_id}` and `{user_id}` in a relative path template (values are already validated). */
export function fillTemplate(template: string, req: Pick<SandboxRequest, 'threadId' | 'userId'>): string {
  return template.replaceAll('{thread_id}', req.threadId).replaceAll('{user_id}', req.userId);
}
