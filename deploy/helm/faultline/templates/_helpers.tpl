{{/*
Templates here keep to the subset of Go templates and Helm functions that the chart test
renders without a helm binary (test/helpers/helm-subset.ts lists it): a function outside it
fails the test, where helm is absent, with its name.
*/}}

{{/* <release>, or <release>-faultline when the release name does not say faultline. */}}
{{- define "faultline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "faultline.collectorName" -}}
{{- printf "%s-collector" (include "faultline.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "faultline.agentName" -}}
{{- printf "%s-agent" (include "faultline.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "faultline.tokenSecret" -}}
{{- if .Values.tokens.existingSecret -}}
{{- .Values.tokens.existingSecret -}}
{{- else -}}
{{- printf "%s-tokens" (include "faultline.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "faultline.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The collector's URL as agents use it: the Service's name, which its certificate names. */}}
{{- define "faultline.collectorUrl" -}}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.tls.enabled) (include "faultline.collectorName" .) .Release.Namespace .Values.collector.port -}}
{{- end -}}

{{/* Beside a selector's labels (which carry the instance). */}}
{{- define "faultline.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: faultline
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "faultline.labels" -}}
{{ include "faultline.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faultline.collectorSelector" -}}
app.kubernetes.io/name: faultline-collector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "faultline.agentSelector" -}}
app.kubernetes.io/name: faultline-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* collector.yaml: the keys the chart owns, then collector.config. */}}
{{- define "faultline.collectorConfig" -}}
{{- with .Values.collector.config }}
{{- if or (hasKey . "listen") (hasKey . "tls") (hasKey . "dataDir") (hasKey . "tokens") (hasKey . "viewers") }}
{{- fail "collector.config: listen, tls, dataDir, tokens and viewers are the chart's (collector.port, tls.*, tokens.*); leave them out" }}
{{- end }}
{{- end }}
# Written by the chart: listen, tls, dataDir, tokens and viewers here; the rest from the
# value collector.config.
listen: 0.0.0.0:{{ .Values.collector.port }}
{{- if .Values.tls.enabled }}
tls:
  cert: /run/secrets/faultline-tls/tls.crt
  key: /run/secrets/faultline-tls/tls.key
{{- end }}
dataDir: /var/lib/faultline-collector
tokens:
  - name: fleet
    tokenFile: /run/secrets/faultline/{{ .Values.tokens.fleetKey }}
viewers:
  - name: ops
    tokenFile: /run/secrets/faultline/{{ .Values.tokens.viewerKey }}
{{- with .Values.collector.config }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* agent.labels as the agent's --labels k=v,k=v. */}}
{{- define "faultline.agentLabels" -}}
{{- $first := true -}}
{{- range $k, $v := .Values.agent.labels -}}
{{- if not $first }},{{ end -}}
{{- $k }}={{ $v -}}
{{- $first = false -}}
{{- end -}}
{{- end -}}
