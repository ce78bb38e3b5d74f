//! The server's sessions as other sessions see them: `pg_stat_activity`, and the signals
//! one session may send another: cancel its running statement (the protocol's
//! CancelRequest, `pg_cancel_backend`) or end it (`pg_terminate_backend`).
//!
//! Every session registers a [`Backend`] under its process id. A statement that may be
//! canceled runs under a [`Running`] guard; a cancel marks the statement running at that
//! moment (never a later one), and the statement stops with `57014`. A cancel that
//! arrives while the session is idle does nothing, as in Postgres.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use pgwire::api::{ClientInfo, PidSecretKeyGenerator};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::ProtocolVersion;
use tokio::sync::Notify;

/// What `pg_stat_activity` shows of a session.
#[derive(Clone, Debug)]
pub struct Activity {
    pub user: String,
    pub application_name: String,
    pub client_addr: Option<SocketAddr>,
    pub backend_start: SystemTime,
    pub xact_start: Option<SystemTime>,
    pub query_start: Option<SystemTime>,
    pub state_change: SystemTime,
    /// `active` while a statement runs, else `idle` (or `idle in transaction`).
    pub state: &'static str,
    /// The statement running, or the last one.
    pub query: String,
}

/// One session.
pub struct Backend {
    pub pid: i32,
    secret: Mutex<Option<SecretKey>>,
    activity: Mutex<Activity>,
    /// The number of the statement running (0: none).
    running: AtomicU64,
    /// The last statement number handed out.
    statements: AtomicU64,
    /// The statement a cancel hit.
    canceled: AtomicU64,
    terminated: AtomicBool,
    wake: Notify,
}

impl Backend {
    fn activity(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Activity {
        self.activity().clone()
    }

    /// The session logged in (or its application name changed).
    pub fn set_client(&self, user: &str, application_name: &str, addr: Option<SocketAddr>) {
        let mut a = self.activity();
        a.user = user.to_string();
        a.application_name = application_name.to_string();
        if addr.is_some() {
            a.client_addr = addr;
        }
    }

    /// Whether a transaction block is open (for `state` and `xact_start`).
    pub fn set_in_transaction(&self, open: bool) {
        let mut a = self.activity();
        match (open, a.xact_start) {
            (true, None) => a.xact_start = Some(SystemTime::now()),
            (false, Some(_)) => a.xact_start = None,
            _ => {}
        }
    }

    /// A statement starts: it may be canceled until the guard drops.
    pub fn begin(self: &Arc<Self>, query: &str) -> Running {
        let n = self.statements.fetch_add(1, Ordering::SeqCst) + 1;
        self.running.store(n, Ordering::SeqCst);
        let now = SystemTime::now();
        let mut a = self.activity();
        a.state = "active";
        a.query = query.chars().take(1024).collect();
        a.query_start = Some(now);
        a.state_change = now;
        drop(a);
        Running {
            backend: self.clone(),
            n,
        }
    }

    /// Cancels the statement running now, if any; whether there was one.
    pub fn cancel(&self) -> bool {
        let n = self.running.load(Ordering::SeqCst);
        if n == 0 {
            return false;
        }
        self.canceled.store(n, Ordering::SeqCst);
        self.wake.notify_waiters();
        true
    }

    /// Ends the session: its running statement is canceled and the connection closed.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::SeqCst);
        self.cancel();
        self.wake.notify_waiters();
    }

    /// Ends the session once its statement has answered (a subscriber that fell behind).
    pub fn end_after_statement(&self) {
        self.terminated.store(true, Ordering::SeqCst);
    }

    pub fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
    }

    /// Resolves once the session is terminated.
    pub async fn terminated(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_terminated() {
                return;
            }
            woken.await;
        }
    }

    fn secret_matches(&self, key: &SecretKey) -> bool {
        let secret = self.secret.lock().unwrap_or_else(|p| p.into_inner());
        secret.as_ref().is_some_and(|s| s.eq_value(key))
    }
}

/// A statement that a cancel may stop. Dropped when the statement ends (for a query, when
/// its last row is sent or the client stops reading).
pub struct Running {
    backend: Arc<Backend>,
    n: u64,
}

impl Running {
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn is_canceled(&self) -> bool {
        self.backend.canceled.load(Ordering::SeqCst) == self.n
    }

    /// Resolves once this statement is canceled.
    pub async fn canceled(&self) {
        loop {
            let woken = self.backend.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_canceled() {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ =
            self.backend
                .running
                .compare_exchange(self.n, 0, Ordering::SeqCst, Ordering::SeqCst);
        let mut a = self.backend.activity();
        a.state = if a.xact_start.is_some() {
            "idle in transaction"
        } else {
            "idle"
        };
        a.state_change = SystemTime::now();
    }
}

/// Every session of the server, by process id.
#[derive(Default)]
pub struct Backends {
    map: Mutex<HashMap<i32, Arc<Backend>>>,
    next_pid: AtomicI32,
}

/// Removes a session from [`Backends`] when it ends.
pub struct Registration {
    backends: Arc<Backends>,
    pub backend: Arc<Backend>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.backends.map().remove(&self.backend.pid);
    }
}

impl Backends {
    fn map(&self) -> MutexGuard<'_, HashMap<i32, Arc<Backend>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session, with the next process id.
    pub fn register(self: &Arc<Self>) -> Registration {
        // Postgres process ids are small positive numbers; start where they look like one.
        let pid = 1000 + self.next_pid.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let backend = Arc::new(Backend {
            pid,
            secret: Mutex::new(None),
            activity: Mutex::new(Activity {
                user: String::new(),
                application_name: String::new(),
                client_addr: None,
                backend_start: now,
                xact_start: None,
                query_start: None,
                state_change: now,
                state: "idle",
                query: String::new(),
            }),
            running: AtomicU64::new(0),
            statements: AtomicU64::new(0),
            canceled: AtomicU64::new(0),
            terminated: AtomicBool::new(false),
            wake: Notify::new(),
        });
        self.map().insert(pid, backend.clone());
        Registration {
            backends: self.clone(),
            backend,
        }
    }

    pub fn get(&self, pid: i32) -> Option<Arc<Backend>> {
        self.map().get(&pid).cloned()
    }

    /// Every session, by process id.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let mut all: Vec<_> = self.map().values().cloned().collect();
        all.sort_by_key(|b| b.pid);
        all
    }

    /// The protocol's CancelRequest: cancels `pid`'s statement if the key is its own.
    /// Like Postgres, says nothing either way.
    pub fn cancel_request(&self, pid: i32, key: &SecretKey) {
        match self.get(pid) {
            Some(b) if b.secret_matches(key) => {
                let canceled = b.cancel();
                tracing::debug!(pid, canceled, "cancel request");
            }
            _ => tracing::debug!(pid, "cancel request with a wrong process id or key"),
        }
    }
}

/// Gives each connection its session's process id and a random secret key (what
/// `BackendKeyData` carries and a CancelRequest must present).
pub struct BackendKeys;

impl PidSecretKeyGenerator for BackendKeys {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let key = match client.protocol_version() {
            ProtocolVersion::PROTOCOL3_0 => SecretKey::I32(rand::random::<i32>()),
            _ => {
                let bytes: [u8; 32] = rand::random();
                SecretKey::Bytes(bytes.to_vec().into())
            }
        };
        let Some(backend) = client.session_extensions().get::<Arc<Backend>>() else {
            return (0, key);
        };
        *backend.secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        (backend.pid, key)
    }
}
