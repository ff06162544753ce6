"""deploy/k8s: built-in objects against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), the Strimzi resources against the structure Egret
relies on, the references between everything against each other and the code
(topics, CLI flags, consumer groups, keys), the pipeline's active/standby setup
(a shared ReadWriteMany checkpoint volume, one static membership id, pods that know
their ordinal), and the autoscaler's (one controller, on the same volume, allowed to
scale the pipeline's StatefulSet and nothing else, through a kubectl proxy)."""

import re
import shutil
import subprocess
from pathlib import Path

from kubernetes_validate import utils as kv

from common import load_yaml, load_yaml_docs
from compose_checks import check_allowed_env, check_egret_command, check_topic_table, holding_mount

S = "k8s"
# The oldest Kubernetes minor these manifests are meant for, and the newest schema
# kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", kv.latest_version()]
STRIMZI = "kafka.strimzi.io/v1"


def kn(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def load_kustomization(base):
    kust = load_yaml(base / "kustomization.yaml")
    objects = []
    for res in kust.get("resources", []):
        for o in load_yaml_docs(base / res):
            o.setdefault("metadata", {})
            if o.get("kind") != "Namespace":
                o["metadata"].setdefault("namespace", kust.get("namespace"))
            objects.append(o)
    return kust, objects


def check_kubectl_kustomize(report, base, objects):
    """`kubectl kustomize` (offline) builds the same objects, where kubectl exists."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("k8s: skipped `kubectl kustomize`: no kubectl here")
        return
    r = subprocess.run([kubectl, "kustomize", str(base)], capture_output=True, text=True, timeout=120)
    if report.check(S, r.returncode == 0, f"kubectl kustomize failed: {r.stderr.strip()}"):
        import yaml
        built = [d for d in yaml.safe_load_all(r.stdout) if d]
        report.check(S, sorted(map(kn, built)) == sorted(map(kn, objects)), "kubectl kustomize builds other objects than the resources listed")
        for o in built:
            for c in pod_spec(o).get("containers", []) if pod_spec(o) else []:
                report.check(S, c.get("image", "").count("/") >= 1, f"{kn(o)}: image {c.get('image')} not rewritten by the kustomization's images:")
        print("k8s: ran `kubectl kustomize`")


def pod_spec(o):
    return (o.get("spec", {}).get("template") or {}).get("spec") if o.get("kind") in ("Deployment", "StatefulSet") else None


def egret_containers(o):
    return [c for c in (pod_spec(o) or {}).get("containers", []) if c.get("image") == "egret"]


def role_of(o):
    """What a workload's egret runs: `run` (the pipeline StatefulSet), `serve` (API)
    or `autoscale`, from its first argument."""
    if o.get("kind") == "StatefulSet":
        return "run"
    firsts = [str(c.get("args", [""])[0]) for c in egret_containers(o) if c.get("args")]
    return firsts[0] if firsts else None


def pod_labels(o):
    return ((o.get("spec", {}).get("template") or {}).get("metadata") or {}).get("labels", {})


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_builtin(report, o):
    for version in K8S_VERSIONS:
        try:
            kv.validate(o, version, strict=True)
            report.check(S, True, "")
        except kv.ValidationError as e:
            report.check(S, False, f"{kn(o)} against Kubernetes {version}: {e.message} at {list(e.absolute_path)}")


def require(report, where, obj, keys, allowed=None):
    """Required keys present and, when `allowed` is given, no others."""
    obj = obj if isinstance(obj, dict) else {}
    for k in keys:
        report.check(S, k in obj, f"{where}: {k} is required")
    if allowed is not None:
        extra = set(obj) - set(allowed)
        report.check(S, not extra, f"{where}: unknown fields {sorted(extra)}")


def check_strimzi(report, objs):
    """Kafka, KafkaNodePool and KafkaTopic: the fields of kafka.strimzi.io/v1 used
    here (Strimzi 1.x removed v1beta2). Returns (cluster name, plain listener port,
    broker count, {topic: (partitions, config)})."""
    kafkas = [o for o in objs if o["kind"] == "Kafka"]
    if not report.check(S, len(kafkas) == 1, f"one Kafka resource, found {len(kafkas)}"):
        return None, None, 0, {}
    k = kafkas[0]
    name = k["metadata"]["name"]
    spec = k.get("spec", {})
    require(report, kn(k), spec, ["kafka"], ["kafka", "entityOperator", "clusterCa", "clientsCa", "cruiseControl", "kafkaExporter", "maintenanceTimeWindows"])
    kafka = spec.get("kafka", {})
    require(report, f"{kn(k)}.spec.kafka", kafka, ["listeners"],
            ["version", "metadataVersion", "image", "listeners", "config", "authorization", "rack", "brokerRackInitImage", "livenessProbe",
             "readinessProbe", "jvmOptions", "jmxOptions", "metricsConfig", "logging", "template", "tieredStorage", "quotas"])
    report.check(S, "replicas" not in kafka and "storage" not in kafka and "zookeeper" not in spec, f"{kn(k)}: KRaft with node pools (no replicas/storage/zookeeper in Kafka)")
    plain = None
    for l in kafka.get("listeners", []):
        require(report, f"{kn(k)} listener", l, ["name", "port", "type", "tls"], ["name", "port", "type", "tls", "authentication", "configuration", "networkPolicyPeers"])
        report.check(S, l.get("type") in ("internal", "route", "tlsroute", "loadbalancer", "nodeport", "ingress", "cluster-ip"), f"listener type {l.get('type')}")
        if l.get("type") == "internal" and l.get("tls") is False:
            plain = l.get("port")
    report.check(S, plain is not None, f"{kn(k)}: a plaintext internal listener for egret")
    report.check(S, "topicOperator" in spec.get("entityOperator", {}), f"{kn(k)}: the Topic Operator manages the KafkaTopics")

    brokers = controllers = 0
    for p in (o for o in objs if o["kind"] == "KafkaNodePool"):
        ps = p.get("spec", {})
        require(report, kn(p), ps, ["replicas", "storage", "roles"], ["replicas", "storage", "roles", "resources", "jvmOptions", "template"])
        report.check(S, p["metadata"].get("labels", {}).get("strimzi.io/cluster") == name, f"{kn(p)}: label strimzi.io/cluster={name}")
        roles = ps.get("roles", [])
        report.check(S, set(roles) <= {"controller", "broker"} and roles, f"{kn(p)}: roles {roles}")
        brokers += ps.get("replicas", 0) if "broker" in roles else 0
        controllers += ps.get("replicas", 0) if "controller" in roles else 0
        for v in ps.get("storage", {}).get("volumes", []):
            report.check(S, v.get("type") in ("persistent-claim", "ephemeral"), f"{kn(p)}: storage type {v.get('type')}")
    report.check(S, controllers >= 3 and controllers % 2 == 1, f"KRaft needs an odd quorum of at least 3 controllers, has {controllers}")
    cfg = kafka.get("config", {})
    rf, isr = int(cfg.get("default.replication.factor", 1)), int(cfg.get("min.insync.replicas", 1))
    report.check(S, rf <= brokers and isr < rf, f"replication {rf} / min ISR {isr} must fit {brokers} brokers with one down")

    topics = {}
    for t in (o for o in objs if o["kind"] == "KafkaTopic"):
        ts = t.get("spec", {})
        require(report, kn(t), ts, ["partitions", "replicas"], ["topicName", "partitions", "replicas", "config"])
        report.check(S, t["metadata"].get("labels", {}).get("strimzi.io/cluster") == name, f"{kn(t)}: label strimzi.io/cluster={name}")
        report.check(S, ts.get("replicas", 0) <= brokers, f"{kn(t)}: {ts.get('replicas')} replicas on {brokers} brokers")
        isr_t = int(ts.get("config", {}).get("min.insync.replicas", isr))
        report.check(S, isr_t < ts.get("replicas", 0), f"{kn(t)}: min.insync.replicas {isr_t} must be below its replicas")
        topics[ts.get("topicName", t["metadata"]["name"])] = (ts.get("partitions", 0), ts.get("config", {}))
    return name, plain, brokers, topics


def check_k8s(report, repo, expect, compose_topics):
    base = Path(repo) / "deploy/k8s"
    kust, objs = load_kustomization(base)
    check_kubectl_kustomize(report, base, objs)
    template = load_yaml_docs(base / "secret-template.yaml")
    report.check(S, "secret-template.yaml" not in kust.get("resources", []), "secret-template.yaml must stay out of the kustomization")
    names = [kn(o) + "@" + str(o["metadata"].get("namespace")) for o in objs]
    report.check(S, len(names) == len(set(names)), "duplicate objects")
    for o in objs + template:
        if o.get("apiVersion") == STRIMZI:
            continue
        check_builtin(report, o)
    for o in objs:
        report.check(S, o.get("apiVersion") not in ("kafka.strimzi.io/v1beta2",), f"{kn(o)}: Strimzi 1.x serves kafka.strimzi.io/v1 only")

    cluster, plain, brokers, topics = check_strimzi(report, objs)
    check_topic_table(report, S, topics, expect)
    for name, (parts, cfg) in compose_topics.items():
        if name in topics:
            kp, kc = topics[name]
            report.check(S, kp == parts, f"{name}: {kp} partitions here, {parts} in deploy/compose/topics.conf")
            for key, value in cfg.items():
                report.check(S, str(kc.get(key)) == value, f"{name}: {key}={kc.get(key)} here, {value} in topics.conf")
    bootstrap = f"{cluster}-kafka-bootstrap:{plain}"

    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    configmaps, secrets = by_kind.get("ConfigMap", {}), {o["metadata"]["name"]: o for o in template if o["kind"] == "Secret"}
    for s in secrets.values():
        for key, value in s.get("stringData", {}).items():
            report.check(S, key in expect["key_env"], f"secret template: {key} is not a key egret reads")
            report.check(S, len(value.encode()) < expect["min_secret_bytes"],
                         f"secret template: the placeholder of {key} is a usable key ({len(value)} bytes); keep it under {expect['min_secret_bytes']} so egret refuses it")
    workloads = {kn(o): o for o in objs if pod_spec(o)}
    report.check(S, {o["kind"] for o in workloads.values()} == {"StatefulSet", "Deployment"}, "a pipeline StatefulSet and an API Deployment")
    autoscaled = set()
    for o in workloads.values():
        if role_of(o) == "autoscale":
            args = [str(a) for c in egret_containers(o) for a in c.get("args", [])]
            autoscaled.add(args[args.index("--statefulset") + 1] if "--statefulset" in args[:-1] else "egret-pipeline")
    groups = set()
    for w, o in workloads.items():
        groups |= check_workload(report, w, o, by_kind, configmaps, secrets, bootstrap, expect, autoscaled, kust.get("namespace"))
    report.check(S, len(groups) == 1, f"every workload in one consumer group, found {groups}")
    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        hits = [o for o in workloads.values() if matches(sel, pod_labels(o))]
        if report.check(S, hits, f"{kn(svc)}: selects no workload's pods"):
            ports = {p.get("name") for o in hits for c in pod_spec(o)["containers"] for p in c.get("ports", [])}
            for p in svc["spec"].get("ports", []):
                report.check(S, p.get("targetPort") in ports, f"{kn(svc)}: targetPort {p.get('targetPort')} is no container port")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        report.check(S, any(matches(sel, pod_labels(o)) for o in workloads.values()), f"{kn(pdb)}: selects no workload's pods")
    for w, o in workloads.items():
        if role_of(o) == "autoscale":
            continue  # one controller: an eviction only pauses it, and it carries on
        covered = any(matches(p["spec"].get("selector", {}).get("matchLabels", {}), pod_labels(o)) for p in by_kind.get("PodDisruptionBudget", {}).values())
        report.check(S, covered, f"{w}: no PodDisruptionBudget")
    deploy = [d for d in by_kind.get("Deployment", {}).values() if role_of(d) == "serve"]
    report.check(S, all(d["spec"].get("replicas", 1) >= 2 for d in deploy), "the API Deployment runs at least 2 replicas")
    report.check(S, any(matches(s["spec"].get("selector", {}), pod_labels(d)) and s["spec"].get("clusterIP") != "None"
                        for d in deploy for s in by_kind.get("Service", {}).values()), "the API Deployment is behind a (non-headless) Service")


def check_workload(report, w, o, by_kind, configmaps, secrets, bootstrap, expect, autoscaled, namespace):
    spec, pod = o["spec"], pod_spec(o)
    role = role_of(o)
    report.check(S, matches(spec.get("selector", {}).get("matchLabels", {}), pod_labels(o)), f"{w}: selector does not match its pod labels")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    groups = set()
    for c in pod.get("containers", []):
        where = f"{w}/{c['name']}"
        if c.get("image") != "egret":
            report.check(S, role == "autoscale" and c.get("args", [])[:1] == ["proxy"] and str(c.get("image", "")).startswith("registry.k8s.io/kubectl:"),
                         f"{where}: the only other container is the autoscaler's kubectl proxy (registry.k8s.io/kubectl)")
            continue
        # The API Deployment serves from the derived topics; the StatefulSet runs the pipeline.
        command = "run" if o.get("kind") == "StatefulSet" else "autoscale" if role == "autoscale" else "serve"
        values = check_egret_command(report, S, where, [str(a) for a in c.get("args", [])], expect, bootstrap, command)
        groups.add(values.get("--group", "egret"))
        env = {e["name"]: e for e in c.get("env", [])}
        cm_env = {}
        for ref in c.get("envFrom", []):
            name = (ref.get("configMapRef") or {}).get("name")
            if report.check(S, name in configmaps, f"{where}: envFrom ConfigMap {name} does not exist"):
                cm_env.update(configmaps[name].get("data", {}))
        # A variable of the pod's own, used only to build another's value ($(NAME)).
        helpers = [n for n in env if any(f"$({n})" in str(v) for v in [e.get("value", "") for e in env.values()] + c.get("args", []))]
        check_allowed_env(report, S, where, list(env) + list(cm_env), expect, extra=helpers)
        settings = {**cm_env, **{n: str(e["value"]) for n, e in env.items() if "value" in e}}
        for key in expect["key_env"] if command != "autoscale" else []:
            ref = ((env.get(key) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            report.check(S, ref.get("name") in secrets and ref.get("key") in secrets.get(ref.get("name"), {}).get("stringData", {}),
                         f"{where}: {key} must come from the Secret template's key (secretKeyRef)")
        mounts = check_http_and_mounts(report, where, c, settings, volumes, claims, ("livenessProbe",) if command == "autoscale" else ("livenessProbe", "readinessProbe"))
        if command == "autoscale":
            check_autoscaler(report, w, o, c, values, env, by_kind, namespace)
            continue
        state = settings.get("EGRET_STATE_DIR", "egret-state")
        # The mount holding the state dir: the longest mount path it lies under.
        under = [p for p in mounts if state == p or state.startswith(p.rstrip("/") + "/")]
        state_mount = max(under, key=len) if under else None
        report.check(S, state_mount is not None, f"{where}: no volume holds the state dir {state}")
        sv = volumes.get(mounts.get(state_mount), {})
        report.check(S, mounts.get(state_mount) in claims or "persistentVolumeClaim" in sv, f"{where}: the state dir must be on a persistent volume")
        if "persistentVolumeClaim" in sv:
            report.check(S, sv["persistentVolumeClaim"]["claimName"] in by_kind.get("PersistentVolumeClaim", {}), f"{where}: PVC {sv['persistentVolumeClaim']['claimName']} is not defined")
        if "--hotlists" in values:
            folder, file = values["--hotlists"].rsplit("/", 1)
            cm = (volumes.get(mounts.get(folder), {}).get("configMap") or {}).get("name")
            report.check(S, cm in configmaps and file in configmaps[cm].get("data", {}), f"{where}: --hotlists {values['--hotlists']} is not a ConfigMap key mounted there")
        if command == "run":
            check_pipeline_failover(report, where, values, settings, env, mounts, volumes, claims, by_kind)
    if o["kind"] == "StatefulSet":
        svc = by_kind.get("Service", {}).get(spec.get("serviceName"))
        report.check(S, svc is not None and svc["spec"].get("clusterIP") == "None", f"{w}: serviceName must name a headless Service")
        report.check(S, spec.get("podManagementPolicy") == "Parallel", f"{w}: Parallel pod management (OrderedReady waits on readiness)")
        replicas = spec.get("replicas")
        if replicas is None:
            report.check(S, o["metadata"]["name"] in autoscaled, f"{w}: no replicas, and no `egret autoscale` sets them (it would run 1 pod, no standby)")
        else:
            report.check(S, isinstance(replicas, int) and replicas >= 2, f"{w}: replicas {replicas}, at least 2 (one active pipeline pod, one standby)")
    report.check(S, pod.get("terminationGracePeriodSeconds", 30) >= 45, f"{w}: give egret time to flush and commit (>= 45 s)")
    return groups


def pod_index_from_label(values, env):
    """--pod-index $(NAME), NAME the pod's variable from the StatefulSet's pod-index label."""
    m = re.fullmatch(r"\$\((\w+)\)", str(values.get("--pod-index", "")))
    field = (((env.get(m.group(1)) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") if m else None
    return field == "metadata.labels['apps.kubernetes.io/pod-index']"


def check_http_and_mounts(report, where, c, settings, volumes, claims, probes):
    """The container's HTTP port is EGRET_LISTEN's, on every address; its probes
    GET /healthz or /readyz on it (liveness /healthz); its mounts name volumes.
    Returns the mounts (path: volume)."""
    port = settings.get("EGRET_LISTEN", "127.0.0.1:8080").rsplit(":", 1)[1]
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    report.check(S, str(ports.get("http")) == port, f"{where}: containerPort http {ports.get('http')} is not EGRET_LISTEN's {port}")
    report.check(S, settings.get("EGRET_LISTEN", "").startswith("0.0.0.0:"), f"{where}: must listen on 0.0.0.0")
    for probe in probes:
        get = (c.get(probe) or {}).get("httpGet") or {}
        report.check(S, get.get("path") in ("/healthz", "/readyz") and get.get("port") in ports, f"{where}: {probe} must GET /healthz or /readyz on a named port")
    report.check(S, ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path") == "/healthz", f"{where}: liveness is /healthz (/readyz waits for data)")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    for path, name in mounts.items():
        report.check(S, name in volumes or name in claims, f"{where}: mounts unknown volume {name}")
    return mounts


def check_pipeline_failover(report, where, values, settings, env, mounts, volumes, claims, by_kind):
    """The pipeline container's part in active/standby: its checkpoints (--checkpoints,
    the parent of every instance's directory, with the pod's ordinal; or one
    --checkpoint-dir) on a volume every pod shares (a persistentVolumeClaim volume
    naming a ReadWriteMany PVC, not a volumeClaimTemplate, which is one volume per
    pod), and one --instance-id for every pod."""
    if "--checkpoints" in values:
        report.check(S, pod_index_from_label(values, env),
                     f"{where}: --checkpoints needs the pod's ordinal: --pod-index $(NAME), NAME from the label apps.kubernetes.io/pod-index (fieldRef)")
    checkpoint = values.get("--checkpoint-dir") or settings.get("EGRET_CHECKPOINT_DIR") or values.get("--checkpoints")
    instance_id = values.get("--instance-id") or settings.get("EGRET_INSTANCE_ID")
    report.check(S, bool(instance_id) and "$(" not in str(instance_id),
                 f"{where}: must pass one --instance-id for every pod (static membership: the standby replaces the gone member at once), has {instance_id!r}")
    if not report.check(S, bool(checkpoint), f"{where}: must pass --checkpoints (or --checkpoint-dir): a directory shared by every pod, whose locks make one active, the others standbys"):
        return
    target, _ = holding_mount(checkpoint, mounts)
    name = mounts.get(target)
    if not report.check(S, name is not None, f"{where}: --checkpoint-dir {checkpoint} is on no mounted volume"):
        return
    report.check(S, name not in claims,
                 f"{where}: --checkpoint-dir {checkpoint} is on {name}, a volumeClaimTemplate (one volume per pod); it must be a persistentVolumeClaim volume every pod shares")
    claim = (volumes.get(name, {}).get("persistentVolumeClaim") or {}).get("claimName")
    if not report.check(S, name in claims or claim is not None, f"{where}: --checkpoint-dir {checkpoint} is on volume {name}, not a persistentVolumeClaim every pod shares"):
        return
    if claim is None:
        return
    pvc = by_kind.get("PersistentVolumeClaim", {}).get(claim)
    if not report.check(S, pvc is not None, f"{where}: --checkpoint-dir is on PVC {claim}, which is not defined"):
        return
    modes = pvc.get("spec", {}).get("accessModes", [])
    report.check(S, "ReadWriteMany" in modes,
                 f"{where}: --checkpoint-dir is on PVC {claim}, whose accessModes {modes} lack ReadWriteMany (every pipeline pod mounts it, on any node)")


def claim_holding(workload, container, path):
    """The PersistentVolumeClaim that `path` lies on in a container, if any."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    target, _ = holding_mount(path, mounts)
    volume = next((v for v in pod_spec(workload).get("volumes", []) if v["name"] == mounts.get(target)), {})
    return (volume.get("persistentVolumeClaim") or {}).get("claimName")


def check_autoscaler(report, w, o, c, values, env, by_kind, namespace):
    """`egret autoscale`: one at a time, on the pipeline's checkpoint claim, the
    StatefulSet it scales running pods that follow the layout, allowed to get and
    patch that StatefulSet's scale and reaching the API through a kubectl proxy in
    its pod."""
    spec, pod = o["spec"], pod_spec(o)
    report.check(S, spec.get("replicas", 1) == 1 and (spec.get("strategy") or {}).get("type") == "Recreate",
                 f"{w}: one controller at a time (replicas 1, strategy Recreate)")
    name = values.get("--statefulset", "egret-pipeline")
    sts = by_kind.get("StatefulSet", {}).get(name)
    if not report.check(S, sts is not None, f"{w}: --statefulset {name} is not a StatefulSet here"):
        return
    pipeline = egret_containers(sts)
    pargs = [str(a) for p in pipeline for a in p.get("args", [])]
    parent = pargs[pargs.index("--checkpoints") + 1] if "--checkpoints" in pargs[:-1] else None
    report.check(S, parent is not None and values.get("--checkpoints") == parent,
                 f"{w}: --checkpoints {values.get('--checkpoints')} must be the pipeline pods' --checkpoints ({parent})")
    if parent and pipeline:
        mine, theirs = claim_holding(o, c, values.get("--checkpoints", "")), claim_holding(sts, pipeline[0], parent)
        report.check(S, mine is not None and mine == theirs, f"{w}: --checkpoints is on claim {mine}, the pipeline's on {theirs}: they must share one")
    kube_ns = values.get("--kube-namespace")
    from_field = (((env.get("EGRET_KUBE_NAMESPACE") or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.namespace"
    report.check(S, from_field or kube_ns == namespace, f"{w}: the StatefulSet's namespace: EGRET_KUBE_NAMESPACE from metadata.namespace, or --kube-namespace {namespace}")
    api = values.get("--kube-api", "http://127.0.0.1:8001")
    port = api.rsplit(":", 1)[-1]
    proxies = [p for p in pod.get("containers", []) if p.get("args", [])[:1] == ["proxy"]]
    report.check(S, api.startswith("http://127.0.0.1:") and any(f"--port={port}" in p.get("args", []) and "--address=127.0.0.1" in p.get("args", []) for p in proxies),
                 f"{w}: --kube-api {api} must be a kubectl proxy in the pod, listening on 127.0.0.1:{port}")
    account = pod.get("serviceAccountName")
    report.check(S, account in by_kind.get("ServiceAccount", {}), f"{w}: serviceAccountName {account} is not a ServiceAccount here")
    allowed = set()
    for binding in by_kind.get("RoleBinding", {}).values():
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == account for s in binding.get("subjects", [])):
            role = by_kind.get("Role", {}).get(binding.get("roleRef", {}).get("name"), {})
            for rule in role.get("rules", []):
                if "apps" in rule.get("apiGroups", []) and "statefulsets/scale" in rule.get("resources", []) and name in rule.get("resourceNames", [name]):
                    allowed |= set(rule.get("verbs", []))
    for verb in ("get", "patch"):
        report.check(S, verb in allowed, f"{w}: its service account may not {verb} statefulsets/scale of {name}")
