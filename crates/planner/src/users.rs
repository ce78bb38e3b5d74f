//! Users and what they may do: part of the catalog.
//!
//! A user's password is never stored: only a SCRAM-SHA-256 verifier (salt, iteration
//! count, stored and server keys, as Postgres keeps them) and the MD5 hash Postgres' md5
//! method checks against (`md5(password || user)`).

use serde::{Deserialize, Serialize};

/// The user every data directory has: a superuser, without a password unless the server
/// is given one.
pub const BOOTSTRAP_USER: &str = "freshet";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    /// Allocated from the catalog's ids when created (its OID derives from it); 0 for
    /// users created before ids were kept.
    #[serde(default)]
    pub id: u64,
    pub name: String,
    pub superuser: bool,
    /// `NOLOGIN` users exist (for grants) but cannot connect.
    pub login: bool,
    pub scram: Option<ScramVerifier>,
    /// Hex of `md5(password || user)`.
    pub md5: Option<String>,
    /// What the user may do to which relation (by id).
    #[serde(default)]
    pub grants: Vec<(u64, Privilege)>,
    /// How many connections the user may hold at once (`CONNECTION LIMIT`); none when
    /// absent.
    #[serde(default)]
    pub connection_limit: Option<u32>,
}

/// A SCRAM-SHA-256 verifier (RFC 5802), the byte strings hex-encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramVerifier {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
}

impl Privilege {
    pub const ALL: [Privilege; 4] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
    ];

    pub fn parse(word: &str) -> Option<Privilege> {
        Some(match word.to_ascii_lowercase().as_str() {
            "select" => Privilege::Select,
            "insert" => Privilege::Insert,
            "update" => Privilege::Update,
            "delete" => Privilege::Delete,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        }
    }
}

impl UserDef {
    /// The bootstrap superuser, as it is without a password.
    pub fn bootstrap() -> UserDef {
        UserDef {
            name: BOOTSTRAP_USER.into(),
            superuser: true,
            login: true,
            ..UserDef::default()
        }
    }

    pub fn has_password(&self) -> bool {
        self.scram.is_some()
    }

    pub fn may(&self, relation: u64, p: Privilege) -> bool {
        self.superuser || self.grants.contains(&(relation, p))
    }
}
