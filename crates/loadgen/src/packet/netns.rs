//! The clients' network namespace: made with `ip netns add`, removed when
//! dropped, and a thread inside it that makes the clients' sockets (a
//! socket stays in the namespace it was made in, whichever thread then
//! uses it).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::sync::mpsc;

/// Runs `ip ARGS`, with its complaint as the error.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip` (iproute2): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A socket request: TCP or UDP, and the reply channel for the new socket.
type Request = (socket2::Type, mpsc::Sender<io::Result<socket2::Socket>>);

/// A network namespace, and the thread that makes sockets in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Made here, so removed on drop.
    owned: bool,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Netns {
    /// Makes the namespace `name` with its loopback up.
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let mut ns = Netns {
            name: name.to_owned(),
            owned: true,
            requests: None,
            thread: None,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.start_thread()?;
        Ok(ns)
    }

    /// The namespace `name` another part of chatbench made (a worker
    /// process joins its run's link this way); left in place on drop.
    pub fn open(name: &str) -> io::Result<Netns> {
        let mut ns = Netns {
            name: name.to_owned(),
            owned: false,
            requests: None,
            thread: None,
        };
        ns.start_thread()?;
        Ok(ns)
    }

    /// Starts the thread that makes sockets inside the namespace.
    fn start_thread(&mut self) -> io::Result<()> {
        let name = self.name.clone();
        let file = std::fs::File::open(format!("/run/netns/{name}"))
            .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
        let fd: OwnedFd = file.into();
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                let entered = nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::other(format!("cannot enter the namespace: {e}")));
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                for (kind, reply) in rx {
                    let socket = socket2::Socket::new(socket2::Domain::IPV4, kind, None);
                    let _ = reply.send(socket);
                }
            })?;
        self.thread = Some(thread);
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the namespace's thread ended"))??;
        self.requests = Some(tx);
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A new TCP socket inside the namespace, not yet connected.
    pub fn tcp_socket(&self) -> io::Result<socket2::Socket> {
        self.socket(socket2::Type::STREAM)
    }

    /// A new UDP socket inside the namespace, not yet bound (QUIC's).
    pub fn udp_socket(&self) -> io::Result<socket2::Socket> {
        self.socket(socket2::Type::DGRAM)
    }

    fn socket(&self, kind: socket2::Type) -> io::Result<socket2::Socket> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .as_ref()
            .ok_or_else(|| io::Error::other("the namespace's thread is gone"))?
            .send((kind, tx))
            .map_err(|_| io::Error::other("the namespace's thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the namespace's thread is gone"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.owned {
            let _ = ip(&["netns", "delete", &self.name]);
        }
    }
}
