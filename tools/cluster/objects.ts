// Minimal sandbox objects for tests that create pods and services straight through the API (what the
// provisioner would create, without its specification details).

export const sandboxPod = (id: string, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `sandbox-${id}`, labels: { app: 'deer-flow-sandbox', 'sandbox-id': id }, annotations },
  // A readiness probe as the sandbox image's (probed at the container's start, so Ready at once when the app answers).
  spec: {
    containers: [
      {
        name: 'sandbox',
        image: 'standin',
        ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { httpGet: { path: '/v1/sandbox', port: 8080 }, periodSeconds: 5 },
      },
    ],
  },
});

export const sandboxService = (id: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: `sandbox-${id}-svc`, labels: { app: 'deer-flow-sandbox', 'sandbox-id': id } },
  spec: { type: 'NodePort', selector: { 'sandbox-id': id }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] },
});
