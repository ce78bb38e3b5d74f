//! Who may connect: passwords (SCRAM-SHA-256, or MD5 when chosen), the bootstrap
//! superuser, and TLS.
//!
//! The rules, as in RisingWave:
//! - a user with a password always authenticates with it, over SCRAM-SHA-256 (MD5 if the
//!   server runs with `--auth md5`), whatever the listener;
//! - the bootstrap superuser `freshet` without a password may connect from loopback
//!   without one, so `freshet serve` and the playground need no setup;
//! - anyone else without a password gets in only with `--auth trust`.
//!
//! A wrong password is `28P01`; an unknown user, or one that may not log in, `28000`.
//! With TLS required, a connection that did not negotiate TLS is refused (`28000`).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use freshet_planner::users::{ScramVerifier, UserDef, BOOTSTRAP_USER};
use futures::Sink;
use pgwire::api::auth::md5pass::Md5PasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth, ScramSecret};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rand::RngCore;

use crate::connections::Connections;
use crate::wire::frame::{check_password_message, PasswordStep};

/// How users without a rule of their own authenticate (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Scram,
    Md5,
    Trust,
}

impl AuthMethod {
    pub fn parse(v: &str) -> Result<AuthMethod, String> {
        match v.to_ascii_lowercase().as_str() {
            "scram" | "scram-sha-256" => Ok(AuthMethod::Scram),
            "md5" => Ok(AuthMethod::Md5),
            "trust" => Ok(AuthMethod::Trust),
            other => Err(format!(
                "unknown authentication method \"{other}\": expected scram, md5 or trust"
            )),
        }
    }
}

/// SCRAM iterations for new verifiers (Postgres' default).
const SCRAM_ITERATIONS: u32 = 4096;

/// A SCRAM-SHA-256 verifier for `password`, with a fresh random salt.
pub fn scram_verifier(password: &str) -> ScramVerifier {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
    match ScramSecret::verifier_from_salted_password(
        salt.to_vec(),
        salted,
        SCRAM_ITERATIONS as usize,
    ) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => ScramVerifier {
            salt: hex::encode(salt),
            iterations: iterations as u32,
            stored_key: hex::encode(stored_key),
            server_key: hex::encode(server_key),
        },
        // verifier_from_salted_password always builds a verifier.
        ScramSecret::SaltedPassword { .. } => ScramVerifier {
            salt: String::new(),
            iterations: 0,
            stored_key: String::new(),
            server_key: String::new(),
        },
    }
}

/// What Postgres' md5 method keeps: hex of `md5(password || user)`.
pub fn md5_hash(user: &str, password: &str) -> String {
    format!("{:x}", md5::compute(format!("{password}{user}")))
}

/// The users known now (from the catalog) and the bootstrap superuser's password from the
/// server's settings, if it has one.
pub trait Users: Send + Sync {
    fn user(&self, name: &str) -> Option<UserDef>;
}

/// The user `name` as authentication sees it: the catalog's, else the bootstrap
/// superuser (always there, without a password unless the settings give one).
fn resolve(users: &dyn Users, bootstrap: &Option<UserDef>, name: &str) -> Option<UserDef> {
    if name == BOOTSTRAP_USER {
        if let Some(b) = bootstrap {
            return Some(b.clone());
        }
    }
    users
        .user(name)
        .or_else(|| (name == BOOTSTRAP_USER).then(UserDef::bootstrap))
}

/// Serves SCRAM verifiers and MD5 challenges from the users.
pub struct UserStore {
    users: Arc<dyn Users>,
    bootstrap: Option<UserDef>,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserStore")
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

fn wrong_password(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_default()
}

#[async_trait]
impl AuthSource for UserStore {
    /// MD5: the challenge's salt and the answer expected for it.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let user = resolve(self.users.as_ref(), &self.bootstrap, name);
        let Some(stored) = user.and_then(|u| u.md5) else {
            return Err(wrong_password(name));
        };
        let mut salt = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut salt);
        let mut msg = stored.into_bytes();
        msg.extend_from_slice(&salt);
        let expected = format!("md5{:x}", md5::compute(msg));
        Ok(Password::new(Some(salt.to_vec()), expected.into_bytes()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let name = login.user().unwrap_or_default();
        let user = resolve(self.users.as_ref(), &self.bootstrap, name);
        let Some(v) = user.and_then(|u| u.scram) else {
            return Err(wrong_password(name));
        };
        Ok((
            ScramSecret::Verifier {
                salt: unhex(&v.salt),
                iterations: v.iterations as usize,
                stored_key: unhex(&v.stored_key),
                server_key: unhex(&v.server_key),
            },
            None,
        ))
    }
}

/// The startup handler every connection shares.
pub struct Authenticator {
    driver: AuthDriver<StartupParameters>,
    connections: Arc<Connections>,
    users: Arc<dyn Users>,
    bootstrap: Option<UserDef>,
    method: AuthMethod,
    require_tls: bool,
    scram: Arc<dyn AuthMechanismFactory>,
    md5: Arc<dyn AuthMechanismFactory>,
}

/// How one login authenticates.
enum Route {
    Trust,
    Scram,
    Md5,
}

impl Authenticator {
    pub fn new(
        users: Arc<dyn Users>,
        bootstrap_password: Option<&str>,
        method: AuthMethod,
        require_tls: bool,
        connections: Arc<Connections>,
    ) -> Authenticator {
        let bootstrap = bootstrap_password.map(|p| UserDef {
            scram: Some(scram_verifier(p)),
            md5: Some(md5_hash(BOOTSTRAP_USER, p)),
            ..UserDef::bootstrap()
        });
        let store = Arc::new(UserStore {
            users: users.clone(),
            bootstrap: bootstrap.clone(),
        });
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = crate::session::SERVER_VERSION.into();
        Authenticator {
            driver: AuthDriver::new(StartupParameters(params))
                .with_pid_secret_key_generator(Arc::new(crate::backends::BackendKeys)),
            connections,
            users,
            bootstrap,
            method,
            require_tls,
            scram: Arc::new(ScramAuth::new(store.clone())),
            md5: Arc::new(Md5PasswordAuth::new(store)),
        }
    }

    /// Lets `name` in (`53300` past a connection limit) and finishes the startup.
    async fn complete<C>(
        &self,
        client: &mut C,
        name: &str,
        final_message: Option<pgwire::messages::startup::Authentication>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(user) = resolve(self.users.as_ref(), &self.bootstrap, name) else {
            return Err(fatal("28000", format!("role \"{name}\" does not exist")));
        };
        let ticket = self
            .connections
            .admit(&user)
            .map_err(|message| fatal("53300", message))?;
        // Held for as long as the connection's client state lives.
        client.session_extensions().insert(ticket);
        self.driver
            .complete_authentication(client, final_message)
            .await
    }

    fn route(&self, name: &str, loopback: bool) -> Result<Route, PgWireError> {
        let Some(user) = resolve(self.users.as_ref(), &self.bootstrap, name) else {
            return Err(fatal("28000", format!("role \"{name}\" does not exist")));
        };
        if !user.login {
            return Err(fatal(
                "28000",
                format!("role \"{name}\" is not permitted to log in"),
            ));
        }
        if user.has_password() {
            return Ok(if self.method == AuthMethod::Md5 && user.md5.is_some() {
                Route::Md5
            } else {
                Route::Scram
            });
        }
        if (name == BOOTSTRAP_USER && loopback) || self.method == AuthMethod::Trust {
            return Ok(Route::Trust);
        }
        let mut info = ErrorInfo::new(
            "FATAL".into(),
            "28P01".into(),
            format!("password authentication failed for user \"{name}\""),
        );
        info.detail = Some(format!(
            "User \"{name}\" has no password and may connect only with --auth trust{}.",
            if name == BOOTSTRAP_USER {
                ", or from loopback"
            } else {
                ""
            }
        ));
        Err(PgWireError::UserError(Box::new(info)))
    }
}

/// Checks a password-family message against the step authentication is at (pgwire's
/// parsers of these messages trust their lengths) and moves to the next step.
fn check_password_step<C: ClientInfo>(client: &C, m: &PasswordMessageFamily) -> PgWireResult<()> {
    let Some(step) = client.session_extensions().get::<Mutex<PasswordStep>>() else {
        return Err(fatal(
            "08P01",
            "unexpected password message: no authentication is in progress".into(),
        ));
    };
    let mut step = step.lock().unwrap_or_else(|p| p.into_inner());
    if let PasswordMessageFamily::Raw(body) = m {
        check_password_message(body, *step).map_err(|e| fatal(e.sqlstate(), e.to_string()))?;
    }
    if *step == PasswordStep::SaslInitial {
        *step = PasswordStep::SaslResponse;
    }
    Ok(())
}

#[async_trait]
impl StartupHandler for Authenticator {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.require_tls && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server requires TLS: connect with sslmode=require".into(),
                    ));
                }
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .ok_or(PgWireError::UserNameRequired)?;
                let loopback = client.socket_addr().ip().to_canonical().is_loopback();
                let (mechanism, step) = match self.route(&user, loopback)? {
                    Route::Trust => return self.complete(client, &user, None).await,
                    Route::Scram => (self.scram.create(), PasswordStep::SaslInitial),
                    Route::Md5 => (self.md5.create(), PasswordStep::Password),
                };
                client.session_extensions().insert(Mutex::new(step));
                match self.driver.begin_authentication(client, mechanism).await? {
                    AuthOutcome::InProgress => Ok(()),
                    AuthOutcome::Authenticated { final_message, .. } => {
                        self.complete(client, &user, final_message).await
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                check_password_step(client, &m)?;
                match self.driver.advance_authentication(client, m).await {
                    Ok(AuthOutcome::InProgress) => Ok(()),
                    Ok(AuthOutcome::Authenticated { final_message, .. }) => {
                        self.complete(client, &user, final_message).await
                    }
                    Err(PgWireError::InvalidPassword(_)) => Err(wrong_password(&user)),
                    Err(PgWireError::UserError(e)) if e.code == "28P01" => {
                        Err(wrong_password(&user))
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }
}

/// pgwire's startup ParameterStatus, with the `TimeZone` the client asked for (as the
/// session takes it, `crate::session::vars::startup_zone`; UTC if none or not a zone):
/// psycopg and pgjdbc show `timestamptz` values in the zone reported.
pub struct StartupParameters(DefaultServerParameterProvider);

impl pgwire::api::auth::ServerParameterProvider for StartupParameters {
    fn server_parameters<C>(&self, client: &C) -> Option<std::collections::HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut params = self.0.server_parameters(client)?;
        let asked = crate::session::vars::startup_zone(
            client
                .metadata()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        params.insert("TimeZone".into(), asked);
        Some(params)
    }
}
