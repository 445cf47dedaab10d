{{/* Names. Kubernetes names and label values are at most 63 characters. */}}

{{- define "pairaug.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pairaug.fullname" -}}
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

{{/* KubeRay refuses RayCluster names over 53 characters (it appends up to "-serve-svc" to them) and
     names that are no DNS-1035 label (ValidateRayClusterMetadata): a release name such as "1exp" or
     "team.a" (Helm allows both) is refused here, naming the values that make it. */}}
{{- define "pairaug.clusterName" -}}
{{- $name := include "pairaug.fullname" . | trunc 53 | trimSuffix "-" -}}
{{- include "pairaug.kuberayName" (list "RayCluster" $name) -}}
{{- end -}}

{{/* RayJob names: at most 47 characters (KubeRay appends 6 to name the job's cluster), a DNS-1035
     label. Call with (list $ "augment"). */}}
{{- define "pairaug.jobName" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $prefix := include "pairaug.fullname" $root | trunc (int (sub 46 (len $stage))) | trimSuffix "-" -}}
{{- include "pairaug.kuberayName" (list "RayJob" (printf "%s-%s" $prefix $stage)) -}}
{{- end -}}

{{/* (list KIND NAME) -> NAME, or a failure when KubeRay would refuse it as not a DNS-1035 label. */}}
{{- define "pairaug.kuberayName" -}}
{{- $kind := index . 0 -}}
{{- $name := index . 1 -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "%s name %q (from the release name, nameOverride or fullnameOverride) would be refused by KubeRay: it must be a DNS-1035 label (a lowercase letter first, then a-z, 0-9 or '-'); pick another release name or set fullnameOverride" $kind $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The Secret with the Ray token: auth.existingSecret, else the one the KubeRay operator generates,
     named CheckName(<RayCluster name>): its last 50 characters, then a leading digit or punctuation
     mark replaced by "r" (ray-operator/controllers/ray/utils/util.go CheckName; the pods read it in
     common/pod.go SetContainerTokenAuthEnvVars). pairaug_ray/kuberay_rules.py token_secret_name is
     the same rule in Python, and tests/test_kuberay_rules.py compares the two. */}}
{{- define "pairaug.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- $name := include "pairaug.clusterName" . -}}
{{- if gt (len $name) 50 -}}
{{- $name = substr (int (sub (len $name) 50)) (len $name) $name -}}
{{- end -}}
{{- if regexMatch "^\\p{Nd}" $name -}}
{{- $name = printf "r%s" (substr 1 (len $name) $name) -}}
{{- end -}}
{{- if regexMatch "^\\pP" $name -}}
{{- $name = printf "r%s" (substr 1 (len $name) $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{- define "pairaug.configMapName" -}}
{{- printf "%s-configs" (include "pairaug.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "pairaug.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pairaug.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: the recommended app.kubernetes.io set. */}}

{{- define "pairaug.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pairaug.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "pairaug.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pairaug.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pairaug-ray
{{- end -}}

{{- define "pairaug.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* "16Gi" / "512Mi" / "1073741824" -> bytes, as `ray start --object-store-memory` wants them. */}}
{{- define "pairaug.bytes" -}}
{{- $s := toString . -}}
{{- if hasSuffix "Gi" $s -}}
{{- mul (trimSuffix "Gi" $s | int64) 1073741824 -}}
{{- else if hasSuffix "Mi" $s -}}
{{- mul (trimSuffix "Mi" $s | int64) 1048576 -}}
{{- else -}}
{{- $s | int64 -}}
{{- end -}}
{{- end -}}

{{/* The container security context of every container: non-root, no escalation, no capabilities. */}}
{{- define "pairaug.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pairaug.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of every Ray container. Secrets only by reference: the LLM key through a
     secretKeyRef here, S3 keys through envFrom (see pairaug.envFrom); the Ray token is injected by
     the KubeRay operator from its Secret (authOptions). */}}
{{- define "pairaug.env" -}}
{{- $group := dict -}}
{{- if hasKey . "root" -}}{{- $group = .group -}}{{- end -}}
{{- $v := (hasKey . "root" | ternary .root .).Values -}}
{{- $env := list -}}
{{- with $v.s3.region -}}
{{- $env = append $env (dict "name" "AWS_REGION" "value" .) -}}
{{- $env = append $env (dict "name" "AWS_DEFAULT_REGION" "value" .) -}}
{{- end -}}
{{- with $v.s3.endpointUrl -}}
{{- $env = append $env (dict "name" "AWS_ENDPOINT_URL" "value" .) -}}
{{- end -}}
{{- with $v.llm.existingSecret -}}
{{- $ref := dict "secretKeyRef" (dict "name" . "key" $v.llm.secretKey) -}}
{{- $env = append $env (dict "name" $v.llm.envName "valueFrom" $ref) -}}
{{- end -}}
{{- range $v.env -}}
{{- $env = append $env . -}}
{{- end -}}
{{- range (default list $group.env) -}}
{{- $env = append $env . -}}
{{- end -}}
{{- with $env -}}
env:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- $envFrom := list -}}
{{- if eq $v.s3.credentials "secret" -}}
{{- $envFrom = append $envFrom (dict "secretRef" (dict "name" (required "s3.existingSecret must name a Secret when s3.credentials is secret" $v.s3.existingSecret))) -}}
{{- end -}}
{{- range (default list $group.envFrom) -}}
{{- $envFrom = append $envFrom . -}}
{{- end -}}
{{- with $envFrom }}
envFrom:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* One Ray pod template. Called with (dict "root" $ "group" <values> "component" "head|worker"
     "container" "ray-head|ray-worker" "gpus" N "gpuResource" NAME). Requests equal limits. */}}
{{- define "pairaug.podTemplate" -}}
{{- $root := .root -}}
{{- $g := .group -}}
{{- $resources := dict "cpu" (toString $g.resources.cpu) "memory" $g.resources.memory -}}
{{- with $g.resources.ephemeralStorage -}}
{{- $_ := set $resources "ephemeral-storage" . -}}
{{- end -}}
{{- if .gpus -}}
{{- $_ := set $resources .gpuResource (toString .gpus) -}}
{{- end -}}
{{- range $name, $n := (default dict $g.extendedResources) -}}
{{- $_ := set $resources $name (toString $n) -}}
{{- end -}}
{{- $annotations := deepCopy (default dict $g.podAnnotations) -}}
{{- if and $root.Values.doNotDisrupt (or (eq .component "head") .gpus .protected) -}}
{{- /* Node autoscalers leave these nodes alone while the pods run: the head holds the GCS (and
     drivers), a GPU pod hours of generation or training, a driver pod running jobs' drivers. */ -}}
{{- $_ := set $annotations "karpenter.sh/do-not-disrupt" "true" -}}
{{- $_ := set $annotations "cluster-autoscaler.kubernetes.io/safe-to-evict" "false" -}}
{{- end -}}
metadata:
  labels:
    {{- include "pairaug.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $g.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "pairaug.serviceAccountName" $root }}
  {{- with $g.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $g.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "pairaug.podSecurityContext" $root | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      {{- $image := include "pairaug.image" $root }}
      {{- with $g.image }}{{ $image = printf "%s:%s" .repository .tag }}{{ end }}
      image: {{ $image | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      ports:
        {{- if eq .component "head" }}
        - {name: gcs-server, containerPort: 6379, protocol: TCP}
        - {name: dashboard, containerPort: 8265, protocol: TCP}
        - {name: client, containerPort: 10001, protocol: TCP}
        # The autoscaler's and the dashboard's own metrics (Ray's AUTOSCALER_METRIC_PORT and
        # DASHBOARD_METRIC_PORT), scraped by the PodMonitor.
        - {name: as-metrics, containerPort: 44217, protocol: TCP}
        - {name: dash-metrics, containerPort: 44227, protocol: TCP}
        {{- end }}
        # Ray's metrics agent: Ray's metrics and the pipeline's (scraped by the PodMonitor).
        - {name: metrics, containerPort: 8080, protocol: TCP}
      {{- $group := $g }}
      {{- if eq .component "head" }}
      {{- /* The head's dashboard embeds Grafana panels and queries Prometheus when told where they are. */}}
      {{- $hosts := list }}
      {{- with $root.Values.metrics.grafanaHost }}{{ $hosts = append $hosts (dict "name" "RAY_GRAFANA_HOST" "value" .) }}{{ end }}
      {{- with (default $root.Values.metrics.grafanaHost $root.Values.metrics.grafanaIframeHost) }}{{ $hosts = append $hosts (dict "name" "RAY_GRAFANA_IFRAME_HOST" "value" .) }}{{ end }}
      {{- with $root.Values.metrics.prometheusHost }}{{ $hosts = append $hosts (dict "name" "RAY_PROMETHEUS_HOST" "value" .) }}{{ end }}
      {{- $group = merge (dict "env" (concat $hosts (default list $g.env))) $g }}
      {{- end }}
      {{- if not .gpus }}
      {{- /* No GPU asked for: on an untainted GPU node NVIDIA's runtime would still show every GPU. */}}
      {{- $group = merge (dict "env" (concat (list (dict "name" "NVIDIA_VISIBLE_DEVICES" "value" "void")) (default list $group.env))) $group }}
      {{- end }}
      {{- include "pairaug.env" (dict "root" $root "group" $group) | nindent 6 }}
      resources:
        requests:
          {{- toYaml $resources | nindent 10 }}
        limits:
          {{- toYaml $resources | nindent 10 }}
      securityContext:
        {{- include "pairaug.containerSecurityContext" $root | nindent 8 }}
      {{- if ne .component "head" }}
      lifecycle:
        preStop:
          exec:
            # Leave the cluster cleanly when the autoscaler removes the pod.
            command: ["/bin/sh", "-c", "ray stop"]
      {{- end }}
      volumeMounts:
        - {name: shared-mem, mountPath: /dev/shm}
        # Named ray-logs: KubeRay mounts the volume of that name into the head's autoscaler sidecar,
        # so its events reach the head's logs (any other name, and the sidecar gets its own emptyDir).
        - {name: ray-logs, mountPath: /tmp/ray}
        {{- if $root.Values.pipelineConfigs.files }}
        - {name: pipeline-configs, mountPath: {{ $root.Values.pipelineConfigs.mountPath | quote }}, readOnly: true}
        {{- end }}
        {{- with $g.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    # Explicit /dev/shm (KubeRay would otherwise size it to the memory limit): it holds the object store.
    - name: shared-mem
      emptyDir:
        medium: Memory
        sizeLimit: {{ $g.sharedMemory }}
    # Ray's session directory: logs and spilled objects.
    - name: ray-logs
      emptyDir:
        {{- if $g.tmpSize }}
        sizeLimit: {{ $g.tmpSize }}
        {{- else }}
        {}
        {{- end }}
    {{- if $root.Values.pipelineConfigs.files }}
    - name: pipeline-configs
      configMap:
        name: {{ include "pairaug.configMapName" $root }}
    {{- end }}
    {{- with $g.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* ray start flags of a group: the user's, then the chart's (which win). */}}
{{- define "pairaug.rayStartParams" -}}
{{- $g := .group -}}
{{- $store := include "pairaug.bytes" $g.objectStoreMemory -}}
{{- $shm := include "pairaug.bytes" $g.sharedMemory -}}
{{- if gt (int64 $store) (int64 $shm) -}}
{{- fail (printf "%s.objectStoreMemory (%s) must not exceed %s.sharedMemory (%s): the object store lives in /dev/shm" .key $g.objectStoreMemory .key $g.sharedMemory) -}}
{{- end -}}
{{- with $g.resources.ephemeralStorage -}}
{{- if ge (int64 (include "pairaug.bytes" $g.tmpSize)) (int64 (include "pairaug.bytes" .)) -}}
{{- fail (printf "%s.tmpSize (%s) must be below %s.resources.ephemeralStorage (%s): /tmp/ray is only part of what the container writes (model caches too), and a pod over its request is evicted" $.key $g.tmpSize $.key .) -}}
{{- end -}}
{{- end -}}
{{- $params := deepCopy (default dict $g.rayStartParams) -}}
{{- $_ := set $params "object-store-memory" $store -}}
{{- if and (include "pairaug.groupResources" .) (ne .key "head") -}}
{{- range $flag := list "num-cpus" "num-gpus" "memory" "resources" -}}
{{- if hasKey $params $flag -}}
{{- fail (printf "%s.rayStartParams.%s: this group declares its Ray resources in the group's resources field (GPUs, rayResources or acceleratorType); KubeRay refuses them in both places" $.key $flag) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq .key "head" -}}
{{- $_ := set $params "num-cpus" "0" -}}
{{- $_ := set $params "dashboard-host" "0.0.0.0" -}}
{{- end -}}
{{- toYaml $params -}}
{{- end -}}

{{/* A worker group's Ray resources for the group's `resources` field (KubeRay turns it into ray start's
     --num-gpus and --resources): GPU "0" for a group without GPUs, so that its Ray nodes never
     advertise a GPU of an untainted GPU node they may land on (NVIDIA's runtime shows every GPU to a
     container that asks for none); its custom resources and accelerator type. As a field, not as
     rayStartParams' quoted JSON, which KubeRay's getResourcesMap cannot parse (and then skips
     --num-gpus). Empty for the head. Called with (dict "group" G "key" K "gpus" N). */}}
{{- define "pairaug.groupResources" -}}
{{- if ne .key "head" -}}
{{- $res := dict -}}
{{- if not .gpus -}}{{- $_ := set $res "GPU" "0" -}}{{- end -}}
{{- range $name, $n := (default dict .group.rayResources) -}}{{- $_ := set $res $name (toString $n) -}}{{- end -}}
{{- with .group.acceleratorType -}}{{- $_ := set $res (printf "accelerator_type:%s" .) "1" -}}{{- end -}}
{{- with $res -}}{{- toYaml . -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* The RayCluster spec, shared by the RayCluster and by every RayJob that brings its own cluster.
     Called with (dict "root" $ "longLived" true|false "queued" true|false): the long-lived cluster
     alone names its Redis namespace (a job cluster's namespace is its own UID, and KubeRay's cleanup
     Job clears it when the job cluster goes); a Kueue-managed object autoscales only as an elastic
     job (kueue.autoscaling). */}}
{{- define "pairaug.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $autoscale := and $v.autoscaler.enabled (or (not .queued) (eq $v.kueue.autoscaling "elastic")) -}}
{{- $anyWorkers := or $v.cpuWorkers.enabled $v.gpuWorkers.enabled -}}
{{- range $v.extraWorkerGroups -}}{{- if or (not (hasKey . "enabled")) .enabled -}}{{- $anyWorkers = true -}}{{- end -}}{{- end -}}
{{- if not $anyWorkers -}}
{{- fail "enable cpuWorkers, gpuWorkers or an extraWorkerGroups entry: the head runs no tasks (num-cpus 0)" -}}
{{- end -}}
rayVersion: {{ $v.rayVersion | quote }}
{{- if $v.auth.enabled }}
authOptions:
  mode: token
  {{- with $v.auth.existingSecret }}
  secretName: {{ . }}
  {{- end }}
{{- end }}
enableInTreeAutoscaling: {{ $autoscale }}
{{- if $autoscale }}
autoscalerOptions:
  version: {{ $v.autoscaler.version }}
  upscalingMode: {{ $v.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ $v.autoscaler.idleTimeoutSeconds }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  resources:
    {{- $r := dict "cpu" (toString $v.autoscaler.resources.cpu) "memory" $v.autoscaler.resources.memory }}
    requests:
      {{- toYaml $r | nindent 6 }}
    limits:
      {{- toYaml $r | nindent 6 }}
  securityContext:
    {{- include "pairaug.containerSecurityContext" $root | nindent 4 }}
{{- end }}
{{- $longLived := .longLived }}
{{- with $v.gcsFaultTolerance }}
{{- if .enabled }}
gcsFaultToleranceOptions:
  redisAddress: {{ required "gcsFaultTolerance.redisAddress (host:port of the Redis) is needed when gcsFaultTolerance.enabled" .redisAddress | quote }}
  {{- if .redisPasswordSecret.name }}
  redisPassword:
    valueFrom:
      secretKeyRef:
        name: {{ .redisPasswordSecret.name }}
        key: {{ .redisPasswordSecret.key }}
  {{- end }}
  {{- if and .externalStorageNamespace $longLived }}
  externalStorageNamespace: {{ .externalStorageNamespace | quote }}
  {{- end }}
{{- end }}
{{- end }}
headGroupSpec:
  serviceType: {{ $v.head.serviceType }}
  rayStartParams:
    {{- include "pairaug.rayStartParams" (dict "group" $v.head "key" "head") | nindent 4 }}
  template:
    {{- include "pairaug.podTemplate" (dict "root" $root "group" $v.head "component" "head" "container" "ray-head") | nindent 4 }}
{{- $groups := list (list "cpuWorkers" $v.cpuWorkers 0) (list "gpuWorkers" $v.gpuWorkers (int $v.gpuWorkers.gpusPerPod)) }}
{{- $names := dict }}
{{- range $i, $extra := $v.extraWorkerGroups }}
{{- /* A preset's values (cpuWorkers or gpuWorkers), the group's own keys on top. */}}
{{- $cpu := eq (default "gpu" $extra.preset) "cpu" }}
{{- $g := mergeOverwrite (deepCopy (index $v (ternary "cpuWorkers" "gpuWorkers" $cpu))) (dict "enabled" true "replicas" 0 "minReplicas" 0) (deepCopy $extra) }}
{{- /* A null removes what the preset gives (a merge keeps the preset's value for a null). */}}
{{- range $k, $val := $extra }}
{{- if kindIs "invalid" $val }}{{- $_ := unset $g $k }}
{{- else if and (kindIs "map" $val) (kindIs "map" (index $g $k)) }}
{{- range $k2, $val2 := $val }}{{- if kindIs "invalid" $val2 }}{{- $_ := unset (index $g $k) $k2 }}{{- end }}{{- end }}
{{- end }}
{{- end }}
{{- if $cpu }}{{- $_ := set $g "gpusPerPod" (default 0 $extra.gpusPerPod) }}{{- end }}
{{- $groups = append $groups (list (printf "extraWorkerGroups[%d]" $i) $g (int (default 0 $g.gpusPerPod))) }}
{{- end }}
{{- with $v.driverWorkers }}
{{- if .enabled }}
{{- $d := mergeOverwrite (deepCopy $v.cpuWorkers) (dict "enabled" true "replicas" 0 "minReplicas" 0 "idleTimeoutSeconds" nil "priority" 0 "extendedResources" dict "volumes" list "volumeMounts" list) (omit (deepCopy .) "driversPerPod") }}
{{- $_ := set $d "rayResources" (dict "pairaug-driver" .driversPerPod) }}
{{- $_ := set $d "protected" true }}
{{- $groups = append $groups (list "driverWorkers" $d 0) }}
{{- end }}
{{- end }}
{{- /* Whether some enabled group without GPUs can run work: then GPU groups are labelled gpu and
the jobs' CPU stages keep off them (pairaug_ray/runtime.py). Without one, CPU stages must use the GPU
nodes' CPUs, so no group is labelled gpu. */}}
{{- $cpuGroup := false }}
{{- range $entry := $groups }}
{{- $g := index $entry 1 }}
{{- if and $g.enabled (eq (int (index $entry 2)) 0) (gt (int $g.maxReplicas) 0) }}{{- $cpuGroup = true }}{{- end }}
{{- end }}
workerGroupSpecs:
  {{- range $entry := $groups }}
  {{- $key := index $entry 0 }}
  {{- $g := index $entry 1 }}
  {{- $gpus := index $entry 2 }}
  {{- if $g.enabled }}
  {{- if hasKey $names $g.groupName }}
  {{- fail (printf "%s.groupName %q is already the name of %s: group names must differ" $key $g.groupName (get $names $g.groupName)) }}
  {{- end }}
  {{- $_ := set $names $g.groupName $key }}
  {{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
  {{- fail (printf "%s.minReplicas (%d) is larger than %s.maxReplicas (%d)" $key (int $g.minReplicas) $key (int $g.maxReplicas)) }}
  {{- end }}
  - groupName: {{ $g.groupName }}
    replicas: {{ $g.replicas }}
    minReplicas: {{ $g.minReplicas }}
    maxReplicas: {{ $g.maxReplicas }}
    {{- if not (kindIs "invalid" $g.idleTimeoutSeconds) }}
    {{- if not (and $autoscale (eq $v.autoscaler.version "v2")) }}
    {{- fail (printf "%s.idleTimeoutSeconds is set, but KubeRay refuses a group idle timeout without autoscaler v2 (autoscaler.enabled: %v, autoscaler.version: %s%s): unset it or use autoscaler v2" $key $v.autoscaler.enabled $v.autoscaler.version (ternary ", turned off under Kueue by kueue.autoscaling: off" "" (and $v.autoscaler.enabled (not $autoscale)))) }}
    {{- end }}
    idleTimeoutSeconds: {{ $g.idleTimeoutSeconds }}
    {{- end }}
    {{- with $g.priority }}
    {{- if not (and $autoscale (eq $v.autoscaler.version "v2")) }}
    {{- fail (printf "%s.priority is set, but KubeRay refuses group priorities without autoscaler v2 (autoscaler.enabled: %v, autoscaler.version: %s): set it to 0 or use autoscaler v2" $key $v.autoscaler.enabled $v.autoscaler.version) }}
    {{- end }}
    priority: {{ . }}
    {{- end }}
    {{- $kind := ternary "cpu" "gpu" (eq (int $gpus) 0) }}
    {{- if hasKey ($g.rayLabels | default dict) "pairaug.io/node-kind" }}
    {{- fail (printf "%s.rayLabels sets pairaug.io/node-kind: the chart sets it from the group's GPUs (gpusPerPod), which is what keeps CPU work off GPU nodes" $key) }}
    {{- end }}
    {{- $labels := deepCopy ($g.rayLabels | default dict) }}
    {{- if or (eq $kind "cpu") $cpuGroup }}{{- $_ := set $labels "pairaug.io/node-kind" $kind }}{{- end }}
    {{- with $labels }}
    labels:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    rayStartParams:
      {{- include "pairaug.rayStartParams" (dict "group" $g "key" $key "gpus" $gpus) | nindent 6 }}
    {{- with (include "pairaug.groupResources" (dict "group" $g "key" $key "gpus" $gpus)) }}
    resources:
      {{- . | nindent 6 }}
    {{- end }}
    template:
      {{- include "pairaug.podTemplate" (dict "root" $root "group" $g "component" (printf "worker-%s" $g.groupName) "container" "ray-worker" "gpus" $gpus "gpuResource" ($g.gpuResourceName | default "") "protected" $g.protected) | nindent 6 }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* Environment of the reader study's containers: S3 (to draw the study from the run) and the
     answers' database URL by reference; not the LLM key or the Ray token, which it has no use for. */}}
{{- define "pairaug.readerStudyEnv" -}}
{{- $v := .Values -}}
{{- $env := list -}}
{{- with $v.s3.region -}}
{{- $env = append $env (dict "name" "AWS_REGION" "value" .) -}}
{{- $env = append $env (dict "name" "AWS_DEFAULT_REGION" "value" .) -}}
{{- end -}}
{{- with $v.s3.endpointUrl -}}
{{- $env = append $env (dict "name" "AWS_ENDPOINT_URL" "value" .) -}}
{{- end -}}
{{- with $v.readerStudy.database.existingSecret -}}
{{- $ref := dict "secretKeyRef" (dict "name" . "key" $v.readerStudy.database.secretKey) -}}
{{- $env = append $env (dict "name" "READER_STUDY_DATABASE_URL" "valueFrom" $ref) -}}
{{- end -}}
{{- with $env -}}
env:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- if eq $v.s3.credentials "secret" }}
envFrom:
  - secretRef:
      name: {{ required "s3.existingSecret must name a Secret when s3.credentials is secret" $v.s3.existingSecret }}
{{- end -}}
{{- end -}}
