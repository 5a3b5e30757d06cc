{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "tensorguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "tensorguard.fullname" -}}
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

{{/* The API server's resources are named "<fullname>-server". */}}
{{- define "tensorguard.serverName" -}}
{{- printf "%s-server" (include "tensorguard.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* RayCluster name: at most 40 characters, so KubeRay's "<name>-head-svc" and
     "<name>-<group>-worker-<suffix>" stay within Kubernetes' name limits. */}}
{{- define "tensorguard.rayClusterName" -}}
{{- default (include "tensorguard.fullname" .) .Values.rayCluster.name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* KubeRay names the head Service "<raycluster>-head-svc". */}}
{{- define "tensorguard.rayHeadService" -}}
{{- printf "%s-head-svc" (include "tensorguard.rayClusterName" .) -}}
{{- end -}}

{{/* The Ray Jobs API address the server submits to. */}}
{{- define "tensorguard.rayAddress" -}}
{{- if .Values.server.rayAddress -}}
{{- .Values.server.rayAddress -}}
{{- else -}}
{{- printf "http://%s.%s.svc:8265" (include "tensorguard.rayHeadService" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "tensorguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tensorguard.serverName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tensorguard.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "tensorguard.fullname" .)) .Values.apiKeys.existingSecret -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------- */}}

{{- define "tensorguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tensorguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tensorguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tensorguard.labels" -}}
helm.sh/chart: {{ include "tensorguard.chart" . }}
{{ include "tensorguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tensorguard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tensorguard.serverSelectorLabels" -}}
{{ include "tensorguard.selectorLabels" . }}
app.kubernetes.io/component: api-server
{{- end -}}

{{/* Every pod of the RayCluster carries ray.io/cluster=<name> (set by KubeRay); the policy
     that fences Ray's ports selects on it. */}}
{{- define "tensorguard.raySelectorLabels" -}}
ray.io/cluster: {{ include "tensorguard.rayClusterName" . }}
{{- end -}}

{{/* Images ---------------------------------------------------------------------------------- */}}

{{- define "tensorguard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tensorguard.gpuImage" -}}
{{- $tag := default (printf "%s-gpu" (default .Chart.AppVersion .Values.image.tag)) .Values.image.gpuTag -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* Checks the schema cannot express (comparisons between fields); each failure says what to
     change. Included once, from the Deployment template. Note that `helm lint` reports a
     template `fail` only as [INFO]; `helm template`, `install` and `upgrade` stop on it. */}}
{{- define "tensorguard.validate" -}}
{{- if and .Values.tls.enabled (eq (int .Values.server.healthPort) (int .Values.server.grpcPort)) -}}
{{- fail (printf "server.healthPort must differ from server.grpcPort (%d) when tls.enabled is true: the probes need a plaintext port of their own" (int .Values.server.grpcPort)) -}}
{{- end -}}
{{- if .Values.rayCluster.enabled -}}
{{- range $key := list "cpuWorkers" "gpuWorkers" -}}
{{- $g := index $.Values.rayCluster $key -}}
{{- if $g.enabled -}}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) -}}
{{- fail (printf "rayCluster.%s.minReplicas (%d) is greater than maxReplicas (%d)" $key (int $g.minReplicas) (int $g.maxReplicas)) -}}
{{- end -}}
{{- if or (lt (int $g.replicas) (int $g.minReplicas)) (gt (int $g.replicas) (int $g.maxReplicas)) -}}
{{- fail (printf "rayCluster.%s.replicas (%d) must lie between minReplicas (%d) and maxReplicas (%d)" $key (int $g.replicas) (int $g.minReplicas) (int $g.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.rayCluster.cpuWorkers.enabled .Values.rayCluster.gpuWorkers.enabled (eq .Values.rayCluster.cpuWorkers.groupName .Values.rayCluster.gpuWorkers.groupName) -}}
{{- fail (printf "rayCluster.cpuWorkers.groupName and rayCluster.gpuWorkers.groupName are both %q; worker group names must differ" .Values.rayCluster.cpuWorkers.groupName) -}}
{{- end -}}
{{- $gpuRes := .Values.rayCluster.gpuWorkers.resourceName -}}
{{- range $kind, $list := .Values.rayCluster.gpuWorkers.resources -}}
{{- if hasKey $list $gpuRes -}}
{{- fail (printf "rayCluster.gpuWorkers.resources.%s sets %s; set rayCluster.gpuWorkers.gpusPerWorker instead" $kind $gpuRes) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pieces shared by the Ray head and worker pod templates ---------------------------------- */}}

{{/* Writable volumes for a read-only root filesystem. (/dev/shm is added by KubeRay.) */}}
{{- define "tensorguard.rayVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.rayCluster.tmpSizeLimit }}
- name: home
  emptyDir:
    sizeLimit: 1Gi
{{- with .Values.rayCluster.volumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tensorguard.rayVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/tensorguard
{{- with .Values.rayCluster.volumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* rayCluster.env as a container env list. */}}
{{- define "tensorguard.rayEnv" -}}
{{- range $name, $value := .Values.rayCluster.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "tensorguard.podScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Env of the Ray head container: rayCluster.env plus where the Ray dashboard's Metrics view
     finds Prometheus and Grafana (monitoring.rayDashboard; empty values left to Ray). */}}
{{- define "tensorguard.rayHeadEnv" -}}
{{ include "tensorguard.rayEnv" . }}
{{- $d := .Values.monitoring.rayDashboard }}
{{- range $name, $value := dict "RAY_PROMETHEUS_HOST" $d.prometheusHost "RAY_PROMETHEUS_NAME" $d.prometheusName "RAY_GRAFANA_HOST" $d.grafanaHost "RAY_GRAFANA_IFRAME_HOST" $d.grafanaIframeHost }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Annotations of a Ray pod: the group's podAnnotations, plus Prometheus's scrape annotations
     for Ray's metrics port when monitoring.scrapeAnnotations is on.
     Call with (dict "root" $ "annotations" <group>.podAnnotations). */}}
{{- define "tensorguard.rayPodAnnotations" -}}
{{- $a := deepCopy (default (dict) .annotations) }}
{{- if .root.Values.monitoring.scrapeAnnotations }}
{{- $_ := set $a "prometheus.io/scrape" "true" }}
{{- $_ := set $a "prometheus.io/port" "8080" }}
{{- $_ := set $a "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end -}}
