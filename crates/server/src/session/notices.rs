//! NOTICEs a statement leaves for its client, as Postgres sends them: `relation "t"
//! already exists, skipping` for `CREATE … IF NOT EXISTS` of an existing name, `table
//! "t" does not exist, skipping` for `DROP … IF EXISTS` of a missing one. The wire layer
//! sends them before the statement's own response (`handler`), unless the session's
//! `client_min_messages` is above `notice`.

use pgwire::error::ErrorInfo;

use super::Session;

/// One notice: its severity (`NOTICE` or `WARNING`), SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Notice {
    /// The NoticeResponse's fields.
    pub fn info(&self) -> ErrorInfo {
        let mut info = ErrorInfo::new(self.severity.into(), self.code.into(), self.message.clone());
        info.severity_nonlocalized = Some(self.severity.into());
        info
    }
}

impl Session {
    /// Leaves a notice for the client.
    pub(super) fn notice(&self, code: &'static str, message: String) {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Notice {
                severity: "NOTICE",
                code,
                message,
            });
    }

    /// Leaves a warning for the client.
    pub(super) fn warning(&self, code: &'static str, message: String) {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Notice {
                severity: "WARNING",
                code,
                message,
            });
    }

    /// `CREATE … IF NOT EXISTS` of `name`, which exists: the statement does nothing.
    pub(super) fn notice_exists(&self, name: &str) {
        self.notice(
            "42P07",
            format!("relation \"{name}\" already exists, skipping"),
        );
    }

    /// `DROP … IF EXISTS` of `name`, a `kind` that does not exist: skipped.
    pub(super) fn notice_missing(&self, kind: &str, name: &str) {
        self.notice(
            "00000",
            format!("{kind} \"{name}\" does not exist, skipping"),
        );
    }

    /// The notices left since the last call, to send (none if `client_min_messages` is
    /// `warning` or above).
    pub fn take_notices(&self) -> Vec<Notice> {
        let notices = std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()));
        let level = self.var("client_min_messages").unwrap_or_default();
        let level = level.to_ascii_lowercase();
        let notices_shown = matches!(
            level.as_str(),
            "" | "debug5" | "debug4" | "debug3" | "debug2" | "debug1" | "debug" | "log" | "notice"
        );
        let warnings_shown = notices_shown || level == "warning";
        notices
            .into_iter()
            .filter(|n| {
                if n.severity == "WARNING" {
                    warnings_shown
                } else {
                    notices_shown
                }
            })
            .collect()
    }
}
