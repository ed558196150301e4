{{/* Names and labels, as in NVIDIA's dcgm-exporter chart. */}}
{{- define "llmopsd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmopsd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmopsd.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "llmopsd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmopsd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmopsd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmopsd.labels" -}}
helm.sh/chart: {{ include "llmopsd.chart" . }}
{{ include "llmopsd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llmopsd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmopsd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llmopsd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the tokens (and, without grpc.tls.existingSecret, the TLS files). */}}
{{- define "llmopsd.secretName" -}}
{{- default (include "llmopsd.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "llmopsd.tlsSecretName" -}}
{{- default (include "llmopsd.secretName" .) .Values.grpc.tls.existingSecret -}}
{{- end -}}

{{/* Paths inside the pod; the config names them, the DaemonSet mounts them. */}}
{{- define "llmopsd.dataDir" -}}/var/lib/llmops{{- end -}}
{{- define "llmopsd.configPath" -}}/etc/llmops/llmopsd.toml{{- end -}}
{{- define "llmopsd.tlsDir" -}}/etc/llmops/tls{{- end -}}

{{/* Refuses values the daemon would refuse at start, so `helm install` fails instead of a crash-looping pod. */}}
{{- define "llmopsd.validate" -}}
{{- if not .Values.existingSecret -}}
{{- if not .Values.secret.token -}}
{{- fail "secret.token is required: the admin token TCP gRPC asks for (LLMOPS_TOKEN); or name existingSecret" -}}
{{- end -}}
{{- if and .Values.secret.readToken (eq (toString .Values.secret.token) (toString .Values.secret.readToken)) -}}
{{- fail "secret.readToken must differ from secret.token (llmopsd refuses equal admin and read-only tokens)" -}}
{{- end -}}
{{- if and .Values.grpc.tls.enabled (not .Values.grpc.tls.existingSecret) (not (and .Values.grpc.tls.cert .Values.grpc.tls.key)) -}}
{{- fail "grpc.tls.cert and grpc.tls.key are required (PEM: --set-file), or name grpc.tls.existingSecret, or set grpc.tls.enabled=false" -}}
{{- end -}}
{{- if and .Values.grpc.tls.enabled .Values.grpc.tls.verifyClients (not .Values.grpc.tls.existingSecret) (not .Values.grpc.tls.clientCA) -}}
{{- fail "grpc.tls.verifyClients needs grpc.tls.clientCA (PEM of the CA that signs client certificates)" -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.persistence.type (list "hostPath" "emptyDir" "pvc")) -}}
{{- fail (printf "persistence.type %q: use hostPath, emptyDir or pvc" .Values.persistence.type) -}}
{{- end -}}
{{- if and (eq .Values.persistence.type "pvc") (not .Values.persistence.pvc.claimName) -}}
{{- fail "persistence.type pvc needs persistence.pvc.claimName" -}}
{{- end -}}
{{- if .Values.otlp.endpoint -}}
{{- if not (has .Values.otlp.protocol (list "http" "grpc")) -}}
{{- fail (printf "otlp.protocol %q: use http or grpc" .Values.otlp.protocol) -}}
{{- end -}}
{{- if not (has .Values.otlp.profile (list "genai" "phoenix" "langfuse")) -}}
{{- fail (printf "otlp.profile %q: use genai, phoenix or langfuse" .Values.otlp.profile) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The daemon's config file. Values are written with toJson: a JSON string, number, boolean or array of them is
also valid TOML. The keys the chart owns are set after config.server, so they always win.
*/}}
{{- define "llmopsd.config" -}}
{{- $server := dict -}}
{{- range $key, $value := .Values.config.server -}}
{{- $_ := set $server $key $value -}}
{{- end -}}
{{- $_ := set $server "data_dir" (include "llmopsd.dataDir" .) -}}
{{- $_ := set $server "http_listen" (printf "0.0.0.0:%d" (int .Values.http.port)) -}}
{{- $_ := set $server "grpc_listen" (printf "0.0.0.0:%d" (int .Values.grpc.port)) -}}
{{- $_ := set $server "grpc_token_env" "LLMOPS_TOKEN" -}}
{{- $_ := set $server "grpc_read_token_env" "LLMOPS_READ_TOKEN" -}}
{{- if .Values.grpc.tls.enabled -}}
{{- $_ := set $server "grpc_tls_cert" (printf "%s/tls.crt" (include "llmopsd.tlsDir" .)) -}}
{{- $_ := set $server "grpc_tls_key" (printf "%s/tls.key" (include "llmopsd.tlsDir" .)) -}}
{{- $_ := set $server "grpc_tls_client_ca" (ternary (printf "%s/ca.crt" (include "llmopsd.tlsDir" .)) "" .Values.grpc.tls.verifyClients) -}}
{{- $_ := set $server "grpc_insecure" false -}}
{{- else -}}
{{- $_ := set $server "grpc_tls_cert" "" -}}
{{- $_ := set $server "grpc_tls_key" "" -}}
{{- $_ := set $server "grpc_tls_client_ca" "" -}}
{{- $_ := set $server "grpc_insecure" true -}}
{{- end -}}
# Rendered by the llmopsd Helm chart from its values; keys as in config/llmopsd.example.toml.
[server]
{{- range $key, $value := $server }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- if .Values.otlp.endpoint }}

[export.otlp]
endpoint = {{ toJson .Values.otlp.endpoint }}
protocol = {{ toJson .Values.otlp.protocol }}
profile = {{ toJson .Values.otlp.profile }}
headers_env = "LLMOPS_OTLP_HEADERS"
{{- end }}
{{- with .Values.extraConfig }}

# extraConfig
{{ . }}
{{- end }}
{{- end -}}
