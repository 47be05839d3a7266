{{/*
Names and labels, in the style of the prometheus-community charts.
Templates that concern one component take a dict: (dict "ctx" $ "component" "router").
*/}}

{{- define "staffetta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "staffetta.fullname" -}}
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

{{- define "staffetta.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<fullname>-<component>`, e.g. staffetta-delivery. */}}
{{- define "staffetta.componentName" -}}
{{- printf "%s-%s" (include "staffetta.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "staffetta.selectorLabels" -}}
app.kubernetes.io/name: {{ include "staffetta.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "staffetta.labels" -}}
helm.sh/chart: {{ include "staffetta.chart" .ctx }}
{{ include "staffetta.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: staffetta
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations block from commonAnnotations (and extra ones), or nothing. */}}
{{- define "staffetta.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) .ctx.Values.commonAnnotations -}}
{{- if $all }}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "staffetta.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "staffetta.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "staffetta.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The contract's container ports; not values: the Service maps public ports onto them. */}}
{{- define "staffetta.port.smtp" -}}2525{{- end -}}
{{- define "staffetta.port.submission" -}}2587{{- end -}}
{{- define "staffetta.port.submissions" -}}2465{{- end -}}
{{- define "staffetta.port.http" -}}8080{{- end -}}

{{- define "staffetta.submissionsEnabled" -}}
{{- if and .Values.tls.enabled .Values.smtpIngress.ports.submissions.enabled -}}true{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- RabbitMQ */}}

{{- define "staffetta.rabbitmq.name" -}}
{{- printf "%s-rabbitmq" (include "staffetta.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* Host of the in-cluster broker (standalone Service or the operator's Service). */}}
{{- define "staffetta.rabbitmq.host" -}}
{{- printf "%s.%s.svc" (include "staffetta.rabbitmq.name" .) .Release.Namespace -}}
{{- end -}}

{{/* The Secret holding `username` and `password` of the in-cluster broker. */}}
{{- define "staffetta.rabbitmq.credentialsSecret" -}}
{{- if eq .Values.rabbitmq.mode "operator" -}}
{{- printf "%s-default-user" (include "staffetta.rabbitmq.name" .) -}}
{{- else -}}
{{- default (include "staffetta.rabbitmq.name" .) .Values.rabbitmq.standalone.auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the external broker's URL. */}}
{{- define "staffetta.amqp.secretName" -}}
{{- default (printf "%s-amqp" (include "staffetta.fullname" .)) .Values.rabbitmq.external.existingSecret -}}
{{- end -}}
{{- define "staffetta.amqp.secretKey" -}}
{{- if .Values.rabbitmq.external.existingSecret -}}
{{- .Values.rabbitmq.external.existingSecretKey -}}
{{- else -}}url{{- end -}}
{{- end -}}

{{/* Env entries that give every service STAFFETTA_AMQP_URL without writing a password into a ConfigMap. */}}
{{- define "staffetta.amqp.env" -}}
{{- if eq .Values.rabbitmq.mode "external" }}
- name: STAFFETTA_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "staffetta.amqp.secretName" . }}
      key: {{ include "staffetta.amqp.secretKey" . }}
{{- else }}
- name: RABBITMQ_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "staffetta.rabbitmq.credentialsSecret" . }}
      key: username
- name: RABBITMQ_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "staffetta.rabbitmq.credentialsSecret" . }}
      key: password
- name: STAFFETTA_AMQP_URL
  value: {{ printf "amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@%s:5672/" (include "staffetta.rabbitmq.host" .) | quote }}
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------------ files */}}

{{- define "staffetta.filesDir" -}}/etc/staffetta/files{{- end -}}
{{- define "staffetta.hasFiles" -}}
{{- if or .Values.config.localRecipients .Values.config.aliases -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.usersSecretName" -}}
{{- default (printf "%s-users" (include "staffetta.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}
{{- define "staffetta.usersEnabled" -}}
{{- if or .Values.auth.users .Values.auth.existingSecret -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "staffetta.fullname" .) -}}
{{- else -}}
{{- required "tls.enabled needs tls.existingSecret or tls.certManager.enabled" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}
{{- define "staffetta.smarthostSecretName" -}}
{{- default (printf "%s-smarthost" (include "staffetta.fullname" .)) .Values.smarthost.existingSecret -}}
{{- end -}}
{{- define "staffetta.smarthostPasswordEnabled" -}}
{{- if and .Values.smarthost.host (or .Values.smarthost.password .Values.smarthost.existingSecret) -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.maildirEnabled" -}}
{{- if .Values.config.localDomains -}}true{{- end -}}
{{- end -}}

{{/* ------------------------------------------- ingress policy files, Redis, admin */}}

{{/* ConfigMap of the files only the SMTP ingress reads (sender logins, sending limits). */}}
{{- define "staffetta.ingressFilesName" -}}
{{- include "staffetta.componentName" (dict "ctx" . "component" "smtp-ingress-files") -}}
{{- end -}}
{{- define "staffetta.senderLoginsEnabled" -}}
{{- if or .Values.auth.senderLogins.map .Values.auth.senderLogins.existingConfigMap -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.senderLoginsConfigMap" -}}
{{- default (include "staffetta.ingressFilesName" .) .Values.auth.senderLogins.existingConfigMap -}}
{{- end -}}
{{- define "staffetta.senderLoginsKey" -}}
{{- ternary .Values.auth.senderLogins.existingConfigMapKey "sender-logins" (not (empty .Values.auth.senderLogins.existingConfigMap)) -}}
{{- end -}}
{{- define "staffetta.sendingLimitsEnabled" -}}
{{- $l := .Values.sendingLimits -}}
{{- if or $l.accounts $l.networks $l.existingConfigMap -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.sendingLimitsConfigMap" -}}
{{- default (include "staffetta.ingressFilesName" .) .Values.sendingLimits.existingConfigMap -}}
{{- end -}}
{{- define "staffetta.sendingLimitsKey" -}}
{{- ternary .Values.sendingLimits.existingConfigMapKey "sending-limits" (not (empty .Values.sendingLimits.existingConfigMap)) -}}
{{- end -}}
{{/* Does the chart render the ingress files ConfigMap (some file from values, not an existing ConfigMap)? */}}
{{- define "staffetta.hasIngressFiles" -}}
{{- $l := .Values.sendingLimits -}}
{{- $s := .Values.auth.senderLogins -}}
{{- if or (and $s.map (not $s.existingConfigMap)) (and (or $l.accounts $l.networks) (not $l.existingConfigMap)) -}}true{{- end -}}
{{- end -}}

{{- define "staffetta.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.redisSecretName" -}}
{{- default (printf "%s-redis" (include "staffetta.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}
{{/* Env entry of STAFFETTA_REDIS_URL (SMTP ingress and delivery), from a Secret. */}}
{{- define "staffetta.redis.env" -}}
{{- if include "staffetta.redisEnabled" . }}
- name: STAFFETTA_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "staffetta.redisSecretName" . }}
      key: {{ ternary .Values.redis.existingSecretKey "url" (not (empty .Values.redis.existingSecret)) }}
{{- end }}
{{- end -}}

{{- define "staffetta.adminTokenEnabled" -}}
{{- if or .Values.delivery.adminApi.token .Values.delivery.adminApi.existingSecret -}}true{{- end -}}
{{- end -}}
{{- define "staffetta.adminSecretName" -}}
{{- default (printf "%s-admin" (include "staffetta.fullname" .)) .Values.delivery.adminApi.existingSecret -}}
{{- end -}}
{{- define "staffetta.adminTokenKey" -}}
{{- ternary .Values.delivery.adminApi.existingSecretKey "token" (not (empty .Values.delivery.adminApi.existingSecret)) -}}
{{- end -}}

{{/*
`NAME: "value"` when the value is set, nothing when it is null or "" (the code's
default applies): (list "STAFFETTA_GREET_PAUSE" .Values.smtpIngress.greetPause).
Numbers are written as integers (the schema admits no fractions where this is used).
*/}}
{{- define "staffetta.env.optional" -}}
{{- $value := index . 1 -}}
{{- if kindIs "float64" $value -}}{{- $value = int64 $value -}}{{- end -}}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{ index . 0 }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}
