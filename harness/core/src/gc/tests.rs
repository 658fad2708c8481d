use std::sync::Arc;

use super::failover::{self, FailoverCase};
use super::provider::{AbpProfile, ProviderConfig};
use super::timeline::Timeline;
use crate::LabFile;

/// KB 929439's story: gc1 shuts down at 4 s while gc2 comes up without its principal in
/// the KDC, gc1 is down at 6 s, the KDC learns gc2 at 9 s, the program restarts at 13 s.
pub(crate) const KB_TIMELINE: &str = r#"
gcs = ["gc1", "gc2"]
start = { gc2 = "down" }
kdc-unknown = ["gc2"]
calls = 15
[[event]]
at = 4
gc = "gc1"
state = "shutting-down"
[[event]]
at = 4
gc = "gc2"
state = "up"
[[event]]
at = 6
gc = "gc1"
state = "down"
[[event]]
at = 9
gc = "gc2"
kdc = "add"
[[event]]
at = 13
restart = true
"#;

fn world() -> Arc<crate::world::World> {
    let mut lab = LabFile::default_lab();
    lab.add_user(failover::SERVICE_ACCOUNT.0, failover::SERVICE_ACCOUNT.1);
    Arc::new(lab.build().expect("default lab"))
}

/// A configuration: the profile, EMSAB_UserAuth_Credentials, ALLOW_RECONNECT, whether the
/// program can prompt, whether its process is of another domain.
pub(crate) fn case(
    profile: AbpProfile,
    value: bool,
    reconnect: bool,
    prompt: bool,
    other: bool,
) -> FailoverCase {
    FailoverCase {
        provider: ProviderConfig {
            profile,
            user_auth_credentials: value,
            allow_reconnect: reconnect,
            can_prompt: prompt,
        },
        process_in_other_domain: other,
    }
}

fn timeline_of(c: FailoverCase) -> (String, super::failover::FailoverRun) {
    let timeline: Timeline = toml::from_str(KB_TIMELINE).expect("timeline");
    timeline.validate().expect("valid");
    let run = failover::run(&world(), &timeline, &c, "alice", "secret", 1_700_000_000, 7);
    (run.timeline(), run)
}

#[test]
fn the_kb_timeline_per_provider() {
    use AbpProfile::*;
    let rows = [
        (
            case(Exchange2003Sp1, false, true, false, false),
            "...NNNNNNNNN|...",
        ),
        (case(Hotfix, false, true, false, false), "...NNNNNNNNN|..."),
        // Without the hotfix the registry value is not read.
        (
            case(Exchange2003Sp1, true, true, false, false),
            "...NNNNNNNNN|...",
        ),
        (case(Hotfix, true, true, false, false), "...NNNNNE...|..."),
        (
            case(Exchange2003Sp1, false, true, true, false),
            "...P........|...",
        ),
        (case(Hotfix, true, true, true, false), "...NNNNNE...|..."),
        (
            case(Exchange2003Sp1, false, false, false, false),
            "...NNNNNNNNN|...",
        ),
        (case(Hotfix, true, false, true, false), "...NNNNNNNNN|..."),
        (
            case(Exchange2003Sp1, false, true, true, true),
            "P..E........|P..",
        ),
        (case(Hotfix, true, true, true, true), "NNNNNNNNNNNN|NNN"),
        (
            case(Exchange2003Sp1, false, true, false, true),
            "NNNNNNNNNNNN|NNN",
        ),
    ];
    let mut failures = Vec::new();
    // Which credentials each bind used, as the steps say.
    let (_, prompted) = timeline_of(case(Exchange2003Sp1, false, true, true, false));
    let text = prompted.outcome.render();
    assert!(
        text.contains("NSPI gc1: bound (Kerberos as the process)"),
        "{text}"
    );
    assert!(
        text.contains("NSPI gc2: bound (NTLM as the user)"),
        "{text}"
    );
    for (c, want) in rows {
        let (got, run) = timeline_of(c);
        if got != want {
            failures.push(format!(
                "{}: got {got}, want {want}\n{}",
                failover::policy(&c),
                run.outcome.render()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn scenario_files_check_the_timeline_and_the_address_book_expectations() {
    use crate::scenario::{ScenarioError, ScenarioFile};
    let head = "name = \"t\"\ntitle = \"t\"\n[[param]]\nname = \"protocol\"\nvalues = [\"address-book\"]\n";
    let timeline = "[timeline]\ngcs = [\"gc1\"]\ncalls = 3\n";
    let ok = format!("{head}{timeline}[[expect]]\ntimeline = \"..N\"\nend_state = \"ended\"\n");
    assert!(ScenarioFile::parse(&ok).is_ok());
    let bad_state = format!("{head}{timeline}[[expect]]\nend_state = \"stuck\"\n");
    assert!(matches!(
        ScenarioFile::parse(&bad_state),
        Err(ScenarioError::BadState { index: 0, .. })
    ));
    let bad_symbols = format!("{head}{timeline}[[expect]]\ntimeline = \"..Q\"\n");
    assert!(matches!(
        ScenarioFile::parse(&bad_symbols),
        Err(ScenarioError::BadTimeline { index: 0, .. })
    ));
    let bad_timeline = format!("{head}[timeline]\ngcs = [\"gc1\"]\ncalls = 0\n");
    assert!(matches!(
        ScenarioFile::parse(&bad_timeline),
        Err(ScenarioError::Timeline(_))
    ));
    // Without a timeline the case cannot be planned.
    let file = ScenarioFile::parse(head).expect("parses");
    let case = &file.cases()[0];
    let plan = crate::scenario::CasePlan::new(&file, case);
    assert!(matches!(plan, Err(ScenarioError::Syntax(ref m)) if m.contains("[timeline]")));
}

#[test]
fn a_reset_hop_ends_the_session_on_the_same_global_catalog() {
    // gc1 stays up; the connection to it is reset at 3 s: the provider rebinds gc1 and,
    // having failed over, ends the session; the program logs on again.
    let timeline: Timeline = toml::from_str(
        "gcs = [\"gc1\"]\ncalls = 5\n[[event]]\nat = 3\ngc = \"gc1\"\nreset = true\n",
    )
    .expect("timeline");
    timeline.validate().expect("valid");
    let c = case(AbpProfile::Hotfix, true, true, false, false);
    let run = failover::run(&world(), &timeline, &c, "alice", "secret", 1_700_000_000, 7);
    assert_eq!(run.timeline(), "..E..");
    let text = run.outcome.render();
    assert!(
        text.contains("NSPI gc1: ResolveNamesW: connection closed"),
        "{text}"
    );
    assert!(run
        .trace
        .iter()
        .any(|l| l == "3 s: the connection to gc1 is reset"));
}

#[test]
fn each_global_catalog_takes_tickets_for_itself_only() {
    use super::reach::{DirectoryReach, InProcessSite, LinkError, RpcLink};
    use crate::dcerpc::client::BindSecurity;
    use crate::dcerpc::kerberos::KerberosClientSecurity;
    use crate::dcerpc::nspi::NSPI_SYNTAX;
    use crate::kerberos::client::{login, ticket, Request};
    use crate::kerberos::{Name, NT_SRV_HST};
    use harness_wire::dcerpc::{AuthLevel, AuthType};

    let timeline: Timeline =
        toml::from_str("gcs = [\"gc1\", \"gc2\", \"gc3\"]\ncalls = 1\n").expect("timeline");
    let world = world();
    let topology = super::Topology::start(&timeline, &world.dns_domain);
    let now = 1_700_000_000;
    let mut site = InProcessSite::new(&world, &topology, now, 3);
    let mut rng = crate::rng::SeededRng::new(5);
    let tgt = {
        let mut kdc = |req: &[u8]| site.kdc(req);
        login(
            &mut kdc,
            "alice",
            "EXAMPLE.TEST",
            "secret",
            &Request::default(),
            now,
            &mut rng,
        )
        .expect("TGT")
    };
    let mut bind = |to: &str, for_gc: &str| {
        let name = Name::parse(&format!("exchangeAB/{for_gc}.example.test"), NT_SRV_HST);
        let t = {
            let mut kdc = |req: &[u8]| site.kdc(req);
            ticket(&mut kdc, &tgt, &name, &Request::default(), now, &mut rng).expect("ticket")
        };
        let security = BindSecurity {
            provider: Box::new(
                KerberosClientSecurity::new(AuthType::KERBEROS, t, now, 9).third_leg_in_auth3(),
            ),
            level: AuthLevel::PKT_PRIVACY,
            auth_context_id: 1,
        };
        let wire = site.gc(&format!("{to}.example.test")).expect("connects");
        RpcLink::bind(wire, NSPI_SYNTAX, security).map(|_| ())
    };
    assert_eq!(bind("gc2", "gc2"), Ok(()));
    // gc3 is not in the realm's default services: its principal was added for it.
    assert_eq!(bind("gc3", "gc3"), Ok(()));
    // A ticket for another catalog's principal does not decrypt with this one's key: the
    // bind is refused (bind_nak).
    assert_eq!(bind("gc2", "gc1"), Err(LinkError::BindNak));
}

#[test]
fn each_call_records_every_state_the_provider_was_in() {
    use super::provider::ProviderState::{
        Ended, ProcessCredentials as Process, UserCredentials as User,
    };
    use AbpProfile::*;
    // (case, [(second, the states of that call)]), on the KB timeline.
    let rows = [
        // Prompted at 4 s: the call passes through user credentials, binds gc2 with them
        // and ends the session; the program logs on again (user credentials kept).
        (
            case(Exchange2003Sp1, false, true, true, false),
            vec![
                (1, vec![Process]),
                (4, vec![Process, User, Ended]),
                (5, vec![User]),
                (12, vec![User]),
                (13, vec![Process]),
            ],
        ),
        // A service is stuck in user credentials from 4 s until the restart.
        (
            case(Exchange2003Sp1, false, true, false, false),
            vec![
                (3, vec![Process]),
                (4, vec![Process, User]),
                (5, vec![User]),
                (13, vec![Process]),
            ],
        ),
        // The hotfix with the value: process credentials throughout, ended at 9 s.
        (
            case(Hotfix, true, true, false, false),
            vec![
                (4, vec![Process]),
                (9, vec![Process, Ended]),
                (10, vec![Process]),
            ],
        ),
        // Across domains: prompted at the first call, ended from user credentials at 4 s.
        (
            case(Exchange2003Sp1, false, true, true, true),
            vec![
                (1, vec![Process, User]),
                (4, vec![User, Ended]),
                (5, vec![User]),
                (13, vec![Process, User]),
            ],
        ),
    ];
    for (c, want) in rows {
        let (symbols, run) = timeline_of(c);
        for (at, states) in want {
            let call = &run.calls[at - 1];
            assert_eq!(call.at as usize, at);
            assert_eq!(call.result.entered, states, "{symbols} at {at} s");
            assert_eq!(call.result.entered.last(), Some(&call.result.state));
        }
    }
    // The hotfix with the value never passes through user credentials, in any call.
    for (prompt, other) in [(false, false), (true, false), (true, true), (false, true)] {
        let (symbols, run) = timeline_of(case(Hotfix, true, true, prompt, other));
        assert!(
            run.calls.iter().all(|c| !c.result.entered.contains(&User)),
            "{symbols}"
        );
    }
}

#[test]
fn the_referral_names_the_preferred_catalog_whether_or_not_the_kdc_knows_it() {
    // gc1 (preferred) and gc2 are up; the KDC knows only gc2. The referral names gc1, so
    // a provider on the process's credentials never reaches gc2: the hotfix with the value
    // fails every call; Exchange 2003 SP1's service is stuck in user credentials; an
    // interactive program is prompted and binds gc1 with what the user typed. When gc1
    // goes down at 3 s the referral names gc2, and the hotfix gets in.
    let run_of = |c: FailoverCase, events: &str| {
        let text =
            format!("gcs = [\"gc1\", \"gc2\"]\nkdc-unknown = [\"gc1\"]\ncalls = 5\n{events}");
        let timeline: Timeline = toml::from_str(&text).expect("timeline");
        timeline.validate().expect("valid");
        failover::run(&world(), &timeline, &c, "alice", "secret", 1_700_000_000, 7).timeline()
    };
    use AbpProfile::*;
    let hotfix = case(Hotfix, true, true, false, false);
    assert_eq!(run_of(hotfix, ""), "NNNNN");
    assert_eq!(
        run_of(case(Exchange2003Sp1, false, true, false, false), ""),
        "NNNNN"
    );
    assert_eq!(
        run_of(case(Exchange2003Sp1, false, true, true, false), ""),
        "P...."
    );
    let gc1_down = "[[event]]\nat = 3\ngc = \"gc1\"\nstate = \"down\"\n";
    assert_eq!(run_of(hotfix, gc1_down), "NN...");
}

/// An NSPI that refuses every NspiBind with LogonFailed ([MS-OXNSPI] 3.1.4.1.1), for the
/// provider's handling of a refused bind (the lab's NSPI never refuses the provider's).
struct RefusingNspi;

impl crate::dcerpc::interface::RpcInterface for RefusingNspi {
    fn syntax(&self) -> harness_wire::dcerpc::SyntaxId {
        crate::dcerpc::nspi::NSPI_SYNTAX
    }
    fn name(&self) -> &'static str {
        "nspi"
    }
    fn opnum_count(&self) -> u16 {
        crate::dcerpc::nspi::OPNUM_COUNT
    }
    fn call(
        &self,
        _ctx: &crate::dcerpc::interface::CallContext<'_>,
        _opnum: u16,
        _stub: &[u8],
    ) -> crate::dcerpc::interface::CallOutcome {
        // pServerGuid NULL, a nil context handle, LogonFailed.
        let mut stub = vec![0u8; 4 + 20];
        stub.extend(crate::dcerpc::nspi::status::LOGON_FAILED.to_le_bytes());
        crate::dcerpc::interface::CallOutcome::Response(stub)
    }
}

#[test]
fn a_refused_nspi_bind_fails_the_call_and_binds_nothing() {
    use super::provider::{Identities, Provider};
    use super::reach::{DirectoryReach, InProcessSite, LinkError, Wire};
    use crate::dcerpc::endpoints::ntlm_for_world;
    use crate::dcerpc::kerberos::{KerberosServerFactory, OfferedSecurity};
    use crate::dcerpc::server::{Endpoint, EndpointConfig};

    /// The in-process directory, but gc1's NSPI refuses binds.
    struct Refusing {
        site: InProcessSite,
        gc: std::sync::Arc<Endpoint>,
    }
    impl DirectoryReach for Refusing {
        fn kdc(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
            self.site.kdc(request)
        }
        fn exchange(&mut self) -> Result<Box<dyn Wire>, LinkError> {
            self.site.exchange()
        }
        fn gc(&mut self, _fqdn: &str) -> Result<Box<dyn Wire>, LinkError> {
            struct Session(crate::dcerpc::server::Association);
            impl Wire for Session {
                fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
                    use crate::session::ServerSession;
                    self.0.handle_input(std::time::Duration::ZERO, bytes);
                    Ok(())
                }
                fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
                    use crate::session::{Output, ServerSession};
                    let mut out = Vec::new();
                    while let Some(Output::Write(b)) = self.0.poll_output() {
                        out.extend(b);
                    }
                    if out.is_empty() {
                        Err(LinkError::Silent)
                    } else {
                        Ok(out)
                    }
                }
            }
            Ok(Box::new(Session(self.gc.accept(std::time::Duration::ZERO))))
        }
        fn now(&self) -> i64 {
            self.site.now()
        }
    }

    let world = world();
    let timeline: Timeline = toml::from_str("gcs = [\"gc1\"]\ncalls = 1\n").expect("timeline");
    let topology = super::Topology::start(&timeline, &world.dns_domain);
    let now = 1_700_000_000;
    let db = crate::kerberos::RealmDb::for_world(&world);
    let keytab = db
        .entry("exchangeAB/gc1.example.test")
        .cloned()
        .into_iter()
        .collect();
    let clock: crate::dcerpc::kerberos::Clock = std::sync::Arc::new(move || now);
    let security = OfferedSecurity::new(vec![
        std::sync::Arc::new(ntlm_for_world(&world, 1, 1_700_000_000)),
        std::sync::Arc::new(KerberosServerFactory::new(db.realm(), keytab, clock, 2)),
    ]);
    let gc = Endpoint::new(
        EndpointConfig::default(),
        vec![std::sync::Arc::new(RefusingNspi)],
        Some(std::sync::Arc::new(security)),
    );
    let mut reach = Refusing {
        site: InProcessSite::new(&world, &topology, now, 3),
        gc,
    };
    let c = case(AbpProfile::Hotfix, true, true, false, false);
    let who: Identities = failover::identities(&world, &c, "alice", "secret");
    let mut provider = Provider::new(c.provider, who, 7);
    for _ in 0..2 {
        let mut steps = Vec::new();
        let result = provider.call(&mut reach, &mut steps);
        assert_eq!(result.code, Some(crate::codes::known::MAPI_E_NETWORK_ERROR));
        assert_eq!(
            steps.last().map(String::as_str),
            Some("NSPI gc1: NspiBind: MAPI_E_LOGON_FAILED (0x80040111)"),
            "{steps:?}"
        );
        // Nothing was bound: the next call binds again (and is refused again).
        assert!(
            !steps.iter().any(|s| s.starts_with("NSPI gc1: bound")),
            "{steps:?}"
        );
    }
}
