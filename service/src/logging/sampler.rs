//! The trace sampler, from the standard `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
//!
//! - `OTEL_TRACES_SAMPLER`: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`
//!   (the default when unset or empty), `parentbased_always_off` or `parentbased_traceidratio`;
//!   case-insensitive.
//! - `OTEL_TRACES_SAMPLER_ARG`: the ratio of the `traceidratio` samplers, from 0 to 1; 1 when
//!   unset or empty. Ignored by the other samplers.
//!
//! The SDK reads the same variables, but silently falls back to `parentbased_always_on` on a
//! value it does not know and takes any float as a ratio; here either is an error, reported at
//! start-up, and trace export stays off until it is fixed.

use opentelemetry_sdk::trace::Sampler;

/// The sampler the environment asks for.
pub(super) fn from_env() -> Result<Sampler, String> {
    let var = |name| std::env::var(name).ok();
    parse(
        var("OTEL_TRACES_SAMPLER").as_deref(),
        var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
    )
}

/// The sampler named `kind`, with `arg` as its ratio where it takes one.
fn parse(kind: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
    let kind = kind.map(str::trim).filter(|k| !k.is_empty());
    let ratio = || -> Result<Sampler, String> {
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        match arg.map(str::parse::<f64>) {
            None => Ok(Sampler::TraceIdRatioBased(1.0)),
            Some(Ok(ratio)) if (0.0..=1.0).contains(&ratio) => {
                Ok(Sampler::TraceIdRatioBased(ratio))
            }
            Some(_) => Err(format!(
                "OTEL_TRACES_SAMPLER_ARG {:?} is not a ratio from 0 to 1",
                arg.unwrap_or_default()
            )),
        }
    };
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match kind.map(str::to_ascii_lowercase).as_deref() {
        None | Some("parentbased_always_on") => Ok(parent_based(Sampler::AlwaysOn)),
        Some("parentbased_always_off") => Ok(parent_based(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => ratio().map(parent_based),
        Some("always_on") => Ok(Sampler::AlwaysOn),
        Some("always_off") => Ok(Sampler::AlwaysOff),
        Some("traceidratio") => ratio(),
        Some(_) => Err(format!(
            "OTEL_TRACES_SAMPLER {:?} is not supported (always_on, always_off, traceidratio, \
             parentbased_always_on, parentbased_always_off, parentbased_traceidratio)",
            kind.unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(kind: Option<&str>, arg: Option<&str>) -> String {
        match parse(kind, arg) {
            Ok(sampler) => format!("{sampler:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn unset_is_parent_based_always_on() {
        let default = parsed(Some("parentbased_always_on"), None);
        assert!(default.starts_with("ParentBased(AlwaysOn"), "{default}");
        assert_eq!(parsed(None, None), default);
        assert_eq!(parsed(Some(" "), Some("0.5")), default);
    }

    #[test]
    fn every_standard_sampler_is_understood() {
        for (kind, arg, want) in [
            ("always_on", None, "AlwaysOn"),
            ("ALWAYS_OFF", None, "AlwaysOff"),
            ("traceidratio", Some("0.25"), "TraceIdRatioBased(0.25)"),
            ("traceidratio", None, "TraceIdRatioBased(1.0)"),
            ("traceidratio", Some(""), "TraceIdRatioBased(1.0)"),
            (
                "parentbased_always_off",
                Some("0.3"),
                "ParentBased(AlwaysOff",
            ),
            (
                " parentbased_traceidratio ",
                Some(" 0.01 "),
                "ParentBased(TraceIdRatioBased(0.01)",
            ),
            (
                "parentbased_traceidratio",
                Some("0"),
                "ParentBased(TraceIdRatioBased(0.0)",
            ),
        ] {
            let got = parsed(Some(kind), arg);
            assert!(got.starts_with(want), "{kind} {arg:?}: {got}");
        }
    }

    #[test]
    fn unknown_samplers_and_bad_ratios_are_errors() {
        for (kind, arg) in [
            ("xray", None),
            ("jaeger_remote", None),
            ("sometimes", None),
            ("traceidratio", Some("half")),
            ("traceidratio", Some("1.5")),
            ("parentbased_traceidratio", Some("-0.1")),
            ("parentbased_traceidratio", Some("NaN")),
        ] {
            let got = parsed(Some(kind), arg);
            assert!(
                got.starts_with("error: OTEL_TRACES_SAMPLER"),
                "{kind} {arg:?}: {got}"
            );
        }
    }
}
