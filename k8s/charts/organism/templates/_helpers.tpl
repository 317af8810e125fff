{{/*
Helpers shared by the per-service templates. Every per-service template loops with
  {{- range $name := include "organism.serviceNames" . | fromJsonArray }}
  {{- $svc := include "organism.service" (dict "root" $ "name" $name) | fromYaml }}
so defaults are merged in exactly one place.
*/}}

{{- define "organism.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Names of the enabled services, sorted, as a JSON array. */}}
{{- define "organism.serviceNames" -}}
{{- $names := list }}
{{- range $name, $cfg := .Values.services }}
{{- if $cfg.enabled }}{{ $names = append $names $name }}{{ end }}
{{- end }}
{{- sortAlpha $names | toJson }}
{{- end }}

{{/* One service's values: defaults deep-merged with services.<name>, plus its name. */}}
{{- define "organism.service" -}}
{{- $cfg := index .root.Values.services .name }}
{{- $svc := mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy $cfg) }}
{{- $_ := set $svc "name" .name }}
{{- toYaml $svc }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "organism.commonLabels" -}}
helm.sh/chart: {{ include "organism.chart" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: organism
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: ctx = dict root name component */}}
{{- define "organism.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
{{ include "organism.commonLabels" . }}
{{- end }}

{{- define "organism.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "organism.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* USER_SERVICE_URL from user-service, etc. */}}
{{- define "organism.urlEnvName" -}}
{{ printf "%s_URL" (. | upper | replace "-" "_") }}
{{- end }}

{{- define "organism.otlpEndpoint" -}}
{{- $c := .Values.otel.collector }}
{{- if $c.endpoint }}
{{- $c.endpoint }}
{{- else }}
{{- $port := ternary $c.grpcPort $c.httpPort (eq .Values.otel.protocol "grpc") }}
{{- printf "http://%s.%s.svc.cluster.local:%v" $c.service $c.namespace $port }}
{{- end }}
{{- end }}

{{/* PostgreSQL object names and the Secret user-service reads DATABASE_URL from. */}}
{{- define "organism.postgres.name" -}}postgres{{- end }}

{{/* Databases in the PostgreSQL server: postgresql.database plus services.*.database.name. */}}
{{- define "organism.postgres.databases" -}}
{{- $dbs := list .Values.postgresql.database }}
{{- range $name, $cfg := .Values.services }}
{{- if and $cfg.enabled $cfg.database }}{{ $dbs = append $dbs $cfg.database.name }}{{ end }}
{{- end }}
{{- $dbs | uniq | sortAlpha | toJson }}
{{- end }}

{{- define "organism.tokens.secretName" -}}
{{- default (printf "%s-tokens" .Release.Name) .Values.tokens.existingSecret }}
{{- end }}

{{- define "organism.postgres.secretName" -}}
{{- default "postgres-credentials" .Values.postgresql.existingSecret }}
{{- end }}
