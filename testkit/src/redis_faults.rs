//! A Redis of one test, run as production runs it (AOF on, `appendfsync everysec`, in a data
//! directory of its own), and the ways such a Redis loses acknowledged writes: a restart with
//! nothing on disk, a host crash that takes the last second of the AOF with it, a restore from an
//! older RDB snapshot, and a failover to a replica that fell behind. Each of these leaves the
//! script cache empty and gives the server a new identity (`run_id`, `master_replid`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{FaultProxy, Proc, free_port, wait_port};

/// A Redis of this test alone, on a free port, its files in a directory of its own (removed on
/// drop when the test passes).
pub struct PrivateRedis {
    pub port: u16,
    /// Holds `data/` (the server's `--dir`), `redis.log` and the snapshots.
    home: PathBuf,
    proc: Mutex<Option<Proc>>,
    /// A replica's link to its primary, cut by [`PrivateRedis::pause_replication`].
    link: Mutex<Option<FaultProxy>>,
}

/// A copy of an RDB file taken by [`PrivateRedis::snapshot`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub path: PathBuf,
}

/// How far the AOF reached at one instant ([`PrivateRedis::synced`]).
#[derive(Debug, Clone)]
pub struct AofMark {
    file: PathBuf,
    len: u64,
}

/// Who a Redis server is: its `run_id` (new on every start) and its replication id
/// (`master_replid`: new on a start, on a promotion, and when a replication backlog is created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub run_id: String,
    pub master_replid: String,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let redis = PrivateRedis::unstarted();
        redis.launch(true, None).await;
        redis
    }

    fn unstarted() -> PrivateRedis {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let port = free_port();
        let home = std::env::temp_dir().join(format!(
            "coupon-redis-{}-{}-{port}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(home.join("data")).unwrap();
        PrivateRedis {
            port,
            home,
            proc: Mutex::new(None),
            link: Mutex::new(None),
        }
    }

    /// Starts the server on the data directory as it is. `aof` off only to load an RDB alone
    /// (Redis 7 with AOF on ignores `dump.rdb` and starts empty when no AOF exists).
    async fn launch(&self, aof: bool, replica_of: Option<u16>) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--appendonly", if aof { "yes" } else { "no" }])
            .args(["--appendfsync", "everysec"])
            .arg("--dir")
            .arg(self.data())
            .arg("--logfile")
            .arg(self.home.join("redis.log"));
        if let Some(port) = replica_of {
            command.args(["--replicaof", "127.0.0.1", &port.to_string()]);
        }
        *self.proc.lock().unwrap() = Some(Proc::spawn(&mut command));
        wait_port(self.port, "private redis").await;
        crate::eventually(Duration::from_secs(30), "redis loaded", || async {
            let pong: String = self.query(&mut redis::cmd("PING")).await.ok()?;
            (pong == "PONG").then_some(())
        })
        .await;
    }

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One command on a fresh connection.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &mut redis::Cmd,
    ) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        command.query_async(&mut conn).await
    }

    /// One command given as words; its reply as text (`None` for nil, integers in decimal).
    pub async fn call(&self, words: &[&str]) -> Option<String> {
        let mut command = redis::cmd(words[0]);
        command.arg(&words[1..]);
        self.query(&mut command).await.unwrap()
    }

    /// One `INFO` field (`run_id`, `master_replid`, `master_link_status`, ...).
    pub async fn info(&self, field: &str) -> Option<String> {
        let info: String = self.query(&mut redis::cmd("INFO")).await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }

    pub async fn identity(&self) -> Identity {
        Identity {
            run_id: self.info("run_id").await.unwrap(),
            master_replid: self.info("master_replid").await.unwrap(),
        }
    }

    /// Whether the script cache holds `sha` (`SCRIPT EXISTS`).
    pub async fn script_exists(&self, sha: &str) -> bool {
        let exists: Vec<bool> = self
            .query(redis::cmd("SCRIPT").arg("EXISTS").arg(sha))
            .await
            .unwrap();
        exists[0]
    }

    fn kill(&self) {
        let proc = self.proc.lock().unwrap().take();
        if let Some(proc) = proc {
            proc.kill();
        }
    }

    /// SIGKILLs Redis, wipes its data and starts it again: every acknowledged write is lost.
    pub async fn restart_empty(&self) {
        self.kill();
        wipe(&self.data());
        self.launch(true, None).await;
    }

    /// SIGKILL: Redis is gone until [`PrivateRedis::start_again`].
    pub fn stop(&self) {
        self.kill();
    }

    /// Starts a stopped Redis again on its data (what its AOF holds).
    pub async fn start_again(&self) {
        self.launch(true, None).await;
    }

    /// What a disk holds after the fsync `appendfsync everysec` makes each second: the AOF as it
    /// is now. Pass it to [`PrivateRedis::kill_and_restart`] about a second later.
    pub fn synced(&self) -> AofMark {
        let file = self.incr_aof();
        let len = std::fs::metadata(&file).unwrap().len();
        AofMark { file, len }
    }

    /// SIGKILLs Redis and starts it again from its AOF. With `synced`, the AOF first loses what
    /// was written after that mark, as a host crash loses what `appendfsync everysec` had not
    /// fsynced yet (a process crash alone loses nothing: the page cache keeps every write).
    /// Returns the bytes of AOF lost. Redis loads the cut AOF up to its last whole command
    /// (`aof-load-truncated yes`, the default).
    pub async fn kill_and_restart(&self, synced: Option<AofMark>) -> u64 {
        self.kill();
        let mut lost = 0;
        if let Some(mark) = synced {
            assert_eq!(mark.file, self.incr_aof(), "no AOF rewrite since the mark");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&mark.file)
                .unwrap();
            lost = file.metadata().unwrap().len() - mark.len;
            file.set_len(mark.len).unwrap();
        }
        self.launch(true, None).await;
        lost
    }

    /// The AOF file Redis appends to (the manifest's last `type i` entry).
    fn incr_aof(&self) -> PathBuf {
        let dir = self.data().join("appendonlydir");
        let manifest = std::fs::read_to_string(dir.join("appendonly.aof.manifest")).unwrap();
        let name = manifest
            .lines()
            .rev()
            .filter(|l| l.ends_with("type i"))
            .find_map(|l| l.split_whitespace().nth(1))
            .unwrap()
            .to_owned();
        dir.join(name)
    }

    /// `SAVE`, then a copy of `dump.rdb` beside the data directory.
    pub async fn snapshot(&self) -> Snapshot {
        let _: () = self.query(&mut redis::cmd("SAVE")).await.unwrap();
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let path = self.home.join(format!(
            "snapshot-{}.rdb",
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::copy(self.data().join("dump.rdb"), &path).unwrap();
        Snapshot { path }
    }

    /// SIGKILLs Redis, replaces its data with `snapshot` alone (no AOF) and starts it again; once
    /// loaded, AOF is turned back on (`CONFIG SET appendonly yes` rewrites it from the data).
    pub async fn restore(&self, snapshot: &Snapshot) {
        self.kill();
        wipe(&self.data());
        std::fs::copy(&snapshot.path, self.data().join("dump.rdb")).unwrap();
        self.launch(false, None).await;
        let _: () = self
            .query(redis::cmd("CONFIG").arg("SET").arg("appendonly").arg("yes"))
            .await
            .unwrap();
        crate::eventually(Duration::from_secs(30), "the AOF rewritten", || async {
            let done = self.info("aof_rewrite_in_progress").await? == "0"
                && self.info("aof_enabled").await? == "1";
            done.then_some(())
        })
        .await;
    }

    /// A replica of `primary` (AOF on as well), in sync when this returns. It replicates through
    /// a proxy, so [`PrivateRedis::pause_replication`] can leave it behind (stopping the replica
    /// would not: the kernel buffers hold what the primary sent and it catches up on waking).
    /// Sets the primary's `repl-diskless-sync-delay` to 0, so the first sync starts at once.
    pub async fn replica_of(primary: &PrivateRedis) -> PrivateRedis {
        let _: () = primary
            .query(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("repl-diskless-sync-delay")
                    .arg(0),
            )
            .await
            .unwrap();
        let replica = PrivateRedis::unstarted();
        let link = FaultProxy::start(("127.0.0.1".to_owned(), primary.port)).await;
        replica.launch(true, Some(link.port)).await;
        *replica.link.lock().unwrap() = Some(link);
        crate::eventually(Duration::from_secs(30), "the replica in sync", || async {
            (replica.info("master_link_status").await? == "up").then_some(())
        })
        .await;
        replica
    }

    /// Cuts the replica off its primary: writes on the primary no longer reach it.
    pub fn pause_replication(&self) {
        self.link
            .lock()
            .unwrap()
            .as_ref()
            .expect("a replica")
            .fail();
    }

    /// `REPLICAOF NO ONE`: the replica becomes a primary with what it had received.
    pub async fn promote(&self) {
        let _: () = self
            .query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
            .await
            .unwrap();
        *self.link.lock().unwrap() = None;
    }

    /// Sends a signal to the server (`STOP`, `CONT`: a Redis that hangs).
    pub fn signal(&self, name: &str) {
        self.proc
            .lock()
            .unwrap()
            .as_ref()
            .expect("a running redis")
            .signal(name);
    }
}

fn wipe(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir_all(dir).unwrap();
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }
}
