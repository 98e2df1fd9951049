//! A PostgreSQL of a test's own that speaks TLS only, as RDS with `rds.force_ssl` does: a
//! cluster made with `initdb` in a temporary directory, on a free port of 127.0.0.1 and
//! 127.0.0.2 (a second address its certificate does not name), with `ssl = on`, a server
//! certificate from a [`certs::Authority`](crate::certs::Authority) of its own, password
//! (SCRAM) authentication and `hostssl` lines only, so a plaintext client is refused. Stopped and
//! removed when dropped. The binaries come from `/usr/lib/postgresql/<version>/bin` (the newest);
//! run as root, the server runs as the `postgres` user, as PostgreSQL refuses root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::certs::Authority;
use crate::{Fixture, free_port, wait_port};

/// The second loopback address the server listens on; its certificate names only `localhost`
/// and 127.0.0.1.
pub const UNNAMED_HOST: &str = "127.0.0.2";

/// A TLS-only PostgreSQL of this test alone.
pub struct PrivatePostgresTls {
    pub port: u16,
    /// The password of the `postgres` user (SCRAM).
    pub password: String,
    server: Child,
    dir: PathBuf,
    authority: Authority,
}

impl PrivatePostgresTls {
    pub async fn start() -> PrivatePostgresTls {
        let authority = Authority::new("coupon-postgres-ca");
        let issued = authority.issue("postgres");
        let dir = std::env::temp_dir().join(format!("coupon-pg-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        std::fs::write(dir.join("password"), &password).unwrap();
        let owner = server_user();
        own(&dir, owner.as_deref());
        let data = dir.join("data");
        run(as_server_user(&bin("initdb"), owner.as_deref())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", dir.join("password").display())));
        std::fs::copy(&issued.cert, data.join("server.crt")).unwrap();
        std::fs::copy(&issued.key, data.join("server.key")).unwrap();
        let port = free_port();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "listen_addresses = '127.0.0.1,{UNNAMED_HOST}'\nport = {port}\n\
                 unix_socket_directories = ''\nssl = on\nssl_cert_file = 'server.crt'\n\
                 ssl_key_file = 'server.key'\nfsync = off\nsynchronous_commit = off\n\
                 full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 50\n"
            ),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.0/8 scram-sha-256\n",
        )
        .unwrap();
        own(&dir, owner.as_deref());
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let server = as_server_user(&bin("postgres"), owner.as_deref())
            .arg("-D")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("postgres");
        let postgres = PrivatePostgresTls {
            port,
            password,
            server,
            dir,
            authority,
        };
        wait_port(port, "the TLS-only postgres").await;
        crate::eventually(
            Duration::from_secs(30),
            "the TLS-only postgres to accept connections",
            || async { postgres.args("postgres").connect().await.ok().map(|_| ()) },
        )
        .await;
        postgres
    }

    /// The CA certificate that signed the server's (`sslrootcert`).
    pub fn ca(&self) -> PathBuf {
        self.authority.ca()
    }

    /// A URL of `database` on `host` with the password and no TLS setting.
    pub fn url(&self, host: &str, database: &str) -> String {
        format!(
            "postgres://postgres:{}@{host}:{}/{database}",
            self.password, self.port
        )
    }

    /// A URL of `database` that verifies the server fully against [`Self::ca`].
    pub fn verified_url(&self, database: &str) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.url("localhost", database),
            self.ca().display()
        )
    }

    /// The connection settings of [`Self::verified_url`], as a binary reads them.
    pub fn args(&self, database: &str) -> service::PostgresArgs {
        service::PostgresArgs {
            url: self.verified_url(database),
            pool_wait_ms: 5_000,
            sslmode: None,
            sslrootcert: None,
            profile: service::Profile::Production,
        }
    }

    pub async fn create_database(&self, name: &str) {
        let client = self.args("postgres").connect().await.unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }

    /// A [`Fixture`] whose database, empty, is on this server (its URL verifies TLS fully);
    /// its topics are on the shared broker and its keys on the shared Redis, as
    /// [`Fixture::new`]'s. The database goes with the server.
    pub async fn fixture(&self, partitions: i32) -> Fixture {
        let kafka = service::KafkaArgs::plain(&crate::kafka_brokers());
        let fixture = self.fixture_without_topics(kafka).await;
        fixture.create_topics(partitions).await;
        fixture
    }

    /// As [`Self::fixture`], with its topics named for `kafka`'s brokers but not created (a
    /// test creates them, with `couponctl topics` say).
    pub async fn fixture_without_topics(&self, kafka: service::KafkaArgs) -> Fixture {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = format!("coupon_tls_{id}");
        self.create_database(&database).await;
        Fixture {
            topic: format!("test.{id}.requested"),
            dead_letter_topic: format!("test.{id}.dlq"),
            issued_topic: format!("test.{id}.issued"),
            events_topic: format!("test.{id}.events"),
            group: format!("test-{id}"),
            redis_prefix: format!("test:{id}:"),
            database_url: self.verified_url(&database),
            database,
            id,
            brokers: kafka.brokers.clone(),
            kafka,
        }
    }

    /// What the server logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgresTls {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT), then SIGKILL if it takes more than a few seconds.
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.server.id().to_string())
            .status();
        for _ in 0..250 {
            if let Ok(Some(_)) = self.server.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's `name` binary, else `name` on the `PATH`.
fn bin(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.exists())
        .max();
    newest.map_or_else(|| PathBuf::from(name), |(_, path)| path)
}

/// `postgres` when this process runs as root (PostgreSQL refuses to), else nobody else.
fn server_user() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    (String::from_utf8_lossy(&uid.stdout).trim() == "0").then(|| "postgres".to_owned())
}

/// `program` as the server's user: through `setpriv`, which execs it (the pid is the server's).
fn as_server_user(program: &Path, user: Option<&str>) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .args(["--clear-groups", "--"])
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn own(dir: &Path, user: Option<&str>) {
    if let Some(user) = user {
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .arg(dir));
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::File::options().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
