//! Fuzz target `web_tier_requests`: the web tier's request handling end to end, in
//! process. Requests on one connection carry real or garbage `Authorization` headers
//! (Basic, NTLM's legs, Negotiate from the in-process KDC with or without a forwarded
//! TGT, arbitrary octets), from the tier's own host or another, to `/whoami`,
//! `/mailbox?provider=…` or an arbitrary path. Invariants: a page is served only to an
//! authenticated request; `/mailbox` lists the mailbox exactly when the token model says
//! the provider's hop can be made (never with a token that cannot make it), and its page
//! reads back (as the socket runner reads it) to the same result; any octets read back
//! as a page without a panic.

use std::sync::Arc;

use arbitrary::Unstructured;
use base64::Engine as _;

use super::ops::{byte, choice, default_world, flag, raw};
use crate::driver::outcome::Status;
use crate::http_auth::{ConnectionAuth, HttpAuthenticator, HttpScheme, Verdict};
use crate::ntlm::{Credentials, InitiatorOptions, NtlmInitiator, ResponseKind};
use crate::rng::SeededRng;
use crate::web::browser::Browser;
use crate::web::double_hop::{run_from_page, BrowserAuth, DoubleHopCase};
use crate::web::provider::{self, AppHost, DavAuth, Hop, InProcess, StoreProvider, StoreSite};
use crate::web::token::LogonToken;
use crate::web::{self, WebRequest};

/// The in-process store's and KDC's clock.
const NOW: i64 = 1_704_067_200;
const USERS: [(&str, &str); 3] = [("alice", "secret"), ("bob", "hunter2"), ("nobody", "x")];
const PATHS: [&str; 4] = ["/mailbox", "/whoami", "/", "/nope"];
const PROVIDERS: [&str; 4] = ["exchange", "outlook", "webdav", "mapi"];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Fuzz target `web_tier_requests`.
pub fn web_tier_requests(data: &[u8]) {
    requests(data);
}

/// The requests `data` describes, checked; returns what each came to, by name.
fn requests(data: &[u8]) -> Vec<String> {
    let mut seen = Vec::new();
    let Some(world) = default_world() else {
        return seen;
    };
    let world = Arc::new(world);
    let mut u = Unstructured::new(data);
    let mut reach = InProcess::for_world(&world, NOW, 3);
    let site = StoreSite::for_world(&world, 3);
    let mut server = HttpAuthenticator::for_world(
        &world,
        vec![HttpScheme::Ntlm, HttpScheme::Basic],
        u64::from(byte(&mut u)),
        NOW as u64,
    )
    .with_kerberos(web::http_acceptor(&world, 5));
    let mut conn = ConnectionAuth::default();
    let mut rng = SeededRng::new(u64::from(byte(&mut u)));
    let same_host = flag(&mut u);
    let tls = flag(&mut u);
    let host = if flag(&mut u) {
        AppHost::ExchangeHost
    } else {
        AppHost::WebTier
    };
    let mut ntlm: Option<NtlmInitiator> = None;
    let mut last_challenge: Option<Vec<u8>> = None;
    for _ in 0..4 {
        if u.is_empty() {
            break;
        }
        let (user, password) = USERS[usize::from(choice(&mut u, 3))];
        let password = if flag(&mut u) { password } else { "wrong" };
        let authorization: Option<String> = match choice(&mut u, 6) {
            0 => None,
            1 => Some(format!(
                "Basic {}",
                b64(format!("{user}:{password}").as_bytes())
            )),
            2 => {
                let mut client = NtlmInitiator::new(
                    Credentials::example(user, password),
                    InitiatorOptions::fixed(1, 2, ResponseKind::V2, flag(&mut u)),
                );
                let negotiate = client.negotiate();
                ntlm = Some(client);
                Some(format!("NTLM {}", b64(&negotiate)))
            }
            3 => {
                let challenge = last_challenge.clone().unwrap_or_else(|| raw(&mut u));
                ntlm.as_mut()
                    .and_then(|c| c.handle_challenge(&challenge).ok())
                    .map(|a| format!("NTLM {}", b64(&a)))
            }
            4 => negotiate(&mut reach, rng.next_u64(), user, password, flag(&mut u)),
            _ => {
                let scheme =
                    ["Basic", "NTLM", "Negotiate", "Kerberos"][usize::from(choice(&mut u, 4))];
                Some(format!(
                    "{scheme} {}",
                    String::from_utf8_lossy(&raw(&mut u))
                ))
            }
        };
        let path = match choice(&mut u, 5) {
            4 => String::from_utf8_lossy(&raw(&mut u)).into_owned(),
            i => PATHS[usize::from(i)].to_string(),
        };
        let provider_key = PROVIDERS[usize::from(choice(&mut u, 4))];
        let principal = match server.check_at(&mut conn, authorization.as_deref(), NOW) {
            Verdict::Authenticated(p) => p,
            Verdict::Unauthorized {
                www_authenticate, ..
            } => {
                seen.push("401".to_string());
                last_challenge = crate::http_auth::ntlm_challenge(&www_authenticate);
                continue;
            }
            Verdict::BadRequest(_) => {
                seen.push("400".to_string());
                continue;
            }
        };
        let token = LogonToken::from_principal(&principal, same_host, tls);
        if path != "/mailbox" {
            let page = web::handle(&WebRequest {
                method: "GET",
                path: &path,
                token: &token,
                client: "fuzz",
            });
            assert!(matches!(page.status, 200 | 404 | 405), "{}", page.status);
            seen.push(format!("{} {}", page.status, token.kind_name()));
            continue;
        }
        let Some(chosen) = StoreProvider::parse(provider_key) else {
            seen.push(format!("no provider {provider_key}"));
            continue;
        };
        let session_password = provider::session_password(&token, &world);
        let answer = provider::open_mailbox(
            &token,
            session_password.as_deref(),
            chosen,
            host,
            &site,
            &world,
            &mut reach,
        );
        // The model: which hops can list the mailbox at all.
        let possible = match &answer.hop {
            Hop::Local
            | Hop::MapiNtlm { anonymous: false }
            | Hop::MapiKerberos(_)
            | Hop::WebDav(DavAuth::Ntlm | DavAuth::Negotiate(_)) => true,
            Hop::MapiNtlm { anonymous: true }
            | Hop::NoCredentials(_)
            | Hop::WebDav(DavAuth::Anonymous) => false,
        };
        assert!(
            answer.result.is_err() || possible,
            "{:?} listed the mailbox with {:?}",
            answer.hop,
            token.kind_name()
        );
        if answer.hop == Hop::Local {
            assert!(
                answer.result.is_ok(),
                "a local RPC always opens the mailbox"
            );
        }
        seen.push(format!(
            "{} {} {}",
            chosen.key(),
            token.kind_name(),
            match &answer.result {
                Ok(_) => "listing".to_string(),
                Err(code) => code.to_string(),
            }
        ));
        let page = provider::render(&token, &answer);
        assert_eq!(page.status == 200, answer.result.is_ok());
        let case = DoubleHopCase {
            browser_on_web_host: same_host,
            auth: BrowserAuth::Basic,
            provider: chosen,
            app_host: host,
        };
        let read = run_from_page(&token.user, &case, &[], Ok((page.status, page.body)));
        assert_eq!(
            read.outcome.status == Status::Authenticated,
            answer.result.is_ok()
        );
        if let Err(code) = answer.result {
            assert!(read.outcome.codes.contains(&code), "{code} read back");
        }
    }
    // Whatever a web tier answers reads back without a panic.
    let case = DoubleHopCase {
        browser_on_web_host: flag(&mut u),
        auth: BrowserAuth::Kerberos,
        provider: StoreProvider::ExchangeMapi,
        app_host: AppHost::WebTier,
    };
    let status = u16::from(byte(&mut u)) * 3;
    let body = String::from_utf8_lossy(u.take_rest()).into_owned();
    run_from_page("alice", &case, &[], Ok((status, body)));
    seen
}

/// A Negotiate header for `user` from the double hop's browser (tickets from the
/// in-process KDC; the TGT forwarded when `delegate`). None when the KDC refuses (an
/// unknown user, a wrong password).
fn negotiate(
    reach: &mut InProcess,
    seed: u64,
    user: &str,
    password: &str,
    delegate: bool,
) -> Option<String> {
    let mut browser = Browser::new(user, password, "EXAMPLE", BrowserAuth::Kerberos, seed);
    if !delegate {
        browser = browser.without_delegation();
    }
    let mut exchange = |r: &[u8]| Ok(reach.kdc.handle(r, NOW).bytes);
    browser
        .get_tickets(&mut exchange, "EXAMPLE.TEST", NOW)
        .ok()?;
    browser.first("/mailbox", NOW).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds (in corpus/fuzz/web_tier_requests): Basic to /mailbox with each
    /// provider, NTLM's two legs then /mailbox, Negotiate with and without delegation;
    /// what each comes to is checked, so the seeds keep reaching the deep paths.
    pub(super) fn seeds() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
        // auth seed, rng seed, same host, tls, app host; then per request: user, right
        // password, authorization kind (and its extra octets), path, provider.
        let head = [0u8, 0, 0, 0, 0];
        let basic = |provider: u8| [&head[..], &[0, 1, 1, 0, provider]].concat();
        vec![
            (
                "basic-exchange",
                basic(0),
                vec!["exchange cleartext (Basic logon) listing"],
            ),
            (
                "basic-outlook",
                basic(1),
                vec!["outlook cleartext (Basic logon) listing"],
            ),
            (
                "basic-webdav",
                basic(2),
                vec!["webdav cleartext (Basic logon) listing"],
            ),
            (
                "ntlm-legs",
                [&head[..], &[0, 1, 2, 1, 0, 0], &[0, 1, 3, 0, 0]].concat(),
                vec![
                    "401",
                    "exchange network (NTLM) MAPI_E_LOGON_FAILED (0x80040111)",
                ],
            ),
            (
                "negotiate-delegated",
                [&head[..], &[0, 1, 4, 1, 0, 1]].concat(),
                vec!["outlook network (Kerberos, delegated TGT) listing"],
            ),
            (
                "negotiate-not-delegated",
                [&head[..], &[0, 1, 4, 0, 0, 1]].concat(),
                vec!["outlook network (Kerberos, not delegated) MAPI_E_LOGON_FAILED (0x80040111)"],
            ),
        ]
    }

    #[test]
    fn the_seeds_reach_every_kind_of_request() {
        for (name, data, want) in seeds() {
            assert_eq!(requests(&data), want, "{name}");
        }
        web_tier_requests(b"");
        web_tier_requests(&[0xFF; 64]);
    }

    /// Writes the seeds: `cargo test -p harness-core --lib write_web_tier_seeds -- --ignored`.
    #[test]
    #[ignore = "writes corpus/fuzz/web_tier_requests/"]
    fn write_web_tier_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../corpus/fuzz/web_tier_requests");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data, _) in seeds() {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
}
