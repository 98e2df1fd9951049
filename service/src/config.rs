//! Reading a binary's settings.
//!
//! Every setting is a clap argument with an environment variable. The value comes from, in
//! order of precedence:
//! 1. the command line (`--redis-url=…`);
//! 2. the environment (`REDIS_URL`);
//! 3. a file named by `NAME_FILE` (`REDIS_URL_FILE=/run/secrets/redis-url`), so Kubernetes
//!    secrets can be mounted as files; one trailing newline is ignored;
//! 4. the config file named by `--config` / `COUPON_CONFIG_FILE`: `NAME=value` lines with the
//!    environment names, `#` comments and blank lines ignored (the format of an env file);
//! 5. the default `--help` shows.
//!
//! Problems are listed all at once and name the setting, never its value.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, FromArgMatches};

use crate::Profile;

/// Checks a parsed configuration as a whole.
pub trait Validate {
    /// Every problem found, each naming its setting.
    fn validate(&self) -> Result<(), Vec<String>>;
}

/// Settings both services share: the profile, logs and the shutdown bound.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// `production` (the default: unsafe settings are refused at start) or `development`
    /// (a local stack: the development token secret and plaintext endpoints are allowed).
    #[arg(long = "coupon-env", env = "COUPON_ENV", value_enum, default_value_t = Profile::Production)]
    pub profile: Profile,

    /// Log line format: `json` (one object per line) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter in tracing's `EnvFilter` syntax, e.g. `info` or `info,ingress=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,

    /// After SIGTERM, the longest the process takes to finish in-flight work (requests, the
    /// producer flush, the batch being written, the offset commit) before it exits anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 20_000)]
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl Common {
    pub fn problems(&self, problems: &mut Vec<String>) {
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            problems.push("RUST_LOG is not a valid log filter".to_owned());
        }
        if !(100..=600_000).contains(&self.shutdown_timeout_ms) {
            problems.push("SHUTDOWN_TIMEOUT_MS must be between 100 and 600000".to_owned());
        }
    }
}

/// Why the settings could not be read.
#[derive(Debug)]
pub enum Failure {
    /// A command-line error, `--help` or `--version`: clap prints and exits.
    Clap(clap::Error),
    /// Every problem found in the settings.
    Invalid(Vec<String>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Clap(e) => write!(f, "{e}"),
            Failure::Invalid(problems) => write!(f, "{}", problems.join("; ")),
        }
    }
}

/// Reads the settings of the running process, or exits: status 2 with every problem listed,
/// or clap's own exit for `--help`.
pub fn load<C>(command: Command) -> C
where
    C: clap::Args + FromArgMatches + Validate,
{
    parse(command, std::env::args_os()).unwrap_or_else(|failure| exit(failure))
}

/// Ends the process over unreadable settings: clap's own exit for command-line errors and
/// `--help`, status 2 with every problem listed otherwise.
pub fn exit(failure: Failure) -> ! {
    match failure {
        Failure::Clap(e) => e.exit(),
        Failure::Invalid(problems) => {
            for problem in &problems {
                eprintln!("configuration error: {problem}");
            }
            std::process::exit(2);
        }
    }
}

/// Parses settings from `args` (first item is the program name), the process environment,
/// `NAME_FILE` files and the config file, then validates them.
pub fn parse<C, I, T>(command: Command, args: I) -> Result<C, Failure>
where
    C: clap::Args + FromArgMatches + Validate,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (matches, mut problems) = matches_and_problems(C::augment_args(command), args)?;
    let config = C::from_arg_matches(&matches).map_err(Failure::Clap)?;
    if let Err(more) = config.validate() {
        problems.extend(more);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(Failure::Invalid(problems))
    }
}

/// The matches of `command` (a whole command line interface, subcommands included) with every
/// setting's value taken from where it has the highest precedence. For a subcommand, its own
/// settings are the ones read from files.
pub fn parse_matches<I, T>(command: Command, args: I) -> Result<ArgMatches, Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (matches, problems) = matches_and_problems(command, args)?;
    if problems.is_empty() {
        Ok(matches)
    } else {
        Err(Failure::Invalid(problems))
    }
}

/// The matches, and the problems found reading files (the caller adds validation's).
fn matches_and_problems<I, T>(
    command: Command,
    args: I,
) -> Result<(ArgMatches, Vec<String>), Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = command.arg(
        Arg::new("config")
            .long("config")
            .env("COUPON_CONFIG_FILE")
            .global(true)
            .value_name("FILE")
            .help("Config file of NAME=value lines (environment names); the environment wins"),
    );
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let first = command
        .clone()
        .try_get_matches_from(&args)
        .map_err(Failure::Clap)?;
    // Values appended after the arguments belong to the subcommand, if one was given.
    let (settings, sources) = match first.subcommand() {
        Some((name, sub)) => match command.find_subcommand(name) {
            Some(subcommand) => (settings(subcommand), sub),
            None => (settings(&command), &first),
        },
        None => (settings(&command), &first),
    };
    let mut problems = Vec::new();
    let file = match sources.get_one::<String>("config") {
        Some(path) => read_config_file(path, &settings, &mut problems),
        None => BTreeMap::new(),
    };
    let indirect = indirect_values(sources, &settings, &file, &mut problems);
    let from_files = !indirect.is_empty();
    args.extend(indirect);
    let matches = match command.try_get_matches_from(&args) {
        Ok(matches) => matches,
        // The command line parsed before, so a value read from a file is bad. Name the
        // setting, not the value (it may be a secret).
        Err(e) if from_files => {
            let setting = e
                .get(clap::error::ContextKind::InvalidArg)
                .map(|arg| arg.to_string())
                .unwrap_or_else(|| "a setting".to_owned());
            problems.push(format!("{setting}: the value read from a file is invalid"));
            return Err(Failure::Invalid(problems));
        }
        Err(e) => return Err(Failure::Clap(e)),
    };
    Ok((matches, problems))
}

/// A setting: clap id, environment name, long flag.
struct Setting {
    id: String,
    env: String,
    long: String,
}

fn settings(command: &Command) -> Vec<Setting> {
    command
        .get_arguments()
        .filter(|arg| arg.get_id() != "config")
        .filter_map(|arg| {
            Some(Setting {
                id: arg.get_id().to_string(),
                env: arg.get_env()?.to_str()?.to_owned(),
                long: arg.get_long()?.to_owned(),
            })
        })
        .collect()
}

/// `--long=value` arguments for settings given neither on the command line nor in the
/// environment, from `NAME_FILE` or the config file.
fn indirect_values(
    first: &ArgMatches,
    settings: &[Setting],
    file: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Vec<OsString> {
    let mut extra = Vec::new();
    for setting in settings {
        if matches!(
            first.value_source(&setting.id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let file_key = format!("{}_FILE", setting.env);
        let secret_path = std::env::var(&file_key)
            .ok()
            .or_else(|| file.get(&file_key).cloned());
        let value = match secret_path {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(strip_newline(text)),
                Err(e) => {
                    problems.push(format!("{file_key}: cannot read {path}: {}", e.kind()));
                    None
                }
            },
            None => file.get(&setting.env).cloned(),
        };
        if let Some(value) = value {
            extra.push(format!("--{}={value}", setting.long).into());
        }
    }
    extra
}

fn strip_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Reads `NAME=value` lines. Unknown names are problems (a typo must not pass silently).
fn read_config_file(
    path: &str,
    settings: &[Setting],
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!(
                "COUPON_CONFIG_FILE: cannot read {path}: {}",
                e.kind()
            ));
            return BTreeMap::new();
        }
    };
    let known = |name: &str| {
        settings
            .iter()
            .any(|s| s.env == name || name.strip_suffix("_FILE") == Some(s.env.as_str()))
    };
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            problems.push(format!("{path}:{}: expected NAME=value", number + 1));
            continue;
        };
        let name = name.trim();
        if !known(name) {
            problems.push(format!("{path}:{}: unknown setting {name}", number + 1));
            continue;
        }
        values.insert(name.to_owned(), unquote(value.trim()).to_owned());
    }
    values
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args)]
    struct Sample {
        /// A number.
        #[arg(long, env = "SAMPLE_CONFIG_TEST_COUNT", default_value_t = 3)]
        count: u32,
        /// A secret.
        #[arg(long, env = "SAMPLE_CONFIG_TEST_SECRET", default_value = "")]
        secret: String,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), Vec<String>> {
            if self.count > 10 {
                Err(vec![
                    "SAMPLE_CONFIG_TEST_COUNT must be at most 10".to_owned(),
                ])
            } else {
                Ok(())
            }
        }
    }

    fn temp(name: &str, text: &str) -> String {
        let path =
            std::env::temp_dir().join(format!("service-config-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn the_config_file_fills_what_the_command_line_leaves() {
        let path = temp(
            "fills",
            "# comment\nSAMPLE_CONFIG_TEST_COUNT = 7\nSAMPLE_CONFIG_TEST_SECRET='s3'\n",
        );
        let sample: Sample = parse(Command::new("t"), ["t", "--config", &path]).unwrap();
        assert_eq!((sample.count, sample.secret.as_str()), (7, "s3"));
        let sample: Sample =
            parse(Command::new("t"), ["t", "--config", &path, "--count=2"]).unwrap();
        assert_eq!(sample.count, 2);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_secret_file_named_in_the_config_file_is_read() {
        let secret = temp("secret", "hunter22\n");
        let config = temp(
            "secret-conf",
            &format!("SAMPLE_CONFIG_TEST_SECRET_FILE={secret}\n"),
        );
        let sample: Sample = parse(Command::new("t"), ["t", "--config", &config]).unwrap();
        assert_eq!(sample.secret, "hunter22");
        std::fs::remove_file(secret).unwrap();
        std::fs::remove_file(config).unwrap();
    }

    #[test]
    fn every_problem_is_listed_without_values() {
        let path = temp(
            "problems",
            "SAMPLE_CONFIG_TEST_COUNT=11\nNO_SUCH_SETTING=1\nnot a pair\nSAMPLE_CONFIG_TEST_SECRET_FILE=/nonexistent/secret-value\n",
        );
        let Err(Failure::Invalid(problems)) =
            parse::<Sample, _, _>(Command::new("t"), ["t", "--config", &path])
        else {
            panic!("expected problems");
        };
        std::fs::remove_file(&path).unwrap();
        let text = problems.join("\n");
        assert!(text.contains("unknown setting NO_SUCH_SETTING"), "{text}");
        assert!(text.contains("expected NAME=value"), "{text}");
        assert!(
            text.contains("SAMPLE_CONFIG_TEST_SECRET_FILE: cannot read"),
            "{text}"
        );
        assert!(
            text.contains("SAMPLE_CONFIG_TEST_COUNT must be at most 10"),
            "{text}"
        );
        assert_eq!(problems.len(), 4, "{text}");
    }

    #[test]
    fn a_bad_value_from_a_file_is_named_not_shown() {
        let path = temp("bad", "SAMPLE_CONFIG_TEST_COUNT=many-secret\n");
        let Err(Failure::Invalid(problems)) =
            parse::<Sample, _, _>(Command::new("t"), ["t", "--config", &path])
        else {
            panic!("expected problems");
        };
        std::fs::remove_file(&path).unwrap();
        let text = problems.join("\n");
        assert!(
            text.contains("--count") && !text.contains("many-secret"),
            "{text}"
        );
    }

    #[test]
    fn help_is_clap_s_own() {
        let Err(Failure::Clap(e)) = parse::<Sample, _, _>(Command::new("t"), ["t", "--help"])
        else {
            panic!("expected help");
        };
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(help.contains("SAMPLE_CONFIG_TEST_COUNT") && help.contains("COUPON_CONFIG_FILE"));
    }
}
