#!/usr/bin/env python3
"""Checks everything under deploy/ that an operator runs: the Compose file, the
Dockerfile, the Kubernetes manifests, the Grafana dashboard and the alert rules.

Run by tests/deploy_manifests.rs with the interpreter of the venv that
.ci/python-venv.sh makes:

    check.py REPO EXPECT.json

EXPECT.json is what the test read from the code: the topic constants (input,
derived with compaction, dead letters, repartition and its partition count), the
flags and environment variables of `egret run --help`, the key variables and the
shortest key egret accepts. The metric names are read here from the sources
(metrics::counter!/gauge!/histogram! and `# TYPE` lines).

Tools used where present, skipped with a line saying so where not: `docker compose
config -q`, `kubectl kustomize`, `promtool check rules`.

Exit status 0 when nothing is wrong; 1 with every problem printed otherwise.
"""

import json
import re
import sys
from pathlib import Path

# The sibling modules are imported from the work tree: leave no __pycache__ in it.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).parent))

from common import Report, exported_metrics  # noqa: E402
from compose_checks import check_compose, check_dockerfile  # noqa: E402
from k8s_checks import check_k8s  # noqa: E402
from obs_checks import check_alerts, check_grafana, known_series  # noqa: E402


def readme_build_command(repo):
    """The one production build command of the README (`cargo build --release ...`)."""
    text = (Path(repo) / "README.md").read_text(encoding="utf-8")
    commands = sorted(set(re.findall(r"^(cargo build --release[^\n#]*?)\s*(?:#.*)?$", text, re.M)))
    return commands


def main():
    repo, expect_path = sys.argv[1], sys.argv[2]
    expect = json.loads(Path(expect_path).read_text(encoding="utf-8"))
    report = Report()

    builds = readme_build_command(repo)
    report.check("readme", len(builds) == 1, f"the README should show one `cargo build --release` command, has {builds}")
    expect["readme_build_command"] = builds[0] if builds else "cargo build --release"
    readme = (Path(repo) / "README.md").read_text(encoding="utf-8")
    report.check("readme", "## Operating a cluster" in readme, "the README has no \"Operating a cluster\" section")
    for path in ("deploy/compose", "deploy/k8s", "deploy/CAPACITY.md", "EGRET_TOKEN_KEY", "EGRET_PSEUDONYM_KEY"):
        report.check("readme", path in readme, f"the README's operator section does not mention {path}")

    exported = exported_metrics(repo)
    report.check("metrics", len(exported) >= 5, f"found only {sorted(exported)} in the sources: has the metrics macro changed?")
    print(f"metrics: egret exports {len(exported)} series: {', '.join(sorted(exported))}")
    known = known_series(exported)

    compose_topics = check_compose(report, repo, expect)
    check_dockerfile(report, repo, expect)
    check_k8s(report, repo, expect, compose_topics)
    check_grafana(report, repo, known)
    check_alerts(report, repo, known)

    report.summary()
    if report.problems:
        print(f"deploy checks: {len(report.problems)} problems (listed above)")
        return 1
    print(f"deploy checks: all {sum(report.checked.values())} checks hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
