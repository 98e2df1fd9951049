//! TLS to PostgreSQL with libpq's settings: `sslmode` and `sslrootcert` in `DATABASE_URL` (URL
//! query parameters or `key=value` pairs), else `PGSSLMODE` and `PGSSLROOTCERT`. tokio-postgres
//! knows neither `verify-ca`, `verify-full` nor `sslrootcert`, so they are taken out of the
//! connection string here and applied with rustls (ring provider) by [`Connector`].
//!
//! | `sslmode` | TLS | certificate chain | host name |
//! | --- | --- | --- | --- |
//! | `disable` | no | | |
//! | `require` | yes | not checked, unless `sslrootcert` is set (then as `verify-ca`, as libpq) | no |
//! | `verify-ca` | yes | against `sslrootcert`, else the system's roots | no |
//! | `verify-full` | yes | the same | yes |
//!
//! `prefer` and `allow`, libpq's silent plaintext fallbacks, are refused. With no `sslmode`
//! anywhere: `verify-full` in production, `disable` with `COUPON_ENV=development`.

mod connector;

use std::path::PathBuf;

pub use connector::{Connector, TlsStream};

use crate::Profile;

/// libpq's `sslmode`, without the modes that fall back to plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode named `value`, where `setting` says where it was read.
    fn parse(value: &str, setting: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "prefer" | "allow" => Err(format!(
                "{setting}={value} would fall back to plaintext silently: choose disable, \
                 require, verify-ca or verify-full"
            )),
            _ => Err(format!(
                "{setting} must be disable, require, verify-ca or verify-full"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The certificate authorities the server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A PEM file of one or more CA certificates (`sslrootcert=/path`, e.g. the RDS bundle).
    File(PathBuf),
    /// The system's trusted roots (`sslrootcert` unset, or `sslrootcert=system`).
    System,
}

/// A connection string read: what tokio-postgres connects with, and how TLS is done.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Everything but the TLS settings; its `ssl_mode` is `Disable` or `Require`.
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub roots: Roots,
    /// `sslrootcert` was given (`require` then verifies the chain, as libpq does).
    pub roots_given: bool,
}

impl Settings {
    /// Reads `url` (`DATABASE_URL`); `sslmode` and `sslrootcert` there win over the environment's
    /// (`PGSSLMODE`, `PGSSLROOTCERT`). Errors name the setting, never the URL (it may hold a
    /// password).
    pub fn resolve(
        url: &str,
        env_sslmode: Option<&str>,
        env_sslrootcert: Option<&str>,
        profile: Profile,
    ) -> Result<Settings, String> {
        let split = split(url);
        let set = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(str::to_owned);
        let sslmode = match set(split.sslmode.as_deref()) {
            Some(value) => Some((value, "sslmode in DATABASE_URL")),
            None => set(env_sslmode).map(|value| (value, "PGSSLMODE")),
        };
        let mode = match sslmode {
            Some((value, setting)) => SslMode::parse(&value, setting)?,
            None if profile.is_production() => SslMode::VerifyFull,
            None => SslMode::Disable,
        };
        let root = set(split.sslrootcert.as_deref()).or_else(|| set(env_sslrootcert));
        let roots = match root.as_deref() {
            None | Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
        };
        let mut config: tokio_postgres::Config = split.rest.parse().map_err(|e| {
            format!(
                "DATABASE_URL is not a valid connection string: {}",
                causes(&e)
            )
        })?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(Settings {
            config,
            mode,
            roots,
            roots_given: root.is_some(),
        })
    }

    /// The TLS connector these settings ask for (reads `sslrootcert`).
    pub fn connector(&self) -> Result<Connector, String> {
        Connector::new(self)
    }

    /// Whether the server's certificate goes unchecked (`require` without `sslrootcert`).
    pub fn unverified(&self) -> bool {
        self.mode == SslMode::Require && !self.roots_given
    }

    /// For logs: the mode and where the roots come from.
    pub fn describe(&self) -> String {
        match (&self.roots, self.mode) {
            (_, SslMode::Disable) => "sslmode=disable (plaintext)".to_owned(),
            (_, SslMode::Require) if !self.roots_given => {
                "sslmode=require (encrypted; the server's certificate is not verified)".to_owned()
            }
            (Roots::System, mode) => format!("sslmode={}, the system's roots", mode.name()),
            (Roots::File(path), mode) => {
                format!("sslmode={}, sslrootcert={}", mode.name(), path.display())
            }
        }
    }
}

/// A connection string with libpq's TLS settings taken out.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// The last `sslmode` and `sslrootcert` of `url` (a later one wins, as in libpq), and the rest.
fn split(url: &str) -> Split {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut take = |key: &str, value: String| match key {
        "sslmode" => split.sslmode = Some(value),
        "sslrootcert" => split.sslrootcert = Some(value),
        _ => unreachable!("only TLS keys are taken"),
    };
    let is_tls = |key: &str| key == "sslmode" || key == "sslrootcert";
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let key = percent_decode(key);
                    if is_tls(&key) {
                        take(&key, percent_decode(value));
                    } else {
                        kept.push(pair);
                    }
                }
                match kept.is_empty() {
                    true => base.to_owned(),
                    false => format!("{base}?{}", kept.join("&")),
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in pairs(url) {
            if is_tls(&key) {
                take(&key, value);
            } else {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    split.rest = rest;
    split
}

/// libpq's `key = value` pairs: each key, its unquoted value and the pair's text. A value is
/// single-quoted or ends at white space; a backslash escapes the next character.
fn pairs(text: &str) -> Vec<(String, String, &str)> {
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        skip_ws(&mut chars);
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not a pair: kept as it is, for tokio-postgres to report.
            found.push((String::new(), String::new(), &text[start..]));
            break;
        }
        skip_ws(&mut chars);
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| quoted || !c.is_whitespace()) {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => break,
                c => value.push(c),
            }
        }
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        found.push((key, value, &text[start..end]));
    }
    found
}

/// `%XX` escapes decoded (a URL's query); anything else as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `error` and its sources, `: `-separated (tokio-postgres shows its cause only as a source).
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `url` with its password replaced by `***`, for `Debug`.
pub fn redacted(url: &str) -> String {
    if let Some(scheme) = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|s| url.starts_with(s))
    {
        let rest = &url[scheme.len()..];
        let authority = rest.find(['/', '?']).map_or(rest, |end| &rest[..end]);
        return match authority.rfind('@').map(|at| &authority[..at]) {
            Some(user_info) if user_info.contains(':') => {
                let user = user_info.split(':').next().unwrap_or_default();
                format!("{scheme}{user}:***{}", &rest[user_info.len()..])
            }
            _ => url.to_owned(),
        };
    }
    pairs(url)
        .into_iter()
        .map(|(key, _, raw)| match key.as_str() {
            "password" => "password=***",
            _ => raw,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[path = "postgres_tls/tests.rs"]
mod tests;
