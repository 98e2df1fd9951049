{{/* Names and labels shared by every object of the release. */}}

{{- define "coupon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names get a component suffix (up to 9 characters), so the base stays within 52. */}}
{{- define "coupon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coupon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coupon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coupon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "coupon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coupon-issuance
{{- end }}

{{/* Labels of one component: include "coupon.componentLabels" (list $ "ingress") */}}
{{- define "coupon.componentLabels" -}}
{{ include "coupon.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "coupon.componentSelector" -}}
{{ include "coupon.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "coupon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coupon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image of a component: its own override, else the chart-wide image. (list $ .Values.ingress.image) */}}
{{- define "coupon.image" -}}
{{- $root := index . 0 }}
{{- $own := index . 1 | default dict }}
{{- $repository := $own.repository | default $root.Values.image.repository }}
{{- $tag := $own.tag | default $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- if $root.Values.image.digest }}
{{- printf "%s@%s" $repository $root.Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* Pod-level security: the "restricted" Pod Security Standard, uid/gid of the image. */}}
{{- define "coupon.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "coupon.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Where secret files are mounted; the binaries read them through the <SETTING>_FILE variables. */}}
{{- define "coupon.secretDir" -}}/var/run/secrets/coupon{{- end }}

{{/* Pod spec fields every workload of the chart shares. */}}
{{- define "coupon.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "coupon.podSecurityContext" . | nindent 2 }}
{{- end }}

{{/* Volume and mount for the database URL (every component that talks to PostgreSQL). */}}
{{- define "coupon.databaseVolume" -}}
- name: database
  secret:
    secretName: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.urlKey }}
        path: url
{{- end }}

{{- define "coupon.databaseMount" -}}
- name: database
  mountPath: {{ include "coupon.secretDir" . }}/database
  readOnly: true
{{- end }}

{{- define "coupon.databaseEnv" -}}
- name: DATABASE_URL_FILE
  value: {{ include "coupon.secretDir" . }}/database/url
{{- end }}

{{/* The JWT key material of the configured mode. */}}
{{- define "coupon.jwtFile" -}}
{{- if eq .Values.auth.mode "jwks" }}jwks.json{{ else }}hs256-secret{{ end }}
{{- end }}

{{- define "coupon.jwtVolume" -}}
{{- if ne .Values.auth.mode "jwksUrl" }}
- name: jwt
  secret:
    secretName: {{ required "auth.existingSecret is required" .Values.auth.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.auth.jwksKey .Values.auth.hs256Key (eq .Values.auth.mode "jwks") }}
        path: {{ include "coupon.jwtFile" . }}
{{- end }}
{{- end }}

{{- define "coupon.jwtMount" -}}
{{- if ne .Values.auth.mode "jwksUrl" }}
- name: jwt
  mountPath: {{ include "coupon.secretDir" . }}/jwt
  readOnly: true
{{- end }}
{{- end }}

{{- define "coupon.jwtEnv" -}}
{{- if eq .Values.auth.mode "jwksUrl" }}
- name: JWT_JWKS_URL
  value: {{ required "auth.jwksUrl is required with auth.mode=jwksUrl" .Values.auth.jwksUrl | quote }}
- name: JWT_JWKS_REFRESH_SECS
  value: {{ .Values.auth.jwksRefreshSeconds | quote }}
{{- else }}
- name: {{ ternary "JWT_JWKS_FILE" "JWT_HS256_SECRET_FILE" (eq .Values.auth.mode "jwks") }}
  value: {{ include "coupon.secretDir" . }}/jwt/{{ include "coupon.jwtFile" . }}
{{- end }}
{{- end }}

{{/* SIGTERM: readiness turns false, serving continues for the delay, then in-flight work drains
     within the timeout. The grace period covers an optional preStop sleep, both, and a margin. */}}
{{- define "coupon.terminationGracePeriod" -}}
{{- $s := .Values.shutdown }}
{{- add $s.preStopSleepSeconds $s.delaySeconds $s.timeoutSeconds 5 }}
{{- end }}

{{- define "coupon.lifecycle" -}}
{{- if gt (int .Values.shutdown.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.shutdown.preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* Settings both services read from their ConfigMap. */}}
{{- define "coupon.commonConfig" -}}
COUPON_ENV: {{ .Values.environment | quote }}
KAFKA_BROKERS: {{ required "kafka.brokers is required" .Values.kafka.brokers | quote }}
TOPIC_ISSUANCE_REQUESTED: {{ .Values.kafka.topics.requested | quote }}
CONSUMER_GROUP: {{ .Values.kafka.consumerGroup | quote }}
SHUTDOWN_DELAY_MS: {{ mul .Values.shutdown.delaySeconds 1000 | quote }}
SHUTDOWN_TIMEOUT_MS: {{ mul .Values.shutdown.timeoutSeconds 1000 | quote }}
LOG_FORMAT: {{ .Values.logging.format | quote }}
RUST_LOG: {{ .Values.logging.level | quote }}
{{- with .Values.telemetry.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The scratch volume: the root filesystem is read-only. */}}
{{- define "coupon.tmpVolume" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}

{{- define "coupon.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Spread a component's pods over zones and nodes. (list $ "ingress") */}}
{{- define "coupon.topologySpread" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $spread := $root.Values.topologySpread }}
{{- if $spread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
    matchLabelKeys: [pod-template-hash]
    labelSelector:
      matchLabels:
        {{- include "coupon.componentSelector" (list $root $component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Checks that span several values (the schema judges each value on its own). */}}
{{- define "coupon.validate" -}}
{{- $partitions := int .Values.kafka.requestedPartitions }}
{{- if and .Values.consumer.keda.enabled (gt (int .Values.consumer.keda.maxReplicas) $partitions) }}
{{- fail (printf "consumer.keda.maxReplicas (%d) must not exceed kafka.requestedPartitions (%d): a consumer beyond the partition count sits idle" (int .Values.consumer.keda.maxReplicas) $partitions) }}
{{- end }}
{{- if gt (int .Values.consumer.replicas) $partitions }}
{{- fail (printf "consumer.replicas (%d) must not exceed kafka.requestedPartitions (%d)" (int .Values.consumer.replicas) $partitions) }}
{{- end }}
{{- if and .Values.consumer.keda.enabled (gt (int .Values.consumer.keda.minReplicas) (int .Values.consumer.keda.maxReplicas)) }}
{{- fail "consumer.keda.minReplicas must not exceed consumer.keda.maxReplicas" }}
{{- end }}
{{- if and .Values.ingress.autoscaling.enabled (gt (int .Values.ingress.autoscaling.minReplicas) (int .Values.ingress.autoscaling.maxReplicas)) }}
{{- fail "ingress.autoscaling.minReplicas must not exceed ingress.autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.expose.alb.enabled (not .Values.expose.host) }}
{{- fail "expose.host is required with expose.alb.enabled" }}
{{- end }}
{{- if eq (int .Values.ingress.port) (int .Values.ingress.opsPort) }}
{{- fail "ingress.opsPort must differ from ingress.port" }}
{{- end }}
{{- $internal := .Values.expose.internal }}
{{- if and $internal.enabled .Values.expose.alb.enabled $internal.groupName (eq $internal.groupName .Values.expose.alb.groupName) }}
{{- fail "expose.internal.groupName must differ from expose.alb.groupName: one IngressGroup is one load balancer" }}
{{- end }}
{{- end }}

{{/* An environment value as text: whole numbers without an exponent (YAML numbers arrive as floats). */}}
{{- define "coupon.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq . (float64 (int64 .)) }}{{ int64 . | toString | quote }}{{ else }}{{ . | toString | quote }}{{ end }}
{{- else }}
{{- . | toString | quote }}
{{- end }}
{{- end }}
