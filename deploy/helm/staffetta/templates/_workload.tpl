{{/*
Resources that every service has, rendered from one definition and called
from the component folders: (dict "ctx" $ "component" "delivery" "values" $.Values.delivery).
*/}}

{{- define "staffetta.scaledByOthers" -}}
{{- $v := .values -}}
{{- if and $v.autoscaling $v.autoscaling.enabled -}}true
{{- else if and $v.keda $v.keda.enabled -}}true
{{- end -}}
{{- end -}}

{{- define "staffetta.deployment" -}}
{{- $ctx := .ctx -}}
{{- $v := .values -}}
{{- $component := .component -}}
{{- $ingress := eq $component "smtp-ingress" -}}
{{- $delivery := eq $component "delivery" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" $ctx) | nindent 2 }}
spec:
  {{- if not (include "staffetta.scaledByOthers" .) }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "staffetta.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "staffetta.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ printf "%s%s%s" (include "staffetta.configmap" .) (include "staffetta.filesConfigmap" $ctx) (ternary (include "staffetta.ingressFilesConfigmap" $ctx) "" $ingress) | sha256sum }}
        checksum/secret: {{ include (print $ctx.Template.BasePath "/secrets.yaml") $ctx | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "staffetta.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $ctx.Values.automountServiceAccountToken }}
      # Service links would inject STAFFETTA_<SERVICE>_PORT variables, which
      # Staffetta rejects as unknown settings.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ $component }}
          image: {{ include "staffetta.image" $ctx | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args:
            - {{ ternary "ingress" $component $ingress }}
          {{- if and $ingress $v.preStopSleepSeconds }}
          lifecycle:
            # Keep accepting while the endpoint is removed from the Service and
            # load balancers; SIGTERM (and the drain) follows.
            preStop:
              exec:
                command: ["sleep", {{ $v.preStopSleepSeconds | toString | quote }}]
          {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "staffetta.componentName" . }}
          env:
            {{- include "staffetta.amqp.env" $ctx | trim | nindent 12 }}
            {{- if and (or $ingress $delivery) (include "staffetta.redisEnabled" $ctx) }}
            {{- include "staffetta.redis.env" $ctx | trim | nindent 12 }}
            {{- end }}
          ports:
            {{- if $ingress }}
            - name: smtp
              containerPort: {{ include "staffetta.port.smtp" $ctx }}
              protocol: TCP
            {{- if $v.ports.submission.enabled }}
            - name: submission
              containerPort: {{ include "staffetta.port.submission" $ctx }}
              protocol: TCP
            {{- end }}
            {{- if include "staffetta.submissionsEnabled" $ctx }}
            - name: submissions
              containerPort: {{ include "staffetta.port.submissions" $ctx }}
              protocol: TCP
            {{- end }}
            {{- end }}
            - name: http
              containerPort: {{ include "staffetta.port.http" $ctx }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $ctx.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $ctx.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $ctx.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if include "staffetta.hasFiles" $ctx }}
            - name: files
              mountPath: {{ include "staffetta.filesDir" $ctx }}
              readOnly: true
            {{- end }}
            {{- if and $ingress $ctx.Values.tls.enabled }}
            - name: tls
              mountPath: /etc/staffetta/tls
              readOnly: true
            {{- end }}
            {{- if and $ingress (include "staffetta.usersEnabled" $ctx) }}
            - name: users
              mountPath: /etc/staffetta/auth
              readOnly: true
            {{- end }}
            {{- if and $ingress (include "staffetta.senderLoginsEnabled" $ctx) }}
            - name: sender-logins
              mountPath: /etc/staffetta/sender-logins
              readOnly: true
            {{- end }}
            {{- if and $ingress (include "staffetta.sendingLimitsEnabled" $ctx) }}
            - name: sending-limits
              mountPath: /etc/staffetta/sending-limits
              readOnly: true
            {{- end }}
            {{- if and $delivery (include "staffetta.smarthostPasswordEnabled" $ctx) }}
            - name: smarthost
              mountPath: /etc/staffetta/smarthost
              readOnly: true
            {{- end }}
            {{- if and $delivery (include "staffetta.adminTokenEnabled" $ctx) }}
            - name: admin-token
              mountPath: /etc/staffetta/admin
              readOnly: true
            {{- end }}
            {{- if and $delivery (include "staffetta.maildirEnabled" $ctx) }}
            - name: maildir
              mountPath: {{ $v.maildir.mountPath }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $ctx.Values.tmpVolumeSizeLimit }}
        {{- if include "staffetta.hasFiles" $ctx }}
        - name: files
          configMap:
            name: {{ include "staffetta.componentName" (dict "ctx" $ctx "component" "files") }}
        {{- end }}
        {{- if and $ingress $ctx.Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ include "staffetta.tlsSecretName" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $ingress (include "staffetta.usersEnabled" $ctx) }}
        - name: users
          secret:
            secretName: {{ include "staffetta.usersSecretName" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $ingress (include "staffetta.senderLoginsEnabled" $ctx) }}
        - name: sender-logins
          configMap:
            name: {{ include "staffetta.senderLoginsConfigMap" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $ingress (include "staffetta.sendingLimitsEnabled" $ctx) }}
        - name: sending-limits
          configMap:
            name: {{ include "staffetta.sendingLimitsConfigMap" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $delivery (include "staffetta.smarthostPasswordEnabled" $ctx) }}
        - name: smarthost
          secret:
            secretName: {{ include "staffetta.smarthostSecretName" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $delivery (include "staffetta.adminTokenEnabled" $ctx) }}
        - name: admin-token
          secret:
            secretName: {{ include "staffetta.adminSecretName" $ctx }}
            defaultMode: 0440
        {{- end }}
        {{- if and $delivery (include "staffetta.maildirEnabled" $ctx) }}
        - name: maildir
          {{- if $v.maildir.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ default (include "staffetta.componentName" (dict "ctx" $ctx "component" "maildir")) $v.maildir.persistence.existingClaim }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{- toYaml (omit . "labelSelector") | nindent 10 }}
          labelSelector:
            {{- if .labelSelector }}
            {{- toYaml .labelSelector | nindent 12 }}
            {{- else }}
            matchLabels:
              {{- include "staffetta.selectorLabels" (dict "ctx" $ctx "component" $component) | nindent 14 }}
            {{- end }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* ClusterIP Service of the HTTP port (/healthz, /readyz, /metrics), scraped by the ServiceMonitor. */}}
{{- define "staffetta.httpService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
    staffetta.io/metrics: "true"
  {{- include "staffetta.annotations" (dict "ctx" .ctx) | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "staffetta.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ include "staffetta.port.http" .ctx }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "staffetta.pdb" -}}
{{- if .values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" .ctx) | nindent 2 }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "staffetta.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "staffetta.hpa" -}}
{{- $a := .values.autoscaling -}}
{{- if $a.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "staffetta.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "staffetta.labels" . | nindent 4 }}
  {{- include "staffetta.annotations" (dict "ctx" .ctx) | nindent 2 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "staffetta.componentName" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}
