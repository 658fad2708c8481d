//! Scenario files (`corpus/scenarios/*.toml`): a parameter matrix over well-known
//! parameters, the actor's credentials, and expectations that encode what the case's
//! source (a KB article, a spec) says must happen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The parameters a matrix may vary, and what each value means.
pub const PARAMETERS: &[(&str, &str)] = &[
    (
        "protocol",
        "imap | pop3 | mapi (Exchange RPC over ncacn_ip_tcp) | web (the double hop) | address-book (a program's address-book calls across the file's [timeline])",
    ),
    (
        "topology",
        "direct | a front-end profile (exchange2000-rtm, exchange2000-sp1, affinity, per-session; mail only) | outlook-anywhere-ntlm, outlook-anywhere-basic (mapi only: through the RPC over HTTP proxy, that HTTP authentication on its channels)",
    ),
    (
        "client",
        "mail: oe-spa | oe-basic | basic | curl | telnet; mapi: outlook-encrypted | outlook-unencrypted | mapi-service (a MAPI application with worker threads and the async-notification thread)",
    ),
    (
        "profile",
        "mail: back-end server profile (default, exchange); mapi: exchange2003 | exchange2010 | exchange2010-rtm | exchange2013",
    ),
    ("credentials", "valid | wrong-password (the actor's password, or a wrong one)"),
    (
        "process",
        "mapi-service: mailbox-user (the process runs as the user) | local-system (Local System, the workers impersonating the user) | service-account (the named account svc-mapi, the workers impersonating the user)",
    ),
    (
        "notifications",
        "mapi-service: on | off (PR_PROFILE_CONNECT_FLAGS with CONNECT_NO_NOTIFICATIONS 0x20)",
    ),
    ("schedule", "mapi-service: the thread schedule's seed, 1 to 16"),
    (
        "program",
        "address-book: service (cannot prompt) | interactive (can show a credential prompt)",
    ),
    (
        "userauth-credentials",
        "address-book: 0 | 1 (the registry value EMSAB_UserAuth_Credentials; read by the hotfix only)",
    ),
    (
        "allow-reconnect",
        "address-book: on | off (PR_PROFILE_ABP_ALLOW_RECONNECT 0x66390003)",
    ),
    (
        "process-domain",
        "address-book: same | other (the domain of the account the program runs as; the lab's KDC has no trust with the other)",
    ),
];

/// Schedule seeds a `schedule` parameter may name.
pub const SCHEDULES: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

/// Clients a `mapi` case may name.
pub const MAPI_CLIENTS: &[&str] = &["outlook-encrypted", "outlook-unencrypted", "mapi-service"];
/// Clients a `web` case (the double hop) may name.
pub const WEB_CLIENTS: &[&str] = &["browser"];
/// Clients an `imap` or `pop3` case may name.
pub const MAIL_CLIENTS: &[&str] = &["oe-spa", "oe-basic", "basic", "curl", "telnet"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub actor: Actor,
    #[serde(default, rename = "param")]
    pub params: Vec<Param>,
    #[serde(default, rename = "expect")]
    pub expectations: Vec<Expectation>,
    /// The directory's global catalogs and events on the virtual clock (`address-book`
    /// cases).
    #[serde(default)]
    pub timeline: Option<crate::gc::Timeline>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub user: String,
    pub password: String,
    /// Prompts after which the simulated user gives up.
    pub max_prompts: u32,
    /// Identical prompts without progress that count as a credential loop.
    pub loop_threshold: u32,
    pub seed: u64,
}

impl Default for Actor {
    fn default() -> Self {
        Actor {
            user: "alice".into(),
            password: "secret".into(),
            max_prompts: 5,
            loop_threshold: 3,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub values: Vec<String>,
}

/// One value or several, for `when` conditions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn contains(&self, value: &str) -> bool {
        match self {
            OneOrMany::One(v) => v == value,
            OneOrMany::Many(vs) => vs.iter().any(|v| v == value),
        }
    }

    pub fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(v) => vec![v.as_str()],
            OneOrMany::Many(vs) => vs.iter().map(String::as_str).collect(),
        }
    }
}

/// What must hold for every case whose parameters match `when`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default)]
    pub when: BTreeMap<String, OneOrMany>,
    /// authenticated | failed | looping | disconnected (for `telnet`: probed).
    pub status: Option<String>,
    /// Codes (catalogue names) that must be reported.
    #[serde(default)]
    pub codes: Vec<String>,
    /// The session reports no code at all.
    #[serde(default)]
    pub no_codes: bool,
    /// Finding kinds that must be present (credential-loop, cleartext-credentials, ...).
    #[serde(default)]
    pub findings: Vec<String>,
    /// Finding kinds that must be absent.
    #[serde(default)]
    pub no_findings: Vec<String>,
    /// For `telnet` probes: whether NTLM is advertised.
    pub advertises_ntlm: Option<bool>,
    /// `address-book`: the calls' symbols, exactly (see `harness_core::gc::LEGEND`).
    #[serde(default)]
    pub timeline: Option<String>,
    /// `address-book`: the provider's state after the last call.
    #[serde(default)]
    pub end_state: Option<String>,
    /// Why, in the source's words or a paraphrase; printed beside the check.
    #[serde(default)]
    pub because: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("not a valid scenario file: {0}")]
    Syntax(String),
    #[error("unknown parameter {0:?} (known: protocol, topology, client, profile, credentials)")]
    UnknownParameter(String),
    #[error("parameter {name:?} has an unknown value {value:?} (allowed: {allowed})")]
    UnknownValue {
        name: String,
        value: String,
        allowed: String,
    },
    #[error("parameter {0:?} is given twice")]
    DuplicateParameter(String),
    #[error("parameter {0:?} has no values")]
    EmptyParameter(String),
    #[error("expectation {index}: `when` names {name:?}, which the matrix does not vary")]
    WhenUnknown { index: usize, name: String },
    #[error("expectation {index}: unknown status {status:?}")]
    BadStatus { index: usize, status: String },
    #[error("expectation {index}: unknown code {code:?} (not in the catalogue)")]
    BadCode { index: usize, code: String },
    #[error("expectation {index}: unknown finding kind {kind:?}")]
    BadFinding { index: usize, kind: String },
    #[error("the matrix has {0} cases; at most {MAX_CASES} are allowed")]
    TooManyCases(usize),
    #[error(transparent)]
    Timeline(#[from] crate::gc::timeline::TimelineError),
    #[error("expectation {index}: unknown provider state {state:?} (process-credentials, user-credentials, ended)")]
    BadState { index: usize, state: String },
    #[error("expectation {index}: timeline {timeline:?} has symbols outside the legend")]
    BadTimeline { index: usize, timeline: String },
}

/// Cases one scenario may expand to.
pub const MAX_CASES: usize = 4096;

pub const STATUSES: &[&str] = &[
    "authenticated",
    "failed",
    "looping",
    "disconnected",
    "probed",
];
pub const FINDING_KINDS: &[&str] = &[
    "credential-loop",
    "cleartext-credentials",
    "mechanism-not-offered",
    "unexpected-disconnect",
    "protocol-violation",
    "server-silent",
    "context-split",
    "http-401",
    "notification-missed",
    "registration-failed",
    "unsuitable-provider",
    "credential-prompt",
];

pub fn allowed_values(param: &str) -> Option<Vec<&'static str>> {
    match param {
        "topology" => {
            let mut v = vec!["direct"];
            v.extend_from_slice(crate::scenario::TOPOLOGY_FRONTENDS);
            v.extend_from_slice(crate::scenario::TOPOLOGY_RPC_PROXIES);
            Some(v)
        }
        "protocol" => {
            let mut v = crate::Protocol::ALL.map(crate::Protocol::keyword).to_vec();
            v.push("mapi");
            v.push("web");
            v.push("address-book");
            Some(v)
        }
        "client" => Some([MAIL_CLIENTS, MAPI_CLIENTS, WEB_CLIENTS].concat()),
        "profile" => {
            let mut v = crate::profile::PROFILE_NAMES.to_vec();
            v.extend(crate::dcerpc::emsmdb::EmsmdbProfile::ALL.map(|p| p.name()));
            v.extend(crate::gc::AbpProfile::ALL.map(|p| p.name()));
            Some(v)
        }
        "credentials" => Some(vec!["valid", "wrong-password"]),
        "process" => Some(vec!["mailbox-user", "local-system", "service-account"]),
        "notifications" => Some(vec!["on", "off"]),
        "schedule" => Some(SCHEDULES.to_vec()),
        // The double hop (protocol `web`).
        "browser" => Some(vec!["other-host", "web-host"]),
        "http-auth" => Some(vec!["kerberos", "ntlm", "basic", "basic-tls"]),
        "provider" => Some(
            crate::web::provider::StoreProvider::ALL
                .map(|p| p.key())
                .to_vec(),
        ),
        "app-host" => Some(vec!["web-tier", "exchange-host"]),
        // Global-catalog failover (protocol `address-book`).
        "program" => Some(vec!["service", "interactive"]),
        "userauth-credentials" => Some(vec!["0", "1"]),
        "allow-reconnect" => Some(vec!["on", "off"]),
        "process-domain" => Some(vec!["same", "other"]),
        _ => None,
    }
}

impl ScenarioFile {
    pub fn parse(text: &str) -> Result<ScenarioFile, ScenarioError> {
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        file.validate()?;
        Ok(file)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let mut seen = Vec::new();
        let mut cases = 1usize;
        for p in &self.params {
            let allowed = allowed_values(&p.name)
                .ok_or_else(|| ScenarioError::UnknownParameter(p.name.clone()))?;
            if seen.contains(&p.name.as_str()) {
                return Err(ScenarioError::DuplicateParameter(p.name.clone()));
            }
            seen.push(p.name.as_str());
            if p.values.is_empty() {
                return Err(ScenarioError::EmptyParameter(p.name.clone()));
            }
            for v in &p.values {
                if !allowed.contains(&v.as_str()) {
                    return Err(ScenarioError::UnknownValue {
                        name: p.name.clone(),
                        value: v.clone(),
                        allowed: allowed.join(", "),
                    });
                }
            }
            cases = cases.saturating_mul(p.values.len());
        }
        if cases > MAX_CASES {
            return Err(ScenarioError::TooManyCases(cases));
        }
        if let Some(t) = &self.timeline {
            t.validate()?;
        }
        for (index, e) in self.expectations.iter().enumerate() {
            for name in e.when.keys() {
                if !seen.contains(&name.as_str()) {
                    return Err(ScenarioError::WhenUnknown {
                        index,
                        name: name.clone(),
                    });
                }
            }
            if let Some(s) = &e.status {
                if !STATUSES.contains(&s.as_str()) {
                    return Err(ScenarioError::BadStatus {
                        index,
                        status: s.clone(),
                    });
                }
            }
            for c in &e.codes {
                if crate::codes::ErrorCode::by_name(c).is_none() {
                    return Err(ScenarioError::BadCode {
                        index,
                        code: c.clone(),
                    });
                }
            }
            if let Some(state) = &e.end_state {
                if crate::gc::ProviderState::by_name(state).is_none() {
                    return Err(ScenarioError::BadState {
                        index,
                        state: state.clone(),
                    });
                }
            }
            if let Some(t) = &e.timeline {
                if !t.chars().all(|c| ".NEPx|".contains(c)) {
                    return Err(ScenarioError::BadTimeline {
                        index,
                        timeline: t.clone(),
                    });
                }
            }
            for f in e.findings.iter().chain(&e.no_findings) {
                if !FINDING_KINDS.contains(&f.as_str()) {
                    return Err(ScenarioError::BadFinding {
                        index,
                        kind: f.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every combination of parameter values, in the order the file lists them (the last
    /// parameter varies fastest).
    pub fn cases(&self) -> Vec<Case> {
        let mut cases: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for p in &self.params {
            let mut next = Vec::with_capacity(cases.len() * p.values.len());
            for partial in &cases {
                for v in &p.values {
                    let mut c = partial.clone();
                    c.push((p.name.clone(), v.clone()));
                    next.push(c);
                }
            }
            cases = next;
        }
        cases
            .into_iter()
            .map(|params| Case {
                scenario: self.name.clone(),
                params,
            })
            .collect()
    }

    /// The expectations that apply to `case`, with their index in the file.
    pub fn expectations_for<'a>(&'a self, case: &Case) -> Vec<(usize, &'a Expectation)> {
        self.expectations
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.when
                    .iter()
                    .all(|(k, v)| case.get(k).is_some_and(|cv| v.contains(cv)))
            })
            .collect()
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub scenario: String,
    pub params: Vec<(String, String)>,
}

impl Case {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A file-name-safe id: `spa-loop__imap__exchange2000-rtm__oe-spa`.
    pub fn id(&self) -> String {
        let mut id = self.scenario.clone();
        for (_, v) in &self.params {
            id.push_str("__");
            id.push_str(v);
        }
        id
    }

    /// `protocol=imap topology=direct client=oe-spa`.
    pub fn label(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
