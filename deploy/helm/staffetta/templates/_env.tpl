{{/*
STAFFETTA_* settings rendered from structured values. Each service gets one
ConfigMap: the common settings plus its own. Secrets (broker URL, passwords)
never appear here; files they need are mounted and named by path.
*/}}

{{- define "staffetta.env.common" -}}
{{- $c := .Values.config -}}
STAFFETTA_HOSTNAME: {{ required "config.hostname is required: the name in the SMTP banner, Received: headers, HELO and DSNs" $c.hostname | quote }}
STAFFETTA_AMQP_PREFIX: {{ $c.amqpPrefix | quote }}
STAFFETTA_AMQP_PREFETCH: {{ $c.amqpPrefetch | toString | quote }}
STAFFETTA_AMQP_DELIVERY_LIMIT: {{ $c.amqpDeliveryLimit | toString | quote }}
STAFFETTA_HTTP_LISTEN: {{ printf "0.0.0.0:%s" (include "staffetta.port.http" .) | quote }}
STAFFETTA_LOG_LEVEL: {{ $c.logLevel | quote }}
STAFFETTA_LOCAL_DOMAINS: {{ join "," $c.localDomains | quote }}
STAFFETTA_MAILDIR_ROOT: {{ .Values.delivery.maildir.mountPath | quote }}
STAFFETTA_TRUSTED_NETWORKS: {{ join "," $c.trustedNetworks | quote }}
STAFFETTA_MAX_MESSAGE_SIZE: {{ $c.maxMessageSize | int64 | toString | quote }}
STAFFETTA_MAX_RECIPIENTS: {{ $c.maxRecipients | toString | quote }}
{{- with $c.dnsNameservers }}
STAFFETTA_DNS_NAMESERVERS: {{ join "," . | quote }}
{{- end }}
STAFFETTA_DNS_TIMEOUT: {{ $c.dnsTimeout | toString | quote }}
STAFFETTA_REMOTE_SMTP_PORT: {{ $c.remoteSmtpPort | toString | quote }}
STAFFETTA_CONNECT_TIMEOUT: {{ $c.connectTimeout | toString | quote }}
STAFFETTA_COMMAND_TIMEOUT: {{ $c.commandTimeout | toString | quote }}
STAFFETTA_DATA_TIMEOUT: {{ $c.dataTimeout | toString | quote }}
STAFFETTA_RETRY_SCHEDULE: {{ join "," $c.retrySchedule | quote }}
STAFFETTA_MAX_QUEUE_LIFETIME: {{ $c.maxQueueLifetime | toString | quote }}
STAFFETTA_DELAY_WARNING_AFTER: {{ $c.delayWarningAfter | toString | quote }}
{{- if $c.localRecipients }}
STAFFETTA_LOCAL_RECIPIENTS_FILE: {{ printf "%s/local-recipients" (include "staffetta.filesDir" .) | quote }}
{{- end }}
{{- if $c.aliases }}
STAFFETTA_ALIASES_FILE: {{ printf "%s/aliases" (include "staffetta.filesDir" .) | quote }}
{{- end }}
{{- end -}}

{{- define "staffetta.env.smtp-ingress" -}}
{{- $s := .Values.smtpIngress -}}
STAFFETTA_SMTP_LISTEN: {{ printf "0.0.0.0:%s" (include "staffetta.port.smtp" .) | quote }}
STAFFETTA_SUBMISSION_LISTEN: {{ ternary (printf "0.0.0.0:%s" (include "staffetta.port.submission" .)) "" $s.ports.submission.enabled | quote }}
STAFFETTA_SUBMISSIONS_LISTEN: {{ ternary (printf "0.0.0.0:%s" (include "staffetta.port.submissions" .)) "" (eq (include "staffetta.submissionsEnabled" .) "true") | quote }}
STAFFETTA_ALLOW_PLAINTEXT_AUTH: {{ $s.allowPlaintextAuth | toString | quote }}
STAFFETTA_MAX_SESSIONS: {{ $s.maxSessions | toString | quote }}
STAFFETTA_MAX_SESSIONS_PER_IP: {{ $s.maxSessionsPerIp | toString | quote }}
{{- if .Values.tls.enabled }}
STAFFETTA_TLS_CERT_FILE: "/etc/staffetta/tls/tls.crt"
STAFFETTA_TLS_KEY_FILE: "/etc/staffetta/tls/tls.key"
{{- end }}
{{- if include "staffetta.usersEnabled" . }}
STAFFETTA_USERS_FILE: {{ printf "/etc/staffetta/auth/%s" (ternary .Values.auth.existingSecretKey "users" (not (empty .Values.auth.existingSecret))) | quote }}
{{- end }}
{{- include "staffetta.env.optional" (list "STAFFETTA_GREET_PAUSE" $s.greetPause) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_SMTP_IDLE_TIMEOUT" $s.idleTimeout) }}
{{- if $s.proxyProtocol.enabled }}
STAFFETTA_PROXY_PROTOCOL: "true"
{{- end }}
{{- with $s.proxyProtocol.networks }}
STAFFETTA_PROXY_NETWORKS: {{ join "," . | quote }}
{{- end }}
{{- $a := .Values.auth }}
{{- include "staffetta.env.optional" (list "STAFFETTA_AUTH_MAX_FAILURES" $a.maxFailures) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_AUTH_LOCKOUT" $a.lockout) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_AUTH_FAILURE_DELAY" $a.failureDelay) }}
{{- if include "staffetta.senderLoginsEnabled" . }}
STAFFETTA_SENDER_LOGINS_FILE: {{ printf "/etc/staffetta/sender-logins/%s" (include "staffetta.senderLoginsKey" .) | quote }}
{{- end }}
{{- $l := .Values.sendingLimits }}
{{- include "staffetta.env.optional" (list "STAFFETTA_ACCOUNT_MAX_PER_HOUR" $l.accountMaxPerHour) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_ACCOUNT_MAX_PER_DAY" $l.accountMaxPerDay) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_ACCOUNT_MONTHLY_QUOTA" $l.accountMonthlyQuota) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_ACCOUNT_METRICS_LIMIT" $l.accountMetricsLimit) }}
{{- if include "staffetta.sendingLimitsEnabled" . }}
STAFFETTA_SENDING_LIMITS_FILE: {{ printf "/etc/staffetta/sending-limits/%s" (include "staffetta.sendingLimitsKey" .) | quote }}
{{- end }}
{{- end -}}

{{- define "staffetta.env.router" -}}
{{- end -}}

{{- define "staffetta.env.bounce" -}}
{{- end -}}

{{- define "staffetta.env.delivery" -}}
{{- $h := .Values.smarthost -}}
{{- $d := .Values.delivery -}}
{{- include "staffetta.env.optional" (list "STAFFETTA_GREETING_TIMEOUT" .Values.config.greetingTimeout) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_STARTTLS_TIMEOUT" .Values.config.starttlsTimeout) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_CONNECTION_CACHE_TIME" $d.connectionCacheTime) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_DESTINATION_CONCURRENCY" $d.destinationConcurrency) }}
{{- include "staffetta.env.optional" (list "STAFFETTA_DESTINATION_RATE_LIMIT" $d.destinationRateLimit) }}
{{- if include "staffetta.adminTokenEnabled" . }}
STAFFETTA_ADMIN_TOKEN_FILE: {{ printf "/etc/staffetta/admin/%s" (include "staffetta.adminTokenKey" .) | quote }}
{{- end }}
{{- if $h.host }}
STAFFETTA_SMARTHOST: {{ printf "%s:%d" $h.host (int $h.port) | quote }}
STAFFETTA_SMARTHOST_TLS: {{ $h.tls | quote }}
{{- with $h.username }}
STAFFETTA_SMARTHOST_USERNAME: {{ . | quote }}
{{- end }}
{{- if include "staffetta.smarthostPasswordEnabled" . }}
STAFFETTA_SMARTHOST_PASSWORD_FILE: {{ printf "/etc/staffetta/smarthost/%s" (ternary .Values.smarthost.existingSecretKey "password" (not (empty .Values.smarthost.existingSecret))) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The ConfigMap of one component: (dict "ctx" $ "component" "delivery"). */}}
{{- define "staffetta.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" .ctx) | nindent 2 }}
data:
  {{- include "staffetta.env.common" .ctx | nindent 2 }}
  {{- include (printf "staffetta.env.%s" .component) .ctx | nindent 2 }}
{{- end -}}

{{/* Files named by STAFFETTA_LOCAL_RECIPIENTS_FILE and STAFFETTA_ALIASES_FILE, mounted in every service. */}}
{{- define "staffetta.filesConfigmap" -}}
{{- if include "staffetta.hasFiles" . }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "staffetta.componentName" (dict "ctx" . "component" "files") }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "staffetta.labels" (dict "ctx" .) | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" .) | nindent 2 }}
data:
  {{- with .Values.config.localRecipients }}
  local-recipients: |
    {{- range . }}
    {{ . }}
    {{- end }}
  {{- end }}
  {{- with .Values.config.aliases }}
  aliases: |
    {{- range $alias, $targets := . }}
    {{ $alias }}: {{ join ", " $targets }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Files only the SMTP ingress reads: STAFFETTA_SENDER_LOGINS_FILE and STAFFETTA_SENDING_LIMITS_FILE. */}}
{{- define "staffetta.ingressFilesConfigmap" -}}
{{- if include "staffetta.hasIngressFiles" . }}
{{- $s := .Values.auth.senderLogins -}}
{{- $l := .Values.sendingLimits -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "staffetta.ingressFilesName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "staffetta.labels" (dict "ctx" . "component" "smtp-ingress") | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" .) | nindent 2 }}
data:
  {{- if and $s.map (not $s.existingConfigMap) }}
  sender-logins: |
    {{- range $sender, $accounts := $s.map }}
    {{ $sender }}: {{ join ", " $accounts }}
    {{- end }}
  {{- end }}
  {{- if and (or $l.accounts $l.networks) (not $l.existingConfigMap) }}
  sending-limits: |
    {{- range $who, $limits := $l.networks }}
    {{ $who }} {{ include "staffetta.limitsLine" $limits }}
    {{- end }}
    {{- range $who, $limits := $l.accounts }}
    {{ $who }}: {{ include "staffetta.limitsLine" $limits }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* `hour=N day=N month=N recipients=N`, the fields that are set. */}}
{{- define "staffetta.limitsLine" -}}
{{- $fields := list -}}
{{- range $name := list "hour" "day" "month" "recipients" -}}
{{- if hasKey $ $name -}}
{{- $fields = append $fields (printf "%s=%d" $name (int64 (index $ $name))) -}}
{{- end -}}
{{- end -}}
{{- join " " $fields -}}
{{- end -}}
