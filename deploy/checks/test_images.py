"""The Dockerfile's supply-chain properties (no image is built).

- Every base image (a FROM that is not an earlier stage) is pinned by digest: name:tag@sha256:<64 hex>.
- The runtime images carry the OCI labels org.opencontainers.image.{title, description, source,
  licenses, version, revision}, version and revision from build arguments, and each shipped
  target (ingress, consumer, all) descends from the stage that sets them.
- The labels agree with the rest of the repository: the version with Cargo.toml and the chart's
  appVersion, the license with Cargo.toml, the source with the chart's home.

Run with dev/check-deploy.
"""

from __future__ import annotations

import re
import shlex
import tomllib
import unittest

import yaml

from deploy.checks import test_deploy as base

ROOT = base.ROOT
OCI_LABELS = {"title", "description", "source", "licenses", "version", "revision"}
PINNED = re.compile(r"^[a-z0-9][a-z0-9./_-]*:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def stages(text: str) -> dict[str, dict]:
    """Each stage by name: its base (an image or an earlier stage), ARG defaults and LABELs."""
    result: dict[str, dict] = {}
    current = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"#{len(result)}"
            current = result[name] = {"from": words[0], "args": {}, "labels": {}}
        elif current is not None and keyword == "ARG":
            key, _, default = rest.partition("=")
            current["args"][key] = default
        elif current is not None and keyword == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                current["labels"][key] = value
    return result


def labels_of(all_stages: dict[str, dict], name: str) -> dict[str, str]:
    """The labels an image built with --target <name> carries (inherited, then its own)."""
    stage = all_stages[name]
    inherited = labels_of(all_stages, stage["from"]) if stage["from"] in all_stages else {}
    return {**inherited, **stage["labels"]}


class DockerfileTest(unittest.TestCase):

    def setUp(self):
        self.stages = stages((ROOT / "Dockerfile").read_text())

    def test_base_images_are_pinned_by_digest(self):
        bases = [s["from"] for s in self.stages.values() if s["from"] not in self.stages]
        self.assertEqual(len(bases), 2, bases)
        for image in bases:
            self.assertRegex(image, PINNED, "a base image without its @sha256 digest")
        self.assertEqual(sorted(b.split("@")[0] for b in bases), ["debian:bookworm-slim", "rust:1-bookworm"])

    def test_runtime_images_carry_the_oci_labels(self):
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]
        chart = yaml.safe_load((base.CHART / "Chart.yaml").read_text())
        for target in ("ingress", "consumer", "all"):
            labels = labels_of(self.stages, target)
            oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()}
            self.assertLessEqual(OCI_LABELS, set(oci), f"{target}: OCI labels")
            for key in OCI_LABELS:
                self.assertTrue(oci[key], f"{target}: empty {key}")
            self.assertEqual(oci["version"], "${VERSION}", target)
            self.assertEqual(oci["revision"], "${REVISION}", target)
            self.assertEqual(oci["licenses"], cargo["license"], target)
        self.assertNotEqual(labels_of(self.stages, "ingress")["org.opencontainers.image.title"],
                            labels_of(self.stages, "consumer")["org.opencontainers.image.title"])
        args = self.stages["runtime"]["args"]
        self.assertEqual(args["VERSION"], cargo["version"], "the VERSION default is the workspace's version")
        self.assertEqual(args["VERSION"], chart["appVersion"])
        self.assertEqual(args["SOURCE"], chart["home"], "one home for the image and the chart")
        self.assertRegex(args["SOURCE"], r"^https://")
        runbooks = base.chart().values["monitoring"]["prometheusRule"]["runbookBaseUrl"]
        self.assertTrue(runbooks.startswith(chart["home"] + "/"), "runbooks live in the same repository")


if __name__ == "__main__":
    unittest.main()
