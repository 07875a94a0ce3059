{{/* Names and labels. */}}
{{- define "trackyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trackyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trackyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trackyard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of every object: pass (dict "root" $ "component" "control"). */}}
{{- define "trackyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "trackyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "trackyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the chart makes (keys, etcd and metrics credentials). */}}
{{- define "trackyard.secretName" -}}
{{- include "trackyard.fullname" . }}
{{- end }}

{{- define "trackyard.keysSecretName" -}}
{{- default (include "trackyard.secretName" .) .Values.apiKeys.existingSecret }}
{{- end }}

{{- define "trackyard.etcdAuthEnabled" -}}
{{- $auth := .Values.etcd.external.auth }}
{{- if and (not .Values.etcd.bundled.enabled) (or $auth.existingSecret $auth.username) }}true{{ end }}
{{- end }}

{{- define "trackyard.etcdAuthSecretName" -}}
{{- default (include "trackyard.secretName" .) .Values.etcd.external.auth.existingSecret }}
{{- end }}

{{- define "trackyard.etcdTLSEnabled" -}}
{{- if and (not .Values.etcd.bundled.enabled) .Values.etcd.external.tls.secretName }}true{{ end }}
{{- end }}

{{- define "trackyard.metricsAuthEnabled" -}}
{{- if .Values.metrics.basicAuth.username }}true{{ end }}
{{- end }}

{{- define "trackyard.metricsAuthSecretName" -}}
{{- default (include "trackyard.secretName" .) .Values.metrics.basicAuth.existingSecret }}
{{- end }}

{{- define "trackyard.etcdName" -}}
{{- printf "%s-etcd" (include "trackyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trackyard.etcdEndpoints" -}}
{{- if .Values.etcd.bundled.enabled }}
{{- list (printf "http://%s.%s.svc:2379" (include "trackyard.etcdName" .) .Release.Namespace) | toJson }}
{{- else }}
{{- if not .Values.etcd.external.endpoints }}
{{- fail "etcd: set etcd.external.endpoints, or etcd.bundled.enabled=true" }}
{{- end }}
{{- .Values.etcd.external.endpoints | toJson }}
{{- end }}
{{- end }}

{{- define "trackyard.etcdTLSDir" -}}/etc/trackyard-etcd-tls{{- end }}

{{/*
The trackyard config file of one role: (dict "root" $ "role" "media"). The values' config,
then the role's config over it, then what the chart owns (etcd). Everything else the chart
sets comes from the command line (--role) or the environment (keys, node IP, gRPC address,
etcd credentials), so no secret is ever in a ConfigMap.
*/}}
{{- define "trackyard.configYaml" -}}
{{- $root := .root }}
{{- $cfg := mustMergeOverwrite (deepCopy ($root.Values.config | default dict)) (deepCopy ((index $root.Values .role).config | default dict)) }}
{{- $etcd := dict "endpoints" (include "trackyard.etcdEndpoints" $root | fromJsonArray) "prefix" $root.Values.etcd.prefix "dial_timeout" $root.Values.etcd.dialTimeout }}
{{- if include "trackyard.etcdTLSEnabled" $root }}
{{- $tls := $root.Values.etcd.external.tls }}
{{- $dir := include "trackyard.etcdTLSDir" $root }}
{{- $_ := set $etcd "ca_file" (printf "%s/%s" $dir $tls.caKey) }}
{{- if $tls.clientCertificate }}
{{- $_ := set $etcd "cert_file" (printf "%s/%s" $dir $tls.certKey) }}
{{- $_ := set $etcd "key_file" (printf "%s/%s" $dir $tls.keyKey) }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "etcd" $etcd }}
{{- if include "trackyard.metricsAuthEnabled" $root }}
{{- $metrics := deepCopy (default dict $cfg.metrics) }}
{{- $_ := set $metrics "username" $root.Values.metrics.basicAuth.username }}
{{- $_ := set $cfg "metrics" $metrics }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{- define "trackyard.httpPort" -}}
{{- $cfg := include "trackyard.configYaml" . | fromYaml }}
{{- dig "port" 7880 $cfg | int }}
{{- end }}

{{/* Readiness asks etcd once per probe within dial_timeout: give the probe a bit more. */}}
{{- define "trackyard.readinessTimeout" -}}
{{- add (ceil .Values.etcd.dialTimeout | int) 2 }}
{{- end }}

{{/* The container of either role: (dict "root" $ "role" "control"). */}}
{{- define "trackyard.container" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $values := index $root.Values $role }}
{{- $cfg := include "trackyard.configYaml" . | fromYaml }}
{{- $grpcPort := dig "node" "grpc_port" 7890 $cfg | int }}
{{- $udpPort := dig "rtc" "udp_port" 7882 $cfg | int }}
{{- $tcpPort := dig "rtc" "tcp_port" 7881 $cfg | int -}}
- name: trackyard
  image: {{ include "trackyard.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["trackyard", "server", "--config", "/etc/trackyard/config.yaml", "--role", {{ $role | quote }}]
  env:
    - name: LIVEKIT_KEYS
      valueFrom:
        secretKeyRef:
          name: {{ include "trackyard.keysSecretName" $root }}
          key: {{ $root.Values.apiKeys.secretKey }}
    {{- if include "trackyard.etcdAuthEnabled" $root }}
    - name: TRACKYARD_ETCD_USERNAME
      valueFrom:
        secretKeyRef:
          name: {{ include "trackyard.etcdAuthSecretName" $root }}
          key: {{ $root.Values.etcd.external.auth.usernameKey }}
    - name: TRACKYARD_ETCD_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "trackyard.etcdAuthSecretName" $root }}
          key: {{ $root.Values.etcd.external.auth.passwordKey }}
    {{- end }}
    {{- if include "trackyard.metricsAuthEnabled" $root }}
    - name: TRACKYARD_METRICS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "trackyard.metricsAuthSecretName" $root }}
          key: {{ $root.Values.metrics.basicAuth.passwordKey }}
    {{- end }}
    {{- if eq $role "media" }}
    - name: HOST_IP
      valueFrom:
        fieldRef:
          fieldPath: status.hostIP
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- if eq $values.nodeIP "hostIP" }}
    - name: NODE_IP
      value: "$(HOST_IP)"
    {{- else if ne $values.nodeIP "interfaces" }}
    - name: NODE_IP
      value: {{ $values.nodeIP | quote }}
    {{- end }}
    - name: TRACKYARD_GRPC_ADDRESS
      value: {{ printf "$(%s):%d" (ternary "HOST_IP" "POD_IP" $values.hostNetwork) $grpcPort | quote }}
    {{- end }}
    {{- with $root.Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ include "trackyard.httpPort" . }}
      protocol: TCP
    {{- if eq $role "media" }}
    - name: rtc-udp
      containerPort: {{ $udpPort }}
      {{- if not $values.hostNetwork }}
      hostPort: {{ $udpPort }}
      {{- end }}
      protocol: UDP
    - name: rtc-tcp
      containerPort: {{ $tcpPort }}
      {{- if not $values.hostNetwork }}
      hostPort: {{ $tcpPort }}
      {{- end }}
      protocol: TCP
    - name: grpc
      containerPort: {{ $grpcPort }}
      protocol: TCP
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: 5
    timeoutSeconds: {{ include "trackyard.readinessTimeout" $root }}
    failureThreshold: 2
  {{- if gt (int $values.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ $values.preStopSleepSeconds | int | toString | quote }}]
  {{- end }}
  resources:
    {{- toYaml $values.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/trackyard
      readOnly: true
    {{- if include "trackyard.etcdTLSEnabled" $root }}
    - name: etcd-tls
      mountPath: {{ include "trackyard.etcdTLSDir" $root }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* The pod-level volumes of either role. */}}
{{- define "trackyard.volumes" -}}
- name: config
  configMap:
    name: {{ include "trackyard.fullname" .root }}-{{ .role }}
{{- if include "trackyard.etcdTLSEnabled" .root }}
- name: etcd-tls
  secret:
    secretName: {{ .root.Values.etcd.external.tls.secretName }}
{{- end }}
{{- end }}

{{/* Pod annotations of either role: config checksum, metrics, the user's. */}}
{{- define "trackyard.podAnnotations" -}}
checksum/config: {{ include "trackyard.configYaml" . | sha256sum }}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "trackyard.httpPort" . | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with (index .root.Values .role).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
