//! The load generator's session shape: no capability probe, and the mail read after the
//! login (`ask_capabilities` off, `read_mail` on), against the real servers in-process.

use std::sync::Arc;

use pretty_assertions::assert_eq;

use super::*;
use crate::imap::ImapServer;
use crate::pop3::Pop3Server;
use crate::profile::Profile;
use crate::session::SessionContext;
use crate::world::LabFile;
use crate::Protocol;

fn server_context() -> SessionContext {
    let world = Arc::new(LabFile::default_lab().build().expect("default lab"));
    SessionContext::new(world, Arc::new(Profile::default_profile()))
}

fn load_config(password: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new("alice", password, Policy::Basic);
    cfg.max_prompts = 0;
    cfg.ask_capabilities = false;
    cfg.read_mail = true;
    cfg
}

fn client_lines(outcome: &SessionOutcome) -> Vec<&str> {
    outcome
        .steps
        .iter()
        .filter_map(|s| s.as_str().strip_prefix("C: "))
        .collect()
}

fn run(protocol: Protocol, cfg: ClientConfig) -> SessionOutcome {
    let mut client = new_client(protocol, cfg);
    let mut server: Box<dyn ServerSession> = match protocol {
        Protocol::Imap => Box::new(ImapServer::new(server_context())),
        Protocol::Pop3 => Box::new(Pop3Server::new(server_context())),
    };
    let report = run_pair(client.as_mut(), server.as_mut(), 10_000);
    assert_eq!(report.end, RunEnd::ClientDone);
    client.outcome()
}

/// Runs a session that must succeed.
fn run_ok(protocol: Protocol, cfg: ClientConfig) -> SessionOutcome {
    let outcome = run(protocol, cfg);
    assert_eq!(
        outcome.status,
        Status::Authenticated,
        "{}",
        outcome.render()
    );
    outcome
}

#[test]
fn imap_logs_in_at_once_and_fetches_every_message() {
    let outcome = run_ok(Protocol::Imap, load_config("secret"));
    assert_eq!(
        client_lines(&outcome),
        [
            "a1 LOGIN alice ****",
            "a2 SELECT INBOX",
            "a3 FETCH 1:* (FLAGS BODY.PEEK[])",
            "a4 LOGOUT"
        ]
    );
}

#[test]
fn pop3_logs_in_at_once_and_retrieves_the_first_message() {
    let outcome = run_ok(Protocol::Pop3, load_config("secret"));
    assert_eq!(
        client_lines(&outcome),
        ["USER alice", "PASS ****", "STAT", "RETR 1", "QUIT"]
    );
    // The message body is counted through, not logged.
    assert!(!outcome.steps.iter().any(|s| s.as_str().contains("Subject")));
}

#[test]
fn a_refused_login_fails_without_prompting() {
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let outcome = run(protocol, load_config("wrong"));
        assert_eq!(outcome.status, Status::Failed, "{}", outcome.render());
        assert_eq!(outcome.prompts, 0);
    }
}

#[test]
fn without_read_mail_the_session_is_the_modelled_clients() {
    let mut cfg = load_config("secret");
    cfg.read_mail = false;
    cfg.ask_capabilities = true;
    let outcome = run_ok(Protocol::Imap, cfg);
    assert_eq!(
        client_lines(&outcome),
        [
            "a1 CAPABILITY",
            "a2 LOGIN alice ****",
            "a3 SELECT INBOX",
            "a4 LOGOUT"
        ]
    );
}
