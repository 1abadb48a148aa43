{{/* The release's full name (release name, unless it already holds the chart's). */}}
{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A service's resource name: <fullname>-<service>. */}}
{{- define "switchyard.name" -}}
{{- printf "%s-%s" (include "switchyard.fullname" .root) .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- with .service }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "switchyard.selector" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "switchyard.image" -}}
{{- $img := .root.Values.image -}}
{{- printf "%s/%s%s:%s" $img.registry $img.repositoryPrefix .service (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "switchyard.serviceAccount" -}}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* A service's values over the defaults: (dict "root" $ "service" name) -> YAML */}}
{{- define "switchyard.values" -}}
{{- $own := index .root.Values.services .service -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $own)) -}}
{{- end -}}

{{/* What every container of the mesh runs with: Kafka, the registry, telemetry, the admin token. */}}
{{- define "switchyard.commonEnv" -}}
- name: SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS
  value: {{ .root.Values.kafka.bootstrapServers | quote }}
- name: SWITCHYARD_REGISTRY__URL
  value: {{ .root.Values.schemaRegistry.url | quote }}
- name: SWITCHYARD_TELEMETRY__OTLP_ENDPOINT
  value: {{ .root.Values.telemetry.otlpEndpoint | quote }}
- name: SWITCHYARD_TELEMETRY__TRACE_SAMPLE_RATIO
  value: {{ .root.Values.telemetry.traceSampleRatio | quote }}
- name: SWITCHYARD_TELEMETRY__LOG_FORMAT
  value: {{ .root.Values.telemetry.logFormat | quote }}
- name: SWITCHYARD_TELEMETRY__LOG_FILTER
  value: {{ .root.Values.telemetry.logFilter | quote }}
- name: SWITCHYARD_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .svc.database.existingSecret }}
      key: {{ default "url" .svc.database.key }}
- name: SWITCHYARD_ADMIN__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.admin.existingSecret }}
      key: {{ .root.Values.admin.tokenKey }}
{{- end -}}
