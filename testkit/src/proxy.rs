//! A TCP fault proxy: forwards a local port to a target until told to fail, then resets every
//! connection and refuses new ones until restored. From a client's side that is a database (or
//! any server) going down and coming back. It can also be pointed at another server, as a
//! failover moves a service's address to the promoted replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    /// Where new connections go.
    target: Arc<Mutex<(String, u16)>>,
    /// Bumped on every outage, so live connections see it and close.
    outage: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: (String, u16)) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let target = Arc::new(Mutex::new(target));
        let (outage, outages) = watch::channel(0u64);
        let task = tokio::spawn({
            let (down, target) = (down.clone(), target.clone());
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let target = target.lock().unwrap().clone();
                    let mut outages = outages.clone();
                    outages.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = outages.changed() => {}
                        }
                    });
                }
            }
        });
        FaultProxy {
            port,
            down,
            target,
            outage,
            task,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn fail(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.outage.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to `port` on the same host and cuts the live ones, so clients
    /// reconnect there (the address of a service that failed over).
    pub fn repoint(&self, port: u16) {
        self.target.lock().unwrap().1 = port;
        self.outage.send_modify(|n| *n += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
