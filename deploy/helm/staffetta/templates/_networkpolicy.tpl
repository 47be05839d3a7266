{{/*
NetworkPolicy of one service: metrics only from the monitoring namespaces,
SMTP only from the allowed networks (SMTP ingress), AMQP only to the broker,
DNS to the cluster DNS, and outbound SMTP for delivery.
*/}}
{{- define "staffetta.networkPolicy" -}}
{{- $ctx := .ctx -}}
{{- $np := $ctx.Values.networkPolicy -}}
{{- if $np.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" $ctx) | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "staffetta.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - namespaceSelector:
            {{- toYaml $np.metricsNamespaceSelector | nindent 12 }}
      ports:
        - port: http
          protocol: TCP
    {{- if eq .component "smtp-ingress" }}
    - from:
        {{- range $np.smtpAllowedCidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        - port: smtp
          protocol: TCP
        {{- if $ctx.Values.smtpIngress.ports.submission.enabled }}
        - port: submission
          protocol: TCP
        {{- end }}
        {{- if include "staffetta.submissionsEnabled" $ctx }}
        - port: submissions
          protocol: TCP
        {{- end }}
    {{- end }}
  egress:
    - to:
        - namespaceSelector:
            {{- toYaml $np.dnsNamespaceSelector | nindent 12 }}
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- include "staffetta.networkPolicy.broker" $ctx | nindent 4 }}
    {{- if and (has .component (list "smtp-ingress" "delivery")) (include "staffetta.redisEnabled" $ctx) }}
    - ports:
        - port: {{ $ctx.Values.redis.port }}
          protocol: TCP
      {{- with $ctx.Values.redis.networkPolicyCidrs }}
      to:
        {{- range . }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      {{- end }}
    {{- end }}
    {{- if eq .component "delivery" }}
    - to:
        {{- range $np.outboundSmtpCidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        {{- range (list $ctx.Values.config.remoteSmtpPort (ternary $ctx.Values.smarthost.port $ctx.Values.config.remoteSmtpPort (not (empty $ctx.Values.smarthost.host)))) | uniq }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* The egress rule towards the broker, whichever mode runs it. */}}
{{- define "staffetta.networkPolicy.broker" -}}
{{- $mode := .Values.rabbitmq.mode -}}
- ports:
    - port: {{ ternary .Values.rabbitmq.external.port 5672 (eq $mode "external") }}
      protocol: TCP
  {{- if eq $mode "standalone" }}
  to:
    - podSelector:
        matchLabels:
          {{- include "staffetta.selectorLabels" (dict "ctx" . "component" "rabbitmq") | nindent 10 }}
  {{- else if eq $mode "operator" }}
  to:
    - podSelector:
        matchLabels:
          app.kubernetes.io/name: {{ include "staffetta.rabbitmq.name" . }}
  {{- else if .Values.rabbitmq.external.networkPolicyCidrs }}
  to:
    {{- range .Values.rabbitmq.external.networkPolicyCidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}
