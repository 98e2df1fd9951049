//! The PromQL the chart ships, parsed as Prometheus parses it: every alert rule's `expr` after
//! the chart's substitutions, and every dashboard query after Grafana's variables. A syntax slip
//! fails here rather than in a Prometheus or Grafana after a release.

use std::path::PathBuf;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const NAMESPACE: &str = "coupons";
const RELEASE: &str = "coupon-issuance";

fn read(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../helm/coupon-issuance")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(file: &str) -> Yaml {
    YamlLoader::load_from_str(&read(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .remove(0)
}

/// Parses `expr`, naming where it came from, and refuses a placeholder left unreplaced.
fn assert_parses(origin: &str, expr: &str) {
    assert!(
        !expr.contains('$') && !expr.contains("__"),
        "{origin}: a placeholder without a value in {expr:?}"
    );
    if let Err(error) = promql_parser::parser::parse(expr) {
        panic!("{origin}: {error}\n{expr}");
    }
}

/// The alert rules as `templates/prometheusrule.yaml` renders them with the chart's defaults
/// (the release's selector, each component's selector, the thresholds).
#[test]
fn every_alert_rule_expression_parses() {
    let values = yaml("values.yaml");
    let rule_values = &values["monitoring"]["prometheusRule"];
    let thresholds = rule_values["thresholds"]
        .as_hash()
        .expect("monitoring.prometheusRule.thresholds");
    let selector = format!(r#"namespace="{NAMESPACE}",job=~"{RELEASE}-(ingress|consumer)""#);
    let one = |component: &str| format!(r#"namespace="{NAMESPACE}",job="{RELEASE}-{component}""#);
    let rules = yaml("files/prometheus-rules.yaml");
    let mut parsed = 0;
    for group in rules["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let mut expr = rule["expr"]
                .as_str()
                .expect("expr")
                .replace("__SELECTOR__", &selector)
                .replace("__INGRESS__", &one("ingress"))
                .replace("__CONSUMER__", &one("consumer"));
            for (key, value) in thresholds {
                let value = match value {
                    Yaml::Integer(n) => n.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => panic!("threshold {key:?} is not a number: {other:?}"),
                };
                let key = key.as_str().expect("threshold names are strings");
                expr = expr.replace(&format!("__{key}__"), &value);
            }
            assert_parses(&format!("alert {name}"), &expr);
            parsed += 1;
        }
    }
    assert!(parsed >= 10, "only {parsed} alert rules found");
}

/// Every panel's queries, nested rows included, with the dashboard's variables as Grafana
/// fills them in for one release.
#[test]
fn every_dashboard_query_parses() {
    let dashboard: Value = serde_json::from_str(&read("files/dashboard.json")).unwrap();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    let mut parsed = 0;
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        let title = panel["title"].as_str().unwrap_or("untitled");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "30s")
                .replace("$__range", "1h")
                .replace("${namespace}", NAMESPACE)
                .replace("$namespace", NAMESPACE)
                .replace("${release}", RELEASE)
                .replace("$release", RELEASE);
            assert_parses(&format!("panel {title:?}"), &expr);
            parsed += 1;
        }
    }
    assert!(parsed >= 10, "only {parsed} dashboard queries found");
}
