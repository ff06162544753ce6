"""deploy/compose: the Compose file against the Compose specification's JSON schema
and against the code (topics, CLI flags, environment), the topic table, the
Dockerfile and its ignore file."""

import json
import re
import shutil
import subprocess
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema

from common import load_yaml

S = "compose"


def compose_schema():
    """The Compose specification's schema, as vendored by check-jsonschema."""
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(ref.read_text(encoding="utf-8"))


def read_topics_conf(path):
    """{name: (partitions, {config: value})} from topics.conf."""
    topics = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, partitions, configs = line.split()
        topics[name] = (int(partitions), dict(kv.split("=", 1) for kv in configs.split(",")))
    return topics


def check_topic_table(report, section, topics, expect):
    """A topic table ({name: (partitions, configs)}) against the code's topics."""
    t = expect["topics"]
    derived = dict(t["derived"])
    wanted = set(t["inputs"]) | set(derived) | {t["dlq"], t["repartition"]}
    report.check(section, set(topics) == wanted,
                 f"topics {sorted(set(topics) ^ wanted)} differ from the code's (missing or extra)")
    for name, (partitions, configs) in topics.items():
        policy = str(configs.get("cleanup.policy", "delete"))
        compacted = derived.get(name, False)
        report.check(section, ("compact" in policy) == compacted,
                     f"{name}: cleanup.policy={policy}, but the code {'compacts' if compacted else 'does not compact'} it (DERIVED_TOPICS)")
        report.check(section, str(configs.get("message.timestamp.after.max.ms", "")) in ("", "9223372036854775807"),
                     f"{name}: message.timestamp.after.max.ms must be the maximum, as egret sets it")
        report.check(section, partitions >= 1, f"{name}: {partitions} partitions")
    if t["repartition"] in topics:
        have = topics[t["repartition"]][0]
        report.check(section, have == t["repartition_partitions"],
                     f"{t['repartition']} has {have} partitions; egret marks exactly {t['repartition_partitions']} (KafkaConfig::partitions)")
    counts = {topics[n][0] for n in t["inputs"] if n in topics}
    report.check(section, len(counts) == 1, f"the input topics must share one partition count (co-partitioned by key), have {counts}")


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def named_volumes(service):
    """(source, target) of every volume mount of a service (short syntax)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
        else:
            out.append((v.get("source"), v.get("target")))
    return out


def holding_mount(path, mounts):
    """The mount target `path` lies under (the longest, as the kernel resolves it) and
    the path below it, or (None, None)."""
    if not path:
        return None, None
    under = [m for m in mounts if m and (path == m or path.startswith(m.rstrip("/") + "/"))]
    if not under:
        return None, None
    target = max(under, key=len)
    return target, path[len(target.rstrip("/")):].strip("/")


def check_egret_command(report, section, where, args, expect, brokers, command="run"):
    """An `egret run` (pipeline) or `egret serve` (API) argument list: flags that
    exist, values where they take one."""
    flags = expect[f"{command}_flags"]
    report.check(section, args[:1] == [command], f"{where}: the command must start with `{command}`, has {args[:1]}")
    values = {}
    i = 1
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            name = a.split("=", 1)[0]
            if report.check(section, name in flags, f"{where}: {name} is not a flag of `egret {command}` (egret {command} --help)"):
                if flags[name]:
                    value = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else None)
                    report.check(section, value is not None and not value.startswith("--"), f"{where}: {name} needs a value")
                    values[name] = value
                    i += 0 if "=" in a else 1
        else:
            report.check(section, False, f"{where}: stray argument {a!r}")
        i += 1
    report.check(section, "--kafka" in values, f"{where}: an instance of the cluster needs --kafka")
    if brokers is not None and "--kafka" in values:
        report.check(section, values["--kafka"] == brokers, f"{where}: --kafka {values['--kafka']}, expected {brokers}")
    return values


def check_allowed_env(report, section, where, names, expect, extra=()):
    allowed = set(expect["run_env"]) | set(expect["key_env"]) | {"RUST_LOG"} | set(extra)
    for name in names:
        report.check(section, name in allowed, f"{where}: egret reads no environment variable {name}")


def check_compose(report, repo, expect):
    base = Path(repo) / "deploy/compose"
    doc = load_yaml(base / "compose.yaml")
    try:
        jsonschema.validate(doc, compose_schema())
        report.check(S, True, "")
    except jsonschema.ValidationError as e:
        report.check(S, False, f"compose.yaml does not follow the Compose specification: {e.message} at {list(e.absolute_path)}")
    services = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    secrets = doc.get("secrets") or {}

    # One-shot jobs are what someone waits on with service_completed_successfully.
    one_shot = {dep for s in services.values() for dep, c in (s.get("depends_on") or {}).items()
                if isinstance(c, dict) and c.get("condition") == "service_completed_successfully"}
    used_volumes = set()
    for name, s in services.items():
        hc = s.get("healthcheck")
        healthy = isinstance(hc, dict) and not hc.get("disable") and bool(hc.get("test"))
        if name in one_shot:
            report.check(S, str(s.get("restart", "no")) == "no", f"{name}: a one-shot job must not restart")
        else:
            report.check(S, healthy, f"{name}: a long-running service needs a health check")
        for dep, cond in (s.get("depends_on") or {}).items():
            report.check(S, dep in services, f"{name}: depends on unknown service {dep}")
            if isinstance(cond, dict) and cond.get("condition") == "service_healthy" and dep in services:
                report.check(S, bool(services[dep].get("healthcheck")), f"{name}: waits for {dep} healthy, which has no health check")
        for source, target in named_volumes(s):
            if source and not source.startswith((".", "/")):
                used_volumes.add(source)
                report.check(S, source in volumes, f"{name}: volume {source} is not declared under volumes:")
            elif source and source.startswith("."):
                report.check(S, (base / source).exists(), f"{name}: bind mount {source} does not exist")
        for sec in s.get("secrets") or []:
            sec = sec if isinstance(sec, str) else sec.get("source")
            report.check(S, sec in secrets, f"{name}: secret {sec} is not declared under secrets:")
    report.check(S, not volumes - used_volumes, f"declared volumes not used by any service: {sorted(volumes - used_volumes)}")
    for sec, spec in secrets.items():
        path = str(spec.get("file", ""))
        report.check(S, path.startswith("./secrets/"), f"secret {sec}: keep key files under ./secrets (git-ignored), not {path!r}")
    ignore = (base / "secrets/.gitignore")
    report.check(S, ignore.exists() and "*" in ignore.read_text().split(), "secrets/.gitignore must ignore every key file")

    kafka = {n: s for n, s in services.items() if "apache/kafka" in str(s.get("image", "")) and n not in one_shot}
    brokers = check_kafka(report, kafka)
    topics = read_topics_conf(base / "topics.conf")
    check_topic_table(report, S, topics, expect)
    init = [n for n in one_shot if "create-topics.sh" in json.dumps(services[n])]
    report.check(S, len(init) == 1, "one topic-init job running create-topics.sh")
    for n in init:
        mounts = [t for _, t in named_volumes(services[n])]
        report.check(S, "/init/topics.conf" in mounts, f"{n}: mounts topics.conf at /init/topics.conf")
        report.check(S, env_of(services[n]).get("BOOTSTRAP") == brokers, f"{n}: BOOTSTRAP must be {brokers}")
        report.check(S, set(services[n].get("depends_on") or {}) >= set(kafka), f"{n}: must wait for every broker")

    egret = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("egret")}
    check_egret_services(report, base, egret, one_shot, secrets, brokers, expect)
    check_prometheus(report, base, services, egret)
    check_docker_compose_config(report, base)
    return topics


def check_kafka(report, kafka):
    """Three KRaft nodes of one cluster; returns the internal bootstrap list."""
    report.check(S, len(kafka) == 3, f"3 Kafka brokers, found {sorted(kafka)}")
    envs = {n: env_of(s) for n, s in kafka.items()}
    report.check(S, len({e.get("CLUSTER_ID") for e in envs.values()}) == 1, "every broker has the same CLUSTER_ID")
    report.check(S, sorted(e.get("KAFKA_NODE_ID") for e in envs.values()) == [str(i) for i in range(1, len(kafka) + 1)], "node ids 1..N")
    bootstrap = []
    for n, e in sorted(envs.items()):
        report.check(S, "controller" in e.get("KAFKA_PROCESS_ROLES", ""), f"{n}: KRaft controller role")
        report.check(S, not any("ZOOKEEPER" in k for k in e), f"{n}: no ZooKeeper settings in KRaft mode")
        voters = e.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
        report.check(S, f"{e.get('KAFKA_NODE_ID')}@{n}:" in voters, f"{n}: is a voter of the quorum ({voters})")
        m = re.search(r"INTERNAL://([^:,]+):(\d+)", e.get("KAFKA_ADVERTISED_LISTENERS", ""))
        if report.check(S, m is not None and m.group(1) == n, f"{n}: advertises its INTERNAL listener under its service name"):
            bootstrap.append(f"{m.group(1)}:{m.group(2)}")
        rf, isr = int(e.get("KAFKA_DEFAULT_REPLICATION_FACTOR", 1)), int(e.get("KAFKA_MIN_INSYNC_REPLICAS", 1))
        report.check(S, rf <= len(kafka) and isr < rf, f"{n}: replication {rf} and min ISR {isr} must fit {len(kafka)} brokers with one down")
        report.check(S, int(e.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", 1)) == rf, f"{n}: offsets topic replicated like the data")
        report.check(S, e.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", f"{n}: topics come from topic-init only")
    return ",".join(bootstrap)


def check_egret_services(report, base, egret, one_shot, secrets, brokers, expect):
    pipelines = [n for n in egret if n.startswith("pipeline")]
    apis = [n for n in egret if n.startswith("api")]
    report.check(S, len(pipelines) >= 2, f"at least 2 pipeline instances (one active, one standby), found {pipelines}")
    report.check(S, len(apis) == 2, f"2 API instances, found {apis}")
    groups, state_volumes = set(), []
    # Per `egret run` service: its --checkpoint-dir, where that lies (named volume, path
    # inside it), and its --instance-id.
    checkpoint_dirs, checkpoint_places, instance_ids = {}, {}, {}
    for n, s in egret.items():
        build = s.get("build") or {}
        report.check(S, (base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).exists(), f"{n}: builds from an existing Dockerfile")
        command = "serve" if n in apis else "run"
        values = check_egret_command(report, S, n, [str(a) for a in s.get("command") or []], expect, brokers, command)
        groups.add(values.get("--group", "egret"))
        env = env_of(s)
        check_allowed_env(report, S, n, env, expect, extra=[k + "_FILE" for k in expect["key_env"]])
        for key in expect["key_env"]:
            path = env.get(key + "_FILE", "")
            listed = [x if isinstance(x, str) else x.get("source") for x in s.get("secrets") or []]
            report.check(S, path.startswith("/run/secrets/") and path.rsplit("/", 1)[1] in listed,
                         f"{n}: {key} must come from a secret it lists ({key}_FILE=/run/secrets/NAME)")
            report.check(S, key not in env, f"{n}: {key} must not be written into the Compose file")
        mounts = dict((t, src) for src, t in named_volumes(s))
        state = env.get("EGRET_STATE_DIR")
        if report.check(S, state in mounts, f"{n}: a volume at its state dir {state}"):
            state_volumes.append(mounts[state])
        if command == "run":
            check_pipeline_failover(report, n, values, env, mounts, mounts.get(state), checkpoint_dirs, checkpoint_places, instance_ids)
        if "--hotlists" in values:
            report.check(S, values["--hotlists"] in mounts, f"{n}: --hotlists {values['--hotlists']} is not mounted")
        port = env.get("EGRET_LISTEN", "127.0.0.1:8080").rsplit(":", 1)[1]
        test = " ".join(str(t) for t in (s.get("healthcheck") or {}).get("test", []))
        report.check(S, f":{port}/healthz" in test, f"{n}: health check must ask /healthz on the listen port {port}")
        report.check(S, env.get("EGRET_LISTEN", "").startswith("0.0.0.0:"), f"{n}: must listen on 0.0.0.0 inside its container")
        report.check(S, set(s.get("depends_on") or {}) & one_shot, f"{n}: must start after topic-init")
    report.check(S, len(groups) == 1, f"every instance in one consumer group, found {groups}")
    report.check(S, len(set(state_volumes)) == len(state_volumes), "each instance needs its own state volume (history files would collide)")
    # Active/standby: one checkpoint directory (its lock is the right to run) in one
    # place shared by every pipeline instance, and one static membership id.
    report.check(S, len(set(checkpoint_dirs.values())) <= 1,
                 f"every pipeline instance must pass the same --checkpoint-dir (one active, the others standbys), found {checkpoint_dirs}")
    places = set(checkpoint_places.values())
    report.check(S, len(places) <= 1,
                 f"the pipeline instances' --checkpoint-dir must be one directory on one named volume mounted in each, found (volume, path in it) {checkpoint_places}")
    both = {volume for volume, _ in places} & set(state_volumes)
    report.check(S, not both,
                 f"{sorted(both)}: holds a pipeline --checkpoint-dir and an instance's state dir; give the checkpoints a volume of their own")
    report.check(S, len(set(instance_ids.values())) == 1 and None not in instance_ids.values(),
                 f"every pipeline instance must pass the same --instance-id (static membership: the standby replaces the gone member at once), found {instance_ids}")


def check_pipeline_failover(report, n, values, env, mounts, state_volume, checkpoint_dirs, checkpoint_places, instance_ids):
    """One `egret run` service's part in active/standby: a --checkpoint-dir on a named
    volume other than its state volume, and an --instance-id. Fills the three maps
    that check_egret_services compares across the pipeline instances."""
    checkpoint = values.get("--checkpoint-dir") or env.get("EGRET_CHECKPOINT_DIR")
    instance_ids[n] = values.get("--instance-id") or env.get("EGRET_INSTANCE_ID")
    if not report.check(S, bool(checkpoint), f"{n}: must pass --checkpoint-dir (a directory shared by every pipeline instance: its lock makes one active, the others standbys)"):
        return
    checkpoint_dirs[n] = checkpoint
    target, inside = holding_mount(checkpoint, mounts)
    volume = mounts.get(target)
    named = bool(volume) and not str(volume).startswith((".", "/"))
    if not report.check(S, named, f"{n}: --checkpoint-dir {checkpoint} is on no named volume (found {volume or 'the container filesystem'}); mount the shared checkpoint volume there"):
        return
    report.check(S, volume != state_volume, f"{n}: --checkpoint-dir {checkpoint} lies on its own state volume {volume}, not on a volume shared by every pipeline instance")
    checkpoint_places[n] = (volume, inside)


def check_prometheus(report, base, services, egret):
    prom = load_yaml(base / "prometheus.yml")
    jobs = {j["job_name"]: j for j in prom.get("scrape_configs", [])}
    if report.check(S, "egret" in jobs, "prometheus.yml: a scrape job named egret (the rules select job=\"egret\")"):
        targets = {t for sc in jobs["egret"].get("static_configs", []) for t in sc.get("targets", [])}
        report.check(S, targets == {f"{n}:8080" for n in egret}, f"prometheus.yml scrapes {sorted(targets)}, not every egret instance")
    mounts = [t for _, t in named_volumes(services.get("prometheus", {}))]
    for rule_file in prom.get("rule_files", []):
        report.check(S, rule_file in mounts, f"prometheus.yml loads {rule_file}, which is not mounted")


def check_docker_compose_config(report, base):
    """`docker compose config -q` where a Compose client exists (no engine needed)."""
    docker = shutil.which("docker")
    ok = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not ok:
        print("compose: skipped `docker compose config -q`: no docker compose client here")
        return
    r = subprocess.run([docker, "compose", "-f", "compose.yaml", "config", "-q"], cwd=base, capture_output=True, text=True)
    report.check(S, r.returncode == 0, f"docker compose config -q: {r.stderr.strip()}")
    print("compose: ran `docker compose config -q`")


def check_dockerfile(report, repo, expect):
    s = "docker"
    base = Path(repo) / "deploy/compose"
    text = (base / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    report.check(s, len(froms) >= 2, "Dockerfile: multi-stage (a builder, then a runtime)")
    report.check(s, froms and froms[0].startswith("rust:"), "Dockerfile: builds in a rust image")
    report.check(s, froms and froms[-1].startswith("debian:") and froms[-1].endswith("-slim"), "Dockerfile: runs on debian-slim")
    build = expect["readme_build_command"]
    report.check(s, build in text, f"Dockerfile: must build with the README's command `{build}`")
    report.check(s, re.search(r"^COPY data ", text, re.M) is not None, "Dockerfile: ships data/ (the city model)")
    report.check(s, re.search(r"EGRET_DATA_DIR=", text) is not None, "Dockerfile: sets EGRET_DATA_DIR to the shipped data")
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        report.check(s, src == "." or (Path(repo) / src).exists(), f"Dockerfile: COPY {src} does not exist")
    report.check(s, (base / "docker-entrypoint.sh").exists(), "Dockerfile: docker-entrypoint.sh exists")
    ignore = [l.strip() for l in (base / "Dockerfile.dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    for must in ("target", ".git"):
        report.check(s, must in ignore, f"Dockerfile.dockerignore: leave {must} out of the build context")
    members = tomllib.loads((Path(repo) / "Cargo.toml").read_text())["workspace"]["members"]
    for keep in members + ["data", "src", "Cargo.lock", "Cargo.toml"]:
        report.check(s, not any(p.rstrip("/") in (keep, keep + "/**") for p in ignore), f"Dockerfile.dockerignore: the build needs {keep}")
