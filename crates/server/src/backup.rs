//! Backups: `freshet backup --to DIR` asks a running server (`POST /api/backup`) for a
//! RocksDB checkpoint of its database — a consistent copy as of one moment, so of whole
//! commits only: every view's rows, state and the source offsets they reflect agree —
//! and `freshet restore --from DIR --data-dir NEW` makes a data directory of it. A server
//! started there resumes every view from the backup's offsets.

use std::path::{Path, PathBuf};

use crate::session::Db;

/// The file a backup directory holds besides the database.
pub const MANIFEST: &str = "freshet-backup.json";

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub taken_at: String,
}

impl Backup {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "path": self.path.display().to_string(),
            "bytes": self.bytes,
            "taken_at": self.taken_at,
        })
        .to_string()
    }
}

/// Writes a backup of `db` to `to`, which must be absent or an empty directory.
pub fn backup(db: &Db, to: &Path) -> Result<Backup, String> {
    if !to.is_absolute() {
        return Err(format!(
            "the backup directory must be an absolute path, not {}",
            to.display()
        ));
    }
    if to.exists() {
        let empty = std::fs::read_dir(to)
            .map_err(|e| format!("cannot read {}: {e}", to.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(format!("{} exists and is not empty", to.display()));
        }
        std::fs::remove_dir(to).map_err(|e| format!("cannot use {}: {e}", to.display()))?;
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // A name of its own (never an existing directory's), renamed into place when complete.
    let staging = to.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        freshet_engine::wall_clock_micros()
    ));
    std::fs::create_dir(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let taken_at = chrono::Utc::now().to_rfc3339();
    db.store()
        .checkpoint_to(&staging.join("db"))
        .map_err(|e| format!("checkpoint failed: {e}"))?;
    let manifest = serde_json::json!({
        "freshet_version": env!("CARGO_PKG_VERSION"),
        "state_format": freshet_storage::FORMAT_VERSION,
        "taken_at": taken_at,
    });
    std::fs::write(staging.join(MANIFEST), manifest.to_string())
        .map_err(|e| format!("cannot write the manifest: {e}"))?;
    // Only a complete backup gets its name.
    std::fs::rename(&staging, to).map_err(|e| format!("cannot move the backup into place: {e}"))?;
    let bytes = dir_size(to);
    tracing::info!(path = %to.display(), bytes, "backup written");
    Ok(Backup {
        path: to.to_path_buf(),
        bytes,
        taken_at,
    })
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Makes `data_dir` (absent or empty) a data directory holding backup `from`.
pub fn restore(from: &Path, data_dir: &Path) -> Result<(), String> {
    let manifest = std::fs::read_to_string(from.join(MANIFEST))
        .map_err(|e| format!("{} is not a Freshet backup: {e}", from.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&manifest).map_err(|e| format!("bad backup manifest: {e}"))?;
    if manifest["state_format"].as_u64() != Some(u64::from(freshet_storage::FORMAT_VERSION)) {
        return Err(format!(
            "the backup has state format {}, and this build reads format {}",
            manifest["state_format"],
            freshet_storage::FORMAT_VERSION
        ));
    }
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .map_err(|e| format!("cannot read {}: {e}", data_dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} is not empty: restore into a new data directory",
            data_dir.display()
        ));
    }
    copy_dir(&from.join("db"), &data_dir.join("db"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for e in entries {
        let e = e.map_err(|e| e.to_string())?;
        let target = to.join(e.file_name());
        if e.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .map_err(|err| format!("cannot copy {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}
