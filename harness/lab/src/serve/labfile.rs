//! Loading a lab file from disk: the TOML itself plus the mbox files and Maildir
//! directories its users import (parsed by `harness_core::mailfile`), and the lab's
//! front-ends (`[[frontend]]`, read here: they are the lab's, not the world's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness_core::frontend::{FrontendProfile, FRONTEND_PROFILE_NAMES};
use harness_core::mailfile::{maildir_flags, maildir_time, split_mbox};
use harness_core::world::{LabFile, LabFileError, MessageEntry};
use harness_core::Protocol;
use serde::Deserialize;

use super::frontend_host::{BackendTarget, BackendTls, FrontendSpec};
use super::hop::HopStage;

/// Largest single file an import reads.
pub const MAX_IMPORT_FILE: u64 = 1 << 30;
/// Most messages one import may bring.
pub const MAX_IMPORT_MESSAGES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    LabFile { path: PathBuf, source: LabFileError },
    #[error("{path} is {size} bytes; imports read at most {MAX_IMPORT_FILE}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("user {user}: an import names exactly one of `mbox` or `maildir`")]
    BadImport { user: String },
    #[error("{path} holds more than {MAX_IMPORT_MESSAGES} messages")]
    TooMany { path: PathBuf },
    #[error("{path}: front-end on {listen}: {reason}")]
    BadFrontend {
        path: PathBuf,
        listen: SocketAddr,
        reason: String,
    },
}

/// A `[[frontend]]` of a lab file: a front-end listener and the hop to its back-end.
///
/// ```toml
/// [[frontend]]
/// protocol = "imap"
/// listen = "127.0.0.1:1443"
/// profile = "exchange2000-sp1"   # default exchange2000-rtm
/// pool_size = 64                  # default: the profile's
/// [frontend.backend]
/// addr = "127.0.0.1:993"          # default: this lab's own listener
/// tls = true                      # implicit TLS, the certificate verified
/// trust = "backend-cert.pem"      # default: this lab's own certificate
/// resumption = true               # resume TLS sessions (default)
/// rtt_ms = 0.5                    # emulated round trip on the hop (default 0)
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontendEntry {
    protocol: Protocol,
    listen: SocketAddr,
    profile: Option<String>,
    pool_size: Option<usize>,
    cache_size: Option<usize>,
    #[serde(default)]
    backend: BackendEntry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEntry {
    addr: Option<SocketAddr>,
    #[serde(default)]
    tls: bool,
    trust: Option<PathBuf>,
    resumption: Option<bool>,
    rtt_ms: Option<f64>,
}

/// The front-end profile `name` with the pool and cache sizes given, or why not.
pub fn frontend_profile(
    name: &str,
    pool_size: Option<usize>,
    cache_size: Option<usize>,
) -> Result<FrontendProfile, String> {
    let mut profile = FrontendProfile::by_name(name).ok_or_else(|| {
        format!(
            "unknown front-end profile {name:?}; known: {}",
            FRONTEND_PROFILE_NAMES.join(", ")
        )
    })?;
    if let Some(size) = pool_size {
        profile.pool.size = size;
    }
    if let Some(size) = cache_size {
        profile.pool.cache_size = size;
    }
    Ok(profile)
}

/// An emulated round trip of `rtt_ms` milliseconds, or why not.
pub fn round_trip_stages(rtt_ms: f64) -> Result<Vec<HopStage>, String> {
    let rtt = Duration::try_from_secs_f64(rtt_ms / 1000.0)
        .map_err(|_| format!("rtt_ms must be a non-negative number, got {rtt_ms}"))?;
    if rtt > Duration::from_secs(10) {
        return Err(format!("rtt_ms {rtt_ms} is over 10 s"));
    }
    Ok((!rtt.is_zero())
        .then(|| HopStage::round_trip(rtt))
        .into_iter()
        .collect())
}

impl FrontendEntry {
    fn into_spec(self, base: &Path) -> Result<FrontendSpec, String> {
        let profile = frontend_profile(
            self.profile.as_deref().unwrap_or("exchange2000-rtm"),
            self.pool_size,
            self.cache_size,
        )?;
        let b = self.backend;
        if !b.tls && (b.trust.is_some() || b.resumption.is_some()) {
            return Err("`trust` and `resumption` need `tls = true`".into());
        }
        let tls = b.tls.then(|| BackendTls {
            trusted: b.trust.map(|path| base.join(path)),
            resumption: b.resumption.unwrap_or(true),
        });
        let stages = round_trip_stages(b.rtt_ms.unwrap_or(0.0))?;
        let backend =
            (b.addr.is_some() || tls.is_some() || !stages.is_empty()).then_some(BackendTarget {
                addr: b.addr,
                tls,
                stages,
            });
        Ok(FrontendSpec {
            protocol: self.protocol,
            addr: self.listen,
            profile,
            backend,
        })
    }
}

/// A lab file's text split into the world's part and its `[[frontend]]` entries.
fn split_frontends(text: &str) -> Result<(LabFile, Vec<FrontendEntry>), LabFileError> {
    let mut table: toml::Table = text.parse()?;
    let Some(frontends) = table.remove("frontend") else {
        // Parsed from the text, so that errors point at lines.
        return Ok((LabFile::parse(text)?, Vec::new()));
    };
    let entries = Vec::<FrontendEntry>::deserialize(frontends)?;
    Ok((LabFile::deserialize(table)?, entries))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, LoadError> {
    let err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(err)?.len();
    if size > MAX_IMPORT_FILE {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    std::fs::read(path).map_err(err)
}

/// Reads and parses a lab file, then resolves its imports into messages.
pub fn load(path: &Path) -> Result<LabFile, LoadError> {
    load_with_frontends(path).map(|(lab, _)| lab)
}

/// [`load`], and the lab file's front-ends (`[[frontend]]`); paths in them are relative
/// to the lab file.
pub fn load_with_frontends(path: &Path) -> Result<(LabFile, Vec<FrontendSpec>), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (mut lab, entries) = split_frontends(&text).map_err(|source| LoadError::LabFile {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve_imports(&mut lab, base)?;
    let frontends = entries
        .into_iter()
        .map(|entry| {
            let listen = entry.listen;
            entry
                .into_spec(base)
                .map_err(|reason| LoadError::BadFrontend {
                    path: path.to_path_buf(),
                    listen,
                    reason,
                })
        })
        .collect::<Result<_, _>>()?;
    Ok((lab, frontends))
}

/// Turns every `[[user.import]]` into `[[user.message]]` entries, reading files under
/// `base` (relative paths) or where absolute paths point.
pub fn resolve_imports(lab: &mut LabFile, base: &Path) -> Result<(), LoadError> {
    for user in &mut lab.users {
        for import in &user.imports {
            let mailbox = import.mailbox.clone();
            match (&import.mbox, &import.maildir) {
                (Some(mbox), None) => {
                    let path = base.join(mbox);
                    let messages = split_mbox(&read_bounded(&path)?);
                    if messages.len() > MAX_IMPORT_MESSAGES {
                        return Err(LoadError::TooMany { path });
                    }
                    user.messages
                        .extend(messages.into_iter().map(|raw| MessageEntry {
                            mailbox: mailbox.clone(),
                            raw_bytes: Some(raw),
                            ..MessageEntry::default()
                        }));
                }
                (None, Some(dir)) => {
                    let dir = base.join(dir);
                    let mut files = Vec::new();
                    for sub in ["cur", "new"] {
                        let sub = dir.join(sub);
                        let entries =
                            std::fs::read_dir(&sub).map_err(|source| LoadError::Read {
                                path: sub.clone(),
                                source,
                            })?;
                        for entry in entries {
                            let entry = entry.map_err(|source| LoadError::Read {
                                path: sub.clone(),
                                source,
                            })?;
                            files.push(entry.path());
                            if files.len() > MAX_IMPORT_MESSAGES {
                                return Err(LoadError::TooMany { path: dir });
                            }
                        }
                    }
                    // Maildir names start with the delivery time: sorting keeps the order.
                    files.sort();
                    for file in files {
                        let name = file
                            .file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default();
                        user.messages.push(MessageEntry {
                            mailbox: mailbox.clone(),
                            raw_bytes: Some(read_bounded(&file)?),
                            flags: maildir_flags(&name),
                            internal_date: maildir_time(&name),
                            ..MessageEntry::default()
                        });
                    }
                }
                _ => {
                    return Err(LoadError::BadImport {
                        user: user.name.clone(),
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_mbox_and_maildir_relative_to_the_lab_file() {
        let dir = std::env::temp_dir().join(format!("harness-labfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("md/cur")).unwrap();
        std::fs::create_dir_all(dir.join("md/new")).unwrap();
        std::fs::write(
            dir.join("old.mbox"),
            "From x Mon Jan  1 00:00:00 2024\nSubject: from mbox 1\n\none\n\nFrom y Mon Jan  1 00:00:00 2024\nSubject: from mbox 2\n\ntwo\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("md/cur/1704067201.M1.h:2,SF"),
            "Subject: seen and flagged\n\nx\n",
        )
        .unwrap();
        std::fs::write(dir.join("md/new/1704067202.M2.h"), "Subject: new\n\ny\n").unwrap();
        std::fs::write(
            dir.join("lab.toml"),
            "[[user]]\nname = \"dana\"\npassword = \"pw\"\nmailbox = [\"Archive\"]\n\
             [[user.import]]\nmbox = \"old.mbox\"\nmailbox = \"Archive\"\n\
             [[user.import]]\nmaildir = \"md\"\n",
        )
        .unwrap();
        let world = load(&dir.join("lab.toml")).unwrap().build().unwrap();
        world.store.with_account("dana", |a| {
            let archive = a.mailbox("Archive").unwrap();
            assert_eq!(archive.messages.len(), 2);
            assert_eq!(
                &*archive.messages[1].data,
                b"Subject: from mbox 2\r\n\r\ntwo\r\n"
            );
            let inbox = a.mailbox("INBOX").unwrap();
            assert_eq!(inbox.messages.len(), 2, "no sample messages when importing");
            assert!(
                inbox.messages[0].flags.contains("\\Seen")
                    && inbox.messages[0].flags.contains("\\Flagged")
            );
            assert_eq!(inbox.messages[0].internal_date, 1_704_067_201);
            assert!(inbox.messages[1].flags.is_empty());
        });
        std::fs::write(
            dir.join("bad.toml"),
            "[[user]]\nname = \"e\"\npassword = \"p\"\n[[user.import]]\nmailbox = \"X\"\n",
        )
        .unwrap();
        assert!(matches!(
            load(&dir.join("bad.toml")),
            Err(LoadError::BadImport { .. })
        ));
        std::fs::write(
            dir.join("missing.toml"),
            "[[user]]\nname = \"e\"\npassword = \"p\"\n[[user.import]]\nmbox = \"nope\"\n",
        )
        .unwrap();
        assert!(matches!(
            load(&dir.join("missing.toml")),
            Err(LoadError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
