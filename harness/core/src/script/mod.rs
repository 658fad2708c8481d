//! Transcript scripts: `C:` lines a client sends, `S:` lines a server is expected to send,
//! over one or more connections, with wildcards and captures (in the spirit of Dovecot's
//! imaptest scripts). The same script plays in-process against an endpoint and over
//! sockets against the lab or a live server.
//!
//! ```text
//! # Comments start with '#'. Directives start with '@'.
//! @protocol imap
//! @var user alice
//! @var password secret
//! S: * OK $*
//! C: a1 LOGIN $user $password
//! S: a1 OK $*
//! C: a2 SELECT INBOX
//! S: ...
//! S: * $exists EXISTS
//! S: ...
//! S: a2 OK [READ-WRITE] $*
//! C2: b1 LOGOUT          (a second connection; opened on first use)
//! S2: ...
//! @close 2
//! ```
//!
//! In `S:` patterns, `$*` matches any text (also none), `$name` captures a non-empty run
//! of characters up to the next literal character (or compares with the value captured
//! before), `$$` is a literal `$`. A line `S: ...` skips any number of lines until the
//! next pattern matches. In `C:` lines `$name` is replaced by a variable or capture and
//! `${0d 0a}` by the bytes given in hex.

mod inprocess;
mod parse;
mod pattern;
mod play;

pub use inprocess::InProcess;
pub use parse::{parse, Directive, Line, ParseError, Script, Step};
pub use pattern::{Pattern, Piece};
pub use play::{play, PlayError, PlayReport, ReadLine, ScriptTransport, StepRecord, Verdict};
