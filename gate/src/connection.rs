//! Reaching the gate's Redis: one server or a Redis Cluster, in plaintext or TLS, behind one
//! connection type; and the scripts, called by SHA on the node that owns their keys' slot.
//!
//! Every command the gate sends names keys of one campaign, which share one hash tag, so the
//! cluster client routes it to that slot's master (following MOVED/ASK and failovers itself).
//! The only commands without a key are `PING` (readiness: every master answers) and
//! `SCRIPT LOAD` (every primary, never a replica).

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Cmd, ConnectionAddr, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture,
    ServerErrorKind, TlsCertificates, ToRedisArgs, Value,
};

use crate::GateError;

/// Where the gate's Redis is: `REDIS_URL`, `REDIS_CA_FILE` and `REDIS_CLUSTER`.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// `redis://` (plaintext) or `rediss://` (TLS) URL. In cluster mode, one or more seed nodes
    /// separated by commas (a configuration endpoint is one).
    pub url: String,
    /// PEM bundle of the certificate authorities a `rediss://` server must chain to, instead
    /// of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Redis Cluster: the cluster client, which routes each command to its slot's master.
    pub cluster: bool,
}

/// A multiplexed, self-reconnecting connection to one server or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    /// Connects and checks the settings first: a CA file needs `rediss://`, several nodes need
    /// cluster mode, certificate verification cannot be skipped. `timeout` bounds connecting
    /// and each command (in a cluster, with its redirections and retries).
    pub(crate) async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Conn, GateError> {
        // The process's rustls provider (ring), should the caller not have installed one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nodes = nodes(endpoint)?;
        let certificates = match &endpoint.ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    GateError::Config(format!("REDIS_CA_FILE {}: {e}", path.display()))
                })?),
            }),
            None => None,
        };
        let tls = nodes
            .iter()
            .all(|node| matches!(node.addr(), ConnectionAddr::TcpTls { .. }));
        Conn::dial(endpoint.cluster, nodes, certificates, timeout)
            .await
            .map_err(|e| match e {
                // A TLS-only server drops a plaintext client at its first bytes.
                e if !tls && e.is_connection_dropped() && !e.is_connection_refusal() => {
                    GateError::Config(format!(
                        "redis: {e}: the server closed a plaintext connection; a server that \
                         takes TLS only needs a rediss:// REDIS_URL"
                    ))
                }
                e => GateError::Redis(e),
            })
    }

    async fn dial(
        cluster: bool,
        nodes: Vec<redis::ConnectionInfo>,
        certificates: Option<TlsCertificates>,
        timeout: Duration,
    ) -> Result<Conn, redis::RedisError> {
        if cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let Some(node) = nodes.into_iter().next() else {
            return Err((ErrorKind::InvalidClientConfig, "no node").into());
        };
        let client = match certificates {
            Some(certificates) => redis::Client::build_with_tls(node, certificates)?,
            None => redis::Client::open(node)?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        Ok(Conn::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    /// Runs one script call by SHA. On `NOSCRIPT` the server lost its script cache: it
    /// restarted, failed over, or an operator flushed the scripts. A script that cannot admit
    /// anyone is loaded on the node owning the call's slot and retried. An admission script is
    /// not: the caller gets [`GateError::ScriptsMissing`] and must first have every campaign
    /// this server may have lost fenced (`Gate::secure`), which loads the scripts after.
    async fn evalsha<T: FromRedisValue>(&mut self, call: &Call<'_>) -> Result<T, GateError> {
        match call.cmd.query_async(self).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                if call.script.guarded {
                    return Err(GateError::ScriptsMissing);
                }
                self.load_on_slot(call.script, call.slot_key).await?;
                Ok(call.cmd.query_async(self).await?)
            }
            result => Ok(result?),
        }
    }

    async fn load_on_slot(&mut self, script: &Lua, slot_key: &str) -> Result<(), GateError> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(&script.code);
        match self {
            Conn::Single(conn) => load.query_async::<()>(conn).await?,
            Conn::Cluster(conn) => {
                let owner = Route::with_slot(Slot::for_key(slot_key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(owner));
                conn.route_command(load, routing).await?;
            }
        }
        Ok(())
    }

    /// Loads a script on the server, or on every primary of a cluster. Never on a replica: a
    /// replica promoted later must answer `NOSCRIPT`, which is how the gate notices it.
    pub(crate) async fn load_on_primaries(&mut self, script: &Lua) -> Result<(), GateError> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(&script.code);
        match self {
            Conn::Single(conn) => load.query_async::<()>(conn).await?,
            Conn::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((
                    redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                    Some(redis::cluster_routing::ResponsePolicy::AllSucceeded),
                ));
                conn.route_command(load, routing).await?;
            }
        }
        Ok(())
    }
}

/// The nodes of `REDIS_URL`, checked against the other settings. Errors name settings, never
/// the URL, which may hold a password.
fn nodes(endpoint: &Endpoint) -> Result<Vec<redis::ConnectionInfo>, GateError> {
    let nodes = endpoint
        .url
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| {
            node.into_connection_info()
                .map_err(|e| GateError::Config(format!("REDIS_URL is not a Redis URL: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(GateError::Config("REDIS_URL is empty".to_owned()));
    }
    if nodes.len() > 1 && !endpoint.cluster {
        return Err(GateError::Config(
            "REDIS_URL lists several nodes, which only Redis Cluster takes (REDIS_CLUSTER=true)"
                .to_owned(),
        ));
    }
    for node in &nodes {
        match node.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(GateError::Config(
                    "REDIS_URL asks to skip certificate verification (#insecure), which is not \
                     supported: trust a private CA with REDIS_CA_FILE"
                        .to_owned(),
                ));
            }
            ConnectionAddr::TcpTls { .. } => {}
            _ if endpoint.ca_file.is_some() => {
                return Err(GateError::Config(
                    "REDIS_CA_FILE is set but REDIS_URL is not a TLS (rediss://) URL".to_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(nodes)
}

/// One of the gate's Lua scripts: its source and SHA1, and whether it admits or settles
/// reservations (`guarded`: never reloaded blindly, see [`Conn::evalsha`]).
pub(crate) struct Lua {
    code: String,
    sha: String,
    guarded: bool,
}

impl Lua {
    /// A script that cannot admit anyone (it may be reloaded whenever the server lost it).
    pub(crate) fn new(code: &str) -> Lua {
        Lua {
            code: code.to_owned(),
            sha: redis::Script::new(code).get_hash().to_owned(),
            guarded: false,
        }
    }

    /// An admission script: `reserve`, `release`, `claim`. Loaded only by `Gate::secure`, after
    /// the campaigns this server may have lost are fenced.
    pub(crate) fn guarded(code: &str) -> Lua {
        Lua {
            guarded: true,
            ..Lua::new(code)
        }
    }

    /// A script sent with `lua/shared.lua` in front of it (which carries the `#!lua` shebang
    /// and defines `identity()` and `write_settings()`).
    pub(crate) fn with_shared(body: &str) -> Lua {
        Lua::new(&format!("{}\n{body}", include_str!("lua/shared.lua")))
    }

    /// A call with `keys` (all of one campaign: one slot); ARGV follows with [`Call::arg`].
    pub(crate) fn keys<'a>(&'a self, keys: &[&'a str]) -> Call<'a> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len()).arg(keys);
        Call {
            script: self,
            slot_key: keys.first().copied().unwrap_or_default(),
            cmd,
        }
    }
}

/// A script call being built.
pub(crate) struct Call<'a> {
    script: &'a Lua,
    slot_key: &'a str,
    cmd: Cmd,
}

impl Call<'_> {
    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// The ledger's settings as the settings scripts take them: total, limit, starts_ms,
    /// ends_ms, closed (0/1), version.
    pub(crate) fn settings(self, s: &crate::ledger::Settings) -> Self {
        self.arg(s.total_stock)
            .arg(s.per_user_limit)
            .arg(s.starts_ms)
            .arg(s.ends_ms)
            .arg(u8::from(s.closed))
            .arg(s.version)
    }

    pub(crate) async fn invoke<T: FromRedisValue>(&self, conn: &mut Conn) -> Result<T, GateError> {
        conn.evalsha(self).await
    }
}
