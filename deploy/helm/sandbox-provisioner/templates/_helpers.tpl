{{/* The release's objects are named sandbox-provisioner unless told otherwise (as in deploy/base). */}}
{{- define "sp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What selects the provisioner's pods: the same label as deploy/base, so NetworkPolicies and the
     sandbox NetworkPolicy's ingress rule match either way. */}}
{{- define "sp.selectorLabels" -}}
app.kubernetes.io/name: sandbox-provisioner
{{- end -}}

{{- define "sp.labels" -}}
{{ include "sp.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sp.secretName" -}}
{{- default (include "sp.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* The sandbox namespace: config.K8S_NAMESPACE, or the release's own. */}}
{{- define "sp.sandboxNamespace" -}}
{{- default .Release.Namespace .Values.config.K8S_NAMESPACE -}}
{{- end -}}

{{- define "sp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A setting as the environment gives it: numbers without exponent, everything as a string. */}}
{{- define "sp.envValue" -}}
{{- if kindIs "float64" . -}}{{- int64 . | toString | quote -}}{{- else -}}{{- toString . | quote -}}{{- end -}}
{{- end -}}
