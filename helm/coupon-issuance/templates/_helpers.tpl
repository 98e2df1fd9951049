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

{{/* The image of a component. (list $ .Values.ingress.image) A component's own repository (an image
     built with --target ingress, say) takes its own digest or tag, never the chart-wide digest,
     which names another image; without one, the chart-wide image (digest over tag). */}}
{{- define "coupon.image" -}}
{{- $root := index . 0 }}
{{- $own := index . 1 | default dict }}
{{- $image := $root.Values.image }}
{{- $tag := $own.tag | default $image.tag | default $root.Chart.AppVersion }}
{{- if $own.repository }}
{{- if $own.digest }}
{{- printf "%s@%s" $own.repository $own.digest }}
{{- else }}
{{- printf "%s:%s" $own.repository $tag }}
{{- end }}
{{- else if $own.digest }}
{{- printf "%s@%s" $image.repository $own.digest }}
{{- else if and $image.digest (not $own.tag) }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
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

{{/* Where CA bundles are mounted (not secret: configMap or Secret, read-only), one directory per
     service: <caDir>/<service>/ca.pem. */}}
{{- define "coupon.caDir" -}}/etc/coupon/ca{{- end }}

{{- define "coupon.hasCa" -}}
{{- if or .configMap .secret }}true{{ end }}
{{- end }}

{{/* The CA bundle of a service as a volume: (list "database" .Values.database.ca) */}}
{{- define "coupon.caVolume" -}}
{{- $service := index . 0 }}
{{- $ca := index . 1 }}
{{- if $ca.configMap }}
- name: {{ $service }}-ca
  configMap:
    name: {{ $ca.configMap }}
    defaultMode: 0444
    items:
      - key: {{ $ca.key }}
        path: ca.pem
{{- else if $ca.secret }}
- name: {{ $service }}-ca
  secret:
    secretName: {{ $ca.secret }}
    defaultMode: 0444
    items:
      - key: {{ $ca.key }}
        path: ca.pem
{{- end }}
{{- end }}

{{- define "coupon.caMount" -}}
{{- $service := index . 0 }}
{{- $ca := index . 1 }}
{{- if include "coupon.hasCa" $ca }}
- name: {{ $service }}-ca
  mountPath: {{ include "coupon.caDir" . }}/{{ $service }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "coupon.caFile" -}}{{ include "coupon.caDir" . }}/{{ . }}/ca.pem{{- end }}

{{/* Volumes, mounts and environment for PostgreSQL (every workload that talks to it): the URL
     from its Secret, libpq's sslmode (PGSSLMODE) and the CA bundle (PGSSLROOTCERT). */}}
{{- define "coupon.databaseVolume" -}}
- name: database
  secret:
    secretName: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.urlKey }}
        path: url
{{- include "coupon.caVolume" (list "database" .Values.database.ca) }}
{{- end }}

{{- define "coupon.databaseMount" -}}
- name: database
  mountPath: {{ include "coupon.secretDir" . }}/database
  readOnly: true
{{- include "coupon.caMount" (list "database" .Values.database.ca) }}
{{- end }}

{{- define "coupon.databaseEnv" -}}
- name: DATABASE_URL_FILE
  value: {{ include "coupon.secretDir" . }}/database/url
{{- with .Values.database.sslMode }}
- name: PGSSLMODE
  value: {{ . | quote }}
{{- end }}
{{- if include "coupon.hasCa" .Values.database.ca }}
- name: PGSSLROOTCERT
  value: {{ include "coupon.caFile" "database" }}
{{- end }}
{{- end }}

{{/* Redis (the ingress): the URL from a Secret or the ConfigMap, the CA bundle of a rediss://
     server (REDIS_CA_FILE). REDIS_CLUSTER is in the ConfigMap. */}}
{{- define "coupon.redisVolume" -}}
{{- if .Values.redis.existingSecret }}
- name: redis
  secret:
    secretName: {{ .Values.redis.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.urlKey }}
        path: url
{{- end }}
{{- include "coupon.caVolume" (list "redis" .Values.redis.ca) }}
{{- end }}

{{- define "coupon.redisMount" -}}
{{- if .Values.redis.existingSecret }}
- name: redis
  mountPath: {{ include "coupon.secretDir" . }}/redis
  readOnly: true
{{- end }}
{{- include "coupon.caMount" (list "redis" .Values.redis.ca) }}
{{- end }}

{{- define "coupon.redisEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: REDIS_URL_FILE
  value: {{ include "coupon.secretDir" . }}/redis/url
{{- end }}
{{- if include "coupon.hasCa" .Values.redis.ca }}
- name: REDIS_CA_FILE
  value: {{ include "coupon.caFile" "redis" }}
{{- end }}
{{- end }}

{{/* Kafka security for every Kafka client (services, topic Job, helm test): the operator's
     librdkafka properties (KAFKA_PROPERTY_<name>), the brokers' CA bundle (ssl.ca.location) and
     the SASL credentials from a Secret. librdkafka properties have no NAME_FILE form, so the
     credentials are secretKeyRef variables: in the pod's environment, never in a ConfigMap. */}}
{{- define "coupon.kafkaEnv" -}}
{{- $k := .Values.kafka }}
{{- range $name, $value := $k.properties }}
- name: KAFKA_PROPERTY_{{ $name }}
  value: {{ include "coupon.envValue" $value }}
{{- end }}
{{- if include "coupon.hasCa" $k.ca }}
- name: KAFKA_PROPERTY_ssl.ca.location
  value: {{ include "coupon.caFile" "kafka" }}
{{- end }}
{{- with $k.sasl.existingSecret }}
- name: KAFKA_PROPERTY_sasl.username
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $k.sasl.usernameKey }}
- name: KAFKA_PROPERTY_sasl.password
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $k.sasl.passwordKey }}
{{- end }}
{{- end }}

{{- define "coupon.kafkaVolume" -}}
{{- include "coupon.caVolume" (list "kafka" .Values.kafka.ca) }}
{{- end }}

{{- define "coupon.kafkaMount" -}}
{{- include "coupon.caMount" (list "kafka" .Values.kafka.ca) }}
{{- end }}

{{/* The webhook's signing key (WEBHOOK_SECRET_FILE) and, with webhook.urlKey, its URL
     (WEBHOOK_URL_FILE), from webhook.existingSecret (the consumer). */}}
{{- define "coupon.webhookEnabled" -}}
{{- if or .Values.webhook.url .Values.webhook.urlKey }}true{{ end }}
{{- end }}

{{- define "coupon.webhookVolume" -}}
{{- if include "coupon.webhookEnabled" . }}
- name: webhook
  secret:
    secretName: {{ required "webhook.existingSecret is required with webhook.url or webhook.urlKey" .Values.webhook.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.webhook.secretKey }}
        path: secret
      {{- with .Values.webhook.urlKey }}
      - key: {{ . }}
        path: url
      {{- end }}
{{- end }}
{{- end }}

{{- define "coupon.webhookMount" -}}
{{- if include "coupon.webhookEnabled" . }}
- name: webhook
  mountPath: {{ include "coupon.secretDir" . }}/webhook
  readOnly: true
{{- end }}
{{- end }}

{{- define "coupon.webhookEnv" -}}
{{- if include "coupon.webhookEnabled" . }}
- name: WEBHOOK_SECRET_FILE
  value: {{ include "coupon.secretDir" . }}/webhook/secret
{{- if .Values.webhook.urlKey }}
- name: WEBHOOK_URL_FILE
  value: {{ include "coupon.secretDir" . }}/webhook/url
{{- end }}
{{- end }}
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
SHUTDOWN_TIMEOUT_MS: {{ mul .Values.shutdown.timeoutSeconds 1000 | quote }}
LOG_FORMAT: {{ .Values.logging.format | quote }}
RUST_LOG: {{ .Values.logging.level | quote }}
{{- with .Values.telemetry.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_TRACES_SAMPLER: {{ .Values.telemetry.sampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ .Values.telemetry.samplerArg | quote }}
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
{{- $topics := .Values.kafka.createTopics }}
{{- if and $topics.enabled (gt (int $topics.minInsyncReplicas) (int $topics.replication)) }}
{{- fail "kafka.createTopics.minInsyncReplicas must not exceed kafka.createTopics.replication: no acks=all write could succeed" }}
{{- end }}
{{- include "coupon.validateKeepAlive" . }}
{{- include "coupon.validateTls" . }}
{{- include "coupon.validateWebhook" . }}
{{- end }}

{{/* The ALB keeps an idle client connection open for idleTimeoutSeconds; the ingress closes an
     idle keep-alive connection after INGRESS_HEADER_READ_TIMEOUT_MS. The pod must outlast the ALB,
     or the ALB sends a request on a connection the pod is closing (a 502). */}}
{{- define "coupon.validateKeepAlive" -}}
{{- $e := .Values.expose }}
{{- if and $e.alb.enabled (or $e.enabled $e.internal.enabled) }}
{{- $keepAliveMs := int64 (.Values.ingress.env.INGRESS_HEADER_READ_TIMEOUT_MS | default 75000) }}
{{- $idleMs := mul (int64 $e.alb.idleTimeoutSeconds) 1000 }}
{{- if ge $idleMs $keepAliveMs }}
{{- fail (printf "expose.alb.idleTimeoutSeconds (%d s) must be below the ingress's keep-alive bound ingress.env.INGRESS_HEADER_READ_TIMEOUT_MS (%d ms): the ALB would reuse connections the pods have closed (502s). Lower the idle timeout or raise INGRESS_HEADER_READ_TIMEOUT_MS above %d" (int64 $e.alb.idleTimeoutSeconds) $keepAliveMs $idleMs) }}
{{- end }}
{{- end }}
{{- end }}

{{/* TLS settings that would otherwise be ignored, leaving a connection in plaintext. */}}
{{- define "coupon.validateTls" -}}
{{- range $service, $ca := dict "database" .Values.database.ca "redis" .Values.redis.ca "kafka" .Values.kafka.ca }}
{{- if and $ca.configMap $ca.secret }}
{{- fail (printf "%s.ca: set configMap or secret, not both" $service) }}
{{- end }}
{{- end }}
{{- if and (include "coupon.hasCa" .Values.database.ca) (eq .Values.database.sslMode "disable") }}
{{- fail "database.ca is set but database.sslMode is disable: the CA would never be used" }}
{{- end }}
{{- if and (include "coupon.hasCa" .Values.redis.ca) (not .Values.redis.existingSecret) (not (hasPrefix "rediss://" .Values.redis.url)) }}
{{- fail "redis.ca is set but redis.url is not rediss://: the connection would be plaintext" }}
{{- end }}
{{- $k := .Values.kafka }}
{{- $protocol := index $k.properties "security.protocol" | default "PLAINTEXT" | toString | upper }}
{{- if hasKey $k.properties "ssl.ca.location" }}
{{- if include "coupon.hasCa" $k.ca }}
{{- fail "kafka.properties ssl.ca.location and kafka.ca are both set: keep one" }}
{{- end }}
{{- end }}
{{- if and (include "coupon.hasCa" $k.ca) (not (has $protocol (list "SSL" "SASL_SSL"))) }}
{{- fail (printf "kafka.ca is set but kafka.properties security.protocol is %s: set SSL or SASL_SSL, or the brokers are reached in plaintext" $protocol) }}
{{- end }}
{{- if ne $.Values.environment "development" }}
{{- if eq (index $k.properties "enable.ssl.certificate.verification" | toString) "false" }}
{{- fail "kafka.properties enable.ssl.certificate.verification=false: the brokers' certificates go unchecked; refused in production" }}
{{- end }}
{{- if eq (index $k.properties "ssl.endpoint.identification.algorithm" | toString) "none" }}
{{- fail "kafka.properties ssl.endpoint.identification.algorithm=none: the brokers' host names go unchecked; refused in production" }}
{{- end }}
{{- end }}
{{- if and $k.sasl.existingSecret (not (hasPrefix "SASL_" $protocol)) }}
{{- fail (printf "kafka.sasl.existingSecret is set but kafka.properties security.protocol is %s: set SASL_SSL (and sasl.mechanism), or the credentials are never used" $protocol) }}
{{- end }}
{{- end }}

{{/* Webhook deliveries: a signing key from a Secret, one source for the URL, https in production. */}}
{{- define "coupon.validateWebhook" -}}
{{- $w := .Values.webhook }}
{{- if and $w.url $w.urlKey }}
{{- fail "webhook.url and webhook.urlKey are both set: keep one (the URL in the Secret would be ignored)" }}
{{- end }}
{{- if and $w.existingSecret (not (include "coupon.webhookEnabled" .)) }}
{{- fail "webhook.existingSecret is set but neither webhook.url nor webhook.urlKey: no webhook to sign for" }}
{{- end }}
{{- if and $w.url (ne .Values.environment "development") (not (hasPrefix "https://" $w.url)) }}
{{- fail "webhook.url must be https:// in production (http:// needs environment: development)" }}
{{- end }}
{{- end }}

{{/* A component's extra environment and volumes (extraEnv, extraVolumes, extraVolumeMounts),
     refused where they would replace what the chart sets: a variable of the chart's (in the
     ConfigMap or the container) or one of its volumes.
     (dict "root" $ "component" "ingress" "env" <the chart's env, rendered> "volumes" <its volumes, rendered>) */}}
{{- define "coupon.extraEnv" -}}
{{- $root := .root }}
{{- $values := index $root.Values .component }}
{{- $owned := list }}
{{- range (.env | fromYamlArray) }}
{{- $owned = append $owned .name }}
{{- end }}
{{- $config := include (print $root.Template.BasePath "/configmap-" .component ".yaml") $root | fromYaml }}
{{- range $key, $_ := $config.data }}
{{- $owned = append $owned $key }}
{{- end }}
{{- range $values.extraEnv }}
{{- if has .name $owned }}
{{- fail (printf "%s.extraEnv: %s is set by the chart; use the chart's value for it" $.component .name) }}
{{- end }}
{{- end }}
{{- $volumes := list }}
{{- range (.volumes | fromYamlArray) }}
{{- $volumes = append $volumes .name }}
{{- end }}
{{- range $values.extraVolumes }}
{{- if has .name $volumes }}
{{- fail (printf "%s.extraVolumes: the volume name %s is the chart's" $.component .name) }}
{{- end }}
{{- end }}
{{- with $values.extraEnv }}
{{ toYaml . }}
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
