//! Where a process runs: production (the default) or a development stack.

/// The profile alone, for the tools that take none of the services' other common settings
/// (`couponctl`, `coupon-bench`): with no `sslmode` in `DATABASE_URL` or `PGSSLMODE`,
/// PostgreSQL is `verify-full` in production, plaintext in development.
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArg {
    /// `production` (the default) or `development`, as in the services.
    #[arg(
        long = "coupon-env",
        env = "COUPON_ENV",
        value_enum,
        global = true,
        default_value_t = Profile::Production
    )]
    pub profile: Profile,
}

/// What the process may assume about where it runs. Anything unsafe is a development choice,
/// never what happens when a setting is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    #[default]
    Production,
    Development,
}

impl Profile {
    pub fn is_production(self) -> bool {
        self == Profile::Production
    }
}
