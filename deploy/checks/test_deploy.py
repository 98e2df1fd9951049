"""Render-and-validate checks of the Kubernetes delivery (no cluster needed).

- The Helm chart is linted (strict) and rendered with each values file in
  helm/coupon-issuance/ci/ plus the defaults; every rendered object is validated against the
  Kubernetes 1.31 schemas (kubernetes-validate, strict: unknown fields fail) or, for the
  operators' kinds, against their own CRD schemas vendored in schemas/ (schemas/README.md).
- The kustomizations under k8s/ are built with `kubectl kustomize` (kustomize v5; the kubectl
  dev/check-deploy found or installed, $COUPON_KUBECTL) and validated the same way.
- The properties that matter are asserted: probes, restricted security context, the config
  checksum, shutdown timing, hook ordering, secrets only as files, scaling bounds, alert rules
  and dashboard coverage, that values.schema.json refuses bad values, the production profile
  (token issuer and audience required unless a build is explicitly development), metrics on
  the operations port only, and which paths each load balancer routes.

Run: python3 -m unittest deploy/checks/test_deploy.py  (dev/check-deploy installs the packages)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import unittest
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

import helm_python as helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "coupon-issuance"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBE_VERSION = "1.31.0"
RELEASE, NAMESPACE = "coupon-issuance", "coupon"

# Every metric the services export (docs/OPERATIONS.md); the dashboard shows each of them.
METRICS = {
    "coupon_issuance_waiters", "coupon_issuance_wakeups_total", "coupon_outcome_listener_reconnects_total",
    "coupon_http_requests_total", "coupon_http_request_duration_seconds", "coupon_reservations_total",
    "coupon_kafka_produce_duration_seconds", "coupon_kafka_produce_total", "coupon_redis_duration_seconds",
    "coupon_producer_queue_messages", "coupon_journal_entries", "coupon_journal_rolled_forward_total",
    "coupon_consumer_lag_messages", "coupon_consumer_batch_size", "coupon_consumer_commit_duration_seconds",
    "coupon_postgres_duration_seconds", "coupon_coupons_issued_total", "coupon_issuances_rejected_total",
    "coupon_dead_letters_total", "process_resident_memory_bytes", "coupon_open_connections",
    "coupon_notifications_total", "coupon_outbox_backlog", "coupon_outbox_published_total",
    "coupon_requests_shed_total", "coupon_connections_refused_total", "coupon_jwks_refreshes", "coupon_events_refused_total", "coupon_webhook_refused_total",
    "coupon_consumer_redelivered_total", "process_open_fds", "coupon_readiness_checks_total",
    "coupon_dependency_up", "coupon_gate_fenced_campaigns", "coupon_gate_fences_total",
    "coupon_gate_reseeds_total", "coupon_gate_loss_checks_total", "coupon_gate_fence_duration_seconds",
}
REQUIRED_ALERTS = {"CouponConsumerLagHigh", "CouponDeadLetters", "CouponHigh5xxRate",
                   "CouponJournalBacklog", "CouponRejectedAfterAccept", "CouponEventsRefused",
                   "CouponGateFenced"}
SECRET_SETTINGS = {"DATABASE_URL", "REDIS_URL_WITH_PASSWORD", "JWT_HS256_SECRET", "WEBHOOK_SECRET"}
# What a production install must give at least: the chart refuses to render without them.
PRODUCTION = {"auth": {"issuer": "https://id.example.com", "audience": "coupon-api"}}
OPS_LISTEN = "0.0.0.0:9091"


def api_paths() -> set[str]:
    """The API's paths, from the ingress's route table (ingress/src/http/routes.rs)."""
    source = (ROOT / "ingress" / "src" / "http" / "routes.rs").read_text()
    table = source[source.index("const ROUTES"):]
    table = table[:table.index("];")]
    return set(re.findall(r'\("(/v1/[^"]*)", Route::', table))


# Where each API path may be routed from outside the cluster.
PUBLIC_PREFIXES = {"/v1/campaigns", "/v1/issuances", "/v1/me"}
INTERNAL_PREFIXES = {"/v1/admin", "/v1/coupons"}


def routed(path: str, prefixes: set[str]) -> bool:
    """Whether an Ingress path of type Prefix in `prefixes` matches `path` (element-wise)."""
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def ingress_paths(ingress: dict) -> set[str]:
    paths = set()
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            assert entry["pathType"] == "Prefix", entry
            assert entry["backend"]["service"]["port"] == {"name": "http"}, entry
            paths.add(entry["path"])
    return paths


def profile_problems(objects: list[dict]) -> list[str]:
    """Settings a production build lacks: every ingress ConfigMap whose COUPON_ENV is not
    development needs JWT_ISSUER and JWT_AUDIENCE."""
    problems = []
    for cm in find(objects, "ConfigMap"):
        data = cm.get("data", {})
        if "INGRESS_LISTEN" not in data or data.get("COUPON_ENV") == "development":
            continue
        for key in ("JWT_ISSUER", "JWT_AUDIENCE"):
            if not data.get(key):
                problems.append(f"ConfigMap {cm['metadata']['name']}: {key} is required in production")
    return problems


# ---------------------------------------------------------------------------------------------
# Rendering and validation helpers

@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(str(CHART))


def scenarios() -> dict[str, dict]:
    """Values of each check scenario: the defaults with what production requires, and every
    ci/*-values.yaml."""
    found = {"defaults": copy.deepcopy(PRODUCTION)}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = yaml.safe_load(path.read_text()) or {}
    return found


def render(values: dict) -> dict[str, str]:
    return chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects_of(manifests: dict[str, str]) -> list[dict]:
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["_template"] = path
                objects.append(doc)
    return objects


@functools.cache
def rendered(scenario: str) -> tuple[dict[str, str], list[dict]]:
    manifests = render(scenarios()[scenario])
    return manifests, objects_of(manifests)


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict | None:
    """The operator's own CRD schema of an API group's kind (schemas/<group>/<kind>_<version>.json,
    vendored verbatim: schemas/README.md), or None for a kind of Kubernetes itself."""
    if "/" not in api_version:
        return None
    group, version = api_version.split("/")
    path = SCHEMAS / group / f"{kind.lower()}_{version}.json"
    return json.loads(path.read_text()) if path.exists() else None


# What an object of an operator's kind may hold at its top level (its CRD leaves metadata to the
# API server; status is the operator's to write).
CUSTOM_TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec"}


def validate_custom(obj: dict, schema: dict) -> None:
    unknown = set(obj) - CUSTOM_TOP_LEVEL
    if unknown:
        raise jsonschema.ValidationError(f"unknown top-level fields {sorted(unknown)}")
    jsonschema.Draft202012Validator(schema).validate(obj)
    # ObjectMeta as the API server checks it (strict: an unknown metadata field fails).
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
                                 KUBE_VERSION, strict=True)


def validate(obj: dict) -> None:
    """Kubernetes schema (strict), or the operator's CRD schema of its kind."""
    clean = {k: v for k, v in obj.items() if not k.startswith("_")}
    if not clean["metadata"].get("annotations"):
        clean = copy.deepcopy(clean)
        clean["metadata"].pop("annotations", None)
    schema = crd_schema(clean["apiVersion"], clean["kind"])
    where = f"{clean['kind']}/{clean['metadata'].get('name')} ({obj.get('_template', 'kustomize')})"
    try:
        if schema is not None:
            validate_custom(clean, schema)
        else:
            kubernetes_validate.validate(clean, KUBE_VERSION, strict=True)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
        raise AssertionError(f"{where}: {getattr(e, 'message', e)}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise AssertionError(f"{where}: no schema for {clean['apiVersion']} {clean['kind']}") from None


def kubectl() -> str:
    """The kubectl dev/check-deploy found or installed (kustomize v5), else the one on PATH."""
    found = os.environ.get("COUPON_KUBECTL") or shutil.which("kubectl")
    if not found:
        raise AssertionError("no kubectl (kustomize v5): run dev/check-deploy, which installs a pinned one")
    return found


@functools.cache
def kustomize_output(path: str) -> str:
    done = subprocess.run([kubectl(), "kustomize", str(ROOT / path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path}: {done.stderr.strip()}")
    return done.stdout


def kustomize(path: str) -> list[dict]:
    """The objects `kubectl kustomize <path>` builds (a fresh copy on every call)."""
    objects = [o for o in yaml.safe_load_all(kustomize_output(path)) if o]
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("annotations", {})
    return objects


def find(objects: list[dict], kind: str, suffix: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


def one(objects: list[dict], kind: str, suffix: str = "") -> dict:
    found = find(objects, kind, suffix)
    assert len(found) == 1, f"expected one {kind} *{suffix}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job", "Pod")]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# ---------------------------------------------------------------------------------------------
# Properties shared by the chart and the plain manifests

class Properties:
    """Assertions over one set of objects (a chart rendering or a kustomize build)."""

    def assert_restricted(self, obj: dict) -> None:
        spec = pod_spec(obj)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = spec.get("securityContext", {})
        self.assertTrue(pod.get("runAsNonRoot"), f"{name}: pod runAsNonRoot")
        self.assertEqual(pod.get("seccompProfile", {}).get("type"), "RuntimeDefault", f"{name}: seccomp")
        self.assertNotEqual(pod.get("runAsUser"), 0, f"{name}: runs as root")
        self.assertFalse(spec.get("automountServiceAccountToken", True), f"{name}: token mounted")
        self.assertFalse(spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"), name)
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            self.assertIs(sc.get("allowPrivilegeEscalation"), False, f"{name}/{c['name']}: privilege escalation")
            self.assertIs(sc.get("readOnlyRootFilesystem"), True, f"{name}/{c['name']}: writable root")
            self.assertEqual(sc.get("capabilities", {}).get("drop"), ["ALL"], f"{name}/{c['name']}: capabilities")
            self.assertFalse(sc.get("privileged", False), f"{name}/{c['name']}: privileged")
            self.assertIn("memory", c.get("resources", {}).get("limits", {}), f"{name}/{c['name']}: memory limit")
            self.assertIn("cpu", c.get("resources", {}).get("requests", {}), f"{name}/{c['name']}: cpu request")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            self.assertIn("/tmp", mounts, f"{name}/{c['name']}: /tmp scratch on a read-only root")

    def assert_probes(self, deployment: dict) -> None:
        (container,) = pod_spec(deployment)["containers"]
        name = deployment["metadata"]["name"]
        port_names = {p["name"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            self.assertTrue(probe in container, f"{name}: no {probe}")
            get = container[probe]["httpGet"]
            self.assertEqual(get["path"], path, f"{name}: {probe} path")
            self.assertIn(get["port"], port_names, f"{name}: {probe} port")

    def assert_shutdown_fits(self, deployment: dict, config: dict[str, str]) -> None:
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        drain = (int(config.get("SHUTDOWN_DELAY_MS", 0)) + int(config["SHUTDOWN_TIMEOUT_MS"])) / 1000
        self.assertGreater(spec["terminationGracePeriodSeconds"], pre_stop + drain,
                           f"{deployment['metadata']['name']}: grace period shorter than preStop + delay + timeout")

    def assert_metrics_on_the_ops_port(self, objects: list[dict], config: dict[str, str]) -> None:
        """The ingress serves /metrics on its ops port, which the ingress Service names
        "metrics", only scrapers may reach, and no Ingress routes to."""
        self.assertEqual(config["INGRESS_OPS_LISTEN"], OPS_LISTEN)
        ops_port = int(OPS_LISTEN.rsplit(":", 1)[1])
        deployment = next(d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("ingress"))
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports.get("ops"), ops_port)
        service = next(s for s in find(objects, "Service") if s["metadata"]["name"].endswith("ingress"))
        by_name = {p["name"]: p for p in service["spec"]["ports"]}
        self.assertEqual(by_name["metrics"]["targetPort"], "ops")
        self.assertEqual(by_name["http"]["targetPort"], "http")
        for consumer in find(objects, "Service", "consumer"):
            self.assertEqual([p["name"] for p in consumer["spec"]["ports"]], ["metrics"])
        for ingress in find(objects, "Ingress"):
            ingress_paths(ingress)  # every backend is the "http" port
        policy = next(p for p in find(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("ingress"))
        rules = policy["spec"]["ingress"]
        ops_rules = [r for r in rules if {"port": "ops", "protocol": "TCP"} in r["ports"]]
        self.assertEqual(len(ops_rules), 1, "one rule for the ops port")
        self.assertEqual(ops_rules[0]["ports"], [{"port": "ops", "protocol": "TCP"}])
        sources = ops_rules[0].get("from")
        self.assertTrue(sources, "the ops port is open to metrics scrapers only")
        self.assertTrue(all("namespaceSelector" in s or "podSelector" in s or "ipBlock" in s for s in sources))

    def assert_routes(self, ingress: dict, prefixes: set[str]) -> None:
        """The Ingress routes exactly `prefixes`, and every API path it reaches is one of them."""
        name = ingress["metadata"]["name"]
        self.assertEqual(ingress_paths(ingress), prefixes, name)
        for path in api_paths():
            self.assertEqual(routed(path, ingress_paths(ingress)), routed(path, prefixes), f"{name}: {path}")

    def assert_secrets_as_files(self, objects: list[dict]) -> None:
        self.assertFalse(find(objects, "Secret"), "the deployment must reference Secrets, not create them")
        for cm in find(objects, "ConfigMap"):
            for key in cm.get("data", {}):
                self.assertNotIn(key, SECRET_SETTINGS, f"ConfigMap {cm['metadata']['name']} carries {key}")
        for obj in workloads(objects):
            spec = pod_spec(obj)
            for c in spec["containers"]:
                env = env_of(c)
                for key in SECRET_SETTINGS:
                    self.assertNotIn(key, env, f"{obj['metadata']['name']}: {key} as a plain variable")
                mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                for key, value in env.items():
                    if key.endswith("_FILE") and key != "COUPON_CONFIG_FILE":
                        self.assertTrue(any(value.startswith(m + "/") for m in mounts),
                                        f"{obj['metadata']['name']}: {key}={value} is not on a mounted volume")

    def assert_selectors_match(self, objects: list[dict]) -> None:
        pods = [pod for o in find(objects, "Deployment") for pod in [o["spec"]["template"]["metadata"]["labels"]]]
        for d in find(objects, "Deployment"):
            sel = d["spec"]["selector"]["matchLabels"]
            self.assertLessEqual(sel.items(), d["spec"]["template"]["metadata"]["labels"].items())
        for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
            for obj in find(objects, kind):
                sel = obj
                for key in path:
                    sel = sel[key]
                matched = [p for p in pods if sel.items() <= p.items()]
                self.assertEqual(len(matched), 1, f"{kind}/{obj['metadata']['name']} selects {len(matched)} deployments")


# ---------------------------------------------------------------------------------------------
# The chart

class ChartTest(Properties, unittest.TestCase):

    def test_lint_is_clean_for_every_scenario(self):
        for name, values in scenarios().items():
            report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}",
                               namespace=NAMESPACE)
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
            self.assertEqual(problems, [], f"helm lint ({name})")

    def test_every_rendered_object_is_valid(self):
        for name in scenarios():
            _, objects = rendered(name)
            self.assertTrue(objects)
            for obj in objects:
                with self.subTest(scenario=name, object=obj["metadata"]["name"], kind=obj["kind"]):
                    validate(obj)

    def test_scenarios_cover_the_optional_parts(self):
        kinds = {o["kind"] for name in scenarios() for o in rendered(name)[1]}
        for kind in ("Ingress", "ScaledObject", "ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler",
                     "NetworkPolicy", "PodDisruptionBudget", "Job", "Pod"):
            self.assertIn(kind, kinds)

    def test_workloads_are_restricted_and_probed(self):
        for name in scenarios():
            manifests, objects = rendered(name)
            with self.subTest(scenario=name):
                self.assertEqual(len(find(objects, "Deployment")), 2)
                for obj in workloads(objects):
                    self.assert_restricted(obj)
                for component in ("ingress", "consumer"):
                    deployment = one(objects, "Deployment", f"-{component}")
                    config = one(objects, "ConfigMap", f"-{component}")["data"]
                    self.assert_probes(deployment)
                    self.assert_shutdown_fits(deployment, config)
                self.assert_metrics_on_the_ops_port(objects, one(objects, "ConfigMap", "-ingress")["data"])
                self.assert_secrets_as_files(objects)
                self.assert_selectors_match(objects)
                self.assertEqual(profile_problems(objects), [])

    def test_config_checksum_tracks_the_config_map(self):
        manifests, objects = rendered("defaults")
        for component in ("ingress", "consumer"):
            template = f"coupon-issuance/templates/configmap-{component}.yaml"
            annotation = one(objects, "Deployment", f"-{component}")["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(annotation["checksum/config"], hashlib.sha256(manifests[template].encode()).hexdigest())
        changed = objects_of(render({**PRODUCTION, "ingress": {"env": {"KAFKA_LINGER_MS": 5}}}))
        before = one(objects, "Deployment", "-ingress")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        after = one(changed, "Deployment", "-ingress")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        self.assertNotEqual(before, after, "a config change must roll the ingress pods")
        consumer = lambda objs: one(objs, "Deployment", "-consumer")["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(consumer(objects), consumer(changed), "an ingress setting must not roll the consumer")
        self.assertEqual(one(changed, "ConfigMap", "-ingress")["data"]["KAFKA_LINGER_MS"], "5")

    def test_migration_hook_runs_first_and_needs_nothing_of_the_release(self):
        _, objects = rendered("full")
        hooks = [o for o in objects if "helm.sh/hook" in o["metadata"]["annotations"]]
        jobs = {o["metadata"]["name"].rsplit("-", 1)[-1]: o for o in hooks if o["kind"] == "Job"}
        self.assertEqual(set(jobs), {"migrate", "topics"})
        weight = lambda o: int(o["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
        for job in jobs.values():
            annotations = job["metadata"]["annotations"]
            self.assertEqual(set(annotations["helm.sh/hook"].split(",")), {"pre-install", "pre-upgrade"})
            self.assertIn("before-hook-creation", annotations["helm.sh/hook-delete-policy"])
        self.assertLess(weight(jobs["migrate"]), weight(jobs["topics"]), "migrations run before topics")
        self.assertEqual(jobs["migrate"]["spec"]["template"]["spec"]["containers"][0]["command"],
                         ["/usr/local/bin/couponctl", "migrate"])
        # A pre-install hook runs before the release's objects exist: it may not use any of them.
        release_names = {o["metadata"]["name"] for o in objects if o not in hooks}
        for job in jobs.values():
            spec = pod_spec(job)
            self.assertNotIn(spec.get("serviceAccountName"), release_names)
            for c in spec["containers"]:
                for source in c.get("envFrom", []):
                    self.fail(f"{job['metadata']['name']} reads envFrom {source}")
            for volume in spec.get("volumes", []):
                self.assertNotIn(volume.get("configMap", {}).get("name"), release_names)
        tests = [o for o in hooks if o["metadata"]["annotations"]["helm.sh/hook"] == "test"]
        self.assertEqual(len(tests), 1)
        self.assertEqual(pod_spec(tests[0])["containers"][0]["command"], ["/usr/local/bin/couponctl", "demo"])

    def test_helm_test_needs_hs256(self):
        _, objects = rendered("defaults")
        self.assertFalse([o for o in objects if o["metadata"]["annotations"].get("helm.sh/hook") == "test"])
        ingress = one(objects, "Deployment", "-ingress")
        self.assertIn("JWT_JWKS_FILE", env_of(pod_spec(ingress)["containers"][0]))

    def test_keys_from_a_url(self):
        _, objects = rendered("jwksurl")
        ingress = pod_spec(one(objects, "Deployment", "-ingress"))
        env = env_of(ingress["containers"][0])
        self.assertEqual(env["JWT_JWKS_URL"], "https://idp.example.com/.well-known/jwks.json")
        self.assertNotIn("JWT_JWKS_FILE", env)
        self.assertNotIn("jwt", {v["name"] for v in ingress["volumes"]}, "no key Secret to mount")
        egress = one(objects, "NetworkPolicy", "-egress")["spec"]["egress"]
        self.assertIn({"port": 443, "protocol": "TCP"}, [p for rule in egress for p in rule.get("ports", [])])
        for name, values in {
            "jwksUrl mode without a URL": {"auth": {"mode": "jwksUrl", "existingSecret": ""}},
            "jwksUrl over plain http": {"auth": {"mode": "jwksUrl", "jwksUrl": "http://idp.example.com/jwks"}},
            "jwks mode without a Secret": {"auth": {"mode": "jwks", "existingSecret": ""}},
        }.items():
            with self.subTest(name):
                with self.assertRaises(helm.HelmValuesError, msg=f"schema accepted: {name}"):
                    chart().validate_schema(values)

    def test_scaling_bounds(self):
        _, defaults = rendered("defaults")
        self.assertNotIn("replicas", one(defaults, "Deployment", "-ingress")["spec"], "the HPA owns the count")
        hpa = one(defaults, "HorizontalPodAutoscaler")
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 3, "one ingress pod per zone at least")
        self.assertEqual(one(defaults, "Deployment", "-consumer")["spec"]["replicas"], 2)
        partitions = chart().values["kafka"]["requestedPartitions"]
        _, keda = rendered("keda")
        scaled = one(keda, "ScaledObject")
        self.assertLessEqual(scaled["spec"]["maxReplicaCount"], partitions)
        self.assertEqual(scaled["spec"]["triggers"][0]["metadata"]["allowIdleConsumers"], "false")
        self.assertNotIn("replicas", one(keda, "Deployment", "-consumer")["spec"], "KEDA owns the count")
        with self.assertRaisesRegex(helm.HelmError, "must not exceed kafka.requestedPartitions"):
            render({**PRODUCTION, "consumer": {"keda": {"enabled": True, "maxReplicas": partitions + 1}}})
        with self.assertRaisesRegex(helm.HelmError, "must not exceed kafka.requestedPartitions"):
            render({**PRODUCTION, "consumer": {"replicas": partitions + 1}})

    def test_alb_ingress(self):
        _, objects = rendered("alb")
        ingress = one(objects, "Ingress")
        a = ingress["metadata"]["annotations"]
        self.assertEqual(ingress["spec"]["ingressClassName"], "alb")
        self.assertEqual(a["alb.ingress.kubernetes.io/target-type"], "ip")
        self.assertEqual(a["alb.ingress.kubernetes.io/healthcheck-path"], "/readyz")
        self.assertIn("idle_timeout.timeout_seconds=30", a["alb.ingress.kubernetes.io/load-balancer-attributes"])
        delay = int(re.search(r"deregistration_delay.timeout_seconds=(\d+)",
                              a["alb.ingress.kubernetes.io/target-group-attributes"]).group(1))
        grace = pod_spec(one(objects, "Deployment", "-ingress"))["terminationGracePeriodSeconds"]
        self.assertLess(delay, grace, "the ALB drains no longer than the pod lives")
        self.assertIn("eks.amazonaws.com/role-arn", one(objects, "ServiceAccount")["metadata"]["annotations"])
        self.assert_routes(ingress, PUBLIC_PREFIXES)
        _, nginx = rendered("nginx")
        plain = one(nginx, "Ingress")
        self.assertEqual(plain["spec"]["ingressClassName"], "nginx")
        self.assertFalse([k for k in plain["metadata"]["annotations"] if k.startswith("alb.")])
        self.assertEqual(plain["spec"]["tls"][0]["secretName"], "coupons-tls")
        self.assert_routes(plain, PUBLIC_PREFIXES)

    def test_admin_and_order_routes_only_on_the_internal_alb(self):
        every = api_paths()
        self.assertTrue(every and all(routed(p, PUBLIC_PREFIXES) != routed(p, INTERNAL_PREFIXES) for p in every),
                        "every API path is public or internal, never both")
        self.assertTrue(all(routed(p, INTERNAL_PREFIXES) for p in every if p.startswith(("/v1/admin/", "/v1/coupons/"))))
        # Without the option: one Ingress, public paths only (the others stay in-cluster).
        for name in ("alb", "full", "nginx"):
            _, objects = rendered(name)
            self.assert_routes(one(objects, "Ingress"), PUBLIC_PREFIXES)
        # With it: a second, internal ALB carries the operator and order-service paths.
        _, objects = rendered("internal")
        ingresses = {i["metadata"]["name"]: i for i in find(objects, "Ingress")}
        self.assertEqual(set(ingresses), {RELEASE, f"{RELEASE}-internal"})
        public, internal = ingresses[RELEASE], ingresses[f"{RELEASE}-internal"]
        self.assert_routes(public, PUBLIC_PREFIXES)
        self.assert_routes(internal, INTERNAL_PREFIXES)
        pa, ia = public["metadata"]["annotations"], internal["metadata"]["annotations"]
        self.assertEqual(pa["alb.ingress.kubernetes.io/scheme"], "internet-facing")
        self.assertEqual(ia["alb.ingress.kubernetes.io/scheme"], "internal")
        self.assertNotEqual(pa.get("alb.ingress.kubernetes.io/group.name"), ia.get("alb.ingress.kubernetes.io/group.name"))
        self.assertEqual(ia["alb.ingress.kubernetes.io/healthcheck-path"], "/readyz")
        self.assertEqual(ia["alb.ingress.kubernetes.io/inbound-cidrs"], "10.0.0.0/16")
        # The in-cluster callers may reach the ingress's port beside the ALB's subnets.
        policy = one(objects, "NetworkPolicy", "-ingress")
        sources = [s for r in policy["spec"]["ingress"] if {"port": "http", "protocol": "TCP"} in r["ports"]
                   for s in r["from"]]
        self.assertIn({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "orders"}}}, sources)
        # One IngressGroup is one load balancer: the two must not share it.
        with self.assertRaisesRegex(helm.HelmError, "expose.internal.groupName must differ"):
            values = copy.deepcopy(scenarios()["internal"])
            values["expose"]["internal"]["groupName"] = values["expose"]["alb"]["groupName"]
            render(values)

    def test_monitoring_ships_rules_and_dashboard(self):
        _, objects = rendered("full")
        rule = one(objects, "PrometheusRule")
        alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
        self.assertLessEqual(REQUIRED_ALERTS, set(alerts))
        for name, r in alerts.items():
            self.assertIn(f'namespace="{NAMESPACE}"', r["expr"], name)
            self.assertNotRegex(r["expr"], r"__[A-Za-z0-9]+__", name)
            self.assertIn("runbook_url", r["annotations"], name)
            self.assertIn(r["labels"]["severity"], ("warning", "critical"), name)
        self.assertIn("> 0", alerts["CouponRejectedAfterAccept"]["expr"])
        for metric in re.findall(r"\b(coupon_[a-z_]+|process_[a-z_]+)", json.dumps(rule["spec"])):
            self.assertIn(re.sub(r"_(bucket|sum|count)$", "", metric), METRICS, f"unknown metric {metric}")
        # Every alert has a runbook section in docs/OPERATIONS.md.
        operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
        for name in alerts:
            self.assertRegex(operations, rf"(?m)^#+ {name}\b", f"no runbook for {name}")
        self.assert_alerts_see_every_component_and_link_absolutely(objects)

        dashboard_cm = one(objects, "ConfigMap", "-dashboard")
        self.assertEqual(dashboard_cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(dashboard_cm["metadata"]["namespace"], "monitoring")
        dashboard = json.loads(dashboard_cm["data"]["coupon-issuance.json"])
        exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
        used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\b(coupon_[a-z_]+|process_[a-z_]+)", exprs)}
        self.assertEqual(used, METRICS, "the dashboard shows every metric, and only those")
        monitor = one(objects, "ServiceMonitor")
        self.assertEqual(monitor["spec"]["endpoints"][0]["path"], "/metrics")
        # The services' "metrics" ports: the ingress's ops listener, never its API port.
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "metrics")

    def assert_alerts_see_every_component_and_link_absolutely(self, objects: list[dict]) -> None:
        rules = [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
        # `up == 0` needs a target; absent() fires when a component has no target at all. Each
        # component's job is its Service's name (the ServiceMonitor's job label).
        for component in ("ingress", "consumer"):
            job = one(objects, "Service", f"-{component}")["metadata"]["name"]
            wanted = f'absent(up{{namespace="{NAMESPACE}",job="{job}"}})'
            self.assertEqual([r["alert"] for r in rules if r["expr"].strip() == wanted],
                             [f"Coupon{component.capitalize()}Absent"], f"no {wanted} rule")
        # Except where KEDA may scale an idle consumer to zero.
        idle_zero = {**PRODUCTION, "monitoring": {"prometheusRule": {"enabled": True}},
                     "consumer": {"keda": {"enabled": True, "minReplicas": 0}}}
        kept = {r["alert"] for g in one(objects_of(render(idle_zero)), "PrometheusRule")["spec"]["groups"]
                for r in g["rules"]}
        self.assertEqual({r["alert"] for r in rules} - kept, {"CouponConsumerAbsent"})
        base = chart().values["monitoring"]["prometheusRule"]["runbookBaseUrl"]
        self.assertRegex(base, r"^https://[^/]+/", "the default runbook address is absolute")
        for r in rules:
            self.assertEqual(r["annotations"]["runbook_url"], f"{base}#{r['alert'].lower()}", r["alert"])

    def test_alert_thresholds_come_from_values(self):
        """No rule compares with a literal number other than 0: every limit is a threshold
        placeholder with a value under monitoring.prometheusRule.thresholds, and each value is used
        and reaches the rendered rule."""
        source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
        thresholds = chart().values["monitoring"]["prometheusRule"]["thresholds"]
        used = set()
        for rule in (r for g in source["groups"] for r in g["rules"]):
            for operand in re.findall(r"(?:[<>]=?|[=!]=)\s*(?:bool\s+)?([0-9][0-9.e+-]*|__[A-Za-z0-9]+__)", rule["expr"]):
                if operand[0].isdigit() and float(operand) == 0:
                    continue
                placeholder = re.fullmatch(r"__([A-Za-z0-9]+)__", operand)
                self.assertTrue(placeholder, f"{rule['alert']}: literal limit {operand}; add a threshold")
                self.assertIn(placeholder.group(1), thresholds, rule["alert"])
                used.add(placeholder.group(1))
        self.assertEqual(used, set(thresholds), "every threshold is used by a rule")
        changed = {name: value * 2 for name, value in thresholds.items()}
        values = {**PRODUCTION, "monitoring": {"prometheusRule": {"enabled": True, "thresholds": changed}}}
        rendered_exprs = " ".join(r["expr"] for g in one(objects_of(render(values)), "PrometheusRule")["spec"]["groups"]
                                  for r in g["rules"])
        for name, value in changed.items():
            self.assertRegex(rendered_exprs, rf"[<>]=?\s*{re.escape(str(value))}(\s|$)", name)
        # A relative runbook address is refused (alert receivers open it outside the cluster).
        with self.assertRaises(helm.HelmValuesError):
            chart().validate_schema({**PRODUCTION, "monitoring": {"prometheusRule": {"runbookBaseUrl": "docs/OPERATIONS.md"}}})

    def test_trace_sampler_reaches_both_services(self):
        for name in scenarios():
            _, objects = rendered(name)
            for component in ("ingress", "consumer"):
                (container,) = pod_spec(one(objects, "Deployment", f"-{component}"))["containers"]
                refs = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
                config = {k: v for cm in find(objects, "ConfigMap") if cm["metadata"]["name"] in refs
                          for k, v in cm["data"].items()}
                self.assertEqual((config.get("OTEL_TRACES_SAMPLER"), config.get("OTEL_TRACES_SAMPLER_ARG")),
                                 ("parentbased_traceidratio", "0.01"), f"{name}: {component}")
        objects = objects_of(render({**PRODUCTION, "telemetry": {"sampler": "always_on", "samplerArg": "1"}}))
        for component in ("ingress", "consumer"):
            data = one(objects, "ConfigMap", f"-{component}")["data"]
            self.assertEqual((data["OTEL_TRACES_SAMPLER"], data["OTEL_TRACES_SAMPLER_ARG"]), ("always_on", "1"))
        for bad in ({"sampler": "probabilistic"}, {"samplerArg": "1.5"}, {"samplerArg": 0.5}):
            with self.subTest(bad=bad), self.assertRaises(helm.HelmValuesError, msg=f"schema accepted {bad}"):
                chart().validate_schema({**PRODUCTION, "telemetry": bad})
        with self.assertRaises(helm.HelmValuesError):
            chart().validate_schema({**PRODUCTION, "consumer": {"env": {"OTEL_TRACES_SAMPLER": "always_on"}}})
        # The plain manifests sample alike.
        for path in ("k8s/overlays/production", "k8s/overlays/development"):
            for cm in find(kustomize(path), "ConfigMap"):
                self.assertEqual(cm["data"]["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio", path)
                self.assertEqual(cm["data"]["OTEL_TRACES_SAMPLER_ARG"], "0.01", path)

    def test_cors_is_off_unless_origins_are_given(self):
        # Production default: no origin allowed, so the ingress sends no CORS headers at all.
        for name in scenarios():
            _, objects = rendered(name)
            data = one(objects, "ConfigMap", "-ingress")["data"]
            wanted = ",".join(scenarios()[name].get("cors", {}).get("allowedOrigins", [])) or None
            self.assertEqual(data.get("CORS_ALLOWED_ORIGINS"), wanted, name)
            self.assertIn("CORS_MAX_AGE_SECS", data, name)
        objects = objects_of(render({**PRODUCTION, "cors": {"allowedOrigins": ["https://shop.example.com", "http://localhost:3000"], "maxAgeSeconds": 60}}))
        data = one(objects, "ConfigMap", "-ingress")["data"]
        self.assertEqual(data["CORS_ALLOWED_ORIGINS"], "https://shop.example.com,http://localhost:3000")
        self.assertEqual(data["CORS_MAX_AGE_SECS"], "60")
        self.assertNotIn("CORS_ALLOWED_ORIGINS", one(objects, "ConfigMap", "-consumer")["data"])
        for bad in ({"allowedOrigins": ["shop.example.com"]}, {"allowedOrigins": ["https://a/b"]}, {"maxAgeSeconds": 86401}):
            with self.subTest(bad=bad), self.assertRaises(helm.HelmValuesError, msg=f"schema accepted {bad}"):
                chart().validate_schema({**PRODUCTION, "cors": {"allowedOrigins": [], "maxAgeSeconds": 600, **bad}})

    def test_network_policies_and_spread(self):
        _, objects = rendered("defaults")
        policies = find(objects, "NetworkPolicy")
        self.assertEqual(len(policies), 3)
        egress = one(objects, "NetworkPolicy", "-egress")
        self.assertIn("Egress", egress["spec"]["policyTypes"])
        for d in find(objects, "Deployment"):
            keys = {c["topologyKey"] for c in pod_spec(d)["topologySpreadConstraints"]}
            self.assertEqual(keys, {"topology.kubernetes.io/zone", "kubernetes.io/hostname"})

    def test_schema_refuses_bad_values(self):
        bad = {
            "replicas zero": {"ingress": {"replicas": 0}},
            "replicas as text": {"ingress": {"replicas": "three"}},
            "unknown key (typo)": {"ingres": {"replicas": 3}},
            "unknown nested key": {"ingress": {"autoscaling": {"targetCPU": 50}}},
            "auth mode none": {"auth": {"mode": "none"}},
            "secret in plain config": {"ingress": {"env": {"DATABASE_URL": "postgres://u:p@db/coupon"}}},
            "listen address overridden": {"consumer": {"env": {"CONSUMER_HTTP_LISTEN": "0.0.0.0:1"}}},
            "ops address overridden": {"ingress": {"env": {"INGRESS_OPS_LISTEN": "0.0.0.0:8080"}}},
            "profile through env": {"consumer": {"env": {"COUPON_ENV": "development"}}},
            "issuer through env": {"ingress": {"env": {"JWT_ISSUER": "https://id.example.com"}}},
            "unknown profile": {"environment": "staging"},
            "ops port out of range": {"ingress": {"opsPort": 80}},
            "internal entry typo": {"expose": {"internal": {"enabled": True, "schema": "internal"}}},
            "setting out of range": {"ingress": {"env": {"KAFKA_MESSAGE_TIMEOUT_MS": 50}}},
            "lower-case setting": {"ingress": {"env": {"kafka_linger_ms": 2}}},
            # null removes a default key when Helm coalesces values.
            "no memory limit": {"ingress": {"resources": {"limits": {"memory": None}}}},
            "bad quantity": {"consumer": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}},
            "ALB idle timeout too long": {"expose": {"alb": {"enabled": True, "idleTimeoutSeconds": 5000}}},
            "ALB health check elsewhere": {"expose": {"alb": {"enabled": True, "healthCheckPath": "/"}}},
            "pull policy": {"image": {"pullPolicy": "Sometimes"}},
            "no database secret": {"database": {"existingSecret": ""}},
            "brokers without port": {"kafka": {"brokers": "kafka"}},
            "shutdown timeout zero": {"shutdown": {"timeoutSeconds": 0}},
            "certificate not an ACM ARN": {"expose": {"alb": {"certificateArn": "my-cert"}}},
        }
        for name, values in bad.items():
            with self.subTest(name):
                with self.assertRaises(helm.HelmValuesError, msg=f"schema accepted: {name}"):
                    chart().validate_schema({**PRODUCTION, **values})
        for name, values in scenarios().items():
            chart().validate_schema(values)  # the shipped scenarios pass

    def test_production_needs_issuer_and_audience_unless_explicitly_development(self):
        # The chart's own defaults are production and do not render.
        self.assertEqual(chart().values["environment"], "production")
        for name, values in {
            "no values": {},
            "no audience": {"auth": {"issuer": "https://id.example.com"}},
            "empty issuer": {"auth": {"issuer": "", "audience": "coupon-api"}},
            "production said": {"environment": "production", "auth": {"audience": "coupon-api"}},
        }.items():
            with self.subTest(name):
                with self.assertRaisesRegex(helm.HelmValuesError, "/auth/(issuer|audience)"):
                    render(values)
        # Production renders with both, and says so to both services.
        _, objects = rendered("defaults")
        for component in ("ingress", "consumer"):
            self.assertEqual(one(objects, "ConfigMap", f"-{component}")["data"]["COUPON_ENV"], "production")
        config = one(objects, "ConfigMap", "-ingress")["data"]
        self.assertEqual((config["JWT_ISSUER"], config["JWT_AUDIENCE"]), ("https://id.example.com", "coupon-api"))
        # The explicit development values file renders without them, as development.
        dev = yaml.safe_load((CHART / "ci" / "dev-values.yaml").read_text())
        self.assertEqual(dev["environment"], "development")
        self.assertNotIn("issuer", dev.get("auth", {}))
        _, objects = rendered("dev")
        for component in ("ingress", "consumer"):
            self.assertEqual(one(objects, "ConfigMap", f"-{component}")["data"]["COUPON_ENV"], "development")
        self.assertNotIn("JWT_ISSUER", one(objects, "ConfigMap", "-ingress")["data"])
        # Only that file is development; every other scenario is production.
        for name in scenarios():
            profile = one(rendered(name)[1], "ConfigMap", "-ingress")["data"]["COUPON_ENV"]
            self.assertEqual(profile, "development" if name == "dev" else "production", name)

    def test_notes_render(self):
        for name in scenarios():
            notes = rendered(name)[0]["coupon-issuance/templates/NOTES.txt"]
            self.assertIn("kubectl", notes)
            self.assertNotIn("<no value>", notes)
        for name in scenarios():
            for path, text in rendered(name)[0].items():
                self.assertNotIn("<no value>", text, f"{name}: {path}")


# ---------------------------------------------------------------------------------------------
# The plain manifests

class KustomizeTest(Properties, unittest.TestCase):

    def build(self, path: str) -> list[dict]:
        return kustomize(path)

    def test_kubectl_has_kustomize_v5(self):
        out = subprocess.run([kubectl(), "version", "--client"], check=True, capture_output=True, text=True).stdout
        self.assertRegex(out, r"(?m)^Kustomize Version: v5\.", out)

    def test_builds_are_valid(self):
        for path in ("k8s/base", "k8s/overlays/production", "k8s/overlays/development", "k8s/topics"):
            for obj in self.build(path):
                with self.subTest(build=path, object=obj["metadata"]["name"], kind=obj["kind"]):
                    validate(obj)

    def test_production_overlay_properties(self):
        objects = self.build("k8s/overlays/production")
        for obj in objects:
            if obj["kind"] != "Namespace":
                self.assertEqual(obj["metadata"].get("namespace"), "coupon", obj["metadata"]["name"])
        self.assertEqual(one(objects, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted")
        config = {}
        for component in ("ingress", "consumer"):
            (cm,) = [c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith(f"coupon-{component}-")]
            config[component] = cm["data"]
            deployment = one(objects, "Deployment", f"coupon-{component}")
            (container,) = pod_spec(deployment)["containers"]
            self.assertEqual(container["envFrom"][0]["configMapRef"]["name"], cm["metadata"]["name"],
                             "pods must reference the hash-named ConfigMap")
            self.assertTrue(container["image"].endswith("/coupon-issuance:0.1.0"), container["image"])
            self.assertRegex(cm["data"]["KAFKA_BROKERS"], r"^b-1\.coupon\..*\.amazonaws\.com:9096,")
            self.assert_probes(deployment)
            self.assert_shutdown_fits(deployment, cm["data"])
        for obj in workloads(objects):
            self.assert_restricted(obj)
        self.assert_secrets_as_files(objects)
        self.assert_selectors_match(objects)
        self.assert_metrics_on_the_ops_port(objects, config["ingress"])
        self.assert_routes(one(objects, "Ingress"), PUBLIC_PREFIXES)
        self.assertEqual(one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"], 4)
        self.assertIn("eks.amazonaws.com/role-arn", one(objects, "ServiceAccount")["metadata"]["annotations"])
        alb = one(objects, "Ingress")["metadata"]["annotations"]
        self.assertEqual(alb["alb.ingress.kubernetes.io/target-type"], "ip")
        drain = (int(config["ingress"]["SHUTDOWN_DELAY_MS"]) + int(config["ingress"]["SHUTDOWN_TIMEOUT_MS"])) // 1000
        self.assertIn(f"deregistration_delay.timeout_seconds={drain}", alb["alb.ingress.kubernetes.io/target-group-attributes"])

    def test_production_profile_needs_issuer_and_audience(self):
        """Only the development overlay sets COUPON_ENV=development; any other build is
        production and must carry JWT_ISSUER and JWT_AUDIENCE (the base alone does not)."""
        production = self.build("k8s/overlays/production")
        self.assertEqual(profile_problems(production), [])
        self.assertEqual({c["data"]["COUPON_ENV"] for c in find(production, "ConfigMap")}, {"production"})
        base = self.build("k8s/base")
        self.assertEqual(sorted(p.split(": ")[1] for p in profile_problems(base)),
                         ["JWT_AUDIENCE is required in production", "JWT_ISSUER is required in production"])
        development = self.build("k8s/overlays/development")
        self.assertEqual(profile_problems(development), [])
        self.assertEqual({c["data"]["COUPON_ENV"] for c in find(development, "ConfigMap")}, {"development"})
        self.assertFalse(find(development, "Ingress"), "a development build faces no one")
        for path in sorted((ROOT / "k8s").rglob("*")):
            if path.suffix in (".yaml", ".env") and "COUPON_ENV=development" in path.read_text():
                self.assertEqual(path.parent.name, "development", f"{path} sets the development profile")

    def test_same_settings_as_the_chart(self):
        """The plain manifests deploy what the chart deploys with the managed services' values
        (the environment of each workload: test_managed.py)."""
        base = self.build("k8s/overlays/production")
        _, chart_objects = rendered("managed-aws")
        for component in ("ingress", "consumer"):
            plain = pod_spec(one(base, "Deployment", f"coupon-{component}"))
            helm_spec = pod_spec(one(chart_objects, "Deployment", f"-{component}"))
            for field in ("terminationGracePeriodSeconds",):
                self.assertEqual(plain[field], helm_spec[field], f"{component}: {field}")
            for field in ("resources", "livenessProbe", "readinessProbe", "startupProbe", "command"):
                self.assertEqual(plain["containers"][0][field], helm_spec["containers"][0][field], f"{component}: {field}")

    def test_topics_match_the_deployment(self):
        topics = {t["spec"]["topicName"]: t for t in self.build("k8s/topics")}
        values = chart().values["kafka"]
        self.assertEqual(set(topics), set(values["topics"].values()))
        requested = topics[values["topics"]["requested"]]["spec"]
        self.assertEqual(requested["partitions"], values["requestedPartitions"])
        for name, t in topics.items():
            # The Topic Operator of cluster "coupon" (in namespace kafka) picks up only these.
            self.assertEqual(t["metadata"]["labels"].get("strimzi.io/cluster"), "coupon", name)
            self.assertEqual(t["metadata"]["namespace"], "kafka", name)
            self.assertGreaterEqual(t["spec"]["replicas"], 3, name)
            self.assertEqual(int(t["spec"]["config"]["min.insync.replicas"]), 2, name)
            self.assertIn("retention.ms", t["spec"]["config"], name)
        # The topic names are the ones the services default to.
        source = (ROOT / "schema" / "src" / "topics.rs").read_text()
        for name in topics:
            self.assertIn(f'"{name}"', source)


class OperatorSchemaTest(unittest.TestCase):
    """The vendored CRD schemas judge the operators' kinds: each is used, and each refuses an
    unknown or mistyped field as the API server would."""

    def objects(self) -> dict[str, dict]:
        found = {}
        for obj in rendered("full")[1] + rendered("keda")[1] + kustomize("k8s/topics"):
            if crd_schema(obj["apiVersion"], obj["kind"]) is not None:
                found.setdefault(obj["kind"], obj)
        return found

    def test_every_vendored_schema_is_used(self):
        used = {f"{o['apiVersion'].split('/')[0]}/{o['kind'].lower()}_{o['apiVersion'].split('/')[1]}.json"
                for o in self.objects().values()}
        vendored = {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*.json")}
        self.assertEqual(used, vendored)

    def test_unknown_and_mistyped_fields_are_refused(self):
        breakages = {
            "unknown spec field": lambda o: o["spec"].__setitem__("replica", 3),
            "unknown top-level field": lambda o: o.__setitem__("specs", {}),
            "unknown metadata field": lambda o: o["metadata"].__setitem__("label", {}),
            "mistyped spec field": lambda o: o["spec"].__setitem__(next(iter(o["spec"])), True),
        }
        for kind, obj in self.objects().items():
            validate(obj)
            for name, breakage in breakages.items():
                broken = copy.deepcopy(obj)
                breakage(broken)
                with self.subTest(kind=kind, breakage=name), self.assertRaises(AssertionError):
                    validate(broken)


class ComposeTest(unittest.TestCase):

    def test_compose_file_runs_the_services_unprivileged(self):
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        services = compose["services"]
        for name in ("ingress", "consumer", "setup"):
            self.assertTrue(services[name]["read_only"], name)
            self.assertEqual(services[name]["user"], "10001:10001", name)
        self.assertIn("couponctl migrate", " ".join(services["setup"]["command"]))


if __name__ == "__main__":
    unittest.main()
