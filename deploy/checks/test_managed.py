"""Managed services (MSK, ElastiCache, RDS) in the chart and the production overlay.

- The chart's `ci/managed-aws-values.yaml` and `k8s/overlays/production` are checked for the same
  wiring: each TLS and credential setting present with the right value or Secret reference, every
  file setting (CA bundles, secret files) on a mounted volume that holds exactly that key, egress
  open to the brokers' TLS port and (webhooks) 443, no secret value in a ConfigMap.
- `helm test` carries what `couponctl demo` needs (Kafka settings, token issuer and audience).
- Every setting a workload is given is one its binary reads (searched in the Rust sources), so a
  renamed setting fails here instead of being ignored at run time.
- The values that would leave a connection in plaintext or a setting silently unused, and the
  ALB idle timeout above the ingress's keep-alive bound, fail at render time.

Run with dev/check-deploy (which runs test_deploy.py too).
"""

from __future__ import annotations

import copy
import re
import unittest
from pathlib import Path

import helm_python as helm

from deploy.checks import test_deploy as base

ROOT = base.ROOT
CA_BUNDLES = "coupon-ca-bundles"


def file_from(kind: str, name: str, key: str) -> tuple:
    return ("file", kind, name, key)


# What each dependency's wiring must be, with the names ci/managed-aws-values.yaml and the
# production overlay use. ("value", text), ("secret", Secret, key) for a secretKeyRef, or
# file_from(kind, object, key) for a path whose mounted volume item is that key.
MANAGED_WIRING = {
    "database": {
        "DATABASE_URL_FILE": file_from("secret", "coupon-database", "url"),
        "PGSSLMODE": ("value", "verify-full"),
        "PGSSLROOTCERT": file_from("configMap", CA_BUNDLES, "rds-global-bundle.pem"),
    },
    "redis": {
        "REDIS_URL_FILE": file_from("secret", "coupon-redis", "url"),
        "REDIS_CLUSTER": ("value", "true"),
        "REDIS_CA_FILE": file_from("configMap", CA_BUNDLES, "amazon-root-cas.pem"),
    },
    "kafka": {
        "KAFKA_PROPERTY_security.protocol": ("value", "SASL_SSL"),
        "KAFKA_PROPERTY_sasl.mechanism": ("value", "SCRAM-SHA-512"),
        "KAFKA_PROPERTY_ssl.ca.location": file_from("configMap", CA_BUNDLES, "amazon-root-cas.pem"),
        "KAFKA_PROPERTY_sasl.username": ("secret", "coupon-kafka", "username"),
        "KAFKA_PROPERTY_sasl.password": ("secret", "coupon-kafka", "password"),
    },
}
# Which workload (by its component label) talks to which dependency.
USES = {
    "ingress": ("database", "redis", "kafka"),
    "consumer": ("database", "kafka"),
    "migrate": ("database",),
    "topics": ("kafka",),
    "test": ("kafka",),
}
MSK_TLS_PORT = 9096

# Where each binary's settings are declared (clap `env = "NAME"` or a quoted name).
CRATES = {
    "coupon-ingress": ("ingress", "gate", "service", "schema"),
    "coupon-consumer": ("consumer", "service", "schema"),
    "couponctl": ("couponctl", "gate", "service", "schema"),
}
# Read by libraries rather than by name in our sources.
READ_BY_LIBRARIES = ("OTEL_",)
PASS_THROUGH = "KAFKA_PROPERTY_"

CREDENTIALS_IN_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.I)
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|sasl\.password|\.pem$)", re.I)


# ---------------------------------------------------------------------------------------------
# What a container starts with

def config_map(objects: list[dict], name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return found


def environment(objects: list[dict], container: dict) -> dict[str, tuple]:
    """The container's variables as Kubernetes sets them: its ConfigMaps (envFrom), then its env
    entries. Each as ("value", text), ("secret", name, key), ("configMap", name, key) or
    ("field", path)."""
    result: dict[str, tuple] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]  # the deployments use nothing else
        for key, value in config_map(objects, ref["name"]).get("data", {}).items():
            result[key] = ("value", value)
    for entry in container.get("env", []):
        if "value" in entry:
            result[entry["name"]] = ("value", entry["value"])
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            result[entry["name"]] = ("secret", ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = config_map(objects, ref["name"]).get("data", {})
            result[entry["name"]] = ("value", data[ref["key"]])
        elif "fieldRef" in source:
            result[entry["name"]] = ("field", source["fieldRef"]["fieldPath"])
        else:
            result[entry["name"]] = ("other", repr(source))
    return result


def file_source(spec: dict, container: dict, path: str) -> tuple | None:
    """Which Secret or ConfigMap key the file at `path` is, through the container's mounts."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix):]
        (volume,) = [v for v in spec.get("volumes", []) if v["name"] == mount["name"]]
        for kind, name_field in (("secret", "secretName"), ("configMap", "name")):
            if kind in volume:
                source = volume[kind]
                items = source.get("items")
                if items is None:
                    return file_from(kind, source[name_field], relative)
                keys = [i["key"] for i in items if i["path"] == relative]
                return file_from(kind, source[name_field], keys[0]) if keys else None
    return None


def resolved(objects: list[dict], obj: dict, container: dict) -> dict[str, tuple]:
    """`environment`, with each path-valued setting (a *_FILE, PGSSLROOTCERT, a property ending in
    .location) replaced by the file's source, or ("missing file", path) when nothing mounts it."""
    spec = base.pod_spec(obj)
    result = {}
    for name, value in environment(objects, container).items():
        if value[0] == "value" and is_path_setting(name):
            value = file_source(spec, container, value[1]) or ("missing file", value[1])
        result[name] = value
    return result


def is_path_setting(name: str) -> bool:
    return (name.endswith("_FILE") and name != "COUPON_CONFIG_FILE") or name == "PGSSLROOTCERT" \
        or (name.startswith(PASS_THROUGH) and name.endswith(".location"))


def by_component(objects: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Each workload by its component label, with its one container."""
    found = {}
    for obj in base.workloads(objects):
        component = obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] \
            if obj["kind"] != "Pod" else obj["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = base.pod_spec(obj)["containers"]
        found[component] = (obj, container)
    return found


def egress_ports(objects: list[dict], obj: dict) -> set[int]:
    """The TCP ports the workload's pods may connect to (the NetworkPolicies selecting them)."""
    labels = obj["metadata"]["labels"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]["labels"]
    ports = set()
    for policy in base.find(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or not spec["podSelector"]["matchLabels"].items() <= labels.items():
            continue
        for rule in spec.get("egress", []):
            ports |= {p["port"] for p in rule.get("ports", []) if p.get("protocol", "TCP") == "TCP"}
    return ports


def settings_read_by(binary: str) -> str:
    text = []
    for crate in CRATES[binary]:
        text += [p.read_text() for p in sorted((ROOT / crate / "src").rglob("*.rs"))]
    return "\n".join(text)


class ManagedProperties:
    """Assertions over a set of objects (a chart rendering or a kustomize build)."""

    def assert_managed_wiring(self, objects: list[dict], components: tuple[str, ...]) -> None:
        workloads = by_component(objects)
        for component in components:
            obj, container = workloads[component]
            env = resolved(objects, obj, container)
            for dependency in USES[component]:
                for name, expected in MANAGED_WIRING[dependency].items():
                    self.assertEqual(env.get(name), expected, f"{component}: {name}")
            if "kafka" in USES[component]:
                self.assertIn(MSK_TLS_PORT, egress_ports(objects, obj), f"{component}: egress to MSK")
                self.assertTrue(env["KAFKA_BROKERS"][1].endswith(f":{MSK_TLS_PORT}"), component)
            if "database" in USES[component] and component != "migrate":
                self.assertIn(5432, egress_ports(objects, obj), component)
            for name, value in env.items():
                self.assertNotEqual(value[0], "missing file", f"{component}: {name}={value[1]} is on no mounted volume")

    def assert_no_secret_in_config(self, objects: list[dict]) -> None:
        """No ConfigMap and no plain env value holds a secret: names that say so come from
        Secrets (secretKeyRef or a mounted file), and no URL carries credentials."""
        for cm in base.find(objects, "ConfigMap"):
            for key, value in cm.get("data", {}).items():
                if key.endswith(".json") or key.endswith(".yaml"):
                    continue  # the dashboard and rules
                self.assertNotRegex(key, SECRET_NAME, f"ConfigMap {cm['metadata']['name']}: {key}")
                self.assertNotRegex(value, CREDENTIALS_IN_URL, f"ConfigMap {cm['metadata']['name']}: {key}")
        for obj in base.workloads(objects):
            for c in base.pod_spec(obj)["containers"]:
                for entry in c.get("env", []):
                    if SECRET_NAME.search(entry["name"]) and not is_path_setting(entry["name"]):
                        self.assertNotIn("value", entry, f"{obj['metadata']['name']}: {entry['name']} as a plain value")
                    self.assertNotRegex(entry.get("value", ""), CREDENTIALS_IN_URL, entry["name"])

    def assert_brokers_reachable(self, objects: list[dict]) -> None:
        """Every workload with KAFKA_BROKERS may connect to each port they name."""
        for component, (obj, container) in by_component(objects).items():
            brokers = environment(objects, container).get("KAFKA_BROKERS")
            if brokers:
                ports = {int(b.rsplit(":", 1)[1]) for b in brokers[1].split(",")}
                self.assertLessEqual(ports, egress_ports(objects, obj), f"{component}: egress to the brokers")

    def assert_settings_are_read(self, objects: list[dict]) -> None:
        """Every variable a workload gets is a setting of its binary (or a librdkafka property),
        so a misspelt or renamed setting cannot be silently ignored."""
        for component, (obj, container) in by_component(objects).items():
            binary = Path(container["command"][0]).name
            source = settings_read_by(binary)
            for name in environment(objects, container):
                if name.startswith(PASS_THROUGH) or name.startswith(READ_BY_LIBRARIES):
                    continue
                read = f'"{name}"' in source or (name.endswith("_FILE") and f'"{name[:-5]}"' in source)
                self.assertTrue(read, f"{component}: {binary} reads no setting {name}")

    def assert_alb_idle_below_keep_alive(self, objects: list[dict]) -> None:
        ingress_env = environment(objects, by_component(objects)["ingress"][1])
        keep_alive_ms = int(ingress_env.get("INGRESS_HEADER_READ_TIMEOUT_MS", ("value", "75000"))[1])
        for ingress in base.find(objects, "Ingress"):
            attributes = ingress["metadata"]["annotations"].get("alb.ingress.kubernetes.io/load-balancer-attributes", "")
            idle = re.search(r"idle_timeout.timeout_seconds=(\d+)", attributes)
            if idle:
                self.assertLess(int(idle.group(1)) * 1000, keep_alive_ms, ingress["metadata"]["name"])


# ---------------------------------------------------------------------------------------------

def render(values: dict) -> list[dict]:
    return base.objects_of(base.render(values))


def managed(**changes) -> dict:
    values = copy.deepcopy(base.scenarios()["managed-aws"])
    for path, value in changes.items():
        node = values
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return values


class ChartManagedTest(ManagedProperties, unittest.TestCase):

    def test_managed_aws_wiring(self):
        _, objects = base.rendered("managed-aws")
        self.assert_managed_wiring(objects, ("ingress", "consumer", "migrate", "topics"))
        self.assert_no_secret_in_config(objects)
        consumer_obj, consumer = by_component(objects)["consumer"]
        env = resolved(objects, consumer_obj, consumer)
        self.assertEqual(env["WEBHOOK_URL"], ("value", "https://hooks.example.com/coupons"))
        self.assertEqual(env["WEBHOOK_SECRET_FILE"], file_from("secret", "coupon-webhook", "secret"))
        self.assertIn(443, egress_ports(objects, consumer_obj), "webhook deliveries")
        self.assertNotIn(443, egress_ports(objects, by_component(objects)["ingress"][0]), "only the consumer calls webhooks")
        topics = environment(objects, by_component(objects)["topics"][1])
        self.assertEqual((topics["TOPIC_REPLICATION"], topics["TOPIC_MIN_INSYNC_REPLICAS"]), (("value", "3"), ("value", "2")))
        # The helm test with the same release in hs256 mode reads the events over SASL_SSL too.
        objects = render(managed(auth__mode="hs256"))
        self.assert_managed_wiring(objects, ("test",))

    def test_every_scenario_is_wired_safely(self):
        for name in base.scenarios():
            _, objects = base.rendered(name)
            with self.subTest(scenario=name):
                self.assert_no_secret_in_config(objects)
                self.assert_brokers_reachable(objects)
                self.assert_settings_are_read(objects)
                self.assert_alb_idle_below_keep_alive(objects)
                for component, (obj, container) in by_component(objects).items():
                    for setting, value in resolved(objects, obj, container).items():
                        self.assertNotEqual(value[0], "missing file", f"{component}: {setting}")

    def test_helm_test_carries_what_demo_needs(self):
        scenarios = {name: base.rendered(name)[1] for name in ("full", "nginx", "dev")}
        scenarios["managed-aws, hs256"] = render(managed(auth__mode="hs256"))
        for name, objects in scenarios.items():
            with self.subTest(scenario=name):
                workloads = by_component(objects)
                test_obj, test = workloads["test"]
                env = resolved(objects, test_obj, test)
                consumer = resolved(objects, *workloads["consumer"])
                ingress = resolved(objects, *workloads["ingress"])
                for key in ("KAFKA_BROKERS", "TOPIC_CAMPAIGN_EVENTS"):
                    self.assertEqual(env.get(key), consumer[key], key)
                for key in ("JWT_ISSUER", "JWT_AUDIENCE"):
                    self.assertEqual(env.get(key), ingress.get(key), f"tokens need the ingress's {key}")
                properties = lambda e: {k: v for k, v in e.items() if k.startswith(PASS_THROUGH)}
                self.assertEqual(properties(env), properties(consumer), "the consumer's Kafka settings")
                self.assertEqual(env["JWT_HS256_SECRET_FILE"], ingress["JWT_HS256_SECRET_FILE"])
                service = base.one(objects, "Service", "-ingress")
                self.assertEqual(env["INGRESS_URL"][1], f"http://{service['metadata']['name']}.{base.NAMESPACE}.svc:"
                                 f"{service['spec']['ports'][0]['port']}")
                self.assertIn(MSK_TLS_PORT if name.startswith("managed") else 9092, egress_ports(objects, test_obj))
                self.assert_settings_are_read(objects)

    def test_refuses_what_would_be_plaintext_or_ignored(self):
        refused = {
            "CA without TLS": (managed(kafka__properties={"security.protocol": "PLAINTEXT"}), "kafka.ca is set"),
            "SASL secret without SASL": (managed(kafka__properties={"security.protocol": "SSL"}), "kafka.sasl.existingSecret"),
            "CA from two places": (managed(kafka__ca={"configMap": "a", "secret": "b", "key": "ca.pem"}), "not both"),
            "CA twice": (managed(kafka__properties={"security.protocol": "SASL_SSL", "ssl.ca.location": "/x"}), "both set"),
            "no certificate check": (managed(kafka__properties={"security.protocol": "SASL_SSL", "enable.ssl.certificate.verification": False}), "refused in production"),
            "no host name check": (managed(kafka__properties={"security.protocol": "SASL_SSL", "ssl.endpoint.identification.algorithm": "none"}), "refused in production"),
            "Redis CA on redis://": (managed(redis__existingSecret="", redis__url="redis://cache:6379"), "not rediss://"),
            "database CA with sslmode disable": (managed(database__sslMode="disable"), "sslMode is disable"),
            "webhook without a secret": (managed(webhook__existingSecret=""), "webhook.existingSecret is required"),
            "webhook URL twice": (managed(webhook__urlKey="url"), "both set"),
            "webhook over http": (managed(webhook__url="http://hooks.example.com/c"), "https:// in production"),
            "webhook secret, no webhook": (managed(webhook__url=""), "no webhook to sign for"),
            "min.insync.replicas above replication": (managed(kafka__createTopics={"enabled": True, "replication": 2, "minInsyncReplicas": 3}), "must not exceed"),
            "ALB idle at the keep-alive bound": (managed(expose__alb__idleTimeoutSeconds=75), "must be below"),
            "extra variable the chart sets": (managed(consumer__extraEnv=[{"name": "KAFKA_PROPERTY_sasl.username", "value": "x"}]), "set by the chart"),
            "extra variable in the ConfigMap": (managed(ingress__extraEnv=[{"name": "KAFKA_LINGER_MS", "value": "9"}]), "set by the chart"),
            "extra volume named like the chart's": (managed(ingress__extraVolumes=[{"name": "kafka-ca", "emptyDir": {}}]), "the chart's"),
        }
        for name, (values, message) in refused.items():
            with self.subTest(name):
                with self.assertRaisesRegex(helm.HelmError, re.escape(message)):
                    base.render(values)
        # The same settings, made consistent, render.
        base.render(managed(expose__alb__idleTimeoutSeconds=120, ingress__env={"INGRESS_HEADER_READ_TIMEOUT_MS": 150000}))
        base.render(managed(webhook__url="", webhook__urlKey="url"))
        base.render(managed(environment="development", webhook__url="http://hooks.coupon-dev.svc/c"))

    def test_schema_refuses_secrets_and_owned_settings(self):
        bad = {
            "webhook secret in the ConfigMap": {"consumer": {"env": {"WEBHOOK_SECRET": "0123456789abcdef-secret"}}},
            "webhook URL through env": {"consumer": {"env": {"WEBHOOK_URL": "https://h.example.com"}}},
            "Kafka password through env": {"ingress": {"env": {"KAFKA_PROPERTY_SASL_PASSWORD": "p"}}},
            "sslmode through env": {"consumer": {"env": {"PGSSLMODE": "disable"}}},
            "cluster through env": {"ingress": {"env": {"REDIS_CLUSTER": "true"}}},
            "Kafka password as a property": {"kafka": {"properties": {"sasl.password": "p"}}},
            "guarantee property": {"kafka": {"properties": {"acks": "1"}}},
            "unknown protocol": {"kafka": {"properties": {"security.protocol": "TLS"}}},
            "sslmode unknown": {"database": {"sslMode": "prefer-ish"}},
            "CA without key": {"database": {"ca": {"configMap": "x", "key": ""}}},
            "extra variable owned": {"ingress": {"extraEnv": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}]}},
            "extra variable, value and valueFrom": {"ingress": {"extraEnv": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}},
            "keep-alive out of range": {"ingress": {"env": {"INGRESS_HEADER_READ_TIMEOUT_MS": 700000}}},
            "webhook egress without ports": {"webhook": {"egress": {"ports": []}}},
        }
        for name, values in bad.items():
            with self.subTest(name):
                with self.assertRaises(helm.HelmValuesError, msg=f"schema accepted: {name}"):
                    base.chart().validate_schema({**base.PRODUCTION, **values})

    def test_extra_env_and_volumes(self):
        extras = {
            "extraEnv": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.pod.name=$(POD_NAME)"},
                {"name": "KAFKA_PROPERTY_sasl.oauthbearer.client.secret",
                 "valueFrom": {"secretKeyRef": {"name": "coupon-oauth", "key": "secret"}}},
            ],
            "extraVolumes": [{"name": "client-cert", "secret": {"secretName": "coupon-kafka-client"}}],
            "extraVolumeMounts": [{"name": "client-cert", "mountPath": "/etc/coupon/client", "readOnly": True}],
        }
        objects = render({**base.PRODUCTION, "ingress": extras, "consumer": extras})
        for component in ("ingress", "consumer"):
            obj, container = by_component(objects)[component]
            base.validate(obj)
            env = environment(objects, container)
            self.assertEqual(env["POD_NAME"], ("field", "metadata.name"))
            self.assertEqual(env["KAFKA_PROPERTY_sasl.oauthbearer.client.secret"], ("secret", "coupon-oauth", "secret"))
            self.assertEqual(file_source(base.pod_spec(obj), container, "/etc/coupon/client/tls.crt"),
                             file_from("secret", "coupon-kafka-client", "tls.crt"))
            self.assertIn("tmp", {v["name"] for v in base.pod_spec(obj)["volumes"]}, "the chart's volumes stay")

    def test_image_digest_only_for_the_chart_wide_image(self):
        digest, own = "sha256:" + "a" * 64, "sha256:" + "b" * 64
        values = {**base.PRODUCTION, "image": {"repository": "reg/coupon", "tag": "1.0", "digest": digest},
                  "ingress": {"image": {"repository": "reg/coupon-ingress"}}}
        images = lambda objs: {c: base.pod_spec(o)["containers"][0]["image"] for c, (o, _) in by_component(objs).items()}
        found = images(render(values))
        self.assertEqual(found["consumer"], f"reg/coupon@{digest}")
        self.assertEqual(found["ingress"], "reg/coupon-ingress:1.0", "another image: never the chart-wide digest")
        self.assertEqual(found["migrate"], "reg/coupon-ingress:1.0", "couponctl comes from the ingress image")
        values["ingress"]["image"]["digest"] = own
        self.assertEqual(images(render(values))["ingress"], f"reg/coupon-ingress@{own}")


class KustomizeManagedTest(ManagedProperties, unittest.TestCase):

    def build(self, path: str) -> list[dict]:
        return base.kustomize(path)  # kubectl kustomize

    def test_production_overlay_is_wired_for_managed_services(self):
        objects = self.build("k8s/overlays/production")
        self.assert_managed_wiring(objects, ("ingress", "consumer", "migrate", "topics"))
        self.assert_no_secret_in_config(objects)
        self.assert_brokers_reachable(objects)
        self.assert_settings_are_read(objects)
        self.assert_alb_idle_below_keep_alive(objects)
        for obj in objects:
            base.validate(obj)

    def test_same_environment_as_the_chart(self):
        """The production overlay starts each workload with what the chart's managed-aws
        values give it (where the chart puts it in a ConfigMap or the container, alike)."""
        plain = self.build("k8s/overlays/production")
        _, chart = base.rendered("managed-aws")
        optional = re.compile(r"^WEBHOOK_")  # the chart's scenario adds a webhook receiver
        for component in ("ingress", "consumer", "migrate", "topics"):
            with self.subTest(component=component):
                ours = resolved(plain, *by_component(plain)[component])
                theirs = {k: v for k, v in resolved(chart, *by_component(chart)[component]).items()
                          if not optional.match(k)}
                self.assertEqual(ours, theirs)


if __name__ == "__main__":
    unittest.main()
