//! POP3 client commands (RFC 1939 sections 4-7, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034
//! AUTH): decoding one command line and encoding it back.
//!
//! RFC 1939 section 3: a command is a case-insensitive keyword, possibly followed by
//! arguments, separated by a single space. This decoder is a little lenient where real
//! clients are: runs of spaces between arguments and trailing spaces are accepted
//! (Microsoft clients send `AUTH` followed by a space, [MS-POP3] 2.2.1), except for PASS,
//! whose single argument is the rest of the line (RFC 1939 section 7 allows spaces in it).

use std::fmt;

/// The initial response of `AUTH mech initial-response` (RFC 5034 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialResponse {
    /// `=`: an initial response that is empty.
    Empty,
    /// The base64 text as the client sent it (the server decodes it, so that invalid
    /// base64 gets its own `-ERR`).
    Base64(String),
}

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Apop {
        user: String,
        digest: String,
    },
    Auth {
        mechanism: Option<String>,
        initial: Option<InitialResponse>,
    },
    Capa,
    Stls,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u32),
    Dele(u32),
    Rset,
    Noop,
    Quit,
    /// A line whose keyword this server does not know, kept whole as received.
    Unknown(String),
}

/// Why a command line could not be decoded. Each names what was wrong, for the `-ERR` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty command line")]
    Empty,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    #[error("command line contains control character 0x{0:02x}")]
    ControlCharacter(u8),
    #[error("command line starts with a space")]
    MissingKeyword,
    #[error("{command} needs {what}")]
    MissingArgument {
        command: &'static str,
        what: &'static str,
    },
    #[error("{command} has too many arguments")]
    TooManyArguments { command: &'static str },
    #[error("{command}: {what} is not a decimal number")]
    NotANumber {
        command: &'static str,
        what: &'static str,
    },
    #[error("{command}: {what} is out of range")]
    OutOfRange {
        command: &'static str,
        what: &'static str,
    },
    #[error("APOP digest must be 32 hexadecimal digits")]
    BadDigest,
}

impl Command {
    /// Decodes one command line, without its CRLF.
    pub fn decode(line: &[u8]) -> Result<Command, CommandError> {
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
        if let Some(c) = line.bytes().find(|&b| b < 0x20 || b == 0x7f) {
            return Err(CommandError::ControlCharacter(c));
        }
        let (keyword, rest) = match line.split_once(' ') {
            Some((k, r)) => (k, r),
            None => (line, ""),
        };
        if keyword.is_empty() {
            return Err(CommandError::MissingKeyword);
        }
        let upper = keyword.to_ascii_uppercase();
        let name: &'static str = match upper.as_str() {
            "USER" => "USER",
            "PASS" => "PASS",
            "APOP" => "APOP",
            "AUTH" => "AUTH",
            "CAPA" => "CAPA",
            "STLS" => "STLS",
            "STAT" => "STAT",
            "LIST" => "LIST",
            "UIDL" => "UIDL",
            "RETR" => "RETR",
            "TOP" => "TOP",
            "DELE" => "DELE",
            "RSET" => "RSET",
            "NOOP" => "NOOP",
            "QUIT" => "QUIT",
            _ => return Ok(Command::Unknown(line.to_string())),
        };
        if name == "PASS" {
            // RFC 1939 section 7: the password is the rest of the line, spaces included.
            return if rest.is_empty() {
                Err(CommandError::MissingArgument {
                    command: name,
                    what: "a password",
                })
            } else {
                Ok(Command::Pass(rest.to_string()))
            };
        }
        let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
        let args = Args {
            command: name,
            args,
        };
        let cmd = match name {
            "USER" => {
                args.at_most(1)?;
                Command::User(args.required(0, "a user name")?.to_string())
            }
            "APOP" => {
                args.at_most(2)?;
                let user = args.required(0, "a user name")?.to_string();
                let digest = args.required(1, "a digest")?;
                if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CommandError::BadDigest);
                }
                Command::Apop {
                    user,
                    digest: digest.to_string(),
                }
            }
            "AUTH" => {
                args.at_most(2)?;
                let mechanism = args.optional(0).map(str::to_string);
                let initial = args.optional(1).map(|ir| {
                    if ir == "=" {
                        InitialResponse::Empty
                    } else {
                        InitialResponse::Base64(ir.to_string())
                    }
                });
                Command::Auth { mechanism, initial }
            }
            "LIST" | "UIDL" => {
                args.at_most(1)?;
                let n = match args.optional(0) {
                    Some(a) => Some(args.message_number(a)?),
                    None => None,
                };
                if name == "LIST" {
                    Command::List(n)
                } else {
                    Command::Uidl(n)
                }
            }
            "RETR" | "DELE" => {
                args.at_most(1)?;
                let n = args.message_number(args.required(0, "a message number")?)?;
                if name == "RETR" {
                    Command::Retr(n)
                } else {
                    Command::Dele(n)
                }
            }
            "TOP" => {
                args.at_most(2)?;
                let n = args.message_number(args.required(0, "a message number")?)?;
                let k = args.number(args.required(1, "a line count")?, "the line count")?;
                Command::Top(n, k)
            }
            _ => {
                args.at_most(0)?;
                match name {
                    "CAPA" => Command::Capa,
                    "STLS" => Command::Stls,
                    "STAT" => Command::Stat,
                    "RSET" => Command::Rset,
                    "NOOP" => Command::Noop,
                    _ => Command::Quit,
                }
            }
        };
        Ok(cmd)
    }

    /// The keyword as this server spells it, or the first word of an unknown line.
    pub fn keyword(&self) -> &str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Top(..) => "TOP",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Unknown(line) => line.split(' ').next().unwrap_or(""),
        }
    }

    /// Writes the command line, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Command {
    /// The command line without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kw = self.keyword();
        match self {
            Command::User(a) | Command::Pass(a) => write!(f, "{kw} {a}"),
            Command::Apop { user, digest } => write!(f, "APOP {user} {digest}"),
            Command::Auth { mechanism, initial } => {
                f.write_str("AUTH")?;
                if let Some(m) = mechanism {
                    write!(f, " {m}")?;
                    match initial {
                        Some(InitialResponse::Empty) => f.write_str(" =")?,
                        Some(InitialResponse::Base64(b)) => write!(f, " {b}")?,
                        None => {}
                    }
                }
                Ok(())
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) => write!(f, "{kw} {n}"),
            Command::Retr(n) | Command::Dele(n) => write!(f, "{kw} {n}"),
            Command::Top(n, k) => write!(f, "TOP {n} {k}"),
            Command::Unknown(line) => f.write_str(line),
            _ => f.write_str(kw),
        }
    }
}

struct Args<'a> {
    command: &'static str,
    args: Vec<&'a str>,
}

impl<'a> Args<'a> {
    fn at_most(&self, n: usize) -> Result<(), CommandError> {
        if self.args.len() > n {
            Err(CommandError::TooManyArguments {
                command: self.command,
            })
        } else {
            Ok(())
        }
    }

    fn optional(&self, i: usize) -> Option<&'a str> {
        self.args.get(i).copied()
    }

    fn required(&self, i: usize, what: &'static str) -> Result<&'a str, CommandError> {
        self.optional(i).ok_or(CommandError::MissingArgument {
            command: self.command,
            what,
        })
    }

    /// RFC 1939 section 3: a number is decimal digits; no sign.
    fn number(&self, text: &str, what: &'static str) -> Result<u32, CommandError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CommandError::NotANumber {
                command: self.command,
                what,
            });
        }
        text.parse::<u32>().map_err(|_| CommandError::OutOfRange {
            command: self.command,
            what,
        })
    }

    /// Message numbers start at 1 (RFC 1939 section 5).
    fn message_number(&self, text: &str) -> Result<u32, CommandError> {
        match self.number(text, "the message number")? {
            0 => Err(CommandError::OutOfRange {
                command: self.command,
                what: "the message number",
            }),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn d(line: &str) -> Result<Command, CommandError> {
        Command::decode(line.as_bytes())
    }

    #[test]
    fn decodes_every_command_case_insensitively() {
        assert_eq!(d("user alice"), Ok(Command::User("alice".into())));
        assert_eq!(d("PASS two words "), Ok(Command::Pass("two words ".into())));
        assert_eq!(
            d("apop mrose c4c9334bac560ecc979e58001b3e22fb"),
            Ok(Command::Apop {
                user: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            })
        );
        assert_eq!(
            d("AUTH "),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            d("Auth plain ="),
            Ok(Command::Auth {
                mechanism: Some("plain".into()),
                initial: Some(InitialResponse::Empty)
            })
        );
        assert_eq!(
            d("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some(InitialResponse::Base64("AGFsaWNlAHNlY3JldA==".into()))
            })
        );
        assert_eq!(d("capa"), Ok(Command::Capa));
        assert_eq!(d("StLs"), Ok(Command::Stls));
        assert_eq!(d("STAT"), Ok(Command::Stat));
        assert_eq!(d("LIST"), Ok(Command::List(None)));
        assert_eq!(d("list 2"), Ok(Command::List(Some(2))));
        assert_eq!(d("UIDL 4294967295"), Ok(Command::Uidl(Some(u32::MAX))));
        assert_eq!(d("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(d("TOP 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(d("DELE 3"), Ok(Command::Dele(3)));
        assert_eq!(d("rset"), Ok(Command::Rset));
        assert_eq!(d("NOOP"), Ok(Command::Noop));
        assert_eq!(d("QUIT "), Ok(Command::Quit));
        assert_eq!(d("XTND XMIT"), Ok(Command::Unknown("XTND XMIT".into())));
        assert_eq!(d("XTND XMIT").unwrap().keyword(), "XTND");
    }

    #[test]
    fn typed_errors_name_the_problem() {
        assert_eq!(d(""), Err(CommandError::Empty));
        assert_eq!(Command::decode(b"USER \xff"), Err(CommandError::NotUtf8));
        assert_eq!(d("USER a\0b"), Err(CommandError::ControlCharacter(0)));
        assert_eq!(d("RETR 1\r"), Err(CommandError::ControlCharacter(b'\r')));
        assert_eq!(d(" STAT"), Err(CommandError::MissingKeyword));
        assert_eq!(
            d("PASS"),
            Err(CommandError::MissingArgument {
                command: "PASS",
                what: "a password"
            })
        );
        assert_eq!(
            d("RETR"),
            Err(CommandError::MissingArgument {
                command: "RETR",
                what: "a message number"
            })
        );
        assert_eq!(
            d("STAT 1"),
            Err(CommandError::TooManyArguments { command: "STAT" })
        );
        assert_eq!(
            d("AUTH PLAIN x y"),
            Err(CommandError::TooManyArguments { command: "AUTH" })
        );
        assert_eq!(
            d("RETR -1"),
            Err(CommandError::NotANumber {
                command: "RETR",
                what: "the message number"
            })
        );
        assert_eq!(
            d("RETR 4294967296"),
            Err(CommandError::OutOfRange {
                command: "RETR",
                what: "the message number"
            })
        );
        assert_eq!(
            d("DELE 0"),
            Err(CommandError::OutOfRange {
                command: "DELE",
                what: "the message number"
            })
        );
        assert_eq!(
            d("TOP 1 x"),
            Err(CommandError::NotANumber {
                command: "TOP",
                what: "the line count"
            })
        );
        assert_eq!(d("APOP u 1234"), Err(CommandError::BadDigest));
    }

    #[test]
    fn encodes_canonical_lines_that_decode_back() {
        let cmds = [
            Command::User("alice".into()),
            Command::Pass("pass word".into()),
            Command::Apop {
                user: "u".into(),
                digest: "00112233445566778899AABBCCDDEEFF".into(),
            },
            Command::Auth {
                mechanism: None,
                initial: None,
            },
            Command::Auth {
                mechanism: Some("NTLM".into()),
                initial: None,
            },
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some(InitialResponse::Empty),
            },
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some(InitialResponse::Base64("AAAA".into())),
            },
            Command::Capa,
            Command::Stls,
            Command::Stat,
            Command::List(None),
            Command::List(Some(7)),
            Command::Uidl(None),
            Command::Uidl(Some(1)),
            Command::Retr(2),
            Command::Top(3, 10),
            Command::Dele(9),
            Command::Rset,
            Command::Noop,
            Command::Quit,
            Command::Unknown("XYZZY a b".into()),
        ];
        for c in cmds {
            let mut out = Vec::new();
            c.encode(&mut out);
            assert!(out.ends_with(b"\r\n"));
            assert_eq!(Command::decode(&out[..out.len() - 2]), Ok(c.clone()));
        }
        let mut out = Vec::new();
        Command::Top(1, 5).encode(&mut out);
        assert_eq!(out, b"TOP 1 5\r\n");
    }
}
