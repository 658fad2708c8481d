//! Loading a lab file from disk: the TOML itself plus the mbox files and Maildir
//! directories its users import (parsed by `harness_core::mailfile`).

use std::path::{Path, PathBuf};

use harness_core::mailfile::{maildir_flags, maildir_time, split_mbox};
use harness_core::world::{LabFile, LabFileError, MessageEntry};

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
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lab = LabFile::parse(&text).map_err(|source| LoadError::LabFile {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve_imports(&mut lab, base)?;
    Ok(lab)
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
