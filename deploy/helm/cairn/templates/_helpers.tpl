{{- define "cairn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cairn.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cairn.labels" -}}
{{ include "cairn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cairn.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "cairn.fullname" .)) -}}
{{- end -}}

{{- define "cairn.overlayConfigMap" -}}
{{- .Values.overlay.configMap.name | default (printf "%s-overlay" (include "cairn.fullname" .)) -}}
{{- end -}}

{{- define "cairn.metricsPort" -}}
{{- if .Values.metrics.port -}}{{ .Values.metrics.port }}{{- else -}}{{ .Values.service.port }}{{- end -}}
{{- end -}}
