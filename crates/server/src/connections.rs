//! Who holds connections: the per-user limits checked when a login completes.
//!
//! The listener already caps all connections at `max_connections` (`53300` beyond it).
//! Here, as in Postgres, once a user has authenticated:
//! - the last `superuser_reserved_connections` of those slots are for superusers, so a
//!   flood of application connections cannot lock the administrator out;
//! - a user holds at most its own `CONNECTION LIMIT`, else `max_connections_per_user`.
//!
//! A login that passes gets a [`Ticket`]; dropping it (when the connection ends) frees
//! the slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use freshet_planner::users::UserDef;

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub superuser_reserved: usize,
    /// For users without a `CONNECTION LIMIT` of their own; `None`: no limit.
    pub per_user: Option<u32>,
}

pub struct Connections {
    limits: ConnectionLimits,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// One authenticated connection's slot.
pub struct Ticket {
    owner: Arc<Connections>,
    user: String,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            held: Mutex::new(Held::default()),
        })
    }

    /// Admits `user`'s new connection, or says why not (the message of a `53300`).
    pub fn admit(self: &Arc<Self>, user: &UserDef) -> Result<Ticket, String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let open_slots = self
            .limits
            .max_connections
            .saturating_sub(self.limits.superuser_reserved);
        if !user.superuser && held.total >= open_slots {
            return Err(
                "remaining connection slots are reserved for roles with the SUPERUSER attribute"
                    .into(),
            );
        }
        let mine = held.by_user.get(&user.name).copied().unwrap_or(0);
        if let Some(limit) = user.connection_limit.or(self.limits.per_user) {
            if mine >= limit as usize {
                return Err(format!("too many connections for role \"{}\"", user.name));
            }
        }
        held.total += 1;
        freshet_engine::metrics::metrics().connections.inc();
        held.by_user.insert(user.name.clone(), mine + 1);
        Ok(Ticket {
            owner: self.clone(),
            user: user.name.clone(),
        })
    }

    /// Connections `user` holds now.
    pub fn held_by(&self, user: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.by_user.get(user).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("user", &self.user).finish()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        freshet_engine::metrics::metrics().connections.dec();
        if let Some(n) = held.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, superuser: bool, limit: Option<u32>) -> UserDef {
        UserDef {
            name: name.into(),
            superuser,
            login: true,
            connection_limit: limit,
            ..UserDef::default()
        }
    }

    #[test]
    fn per_user_and_reserved_slots() {
        let c = Connections::new(ConnectionLimits {
            max_connections: 5,
            superuser_reserved: 2,
            per_user: Some(2),
        });
        let alice = user("alice", false, None);
        let bob = user("bob", false, Some(1));
        let admin = user("admin", true, Some(10));
        let a1 = c.admit(&alice).unwrap();
        let _a2 = c.admit(&alice).unwrap();
        assert!(c
            .admit(&alice)
            .unwrap_err()
            .contains("too many connections"));
        let b1 = c.admit(&bob).unwrap();
        assert!(c.admit(&bob).is_err());
        // 3 of 5 held: the last 2 are for superusers.
        drop(b1);
        let _b = c.admit(&bob).unwrap();
        assert!(c
            .admit(&user("carol", false, None))
            .unwrap_err()
            .contains("reserved"));
        let _s1 = c.admit(&admin).unwrap();
        let _s2 = c.admit(&admin).unwrap();
        drop(a1);
        assert_eq!(c.held_by("alice"), 1);
        assert!(c.admit(&alice).is_err(), "4 held: over the 3 open slots");
    }
}
