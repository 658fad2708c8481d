//! The web tier (KB 918710's IIS server), sans-IO: what a request's authentication made of
//! the user ([`token::LogonToken`]) and the pages the site serves. HTTP and its
//! authentication are the adapter's (`harness serve --web`) and `http_auth`'s.
//!
//! Pages:
//! - `/` and `/whoami`: the logon token the page runs under and what it could do on a
//!   next hop, as `key: value` lines (a browser shows them; tests read them).

pub mod browser;
pub mod double_hop;
pub mod provider;
pub mod token;

use token::{HopMechanism, LogonToken, TokenKind};

/// The Negotiate acceptor of a web server of `world`: a keytab of the realm's
/// `HTTP/<host>` principals (the web tier's, and the store's own web services).
pub fn http_acceptor(world: &crate::world::World, seed: u64) -> crate::kerberos::gss::Acceptor {
    let db = crate::kerberos::RealmDb::for_world(world);
    let keytab = db
        .entries()
        .filter(|e| e.name.components.first().is_some_and(|c| c == "HTTP"))
        .cloned()
        .collect();
    crate::kerberos::gss::Acceptor::new(db.realm(), keytab, seed)
}

/// One request as the application sees it.
#[derive(Debug, Clone)]
pub struct WebRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub token: &'a LogonToken,
    /// Where the browser runs, for the report: `this host` or its address.
    pub client: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebResponse {
    pub status: u16,
    pub body: String,
}

/// Answers one authenticated request.
pub fn handle(req: &WebRequest<'_>) -> WebResponse {
    if req.method != "GET" && req.method != "HEAD" {
        return WebResponse {
            status: 405,
            body: "only GET here\n".into(),
        };
    }
    match req.path {
        "/" | "/whoami" => WebResponse {
            status: 200,
            body: whoami(req.token, req.client),
        },
        _ => WebResponse {
            status: 404,
            body: format!("no page {}\n", req.path),
        },
    }
}

/// The identity report: who, how, from where, and the next hops the token allows.
pub fn whoami(token: &LogonToken, client: &str) -> String {
    let hop = |m: HopMechanism| match token.next_hop(m) {
        Ok(_) => "possible".to_string(),
        Err(why) => format!("refused ({why})"),
    };
    let delegated = match &token.kind {
        TokenKind::Kerberos {
            delegated: Some(tgt),
        } => format!("yes ({}@{})", tgt.server, tgt.realm),
        TokenKind::Kerberos { delegated: None } => "no".into(),
        _ => "n/a".into(),
    };
    // A client that names no domain (curl's NTLM) is shown by its name alone.
    let user = match token.domain.as_str() {
        "" => token.user.clone(),
        domain => format!("{domain}\\{}", token.user),
    };
    let mut out = format!(
        "user: {user}\nscheme: {}\ntoken: {}\ndelegated: {delegated}\nclient: {client}\ntls: {}\n\
         next hop ntlm: {}\nnext hop kerberos: {}\n",
        token.scheme.name(),
        token.kind_name(),
        if token.tls { "yes" } else { "no" },
        hop(HopMechanism::Ntlm),
        hop(HopMechanism::Kerberos),
    );
    if token.cleartext_on_the_wire() {
        out.push_str("finding: cleartext credentials (Basic without TLS)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_auth::{HttpPrincipal, HttpScheme};
    use crate::kerberos::{Kdc, KdcConfig, RealmDb};
    use crate::LabFile;

    fn delegated_tgt() -> crate::kerberos::client::Credentials {
        let world = LabFile::default_lab().build().expect("lab");
        let mut kdc = Kdc::new(RealmDb::for_world(&world), KdcConfig::default(), 1);
        provider::tests::delegated_tgt(&mut kdc)
    }

    #[test]
    fn whoami_reports_the_token_and_its_next_hops() {
        let principal = HttpPrincipal {
            scheme: HttpScheme::Negotiate,
            user: "alice".into(),
            domain: "EXAMPLE.TEST".into(),
            delegated: Some(Box::new(delegated_tgt())),
            mutual: None,
        };
        let token = LogonToken::from_principal(&principal, false, true);
        let page = handle(&WebRequest {
            method: "GET",
            path: "/whoami",
            token: &token,
            client: "127.0.0.2",
        });
        assert_eq!(page.status, 200);
        assert_eq!(
            page.body,
            "user: EXAMPLE.TEST\\alice\nscheme: Negotiate\ntoken: network (Kerberos, delegated TGT)\n\
             delegated: yes (krbtgt/EXAMPLE.TEST@EXAMPLE.TEST)\nclient: 127.0.0.2\ntls: yes\n\
             next hop ntlm: refused (a Kerberos logon has no password for NTLM)\n\
             next hop kerberos: possible\n"
        );
        let basic = HttpPrincipal {
            scheme: HttpScheme::Basic,
            delegated: None,
            ..principal
        };
        let token = LogonToken::from_principal(&basic, false, false);
        let page = whoami(&token, "127.0.0.2");
        assert!(
            page.ends_with(
                "next hop kerberos: possible\nfinding: cleartext credentials (Basic without TLS)\n"
            ),
            "{page}"
        );
        let other = handle(&WebRequest {
            method: "GET",
            path: "/nope",
            token: &token,
            client: "x",
        });
        assert_eq!(other.status, 404);
        let post = handle(&WebRequest {
            method: "POST",
            path: "/",
            token: &token,
            client: "x",
        });
        assert_eq!(post.status, 405);
    }
}
