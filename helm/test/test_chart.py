"""What the rendered chart must guarantee, for every value set in helm/tensorguard/ci/."""

import re
import subprocess

import pytest
import yaml

from conftest import (
    CHART,
    KUBE_VERSIONS,
    KUBECONFORM,
    NAMESPACE,
    RELEASE,
    ROOT,
    SCHEMAS,
    VALUE_SETS,
    find,
    helm,
    one,
    pod_specs,
    render,
    server_container,
    template_args,
    worker_group,
)

CREDENTIAL = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|KEY", re.I)
FULLNAME = f"{RELEASE}-tensorguard"
HEAD_SVC = f"{FULLNAME}-head-svc"


def test_value_sets_exist():
    assert {"default", "gpu", "production"} <= set(VALUE_SETS)


# --- the API server ----------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_use_grpc_health(value_set):
    docs = render(value_set)
    c = server_container(docs)
    tls = "--tls-cert" in c["args"]
    want_port = 50052 if tls else 50051
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe in c, f"{probe} missing"
        p = c[probe]
        assert set(p) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, f"{probe} is not a gRPC probe: {p}"
        assert p["grpc"] == {"port": want_port, "service": ""}, f"{probe}: {p['grpc']}"
    ports = {p["containerPort"]: p["name"] for p in c["ports"]}
    assert ports[50051] == "grpc"
    if tls:
        # The kubelet's gRPC probes speak plaintext only, so TLS needs the health-only port.
        assert ports[50052] == "grpc-health"
        assert c["args"][c["args"].index("--health-listen") + 1] == "0.0.0.0:50052"


def test_server_command_line():
    c = server_container(render("default"))
    assert c["args"] == [
        "tensorguard",
        "serve",
        "--listen",
        "0.0.0.0:50051",
        "--api-keys",
        "/etc/tensorguard/api-keys/keys.yaml",
        "--address",
        f"http://{HEAD_SVC}.{NAMESPACE}.svc:8265",
    ]
    # The address is the head Service KubeRay makes for this chart's RayCluster.
    rc = one(render("default"), "RayCluster")
    assert f"{rc['metadata']['name']}-head-svc" == HEAD_SVC


def test_server_reaches_an_existing_ray_cluster_when_ray_cluster_is_disabled():
    docs = render("default", "rayCluster.enabled=false", "server.rayAddress=http://ray-head.ray.svc:8265")
    assert not [d for d in docs if d["kind"] == "RayCluster"]
    assert [d["metadata"]["name"] for d in find(docs, "NetworkPolicy")] == [f"{FULLNAME}-server"]
    c = server_container(docs)
    assert c["args"][c["args"].index("--address") + 1] == "http://ray-head.ray.svc:8265"


def test_service_and_pdb_select_the_server_pods():
    docs = render("default")
    dep = one(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 50051 and port["targetPort"] == "grpc" and port["appProtocol"] == "grpc"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert not [d for d in render("default", "server.podDisruptionBudget.enabled=false") if d["kind"] == "PodDisruptionBudget"]


def test_config_change_rolls_the_pods():
    def checksum(*sets):
        return one(render("default", *sets), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("server.logLevel=debug")


# --- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_no_container_runs_as_root(value_set):
    docs = render(value_set)
    specs = pod_specs(docs)
    assert len(specs) >= 3, specs  # server, head, at least one worker group
    for where, spec in specs:
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot"
        assert psc.get("runAsUser", 1) != 0 and psc.get("runAsGroup", 1) != 0, f"{where}: root uid/gid"
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp"
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}/{c['name']}"
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{where}/{c['name']}: uid 0"
            assert sc.get("privileged", False) is False, f"{where}/{c['name']}: privileged"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}: privilege escalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}: capabilities"
            assert not sc.get("capabilities", {}).get("add"), f"{where}/{c['name']}: added capabilities"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}: writable root fs"
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}/{c['name']}"
    rc = one(docs, "RayCluster")
    if rc["spec"]["enableInTreeAutoscaling"]:
        # The autoscaler sidecar KubeRay adds to the head gets its securityContext from here.
        sc = rc["spec"]["autoscalerOptions"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_writable_paths_are_emptydirs(value_set):
    # A read-only root filesystem needs somewhere to write: /tmp everywhere, and the home
    # directory on Ray pods (Ray's session dir lives in /tmp/ray).
    for where, spec in pod_specs(render(value_set)):
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], where
        if where.startswith("RayCluster"):
            assert "emptyDir" in volumes[mounts["/home/tensorguard"]], where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_secrets_are_referenced_never_inlined(value_set):
    docs = render(value_set)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"
    values = yaml.safe_load((CHART / "ci" / f"{value_set}-values.yaml").read_text()) or {}
    dep = one(docs, "Deployment")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    want_keys = (values.get("apiKeys") or {}).get("existingSecret") or f"{FULLNAME}-api-keys"
    assert volumes["api-keys"]["secret"]["secretName"] == want_keys
    assert volumes["api-keys"]["secret"]["items"] == [{"key": "keys.yaml", "path": "keys.yaml"}]
    tls = values.get("tls") or {}
    if tls.get("enabled"):
        assert volumes["tls"]["secret"]["secretName"] == tls["existingSecret"]
    else:
        assert "tls" not in volumes
    # Nothing credential-like travels as a plain value: not in env, not in the ConfigMap.
    for where, spec in pod_specs(docs):
        for c in spec["containers"]:
            for env in c.get("env", []):
                assert not (CREDENTIAL.search(env["name"]) and "value" in env), f"{where}: {env['name']}"
    for cm in find(docs, "ConfigMap"):  # the server's settings, and the Grafana dashboard
        assert not [k for k in cm["data"] if CREDENTIAL.search(k)], cm["data"]
    for name in (values.get("server") or {}).get("extraEnvFromSecrets", []):
        assert {"secretRef": {"name": name}} in server_container(docs)["envFrom"]


# --- Ray ---------------------------------------------------------------------------------------


def test_ray_version_matches_the_pinned_ray():
    lock = (ROOT / "ray-cluster" / "requirements.lock").read_text()
    pinned = re.search(r"^ray\[default\]==(\S+)$", lock, re.M).group(1)
    rc = one(render("default"), "RayCluster")
    assert rc["spec"]["rayVersion"] == pinned
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"]["tensorguard.io/ray-version"] == pinned


def test_default_cluster_is_cpu_only_and_fixed_size():
    docs = render("default")
    rc = one(docs, "RayCluster")
    assert rc["spec"]["enableInTreeAutoscaling"] is False
    assert "autoscalerOptions" not in rc["spec"]
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["cpu"]
    for where, spec in pod_specs(docs):
        for c in spec["containers"]:
            for kind in ("limits", "requests"):
                assert not [r for r in c["resources"].get(kind, {}) if "gpu" in r], f"{where}: {c['resources']}"


def test_gpu_workers_request_gpus():
    docs = render("gpu")
    rc = one(docs, "RayCluster")
    gpu = worker_group(docs, "gpu")
    spec = gpu["template"]["spec"]
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith(":0.1.0-gpu"), c["image"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # Scale from zero with the autoscaler.
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert (gpu["replicas"], gpu["minReplicas"], gpu["maxReplicas"]) == (0, 0, 4)
    cpu = worker_group(docs, "cpu")
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    assert not cpu["template"]["spec"].get("tolerations")
    # More GPUs per pod, another device plugin's resource name.
    c2 = worker_group(render("gpu", "rayCluster.gpuWorkers.gpusPerWorker=4"), "gpu")["template"]["spec"]["containers"][0]
    assert c2["resources"]["limits"]["nvidia.com/gpu"] == 4
    c3 = worker_group(render("gpu", "rayCluster.gpuWorkers.resourceName=amd.com/gpu"), "gpu")["template"]["spec"]["containers"][0]
    assert c3["resources"]["limits"]["amd.com/gpu"] == 1 and "nvidia.com/gpu" not in c3["resources"]["limits"]


def test_autoscaling_options():
    rc = one(render("production"), "RayCluster")
    spec = rc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["upscalingMode"] == "Default"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == 300
    groups = {g["groupName"]: (g["replicas"], g["minReplicas"], g["maxReplicas"]) for g in spec["workerGroupSpecs"]}
    assert groups == {"cpu": (2, 2, 20), "gpu": (0, 0, 8)}
    # The head keeps its token only for the autoscaler sidecar; workers never get one.
    assert spec["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is True
    for g in spec["workerGroupSpecs"]:
        assert g["template"]["spec"]["automountServiceAccountToken"] is False
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


# --- network policies --------------------------------------------------------------------------


def _policies(docs):
    return {d["metadata"]["name"]: d["spec"] for d in find(docs, "NetworkPolicy")}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_configured_clients_reach_the_api(value_set):
    docs = render(value_set)
    values = yaml.safe_load((CHART / "ci" / f"{value_set}-values.yaml").read_text()) or {}
    api = _policies(docs)[f"{FULLNAME}-server"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert api["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert api["policyTypes"] == ["Ingress"]
    (rule,) = api["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 50051}]
    want = (values.get("networkPolicy") or {}).get("apiClients") or [
        {"podSelector": {"matchLabels": {"tensorguard.io/api-client": "true"}}}
    ]
    assert rule["from"] == want


def test_no_api_clients_means_no_ingress():
    api = _policies(render("default", "networkPolicy.apiClients=null"))[f"{FULLNAME}-server"]
    assert api["ingress"] == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_ray_ports_and_the_aggregator_are_fenced_to_the_raycluster(value_set):
    docs = render(value_set)
    rc = one(docs, "RayCluster")
    own = {"podSelector": {"matchLabels": {"ray.io/cluster": rc["metadata"]["name"]}}}
    ray = _policies(docs)[f"{rc['metadata']['name']}-ray"]
    assert ray["podSelector"] == own["podSelector"]
    assert ray["policyTypes"] == ["Ingress"]
    server = {"podSelector": {"matchLabels": one(docs, "Service")["spec"]["selector"]}}
    for rule in ray["ingress"]:
        ports = sorted(p["port"] for p in rule.get("ports", []))
        if not ports:
            # A rule without ports opens every port, the secure aggregator's included: only
            # pods of this RayCluster may have one.
            assert rule["from"] == [own], rule
        else:
            assert ports in ([8265], [8080]), rule
            assert own not in rule["from"]
    dashboard = [r for r in ray["ingress"] if [p["port"] for p in r.get("ports", [])] == [8265]]
    assert dashboard and server in dashboard[0]["from"], "the API server must reach the Jobs API"


def test_network_policies_can_be_disabled():
    assert not [d for d in render("default", "networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"]


# --- schema validation of the rendered resources -----------------------------------------------


def _kubeconform(path, version):
    return subprocess.run(
        [
            KUBECONFORM, "-strict", "-summary", "-kubernetes-version", version,
            "-schema-location", str(SCHEMAS / "k8s"),
            "-schema-location", str(SCHEMAS / "crds") + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )


def test_kubeconform_schemas_are_strict(tmp_path):
    """The validation in check.sh is only worth something if it can fail: unknown fields and
    wrong types in a Deployment and in the RayCluster must be reported."""
    docs = render("gpu")
    dep = one(docs, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["serviceName"] = "typo"
    rc = one(docs, "RayCluster")
    rc["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "6379"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([dep, rc]))
    for version in KUBE_VERSIONS:
        res = _kubeconform(bad, version)
        assert res.returncode != 0, res.stdout
        assert "additional properties 'serviceName' not allowed" in res.stdout, res.stdout
        assert "additional properties 'maxReplica' not allowed" in res.stdout, res.stdout
        assert "got string, want integer" in res.stdout, res.stdout
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(render("gpu")))
    assert _kubeconform(good, KUBE_VERSIONS[-1]).returncode == 0


def test_kubeconform_refuses_unknown_kinds(tmp_path):
    # A kind without a schema must fail, not be skipped: nothing is validated by accident.
    f = tmp_path / "x.yaml"
    f.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: x\n")
    res = _kubeconform(f, KUBE_VERSIONS[0])
    assert res.returncode != 0 and "could not find schema" in res.stdout, res.stdout


# --- bad values are rejected at install time ---------------------------------------------------

BAD_VALUES = [
    # (what, --set arguments, message helm must print)
    ("misspelt top-level key", ["serverr.replicaCount=2"], "additional properties 'serverr' not allowed"),
    ("misspelt nested key", ["rayCluster.gpuWorkers.gpuPerWorker=2"], "additional properties 'gpuPerWorker' not allowed"),
    ("inline API keys", ["apiKeys.keys=abc"], "additional properties 'keys' not allowed"),
    ("inline TLS key", ["tls.key=abc"], "additional properties 'key' not allowed"),
    ("credential as plain env", ["server.env.DB_PASSWORD=hunter2"], "invalid propertyName 'DB_PASSWORD'"),
    ("credential as Ray env", ["rayCluster.env.HF_TOKEN=abc"], "invalid propertyName 'HF_TOKEN'"),
    ("TLS without its Secret", ["tls.enabled=true"], "at '/tls/existingSecret': minLength: got 0, want 1"),
    ("root user", ["podSecurityContext.runAsUser=0"], "at '/podSecurityContext/runAsUser': minimum: got 0, want 1"),
    ("runAsNonRoot off", ["podSecurityContext.runAsNonRoot=false"], "at '/podSecurityContext/runAsNonRoot': value must be true"),
    ("privilege escalation", ["containerSecurityContext.allowPrivilegeEscalation=true"], "at '/containerSecurityContext/allowPrivilegeEscalation': value must be false"),
    ("privileged container", ["containerSecurityContext.privileged=true"], "at '/containerSecurityContext/privileged': value must be false"),
    ("zero API replicas", ["server.replicaCount=0"], "at '/server/replicaCount': minimum: got 0, want 1"),
    ("port out of range", ["server.grpcPort=70000"], "at '/server/grpcPort': maximum: got 70,000, want 65,535"),
    ("zero GPUs per GPU worker", ["rayCluster.gpuWorkers.gpusPerWorker=0"], "at '/rayCluster/gpuWorkers/gpusPerWorker': minimum: got 0, want 1"),
    ("bad resource quantity", ["server.resources.limits.memory=lots"], "at '/server/resources/limits/memory'"),
    ("bad Secret name", ["apiKeys.existingSecret=My_Keys"], "'My_Keys' does not match pattern"),
    ("bad log level", ["server.logLevel=verbose"], "at '/server/logLevel': value must be one of"),
    ("bad upscaling mode", ["rayCluster.autoscaling.upscalingMode=Fast"], "at '/rayCluster/autoscaling/upscalingMode': value must be one of"),
    ("bad pull policy", ["image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
    ("bad NetworkPolicy peer", ["networkPolicy.apiClients[0].podSelectr.x=y"], "additional properties 'podSelectr' not allowed"),
    ("hostPath volume on Ray pods", ["rayCluster.volumes[0].name=x", "rayCluster.volumes[0].hostPath.path=/"], "at '/rayCluster/volumes/0': 'not' failed"),
    ("bad Ray address", ["server.rayAddress=ray-head:8265"], "at '/server/rayAddress'"),
    ("no Ray at all", ["rayCluster.enabled=false"], "at '/server/rayAddress': minLength: got 0, want 1"),
    # Comparisons between fields, which JSON Schema cannot express, are checked by the
    # templates: `helm template`/`install` stop on them, `helm lint` only reports them ([INFO]).
    ("replicas above max", ["rayCluster.cpuWorkers.replicas=9"], "rayCluster.cpuWorkers.replicas (9) must lie between minReplicas (0) and maxReplicas (4)"),
    ("min above max", ["rayCluster.gpuWorkers.enabled=true", "rayCluster.gpuWorkers.minReplicas=3", "rayCluster.gpuWorkers.replicas=3"], "rayCluster.gpuWorkers.minReplicas (3) is greater than maxReplicas (2)"),
    ("GPUs set twice", ["rayCluster.gpuWorkers.enabled=true", "rayCluster.gpuWorkers.resources.limits.nvidia\\.com/gpu=2"], "rayCluster.gpuWorkers.resources.limits sets nvidia.com/gpu; set rayCluster.gpuWorkers.gpusPerWorker instead"),
    ("same group names", ["rayCluster.gpuWorkers.enabled=true", "rayCluster.gpuWorkers.groupName=cpu"], "worker group names must differ"),
    ("health port = gRPC port", ["tls.enabled=true", "tls.existingSecret=tls", "server.healthPort=50051"], "server.healthPort must differ from server.grpcPort (50051) when tls.enabled is true"),
]
TEMPLATE_CHECKED = {"replicas above max", "min above max", "GPUs set twice", "same group names", "health port = gRPC port"}


@pytest.mark.parametrize("what,sets,message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_rejected(what, sets, message):
    set_args = [a for s in sets for a in ("--set", s)]
    res = helm(*template_args(), *set_args, check=False)
    assert res.returncode != 0, f"helm template accepted {sets}"
    assert message in res.stderr, res.stderr
    lint = helm("lint", str(CHART), *set_args, check=False)
    if what in TEMPLATE_CHECKED:
        assert "[INFO] Fail: " in lint.stderr and message in lint.stderr, lint.stdout + lint.stderr
    else:
        assert lint.returncode != 0, f"helm lint accepted {sets}"
        assert message in lint.stdout + lint.stderr, lint.stdout + lint.stderr


def test_bad_values_file_is_rejected(tmp_path):
    # The same through a values file, as `helm install -f` would get it.
    f = tmp_path / "bad-values.yaml"
    f.write_text("server:\n  replicaCount: two\nrayCluster:\n  cpuWorkers:\n    resources:\n      limits:\n        cpu: -1\n")
    res = helm(*template_args(values_files=[f]), check=False)
    assert res.returncode != 0
    assert "at '/server/replicaCount': got string, want integer" in res.stderr, res.stderr
    assert "at '/rayCluster/cpuWorkers/resources/limits/cpu'" in res.stderr, res.stderr


# --- values.yaml documents every field the schema accepts --------------------------------------


def _key_lines(text):
    """(dotted path, line index) of every mapping key in values.yaml (keys inside list items
    get odd paths, which no schema field has)."""
    stack, out = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_.\-/\"]+):(\s|$)", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2).strip('"')))
        out.append((".".join(k for _, k in stack), i))
    return out, lines


def _documented_fields(schema):
    """Dotted paths of the chart's own fields: properties of the objects the schema closes
    (additionalProperties false) without going through a shared $ref type."""
    paths = []

    def walk(node, prefix):
        if node.get("additionalProperties") is not False:
            return
        for name, sub in node.get("properties", {}).items():
            if name == "global":
                continue
            path = f"{prefix}{name}"
            paths.append(path)
            if "$ref" not in sub:
                walk(sub, path + ".")

    walk(schema, "")
    return paths


def test_values_yaml_documents_every_field():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    fields = _documented_fields(schema)
    keys, lines = _key_lines((CHART / "values.yaml").read_text())
    where = {path: i for path, i in keys}
    missing = [f for f in fields if f not in where]
    assert not missing, f"schema fields missing from values.yaml: {missing}"
    undocumented = []
    for f in fields:
        i = where[f]
        # A comment directly above the key, or above the run of sibling keys it belongs to
        # (e.g. minReplicas/maxReplicas under one "Autoscaling bounds" comment).
        j = i - 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        while j >= 0 and re.match(rf"^ {{{indent}}}[A-Za-z0-9_-]+: \S", lines[j]) and not lines[j].rstrip().endswith(":"):
            j -= 1
        if not (j >= 0 and lines[j].lstrip().startswith("#")):
            undocumented.append(f)
    assert not undocumented, f"values.yaml fields without a comment: {undocumented}"


def test_shared_data_volume_reaches_every_ray_pod():
    # The aggregator (checkpoints) and the workers (data shards) can land in any Ray pod.
    for where, spec in pod_specs(render("production")):
        if not where.startswith("RayCluster"):
            continue
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "tensorguard-data"}, where
        assert {"name": "data", "mountPath": "/data"} in spec["containers"][0]["volumeMounts"], where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_install_notes_render(value_set, tmp_path):
    # `helm template` skips NOTES.txt; render it as the body of a YAML block in a copy.
    import shutil

    chart = tmp_path / "tensorguard"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes.yaml").write_text("notes: |\n" + "".join("  " + l for l in notes.splitlines(True)))
    out = helm(
        "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSIONS[0],
        "--values", str(CHART / "ci" / f"{value_set}-values.yaml"), "--show-only", "templates/notes.yaml",
    ).stdout
    text = yaml.safe_load(out)["notes"]
    values = yaml.safe_load((CHART / "ci" / f"{value_set}-values.yaml").read_text()) or {}
    secret = (values.get("apiKeys") or {}).get("existingSecret") or f"{FULLNAME}-api-keys"
    assert f"create secret generic {secret} " in text
    assert f"port-forward svc/{HEAD_SVC} 8265:8265" in text
    assert "tensorguard train job.yaml --address http://127.0.0.1:8265" in text
